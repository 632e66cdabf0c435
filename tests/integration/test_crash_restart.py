"""Kill the runner with SIGKILL again and again; the final journal equals an uninterrupted run's.

Kills land at exact crash points (after a commit of the journal, between
journaling an order and sending it, between the venue's answer and journaling
it, in the middle of a group of bars not committed yet) and at random instants
from outside. Each time the runner restarts from its state directory. At the
end the orders, fills, cursor, positions, cash, the equity after every bar, the
strategy's log and the risk gate's state must be what a run that was never
killed produced, with no order sent twice.
"""

from __future__ import annotations

import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from helpers import MINUTE, SMA_WASM, T0, venue_account, venue_fill_counts, write_bars

if TYPE_CHECKING:
    from servers.binance_trading import BinanceTradingServer

KUBETRADE = Path(sys.executable).parent / "kubetrade"
BARS = 240
PAPER = "    provider: paper\n    config: {initialCash: 10000, feeBps: 10, slippageBps: 5}"


def session(
    tmp_path: Path, trading: str = "", name: str = "crash-test", symbol: str = "ACME"
) -> Path:
    closes = [100 + 8 * math.sin(i / 5) + 3 * math.sin(i / 1.7) for i in range(BARS)]
    rows = [(i, round(c, 2), round(c + 0.5, 2), round(c - 0.5, 2), round(c, 2)) for i, c in
            enumerate(closes)]  # fmt: skip
    data = write_bars(tmp_path / "bars.csv", symbol, rows)
    path = tmp_path / "session.yaml"
    path.write_text(
        f"""
apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata: {{name: {name}}}
spec:
  symbols: [{symbol}]
  interval: 1m
  strategy:
    path: {SMA_WASM}
    config: {{fastPeriod: 3, slowPeriod: 8, quantity: 7}}
  marketData:
    provider: replay
    config: {{path: {data}}}
  trading:
{trading or PAPER}
  engine:
    marketDataCacheSize: 50
"""
    )
    return path


