"""Every host function of the ABI, called by the compiled apicheck strategy through the engine.

strategies/testdata/apicheck reports through `log` what each host function
answered (its script is in the comment at the top of its main.go); the expected
values here are worked out independently from the bars this module writes:
aggregations and SQL answers by plain Python, indicator values by argo-
trading's definitions restated here (the default) and by TA-Lib (with
spec.engine.indicators: talib), fills and PnL from the paper broker's rules
(market orders fill at the bar's close, fee 10 bps, average-cost PnL). Its
"errors" mode makes one failing host call per even bar: each must trap that
call with a StrategyError naming the host function and the reason, while the
same instance serves the next bar. Finally the faulty strategy exhausts a small
memory cap: the sandbox stops it, the engine restarts it and the later bars are
processed.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import talib
from talib._ta_lib import MA_Type

from kubetrade.runner import events as ev
from kubetrade.runner.app.assemble import RunOptions, build_engine
from kubetrade.runner.app.session_file import load_session
from kubetrade.runner.domain import Bar, format_ms
from kubetrade.runner.engine import Engine
from kubetrade.runner.strategy.pb import strategy_pb2 as pb

# Self-contained (no `helpers` import), so mypy can check this file on its own.
ROOT = Path(__file__).resolve().parents[2]
APICHECK_WASM = ROOT / "strategies" / "testdata" / "apicheck" / "apicheck.wasm"
FAULTY_WASM = ROOT / "strategies" / "testdata" / "faulty" / "faulty.wasm"
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z, on a 15-minute boundary
MINUTE = 60_000
BARS = 45  # per symbol; the script's last reports are on bar 41
FEE_RATE = 10 / 10_000  # feeBps: 10
CASH = 10_000.0
MIB = 1024 * 1024

# -- the market data ----------------------------------------------------------------------


def make_bars(symbol: str, base: float, swing: float) -> list[Bar]:
    """A wavy, slowly rising series: every indicator and aggregate has something to show."""
    bars: list[Bar] = []
    prev = base
    for m in range(BARS):
        close = round(base + swing * math.sin(m / 3) + base * 0.0005 * m, 2)
        high = round(max(prev, close) + base * 0.003 * (1 + m % 3), 2)
        low = round(min(prev, close) - base * 0.002 * (1 + m % 4), 2)
        bars.append(Bar(symbol, T0 + m * MINUTE, prev, high, low, close, float(10 + 7 * m % 13)))
        prev = close
    return bars


BTC = make_bars("BTC", 100.0, 4.0)
ETH = make_bars("ETH", 2000.0, 40.0)  # closes on both sides of the SQL threshold 2000


def write_csv(path: Path, bars: Sequence[Bar]) -> Path:
    lines = ["time,symbol,open,high,low,close,volume"]
    lines += [f"{b.time},{b.symbol},{b.open},{b.high},{b.low},{b.close},{b.volume}" for b in bars]
    path.write_text("\n".join(lines) + "\n")
    return path


def both_symbols() -> list[Bar]:
    """BTC and ETH interleaved in time order (BTC first, as the session lists it)."""
    return [b for pair in zip(BTC, ETH, strict=True) for b in pair]


def iso(ms: int) -> str:
    return format_ms(ms)


def minute(m: int) -> int:
    return T0 + m * MINUTE


# -- running a session --------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    engine: Engine
    events: list[ev.Event]

    @property
    def stopped(self) -> ev.EngineStopped:
        last = self.events[-1]
        assert isinstance(last, ev.EngineStopped)
        return last

    @property
    def errors(self) -> list[ev.StrategyError]:
        return [e for e in self.events if isinstance(e, ev.StrategyError)]

    @property
    def logs(self) -> list[ev.StrategyLog]:
        return [e for e in self.events if isinstance(e, ev.StrategyLog)]

    def checks(self) -> dict[str, dict[str, str]]:
        """The script's reports by step; each step is reported once."""
        out: dict[str, dict[str, str]] = {}
        for log in self.logs:
            if log.message == "check":
                step = log.fields["step"]
                assert step not in out, f"step {step} reported twice"
                out[step] = log.fields
        return out

    def restarts(self) -> list[ev.EngineError]:
        return [
            e for e in self.events if isinstance(e, ev.EngineError) and "restarted" in e.message
        ]


