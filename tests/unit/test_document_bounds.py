"""Hostile session documents and data files are refused quickly, by field, with exit 2.

Each case is one that, before these bounds, took minutes and gigabytes (an alias
bomb), crashed with a traceback (a 100,000-digit number, 100,000-deep nesting, a
5,000-digit bar time) or was silently accepted with a nonsensical meaning (an
infinite timeout that became ~10 ms, a memory cap that wrapped to 0, infinite cash).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, SMA_WASM

from kubetrade.runner.app.session_file import (
    MAX_DOCUMENT_BYTES,
    SessionError,
    load_session,
    parse_session,
)
from kubetrade.runner.marketdata.base import MarketDataError
from kubetrade.runner.marketdata.feed import MalformedFrame, checked_bar
from kubetrade.runner.marketdata.replay import ReplayProvider

KUBETRADE = Path(sys.executable).parent / "kubetrade"


def _document(*, config: str = "{}", engine: str = "{}", trading: str = "{}") -> str:
    return f"""apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata: {{name: bounds}}
spec:
  symbols: [BTCUSDT]
  strategy: {{path: {SMA_WASM}, config: {config}}}
  marketData: {{provider: synthetic, config: {{bars: 5}}}}
  trading: {{provider: paper, config: {trading}}}
  engine: {engine}
"""


def _alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        ref = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([ref] * 9)}]")
    return "\n".join(lines) + "\n"


def _refused(text: str) -> str:
    with pytest.raises(SessionError) as refused:
        parse_session(text, source="bounds")
    return str(refused.value)


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    # 9 levels of 9 references: 387 million nodes if expanded.
    assert "YAML aliases (*a0) are not accepted" in _refused(_alias_bomb())


def test_a_plain_alias_is_refused_too() -> None:
    text = _document().replace("config: {}", "config: &c {a: 1}") + "  risk: *c\n"
    assert "YAML aliases (*c) are not accepted" in _refused(text)


def test_deep_nesting_is_refused_without_a_recursion_error() -> None:
    message = _refused(_document(config="[" * 100_000 + "]" * 100_000))
    assert "nested deeper than 64 levels" in message


def test_a_100000_digit_number_is_refused() -> None:
    message = _refused(_document(config="{n: " + "9" * 100_000 + "}"))
    assert "a number of 100000 characters" in message


def test_a_quoted_long_number_is_text_and_fine() -> None:
    parse_session(_document(config="{n: '" + "9" * 1000 + "'}"), source="bounds")


def test_a_document_over_the_api_servers_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "session.yaml"
    path.write_text(_document(config="{pad: '" + "x" * MAX_DOCUMENT_BYTES + "'}"))
    with pytest.raises(SessionError, match=r"at most 1,572,864 \(1\.5 MiB"):
        load_session(path)


@pytest.mark.parametrize(
    ("engine", "trading", "field", "message"),
    [
        ("{strategyCallTimeoutSeconds: .inf}", "{}", "strategyCallTimeoutSeconds", "finite"),
        ("{strategyCallTimeoutSeconds: 1.0e300}", "{}", "strategyCallTimeoutSeconds", "3600"),
        ("{strategyCallTimeoutSeconds: 1.0e-9}", "{}", "strategyCallTimeoutSeconds", "0.001"),
        ("{strategyMemoryLimitMiB: 17592186044416}", "{}", "strategyMemoryLimitMiB", "65536"),
        ("{marketDataCacheSize: 1000000000}", "{}", "marketDataCacheSize", "1000000"),
        ("{}", "{initialCash: .inf}", "initialCash", "finite"),
        ("{}", "{initialCash: 1.0e300}", "initialCash", "1000000000000000"),
        ("{}", "{feeBps: .nan}", "feeBps", "finite"),
        ("{}", "{slippageBps: 20000}", "slippageBps", "10000"),
    ],
)
def test_numbers_are_finite_and_bounded(
    engine: str, trading: str, field: str, message: str
) -> None:
    text = _refused(_document(engine=engine, trading=trading))
    assert field in text and message in text


@pytest.mark.parametrize(
    "risk", ["maxOrderNotional: .inf", "maxDailyLoss: 1.0e300", "maxOrdersPerMinute: 1.0e12"]
)
def test_risk_limits_are_finite_and_bounded(risk: str) -> None:
    text = _refused(_document() + f"  risk: {{{risk}}}\n")
    assert f"spec.risk.{risk.split(':')[0]}" in text


def test_an_infinity_deep_in_the_strategy_config_is_found() -> None:
    text = _refused(_document(config="{a: {b: [1, -.inf]}}"))
    assert "spec.strategy.config.a.b[1]: must be a finite number, not -.inf" in text


def test_kubetrade_run_refuses_each_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    for name, text in {
        "bomb": _document() + _alias_bomb().replace("a0:", "x0:", 1),
        "inf": _document(engine="{strategyCallTimeoutSeconds: .inf}"),
        "deep": _document(config="[" * 5000 + "]" * 5000),
    }.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        result = subprocess.run(
            [str(KUBETRADE), "run", "--no-http", str(path)],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
            env={**os.environ, "PYTHONSAFEPATH": "1"}, check=False,
        )  # fmt: skip
        assert result.returncode == 2, (name, result.stderr)
        assert "Traceback" not in result.stderr and result.stdout == ""


# ------------------------------------------------------------------------- data files


def _replay(tmp_path: Path, row: str) -> str:
    path = tmp_path / "bars.csv"
    path.write_text(f"time,open,high,low,close,volume\n{row}\n")
    with pytest.raises(MarketDataError) as refused:
        ReplayProvider(path=path, symbols=("BTCUSDT",), interval_ms=60_000)
    return str(refused.value)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("9" * 5000 + ",1,1,1,1,1", "a 5000-character value is not a time"),
        ("-50000000000000,1,1,1,1,1", "outside the years 1900 to 2199"),  # the year -1200
        ("2250-01-01T00:00:00Z,1,1,1,1,1", "outside the years 1900 to 2199"),
        ("2024-01-01T00:00:00Z,1,1.0e13,1,1,1", "above 1e+12"),
        ("2024-01-01T00:00:00Z,1,1,1,1,1.0e19", "volume 1e+19 is above 1e+18"),
        ("2024-01-01T00:00:00Z,1,inf,1,1,1", "not a finite number"),
    ],
    ids=["5000-digit time", "year -1200", "year 2250", "huge price", "huge volume", "inf"],
)
def test_a_replay_file_with_unbounded_figures_is_refused_by_line_and_column(
    tmp_path: Path, row: str, message: str
) -> None:
    text = _replay(tmp_path, row)
    assert "line 2, column" in text and message in text


@pytest.mark.parametrize(
    ("time", "high"), [(10**20, 1.0), (-(10**15), 1.0), (1_704_067_200_000, 1e13)]
)
def test_a_frame_with_unbounded_figures_is_malformed(time: int, high: float) -> None:
    with pytest.raises(MalformedFrame):
        checked_bar("BTCUSDT", time, 1, high, 1, 1, 1)
    with pytest.raises(MalformedFrame):
        checked_bar("BTCUSDT", 1_704_067_200_000, 1, 10**400, 1, 1, 1)