def start(
    session_file: Path, state: Path, crash_at: str = "", extra_env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONSAFEPATH": "1", **(extra_env or {})}
    env.pop("KUBETRADE_CRASH_AT", None)
    if crash_at:
        env["KUBETRADE_CRASH_AT"] = crash_at
    return subprocess.Popen(
        [str(KUBETRADE), "run", "--no-http", "--quiet", "--state-dir", str(state),
         str(session_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def journal_rows(state: Path) -> dict[str, list[tuple[object, ...]]]:
    db = sqlite3.connect(state / "journal.db")  # the paper venue's tables are in it too
    try:
        return {
            "orders": db.execute(
                "SELECT time, symbol, side, order_type, quantity, round(price, 9), status, "
                "filled_quantity, round(average_price, 9), round(fee, 9) FROM orders ORDER BY seq"
            ).fetchall(),
            "fills": db.execute(
                "SELECT time, symbol, side, quantity, round(price, 9), round(fee, 9), "
                "round(realized_pnl, 9) FROM fills ORDER BY seq"
            ).fetchall(),
            "cursor": db.execute("SELECT symbol, time FROM cursor").fetchall(),
            "equity": db.execute(
                "SELECT time, round(equity, 9), round(cash, 9) FROM equity ORDER BY time"
            ).fetchall(),
            "logs": db.execute(
                "SELECT time, level, message, fields FROM logs ORDER BY seq"
            ).fetchall(),
            "risk": db.execute("SELECT value FROM session WHERE key='risk'").fetchall(),
            "venue": [venue_account(db)],
        }
    finally:
        db.close()


def binance_test_venue(key: str, secret: str) -> BinanceTradingServer:
    """The local Binance server with the market the crash-test session trades."""
    from servers.binance_trading import BinanceTradingServer, Market

    return BinanceTradingServer(
        api_key=key,
        api_secret=secret,
        markets=[
            Market("ACMEUSDT", "ACME", "USDT", Decimal("100")),
            # Fees are paid in BNB (priced through BNBUSDT), so sells find the whole
            # position: a fee taken from the coin bought is not modelled by the book yet.
            Market("BNBUSDT", "BNB", "USDT", Decimal("500"), step=Decimal("0.001")),
        ],
        balances={"USDT": "100000", "BNB": "5"},
        commission_asset="BNB",
    )


def test_kill_nine_anywhere_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    session_file = session(tmp_path)
    clean = tmp_path / "clean"
    proc = start(session_file, clean)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    expected = journal_rows(clean)
    assert len(expected["orders"]) >= 12, "the series should make the strategy trade often"

    rng = random.Random(20261121)
    plans = ["before-send:1", "after-send:1"] * 5 + [
        f"bar-journaled:{rng.randint(2, 9)}" for _ in range(8)
    ]
    plans += [f"bar-done:{rng.randint(2, 12)}" for _ in range(4)]  # inside a group
    rng.shuffle(plans)
    plans += ["external"] * 6  # SIGKILL from outside at a random instant
    crashed = tmp_path / "crashed"
    kills = 0
    for plan in plans:
        if plan == "external":
            proc = start(session_file, crashed)
            time.sleep(rng.uniform(0.05, 0.5))  # mostly while it starts or restores
            proc.send_signal(signal.SIGKILL)
        else:
            proc = start(session_file, crashed, crash_at=plan)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        else:
            assert proc.returncode == 0, err
    assert kills >= 20, f"only {kills} runs were killed; the series ended too early"
    proc = start(session_file, crashed)  # the last start runs to the end
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err

    assert journal_rows(crashed) == expected
    assert len(expected["equity"]) == BARS  # a point for every bar
    db = sqlite3.connect(crashed / "journal.db")
    ids = [row[0] for row in db.execute("SELECT client_order_id FROM orders")]
    assert len(ids) == len(set(ids))
    # The venue saw each order once: one record per client id, fills matching the journal's.
    venue_fills = venue_fill_counts(crashed / "journal.db")
    assert all(count == 1 for count in venue_fills.values())
    assert len(venue_fills) == len(expected["fills"])
    epochs = {cid.split("-")[1] for cid in ids}
    assert len(epochs) > 5  # the orders really were placed across many restarts
    assert expected["cursor"] == [("ACME", T0 + (BARS - 1) * MINUTE)]


def kill_repeatedly(
    session_file: Path, state: Path, rng: random.Random, env: dict[str, str] | None = None
) -> int:
    """Start and kill the runner at crash points and at random; return how many died."""
    plans = ["before-send:1", "after-send:1"] * 5 + [
        f"bar-journaled:{rng.randint(2, 9)}" for _ in range(8)
    ]
    rng.shuffle(plans)
    plans += ["external"] * 6
    kills = 0
    for plan in plans:
        if plan == "external":
            proc = start(session_file, state, extra_env=env)
            time.sleep(rng.uniform(0.05, 0.5))  # mostly while it starts or restores
            proc.send_signal(signal.SIGKILL)
        else:
            proc = start(session_file, state, crash_at=plan, extra_env=env)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        else:
            assert proc.returncode == 0, err
    proc = start(session_file, state, extra_env=env)  # the last start runs to the end
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return kills


def test_a_real_venue_sees_each_order_exactly_once_across_kills(tmp_path: Path) -> None:
    key, secret = "ktCrashKey" + "Q1w2E3r4T5" * 6, "ktCrashSecret" + "P0o9I8u7Y6" * 6
    env = {"KUBETRADE_BINANCE_PAPER_API_KEY": key, "KUBETRADE_BINANCE_PAPER_API_SECRET": secret}

    def venue() -> BinanceTradingServer:
        return binance_test_venue(key, secret)

    def run_against(server: BinanceTradingServer, state: Path, kill: bool) -> int:
        trading = f'    provider: binance-paper\n    config: {{restUrl: "{server.url}"}}'
        session_file = session(
            tmp_path / state.name, trading=trading, name="crash-venue", symbol="ACMEUSDT"
        )
        if kill:
            return kill_repeatedly(session_file, state, random.Random(7), env)
        proc = start(session_file, state, extra_env=env)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return 0

    (tmp_path / "clean").mkdir()
    (tmp_path / "crashed").mkdir()
    with venue() as clean_venue:
        run_against(clean_venue, tmp_path / "clean", kill=False)
        clean_orders = [(o.side, o.quantity) for o in clean_venue.orders]
    with venue() as crashed_venue:
        kills = run_against(crashed_venue, tmp_path / "crashed", kill=True)
        ids = [o.client_order_id for o in crashed_venue.orders]
        crashed_orders = [(o.side, o.quantity) for o in crashed_venue.orders]
        trades = len(crashed_venue.trades)
    assert kills >= 15
    assert len(clean_orders) >= 12
    assert len(ids) == len(set(ids)), "the venue received an order twice"
    assert crashed_orders == clean_orders
    db = sqlite3.connect(tmp_path / "crashed" / "journal.db")
    journaled = [row[0] for row in db.execute("SELECT client_order_id FROM orders ORDER BY seq")]
    assert journaled == ids  # every order the venue has is journaled, in the same order
    assert db.execute("SELECT count(*) FROM fills").fetchone()[0] == trades


def test_a_report_on_a_killed_runners_directory_writes_nothing(tmp_path: Path) -> None:
    # A report reads the journal over a read-only connection: it neither checkpoints the
    # WAL the dead runner left nor moves the journal's change counter.
    state = tmp_path / "state"
    proc = start(session(tmp_path), state, crash_at="bar-journaled:4")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert (state / "journal.db-wal").stat().st_size > 0
    before = {p.name: p.read_bytes() for p in state.iterdir() if not p.name.endswith("-shm")}
    report = subprocess.run(
        [str(KUBETRADE), "report", "--json", str(state)],
        capture_output=True, text=True, env={**os.environ, "PYTHONSAFEPATH": "1"}, timeout=120,
        check=False,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    after = {p.name: p.read_bytes() for p in state.iterdir() if not p.name.endswith("-shm")}
    assert after == before  # journal.db (its change counter at byte 24 too) and its WAL