def run_session(
    directory: Path, *, wasm: Path, data: Path, config: str, symbols: str, engine: str = ""
) -> Session:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "session.yaml"
    path.write_text(
        "apiVersion: kubetrade.io/v1alpha1\nkind: LiveTradingSession\n"
        "metadata:\n  name: api-coverage\n"
        "spec:\n"
        f"  symbols: [{symbols}]\n"
        "  interval: 1m\n"
        f"  strategy: {{path: {wasm}, config: {config}}}\n"
        f"  marketData: {{provider: replay, config: {{path: {data}}}}}\n"
        f"  trading: {{provider: paper, config: {{initialCash: {CASH}, feeBps: 10}}}}\n"
        f"  engine: {{{engine}}}\n"
    )
    built = build_engine(load_session(path), RunOptions())

    async def collect() -> list[ev.Event]:
        return [event async for event in built.run()]

    return Session(built, asyncio.run(collect()))


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Session:
    directory = tmp_path_factory.mktemp("script")
    return run_session(
        directory,
        wasm=APICHECK_WASM,
        data=write_csv(directory / "bars.csv", both_symbols()),
        config="{symbol: BTC}",
        symbols="BTC, ETH",
    )


@pytest.fixture(scope="module")
def checks(script: Session) -> dict[str, dict[str, str]]:
    return script.checks()


@pytest.fixture(scope="module")
def talib_checks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    directory = tmp_path_factory.mktemp("talib")
    return run_session(
        directory,
        wasm=APICHECK_WASM,
        data=write_csv(directory / "bars.csv", both_symbols()),
        config="{symbol: BTC}",
        symbols="BTC, ETH",
        engine="indicators: talib",
    ).checks()


def num(fields: dict[str, str], key: str) -> float:
    return float(fields[key])


# -- the script ---------------------------------------------------------------------------


def snake_case(method: str) -> str:
    """go-plugin's import name for a service method: ``ExecuteSQL`` -> ``execute_sql``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", method)
    return re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", spaced).lower()


def function_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of each function a .wasm imports, read from its import section.

    Reading the section directly spares compiling a 5 MB module just to list it.
    """
    data = path.read_bytes()
    assert data[:8] == b"\0asm\1\0\0\0", f"{path} is not a WebAssembly 1.0 module"
    pos = 8

    def uleb() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    def name() -> str:
        nonlocal pos
        size = uleb()
        pos += size
        return data[pos - size : pos].decode()

    while pos < len(data):
        section = data[pos]
        pos += 1
        size = uleb()
        if section != 2:  # not the import section
            pos += size
            continue
        imports = []
        for _ in range(uleb()):
            module, field = name(), name()
            kind = data[pos]
            pos += 1
            assert kind == 0, f"{module}.{field}: only function imports expected, kind {kind}"
            uleb()  # its type index
            imports.append((module, field))
        return imports
    return []


def test_apicheck_calls_every_host_function() -> None:
    # The module imports exactly what it calls (the Go linker drops the rest),
    # so its imports prove that the script reaches every method of the service.
    service = pb.DESCRIPTOR.services_by_name["StrategyApi"]
    wanted = {snake_case(method.name) for method in service.methods}
    imported = {name for module, name in function_imports(APICHECK_WASM) if module == "env"}
    assert len(wanted) == 21
    assert imported == wanted


def test_the_script_runs_clean(script: Session, checks: dict[str, dict[str, str]]) -> None:
    assert script.errors == []
    assert script.stopped.error is None
    summary = script.stopped.summary
    # 45 bars of each symbol; multi-mkt, multi-lmt, buy-2, sell-1, sell-2, rest-a, rest-b
    assert (summary.bars, summary.orders, summary.fills) == (2 * BARS, 7, 4)
    assert summary.strategy_errors == 0
    # get_cache/set_cache: the bar counter survives between calls, so every
    # report carries the bar it was made on.
    for step, fields in checks.items():
        assert step.startswith(f"bar{fields['bar']}."), step


