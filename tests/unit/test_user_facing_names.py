"""Messages a user reads name the session's fields (spec.engine.*), never internal ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import ROOT

INTERNAL_NAMES = ("limits.call_timeout_s", "limits.max_memory_bytes", "start_after_warmup")


def test_no_user_facing_message_names_an_internal_field() -> None:
    """No string under runner/ that could be a message names an internal field: the
    session's names (spec.engine.*) are what a user can change."""
    found: list[str] = []
    for path in sorted((ROOT / "runner").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
                continue
            text = node.value
            if any(name in text for name in INTERNAL_NAMES) and not _is_docstring_or_name(text):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text!r}")
    assert found == []


def _is_docstring_or_name(text: str) -> bool:
    # Docstrings describe parameters by their names; messages are short sentences.
    return "\n" in text or text.isidentifier()


def test_the_strategy_limits_are_named_as_in_the_session() -> None:
    from kubetrade.runner.strategy import host

    assert host.TIMEOUT_FIELD == "spec.engine.strategyCallTimeoutSeconds"
    assert host.MEMORY_FIELD == "spec.engine.strategyMemoryLimitMiB"


def test_the_warm_up_message_names_spec_engine_warmup_bars(tmp_path: Path) -> None:
    from kubetrade.runner.marketdata.base import MarketDataError
    from kubetrade.runner.marketdata.replay import ReplayProvider

    path = tmp_path / "bars.csv"
    path.write_text("time,open,high,low,close,volume\n1704067200000,1,1,1,1,1\n")
    with pytest.raises(MarketDataError, match=r"lower spec\.engine\.warmupBars or add rows"):
        ReplayProvider(path=path, symbols=("BTC",), interval_ms=60_000, start_after_warmup=1)
