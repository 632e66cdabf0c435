"""`kubetrade report` on a small fixed session, against figures worked out by hand."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from helpers import SMA_WASM, flat_rows, write_bars

KUBETRADE = Path(sys.executable).parent / "kubetrade"
ENV = {**os.environ, "PYTHONSAFEPATH": "1"}


def kubetrade(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBETRADE), *map(str, args)], capture_output=True, text=True, env=ENV, timeout=120,
        check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # SMA(2) / SMA(3), 10 units, fees 10 bps: buy at 13, sell at 8, buy at 15.
    tmp = tmp_path_factory.mktemp("report")
    data = write_bars(
        tmp / "bars.csv", "ACME", flat_rows([10, 10, 10, 10, 13, 16, 12, 8, 9, 15, 15])
    )
    session = tmp / "session.yaml"
    session.write_text(
        f"""
apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata: {{name: report-test}}
spec:
  symbols: [ACME]
  interval: 1m
  strategy: {{path: {SMA_WASM}, config: {{fastPeriod: 2, slowPeriod: 3, quantity: 10}}}}
  marketData: {{provider: replay, config: {{path: {data}}}}}
  trading: {{provider: paper, config: {{initialCash: 1000, feeBps: 10}}}}
"""
    )
    state = tmp / "state"
    result = kubetrade("run", "--no-http", "--quiet", "--state-dir", state, session)
    assert result.returncode == 0, result.stderr
    return state


def test_report_figures_match_the_hand_computation(state_dir: Path) -> None:
    result = kubetrade("report", "--json", state_dir)
    assert result.returncode == 0, result.stderr
    r = json.loads(result.stdout)
    assert (r["session"], r["orders"], r["fills"], r["round_trips"]) == ("report-test", 3, 3, 1)
    assert r["realized_pnl"] == pytest.approx(-50)  # (8 - 13) * 10
    assert r["unrealized_pnl"] == pytest.approx(0)  # holding 10 bought at 15, last close 15
    assert r["fees"] == pytest.approx(0.13 + 0.08 + 0.15)
    assert r["win_rate"] == 0.0  # the one round trip lost
    # Equity after each bar: 1000 x4, 999.87, 1029.87, 989.87, 949.79, 949.79, 949.64, 949.64
    equity = [1000, 1000, 1000, 1000, 999.87, 1029.87, 989.87, 949.79, 949.79, 949.64, 949.64]
    assert r["final_equity"] == pytest.approx(949.64)
    assert r["max_drawdown"] == pytest.approx(1029.87 - 949.64)
    assert r["max_drawdown_pct"] == pytest.approx((1029.87 - 949.64) / 1029.87)
    returns = [b / a - 1 for a, b in itertools.pairwise(equity)]
    mean = sum(returns) / len(returns)
    sd = math.sqrt(sum((x - mean) ** 2 for x in returns) / (len(returns) - 1))
    assert r["sharpe"] == pytest.approx(mean / sd * math.sqrt(365 * 24 * 60))


def test_report_text_and_exports(state_dir: Path, tmp_path: Path) -> None:
    result = kubetrade("report", state_dir, "--export", tmp_path / "csv")
    assert result.returncode == 0, result.stderr
    assert "realized PnL    -50.00" in result.stdout
    assert "win rate        0.0%" in result.stdout
    with (tmp_path / "csv" / "fills.csv").open() as handle:
        fills = list(csv.DictReader(handle))
    assert [(f["side"], f["price"]) for f in fills] == [
        ("BUY", "13.0"),
        ("SELL", "8.0"),
        ("BUY", "15.0"),
    ]
    result = kubetrade(
        "report", state_dir, "--export", tmp_path / "pq", "--export-format", "parquet"
    )
    assert result.returncode == 0, result.stderr
    with duckdb.connect() as con:
        orders = con.execute("FROM read_parquet(?)", [str(tmp_path / "pq" / "orders.parquet")])
        names = [column[0] for column in orders.description or ()]
        statuses = [dict(zip(names, row, strict=True))["status"] for row in orders.fetchall()]
        assert statuses == ["FILLED"] * 3
        marks = con.execute("FROM read_parquet(?)", [str(tmp_path / "pq" / "marks.parquet")])
        assert marks.fetchall() == []  # no marks, but the columns are there
        assert "signal_type" in [column[0] for column in marks.description or ()]


def test_report_without_a_journal_is_a_clear_error(tmp_path: Path) -> None:
    result = kubetrade("report", tmp_path)
    assert result.returncode == 2
    assert "no journal" in result.stderr and str(tmp_path) in result.stderr


def test_runner_refuses_a_corrupt_journal_and_keeps_it(state_dir: Path, tmp_path: Path) -> None:
    import hashlib
    import shutil

    broken = tmp_path / "state"
    shutil.copytree(state_dir, broken)
    journal = broken / "journal.db"
    data = bytearray(journal.read_bytes())
    for page in range(1, len(data) // 4096):
        data[page * 4096 : page * 4096 + 12] = b"\xff" * 12
    journal.write_bytes(bytes(data))
    before = hashlib.sha256(journal.read_bytes()).hexdigest()
    session = state_dir.parent / "session.yaml"
    result = kubetrade("run", "--no-http", "--state-dir", broken, session)
    assert result.returncode == 2
    assert str(journal) in result.stderr and "untouched" in result.stderr
    assert "Traceback" not in result.stderr
    assert hashlib.sha256(journal.read_bytes()).hexdigest() == before