def expected_buckets(bars: Sequence[Bar], width_min: int) -> list[dict[str, str | float]]:
    """OHLCV of `bars` rolled up into UTC-aligned buckets of `width_min` minutes."""
    groups: dict[int, list[Bar]] = {}
    for b in bars:
        groups.setdefault((b.time - T0) // MINUTE // width_min, []).append(b)
    return [
        {
            "symbol": "BTC",
            "time": iso(minute(k * width_min)),
            "open": g[0].open,
            "high": max(b.high for b in g),
            "low": min(b.low for b in g),
            "close": g[-1].close,
            "volume": sum(b.volume for b in g),
        }
        for k, g in sorted(groups.items())
    ]


def reported_buckets(checks: dict[str, dict[str, str]], step: str) -> list[dict[str, str | float]]:
    count = int(checks[step]["count"])
    out: list[dict[str, str | float]] = []
    for i in range(count):
        f = checks[f"{step}.{i}"]
        out.append(
            {"symbol": f["symbol"], "time": f["time"]}
            | {k: float(f[k]) for k in ("open", "high", "low", "close", "volume")}
        )
    return out


@pytest.mark.parametrize(
    ("step", "first", "width"),
    [
        ("bar12.range.5m", 0, 5),  # buckets 00:00, 00:05 and the forming 00:10
        ("bar12.range.5m_from3", 2, 5),  # the first bucket cut by the range: minutes 2-4
        ("bar12.range.15m", 0, 15),  # one forming bucket of 12 bars
    ],
)
def test_get_range_aggregates_bars_into_coarser_intervals(
    checks: dict[str, dict[str, str]], step: str, first: int, width: int
) -> None:
    # Bar 12 is minute 11: the range ends there.
    assert reported_buckets(checks, step) == expected_buckets(BTC[first:12], width)


def test_get_range_without_a_symbol_covers_every_symbol(
    checks: dict[str, dict[str, str]],
) -> None:
    # From minute 10 to 11 at 5m: BTC has minutes 10-11, ETH (streamed after BTC) minute 10.
    c = checks["bar12.range.all"]
    assert (c["count"], c["symbols"]) == ("2", f"BTC@{iso(minute(10))},ETH@{iso(minute(10))}")


def test_count_counts_the_bars_of_every_symbol(checks: dict[str, dict[str, str]]) -> None:
    # At BTC's bar 12 (minute 11) the window holds BTC minutes 0-11 and ETH minutes 0-10.
    c = checks["bar12.count"]
    assert c["all"] == "23"  # count(epoch, now)
    assert c["open"] == "23"  # count({}): unset bounds are open
    assert c["last5"] == str(5 + 4)  # minutes 7-11 of BTC, 7-10 of ETH


def test_read_last_data_answers_each_symbols_latest_bar(
    checks: dict[str, dict[str, str]],
) -> None:
    btc, eth = checks["bar12.last.BTC"], checks["bar12.last.ETH"]
    assert (btc["symbol"], btc["time"], num(btc, "close")) == (
        "BTC",
        iso(minute(11)),
        BTC[11].close,
    )
    assert (eth["symbol"], eth["time"], num(eth, "close")) == (
        "ETH",
        iso(minute(10)),
        ETH[10].close,
    )


def test_execute_sql_binds_parameters(checks: dict[str, dict[str, str]]) -> None:
    # Each query answers one row per result row, values as Go's %v prints them.
    btc = BTC[:12]
    assert checks["bar12.sql.stats"]["rows"] == "1"
    stats = checks["bar12.sql.stats.0"]
    assert set(stats) == {"step", "bar", "n", "h", "l"}
    assert stats["n"] == "12"  # the bound symbol filtered out ETH's 11 rows
    assert num(stats, "h") == max(b.high for b in btc)
    assert num(stats, "l") == min(b.low for b in btc)

    # Two bound parameters; the second ("2000", a string as the ABI sends it) compared as a number.
    above = [b for b in ETH[:11] if b.close > 2000]
    assert 0 < len(above) < 11  # the threshold really filters
    assert checks["bar12.sql.avg"]["rows"] == "1"
    avg = checks["bar12.sql.avg.0"]
    assert avg["n"] == str(len(above))
    assert num(avg, "avg_close") == pytest.approx(
        sum(b.close for b in above) / len(above), rel=1e-12
    )
    assert num(avg, "volume") == sum(b.volume for b in above)

    # $1 placeholders, ORDER BY and LIMIT; timestamps in Go's time.Time format.
    assert checks["bar12.sql.rows"]["rows"] == "2"
    rows = [checks[f"bar12.sql.rows.{i}"] for i in range(2)]
    for row, bar in zip(rows, (BTC[11], BTC[10]), strict=True):
        when = datetime.fromtimestamp(bar.time / 1000, tz=UTC)
        assert row["time"] == f"{when:%Y-%m-%d %H:%M:%S} +0000 UTC"
        assert num(row, "close") == bar.close


# -- indicators -------------------------------------------------------------------------------

# The script's indicators: step name -> (ABI name, GetSignalResponse.name, RawValue keys
# under TA-Lib's definitions; argo-trading's are Go's encoding/json of a map: sorted).
INDICATORS = {
    "rsi": ("INDICATOR_RSI", "rsi", ("rsi",)),
    "ma": ("INDICATOR_MA", "ma", ("ma",)),
    "ema": ("INDICATOR_EMA", "ema", ("ema",)),
    "macd": ("INDICATOR_MACD", "macd", ("macd",)),
    "bbands": ("INDICATOR_BOLLINGER_BANDS", "Bollinger Bands", ("upper", "middle", "lower")),
    "atr": ("INDICATOR_ATR", "atr", ("atr",)),
    "wr": ("INDICATOR_WILLIAMS_R", "williams_r", ("wr",)),  # never configured: defaults
}


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def argo_reference(name: str, bars: Sequence[Bar]) -> dict[str, float]:
    """argo-trading's value on the last of `bars`, with the script's configs, restated
    from its source: RSI of plain mean gains and losses, EMA, MACD and ATR of simple
    means of closes, the population deviation for the bands."""
    c = [b.close for b in bars]
    if name == "rsi":
        changes = [b - a for a, b in zip(c[-15:-1], c[-14:], strict=True)]
        gain = mean([max(x, 0.0) for x in changes])
        loss = mean([max(-x, 0.0) for x in changes])
        return {"rsi": 100.0 if loss == 0 else 100 - 100 / (1 + gain / loss)}
    if name in ("ma", "ema"):
        return {name: mean(c[-10:])}
    if name == "macd":
        return {"macd": mean(c[-12:]) - mean(c[-26:])}
    if name == "bbands":
        middle = mean(c[-20:])
        width = 2.0 * math.sqrt(mean([(x - middle) ** 2 for x in c[-20:]]))
        return {"lower": middle - width, "middle": middle, "upper": middle + width}
    if name == "atr":
        return {"atr": mean(c[-14:])}
    assert name == "wr"
    high, low = max(b.high for b in bars[-14:]), min(b.low for b in bars[-14:])
    return {"wr": (high - c[-1]) / (high - low) * -100}


def reference(name: str, bars: Sequence[Bar]) -> dict[str, float]:
    """TA-Lib's value on the last of `bars`, with the script's configs."""
    h = np.array([b.high for b in bars])
    lo = np.array([b.low for b in bars])
    c = np.array([b.close for b in bars])
    if name == "rsi":
        return {"rsi": float(talib.RSI(c, 14)[-1])}
    if name == "ma":
        return {"ma": float(talib.SMA(c, 10)[-1])}
    if name == "ema":
        return {"ema": float(talib.EMA(c, 10)[-1])}
    if name == "macd":
        return {"macd": float(talib.MACD(c, 12, 26, 9)[0][-1])}
    if name == "bbands":
        upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, MA_Type.SMA)
        return {"upper": float(upper[-1]), "middle": float(middle[-1]), "lower": float(lower[-1])}
    if name == "atr":
        return {"atr": float(talib.ATR(h, lo, c, 14)[-1])}
    assert name == "wr"
    return {"wr": float(talib.WILLR(h, lo, c, 14)[-1])}


def expected_signal(name: str, values: dict[str, float], close: float) -> str:
    """The documented rules (kubetrade.runner.hostapi.indicators) restated."""
    if name == "rsi":
        v = values["rsi"]
        return "BUY_LONG" if v < 30 else "SELL_SHORT" if v > 70 else "NO_ACTION"
    if name == "wr":
        v = values["wr"]
        return "BUY_LONG" if v < -80 else "SELL_SHORT" if v > -20 else "NO_ACTION"
    if name == "macd":
        v = values["macd"]
        return "BUY_LONG" if v > 0 else "SELL_SHORT" if v < 0 else "NO_ACTION"
    if name == "bbands":
        if close < values["lower"]:
            return "BUY_LONG"
        return "SELL_LONG" if close > values["upper"] else "NO_ACTION"
    return "NO_ACTION"  # MA, EMA and ATR only report values


@pytest.mark.parametrize("bar", [40, 41])
@pytest.mark.parametrize("name", list(INDICATORS))
def test_get_signal_answers_with_argo_tradings_definitions(
    checks: dict[str, dict[str, str]], name: str, bar: int
) -> None:
    abi_name, signal_name, keys = INDICATORS[name]
    got = checks[f"bar{bar}.signal.{name}"]
    raw = json.loads(got["raw"])
    assert tuple(raw) == tuple(sorted(keys))  # the documented keys, as Go orders a map's
    want = argo_reference(name, BTC[:bar])
    assert raw == pytest.approx(want, rel=1e-12, abs=1e-9)
    assert got["type"] == "SIGNAL_TYPE_" + expected_signal(name, want, BTC[bar - 1].close)
    assert (got["name"], got["indicator"]) == (signal_name, abi_name)
    assert (got["symbol"], got["time"]) == ("BTC", iso(minute(bar - 1)))


@pytest.mark.parametrize("bar", [40, 41])
@pytest.mark.parametrize("name", list(INDICATORS))
def test_get_signal_matches_talib_when_the_session_asks_for_it(
    talib_checks: dict[str, dict[str, str]], name: str, bar: int
) -> None:
    abi_name, signal_name, keys = INDICATORS[name]
    got = talib_checks[f"bar{bar}.signal.{name}"]
    raw = json.loads(got["raw"])
    assert tuple(raw) == keys  # exactly the documented RawValue keys
    want = reference(name, BTC[:bar])
    assert raw == pytest.approx(want, rel=1e-9, abs=1e-8)
    assert got["type"] == "SIGNAL_TYPE_" + expected_signal(name, want, BTC[bar - 1].close)
    assert (got["name"], got["indicator"]) == (signal_name, abi_name)
    assert (got["symbol"], got["time"]) == ("BTC", iso(minute(bar - 1)))


def test_the_signals_are_not_all_alike(
    checks: dict[str, dict[str, str]], talib_checks: dict[str, dict[str, str]]
) -> None:
    # Guards the data: the signal rules above are exercised beyond NO_ACTION.
    types = {
        answers[f"bar{n}.signal.{k}"]["type"]
        for answers in (checks, talib_checks)
        for n in (40, 41)
        for k in INDICATORS
    }
    assert {"SIGNAL_TYPE_BUY_LONG", "SIGNAL_TYPE_SELL_SHORT"} <= types


def test_bollinger_bands_answer_no_action_while_they_warm_up(
    checks: dict[str, dict[str, str]],
) -> None:
    # argo-trading's answer; every other indicator fails the call meanwhile (errors mode).
    got = checks["bar5.signal.bbands"]
    assert (got["type"], got["raw"], got["reason"]) == ("SIGNAL_TYPE_NO_ACTION", "null", "")
    assert (got["name"], got["indicator"]) == ("Bollinger Bands", "INDICATOR_BOLLINGER_BANDS")
    assert [step for step in checks if step.startswith("bar5.signal.")] == ["bar5.signal.bbands"]


def test_configure_indicator_accepted_every_config(checks: dict[str, dict[str, str]]) -> None:
    # Integer and float periods alike ([14.0, 30, 70], [10.0]); the values above
    # show each config took effect (RSI 14, MA/EMA 10, Bollinger 20/2).
    assert checks["bar1.configure"]["count"] == "6"


# -- orders, trades, markers, logs ---------------------------------------------------------------


def test_place_multiple_orders_places_every_order_of_the_call(
    script: Session, checks: dict[str, dict[str, str]]
) -> None:
    c0 = BTC[0].close
    placed = [e.order for e in script.events if isinstance(e, ev.OrderPlaced)]
    first_two = [
        (o.strategy_order_id, o.order_type, o.side, o.quantity, o.price) for o in placed[:2]
    ]
    assert first_two == [
        ("multi-mkt", "MARKET", "BUY", 2, c0),
        ("multi-lmt", "LIMIT", "BUY", 1, c0 / 2),
    ]
    assert all(o.time == minute(0) for o in placed[:2])
    assert (checks["bar1.open_orders"]["count"], checks["bar1.open_orders"]["ids"]) == (
        "2",
        "multi-mkt,multi-lmt",
    )
    assert checks["bar2.status.multi-mkt"]["value"] == "ORDER_STATUS_FILLED"
    assert checks["bar2.status.multi-lmt"]["value"] == "ORDER_STATUS_PENDING"


def test_cancels_positions_and_account(checks: dict[str, dict[str, str]]) -> None:
    # bar 4: 2 + 1 bought, 2 sold; sell-2 is placed before multi-lmt is cancelled
    pos = checks["bar4.position"]
    assert (pos["quantity"], pos["total_in_quantity"], pos["total_out_quantity"]) == ("1", "3", "2")
    assert checks["bar4.cancel"]["open_orders"] == "sell-2"
    assert checks["bar5.status.multi-lmt"]["value"] == "ORDER_STATUS_CANCELLED"
    assert (checks["bar5.positions"]["count"], checks["bar5.positions"]["symbols"]) == ("0", "")
    assert checks["bar6.open_orders"]["ids"] == "rest-a,rest-b"
    assert checks["bar6.cancel_all"]["open_orders"] == "0"
    assert checks["bar7.status.rest-a"]["value"] == "ORDER_STATUS_CANCELLED"
    assert checks["bar7.status.rest-b"]["value"] == "ORDER_STATUS_CANCELLED"


@dataclass(frozen=True)
class Trade:
    order_id: str
    side: str
    quantity: float
    price: float
    minute: int
    message: str


TRADES = [
    Trade("multi-mkt", "BUY", 2, BTC[0].close, 0, "batch market"),
    Trade("buy-2", "BUY", 1, BTC[1].close, 1, "add one"),
    Trade("sell-1", "SELL", 2, BTC[2].close, 2, "take two off"),
    Trade("sell-2", "SELL", 1, BTC[3].close, 3, "close"),
]


def test_get_trades_reports_fills_with_pnl(checks: dict[str, dict[str, str]]) -> None:
    average = (2 * BTC[0].close + BTC[1].close) / 3  # average cost of the 3 bought
    pnls = [0.0, 0.0, (BTC[2].close - average) * 2, (BTC[3].close - average) * 1]
    assert checks["bar5.trades"]["count"] == "4"
    cumulative = 0.0
    for i, (trade, pnl) in enumerate(zip(TRADES, pnls, strict=True)):
        got = checks[f"bar5.trade.{i}"]
        cumulative += pnl
        assert (got["order_id"], got["symbol"], got["side"]) == (
            trade.order_id,
            "BTC",
            "PURCHASE_TYPE_" + trade.side,
        )
        assert (num(got, "quantity"), num(got, "price")) == (trade.quantity, trade.price)
        assert num(got, "fee") == pytest.approx(trade.quantity * trade.price * FEE_RATE, rel=1e-12)
        assert num(got, "pnl") == pytest.approx(pnl, rel=1e-9, abs=1e-12)
        assert num(got, "cumulative_pnl") == pytest.approx(cumulative, rel=1e-9, abs=1e-12)
        assert got["executed_at"] == iso(minute(trade.minute))
        assert (got["strategy_name"], got["reason"], got["message"]) == (
            "apicheck",
            "strategy",
            trade.message,
        )
    # The filters: the newest trade only; trades since bar 3's time; another symbol.
    assert (checks["bar5.trades.limit"]["count"], checks["bar5.trades.limit"]["ids"]) == (
        "1",
        "sell-2",
    )
    assert (checks["bar5.trades.since"]["count"], checks["bar5.trades.since"]["ids"]) == (
        "2",
        "sell-1,sell-2",
    )
    assert checks["bar5.trades.other"]["count"] == "0"

    # get_account_info once flat again: cash moved by every fill and fee.
    fees = sum(t.quantity * t.price * FEE_RATE for t in TRADES)
    flow = sum(t.quantity * t.price * (1 if t.side == "SELL" else -1) for t in TRADES)
    account = checks["bar5.account"]
    assert num(account, "realized_pnl") == pytest.approx(sum(pnls), rel=1e-9)
    assert num(account, "unrealized_pnl") == 0
    assert num(account, "total_fees") == pytest.approx(fees, rel=1e-12)
    assert num(account, "balance") == pytest.approx(CASH + flow - fees, rel=1e-12)
    assert num(account, "equity") == pytest.approx(CASH + flow - fees, rel=1e-12)


def test_mark_and_get_markers(script: Session, checks: dict[str, dict[str, str]]) -> None:
    assert checks["bar3.markers"]["count"] == "2"
    first, second = checks["bar3.marker.0"], checks["bar3.marker.1"]
    assert {k: first[k] for k in first if k not in ("step", "bar")} == {
        "color": "green",
        "shape": "MARK_SHAPE_TRIANGLE",
        "title": "entry",
        "message": "bought 2",
        "category": "trade",
        "signal_type": "SIGNAL_TYPE_BUY_LONG",
        "level": "MARK_LEVEL_INFO",
    }
    assert {k: second[k] for k in second if k not in ("step", "bar")} == {
        "color": "#FF8800",
        "shape": "MARK_SHAPE_SQUARE",
        "title": "add",
        "message": "",
        "category": "trade",
        "signal_type": "SIGNAL_TYPE_NO_ACTION",
        "level": "MARK_LEVEL_WARNING",
    }
    # Each mark is kept with the bar it was made on.
    marks = script.engine.state.marks
    assert [(m.symbol, m.time, m.title) for m in marks] == [
        ("BTC", minute(0), "entry"),
        ("BTC", minute(1), "add"),
    ]


def test_log_keeps_level_message_fields_and_bar_time(script: Session) -> None:
    levels = [(e.time, e.level, e.fields) for e in script.logs if e.message == "level"]
    assert levels == [
        (minute(0), level, {"bar": "1", "level": level}) for level in ("debug", "warn", "error")
    ]


# -- the error cases ----------------------------------------------------------------------------

# In the order of apicheck's errorCases: case k runs on bar 2(k + 1).
# (case, host function, what the reason says)
ERROR_CASES = [
    ("signal.warming_up", "get_signal", f"rsi: BTC at {iso(minute(1))}: RSI needs 15 bars, has 2"),
    (
        "sql.delete",
        "execute_sql",
        "only a single SELECT statement is allowed (market_data is read-only); got DELETE",
    ),
    ("sql.syntax", "execute_sql", 'invalid SQL: Parser Error: syntax error at or near "SELEC"'),
    ("sql.unknown_column", "execute_sql", 'query failed: Binder Error: Referenced column "nope"'),
    ("sql.two_statements", "execute_sql", "only a single SELECT statement is allowed"),
    ("configure.unknown_type", "configure_indicator", "unknown indicator type 99"),
    ("configure.bad_json", "configure_indicator", "rsi: config is not valid JSON"),
    (
        "configure.bad_period",
        "configure_indicator",
        "must be a whole number from 1 to 1000000, got 0",
    ),
    ("configure.unsupported", "configure_indicator", "INDICATOR_TREND_STRENGTH is not supported"),
    ("signal.unsupported", "get_signal", "INDICATOR_TREND_STRENGTH is not supported"),
    ("signal.unknown_type", "get_signal", "unknown indicator type 99"),
    ("signal.unknown_symbol", "get_signal", "symbol 'NOPE' is not traded by this session"),
    ("last.unknown_symbol", "read_last_data", "no market data for symbol 'NOPE'"),
    ("status.unknown_id", "get_order_status", "no order with id 'no-such-order'"),
    ("cancel.unknown_id", "cancel_order", "no order with id 'no-such-order'"),
    ("cache.too_big", "set_cache", "cache value for 'big' exceeds 1048576 characters"),
    ("order.bad_side", "place_order", "unknown side 7"),
    ("order.bad_type", "place_order", "order type 9"),
    ("multi.bad_second", "place_multiple_orders", "unknown side 7"),
    ("mark.bad_shape", "mark", "mark has unknown shape 99"),
    ("range.bad_interval", "get_range", "unknown interval 42"),
]
ERROR_BARS = {2 * (k + 1) for k in range(len(ERROR_CASES))}


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Session:
    directory = tmp_path_factory.mktemp("errors")
    return run_session(
        directory,
        wasm=APICHECK_WASM,
        data=write_csv(directory / "bars.csv", both_symbols()),
        config="{symbol: BTC, mode: errors}",
        symbols="BTC, ETH",
    )


@pytest.mark.parametrize(
    ("k", "case", "function", "reason"),
    [(k, *case) for k, case in enumerate(ERROR_CASES)],
    ids=[case[0] for case in ERROR_CASES],
)
def test_a_failing_host_call_traps_its_bar_and_the_next_bar_runs(
    failing: Session, k: int, case: str, function: str, reason: str
) -> None:
    bar = 2 * (k + 1)
    when = minute(bar - 1)
    [error] = [e for e in failing.errors if e.bar is not None and e.bar.time == when]
    assert error.message.startswith(f"trading_strategy_process_data on BTC bar {iso(when)} aborted")
    assert f"host function {function} failed" in error.message
    assert reason in error.message
    # Nothing after the failing call ran on that bar; the next bar logs normally.
    logs = {e.time: e.fields for e in failing.logs}
    assert when not in logs
    assert logs[minute(bar)] == {
        "step": "alive",
        "bar": str(bar + 1),
        "last": iso(minute(bar)),
        "big": "0",
    }


def test_the_engine_carries_on_through_every_failing_call(failing: Session) -> None:
    errors = failing.errors
    assert sorted((e.bar.time - T0) // MINUTE + 1 for e in errors if e.bar) == sorted(ERROR_BARS)
    assert not any(log.fields["step"] == "survived" for log in failing.logs)
    # Every other bar ran to the end on the same instance: a host function's
    # error leaves the guest sound, so it is not restarted.
    alive = [int(log.fields["bar"]) for log in failing.logs if log.fields["step"] == "alive"]
    assert alive == [n for n in range(1, BARS + 1) if n not in ERROR_BARS]
    assert failing.restarts() == []
    stopped = failing.stopped
    assert stopped.error is None
    assert stopped.summary.strategy_errors == len(ERROR_CASES)
    assert stopped.summary.bars == 2 * BARS


def test_a_refused_set_cache_stores_nothing(failing: Session) -> None:
    # The alive report after cache.too_big reads the key back: still empty.
    k = [c[0] for c in ERROR_CASES].index("cache.too_big")
    after = [log for log in failing.logs if log.fields["bar"] == str(2 * (k + 1) + 1)]
    assert [log.fields["big"] for log in after] == ["0"]
    assert "big" not in failing.engine.state.cache


# -- memory --------------------------------------------------------------------------------------


def test_a_memory_hungry_strategy_is_stopped_by_the_sandbox_and_bars_go_on(
    tmp_path: Path,
) -> None:
    # faulty allocates 16 MiB blocks without end on its 3rd bar (its own count,
    # which restarts with a fresh instance), under a cap of 32 MiB.
    flat = [Bar("BTC", minute(m), 100.0, 100.0, 100.0, 100.0, 100.0) for m in range(5)]
    data = write_csv(tmp_path / "bars.csv", flat)
    session = run_session(
        tmp_path / "memory",
        wasm=FAULTY_WASM,
        data=data,
        config="{allocOnBar: 3}",
        symbols="BTC",
        engine="strategyMemoryLimitMiB: 32",
    )
    [error] = session.errors
    assert error.bar is not None and error.bar.time == minute(2)
    assert "out of memory" in error.message
    # The refusal came at the cap: the block asked for would have crossed 32 MiB.
    found = re.search(r"cannot allocate (\d+)-byte block \((\d+) in use\)", error.message)
    assert found is not None, error.message
    block, in_use = int(found.group(1)), int(found.group(2))
    assert in_use <= 32 * MIB < in_use + block
    # The engine replaced the broken instance and went on with bars 4 and 5.
    [restart] = session.restarts()
    assert "restart 1" in restart.message
    assert session.events.index(restart) == session.events.index(error) + 1
    ok = [(e.time, e.fields["bar"]) for e in session.logs]
    assert ok == [(minute(0), "1"), (minute(1), "2"), (minute(3), "1"), (minute(4), "2")]
    stopped = session.stopped
    assert stopped.error is None
    assert (stopped.summary.bars, stopped.summary.strategy_errors) == (5, 1)
