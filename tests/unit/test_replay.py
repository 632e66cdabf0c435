"""ReplayProvider: file formats, time parsing, validation messages, ordering, pacing, loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pytest

from kubetrade.runner.domain import Bar
from kubetrade.runner.marketdata.base import MarketDataError
from kubetrade.runner.marketdata.replay import YIELD_EVERY, ReplayProvider

MINUTE = 60_000
HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
HEADER = "time,symbol,open,high,low,close,volume"


def write_csv(tmp_path: Path, *lines: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def row(minute: int, symbol: str = "AAA", price: float = 100.0, volume: float = 10.0) -> str:
    """A valid CSV row at T0 + `minute` minutes, in epoch milliseconds."""
    return f"{T0 + minute * MINUTE},{symbol},{price},{price + 1},{price - 1},{price + 0.5},{volume}"


def write_parquet(path: Path, query: str) -> Path:
    """The rows of a DuckDB query (literals only) as a Parquet file."""
    with duckdb.connect() as con:
        con.execute(f"COPY ({query}) TO ? (FORMAT parquet)", [str(path)])
    return path


def values(rows: Sequence[Sequence[object]], columns: dict[str, str]) -> str:
    """A SELECT of `rows`, each column cast to the DuckDB type given for its name."""
    body = ", ".join("(" + ", ".join(map(repr_sql, row)) + ")" for row in rows)
    names = ", ".join(f'"{name}"' for name in columns)
    casts = ", ".join(f'"{name}"::{kind} AS "{name}"' for name, kind in columns.items())
    return f"SELECT {casts} FROM (VALUES {body}) AS t({names})"


def repr_sql(value: object) -> str:
    if value is None:
        return "NULL"
    return f"'{value}'" if isinstance(value, str) else repr(value)


def replay(path: Path, symbols: tuple[str, ...] = ("AAA",), **options: object) -> ReplayProvider:
    return ReplayProvider(path=path, symbols=symbols, interval_ms=MINUTE, **options)  # type: ignore[arg-type]


async def collect(provider: ReplayProvider, limit: int | None = None) -> list[Bar]:
    bars: list[Bar] = []
    async for bar in provider.stream():
        bars.append(bar)
        if limit is not None and len(bars) >= limit:
            break
    return bars


# --- formats and parsing ---------------------------------------------------------------


async def test_sample_dataset_csv_and_parquet_give_identical_bars() -> None:
    symbols = ("BTCUSDT",)
    from_csv = ReplayProvider(
        path=EXAMPLES / "btcusdt_1m_synthetic.csv", symbols=symbols, interval_ms=MINUTE
    )
    from_parquet = ReplayProvider(
        path=EXAMPLES / "btcusdt_1m_synthetic.parquet", symbols=symbols, interval_ms=MINUTE
    )
    csv_bars, parquet_bars = await collect(from_csv), await collect(from_parquet)
    assert len(csv_bars) == 5000
    assert csv_bars == parquet_bars
    assert csv_bars[0] == Bar(
        "BTCUSDT", 1_709_510_400_000, 62000.0, 62003.59, 61913.16, 61917.84, 33.78482
    )


async def test_csv_and_parquet_agree_for_a_multi_symbol_file(tmp_path: Path) -> None:
    lines = [
        row(m, s, 100.0 + m + (50 if s == "BBB" else 0)) for m in range(5) for s in ("BBB", "AAA")
    ]
    csv_path = write_csv(tmp_path, HEADER, *lines)
    cells = [line.split(",") for line in lines]
    rows = [(int(c[0]), c[1], *map(float, c[2:])) for c in cells]
    columns = {"Time": "BIGINT", "SYMBOL": "VARCHAR"}
    columns |= dict.fromkeys(("Open", "High", "Low", "Close", "Volume"), "DOUBLE")
    parquet_path = write_parquet(tmp_path / "bars.parquet", values(rows, columns))
    symbols = ("AAA", "BBB")
    assert await collect(replay(csv_path, symbols)) == await collect(replay(parquet_path, symbols))


async def test_format_is_detected_from_content_when_the_suffix_says_nothing(tmp_path: Path) -> None:
    parquet_path = write_parquet(
        tmp_path / "bars.data",
        f"SELECT {T0} AS time, 1.0::DOUBLE AS open, 1.0::DOUBLE AS high, 1.0::DOUBLE AS low,"
        " 1.0::DOUBLE AS close, 0.0::DOUBLE AS volume",
    )
    csv_path = write_csv(tmp_path, "time,open,high,low,close,volume", f"{T0},1,1,1,1,0", name="b")
    expected = [Bar("AAA", T0, 1.0, 1.0, 1.0, 1.0, 0.0)]
    assert await collect(replay(parquet_path)) == expected
    assert await collect(replay(csv_path)) == expected
    assert await collect(replay(csv_path, fmt="csv")) == expected
    with pytest.raises(MarketDataError, match="unknown format 'xlsx'; use auto, csv or parquet"):
        replay(csv_path, fmt="xlsx")


@pytest.mark.parametrize(
    "text",
    [
        "1704067200000",  # epoch milliseconds
        "1704067200",  # epoch seconds (below 10**11)
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00z",
        "2024-01-01T00:00:00",  # naive: UTC
        "2024-01-01 00:00:00",
        "2024-01-01T01:00:00+01:00",
        "2023-12-31T19:00:00-05:00",
        "2024-01-01T00:00:00.000Z",
        " 2024-01-01T00:00:00Z ",
        "2024-01-01",
    ],
)
async def test_time_formats(tmp_path: Path, text: str) -> None:
    path = write_csv(tmp_path, HEADER, f"{text},AAA,1,2,0.5,1.5,3")
    [bar] = await collect(replay(path))
    assert bar == Bar("AAA", T0, 1.0, 2.0, 0.5, 1.5, 3.0)


BAR_COLUMNS = "'AAA' AS symbol, 1.0 AS open, 2.0 AS high, 0.5 AS low, 1.5 AS close, 3 AS volume"


@pytest.mark.parametrize(
    "time",
    [
        "TIMESTAMPTZ '2024-01-01 01:00:00+01'",  # stored as UTC microseconds
        "TIMESTAMP_MS '2024-01-01 00:00:00'",  # naive: UTC
        "TIMESTAMP '2024-01-01 00:00:00'",
        "TIMESTAMP_S '2024-01-01 00:00:00'",
        "TIMESTAMP_NS '2024-01-01 00:00:00'",
        "TIMESTAMPTZ_NS '2024-01-01 00:00:00+00'",
        "DATE '2024-01-01'",
        f"{T0 // 1000}::INTEGER",  # epoch seconds
        f"{T0}::BIGINT",  # epoch milliseconds
        "'2024-01-01T00:00:00Z'",
    ],
)
async def test_parquet_time_types(tmp_path: Path, time: str) -> None:
    path = write_parquet(tmp_path / "bars.parquet", f"SELECT {time} AS time, {BAR_COLUMNS}")
    [bar] = await collect(replay(path))
    assert bar == Bar("AAA", T0, 1.0, 2.0, 0.5, 1.5, 3.0)


@pytest.mark.parametrize(
    "time",
    ["TIMESTAMP '2024-01-01 00:00:00.000001'", "TIMESTAMP_NS '2024-01-01 00:00:00.000000001'"],
)
def test_parquet_timestamps_below_the_millisecond_are_refused(tmp_path: Path, time: str) -> None:
    path = write_parquet(tmp_path / "bars.parquet", f"SELECT {time} AS time, {BAR_COLUMNS}")
    with pytest.raises(MarketDataError, match="row 1, column 'time': the timestamp has sub-milli"):
        replay(path)


async def test_header_case_extra_columns_bom_and_missing_symbol_column(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "\ufeffNote,Volume,CLOSE,Low,High,Open,Time\nx,3,1.5,0.5,2,1,1704067200\n\n",
        encoding="utf-8",
    )
    assert await collect(replay(path)) == [Bar("AAA", T0, 1.0, 2.0, 0.5, 1.5, 3.0)]


# --- ordering and selection ------------------------------------------------------------


async def test_multi_symbol_stream_is_ordered_by_time_then_session_symbol_order(
    tmp_path: Path,
) -> None:
    # Unsorted, with the symbols in neither the session's nor alphabetical order.
    lines = [row(2, "AAA"), row(0, "CCC"), row(1, "BBB"), row(0, "AAA"), row(0, "BBB"),
             row(1, "AAA"), row(2, "BBB"), row(1, "CCC")]  # fmt: skip
    path = write_csv(tmp_path, HEADER, *lines)
    bars = await collect(replay(path, ("CCC", "AAA", "BBB")))
    order = [(bar.time - T0) // MINUTE for bar in bars], [bar.symbol for bar in bars]
    assert order == (
        [0, 0, 0, 1, 1, 1, 2, 2],
        ["CCC", "AAA", "BBB", "CCC", "AAA", "BBB", "AAA", "BBB"],
    )


async def test_rows_of_other_symbols_are_ignored_even_when_malformed(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        HEADER,
        row(0, "AAA"),
        f"{T0 + 30},ZZZ,not-a-number,1,2,3,-5",  # misaligned, unparsable, inverted: not ours
        row(0, "ZZZ"),
        row(0, "ZZZ"),  # a duplicate, but not ours either
        row(1, "AAA"),
    )
    bars = await collect(replay(path))
    assert [bar.symbol for bar in bars] == ["AAA", "AAA"]


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "symbols", "expected"),
    [
        pytest.param(
            ["time,symbol,open,high,low,close", f"{T0},AAA,1,1,1,1"],
            ("AAA",),
            ["missing column(s) volume", "needs the columns time, symbol, open"],
            id="missing-column",
        ),
        pytest.param(
            [HEADER, row(0), f"{T0 + MINUTE},AAA,1.0x,2,1,1,1"],
            ("AAA",),
            ["line 3, column 'open'", "'1.0x' is not a number", "decimal number"],
            id="unparsable-number",
        ),
        pytest.param(
            [HEADER, f"{T0},AAA,1,1,1,,1"],
            ("AAA",),
            ["line 2, column 'close'", "is empty"],
            id="empty-number",
        ),
        pytest.param(
            [HEADER, f"{T0},AAA,nan,1,1,1,1"],
            ("AAA",),
            ["line 2, column 'open'", "not a finite number"],
            id="nan",
        ),
        pytest.param(
            [HEADER, row(0), row(1), f"{T0 + 2 * MINUTE},AAA,1,1,2,1,1"],
            ("AAA",),
            ["line 4, column 'high'", "high 1.0 is below low 2.0", "low <= open, close <= high"],
            id="high-below-low",
        ),
        pytest.param(
            [HEADER, f"{T0},AAA,3,2,1,1.5,1"],
            ("AAA",),
            ["line 2, column 'open'", "open 3.0 is outside [low 1.0, high 2.0]"],
            id="open-outside",
        ),
        pytest.param(
            [HEADER, f"{T0},AAA,1.5,2,1,0.5,1"],
            ("AAA",),
            ["line 2, column 'close'", "close 0.5 is outside", "low <= close <= high"],
            id="close-outside",
        ),
        pytest.param(
            [HEADER, f"{T0},AAA,1,1,1,1,-1"],
            ("AAA",),
            ["line 2, column 'volume'", "volume -1.0 is negative", "0 or more"],
            id="negative-volume",
        ),
        pytest.param(
            [HEADER, f"{T0},AAA,0,1,0,1,1"],
            ("AAA",),
            ["line 2, column 'open'", "price 0.0 is not positive", "above zero"],
            id="zero-price",
        ),
        pytest.param(
            [HEADER, f"{T0},AAA,-2,-1,-3,-2,1"],
            ("AAA",),
            ["line 2, column 'open'", "price -2.0 is not positive"],
            id="negative-price",
        ),
        pytest.param(
            [HEADER, row(0), f"{T0 + 30_000},AAA,1,1,1,1,1"],
            ("AAA",),
            [
                "line 3, column 'time'",
                "2024-01-01T00:00:30Z",
                "not aligned to the 1m interval (time % 60000 = 30000 ms)",
                "set the session's interval",
            ],
            id="misaligned-time",
        ),
        pytest.param(
            [HEADER, row(0), row(1), row(0, price=5)],
            ("AAA",),
            [
                "line 4, column 'time'",
                "a second bar for AAA at 2024-01-01T00:00:00Z",
                "the first is on line 2",
                "keep one row per symbol and time",
            ],
            id="duplicate",
        ),
        pytest.param(
            [HEADER, "yesterday,AAA,1,1,1,1,1"],
            ("AAA",),
            ["line 2, column 'time'", "'yesterday' is not a time", "ISO-8601"],
            id="unparsable-time",
        ),
        pytest.param(
            [HEADER, f"{T0 * 1000},AAA,1,1,1,1,1"],
            ("AAA",),
            ["line 2, column 'time'", "micro- or nanoseconds", "milliseconds or seconds"],
            id="microseconds",
        ),
        pytest.param(
            [HEADER, row(0, "AAA"), row(0, "ZZZ")],
            ("AAA", "BBB"),
            ["no rows for the session's symbol 'BBB'", "other symbols in the file: 'ZZZ'"],
            id="symbol-without-rows",
        ),
        pytest.param(
            ["time,open,high,low,close,volume", f"{T0},1,1,1,1,1"],
            ("AAA", "BBB"),
            ["no 'symbol' column", "exactly one symbol", "add a symbol column"],
            id="no-symbol-column",
        ),
        pytest.param(
            [HEADER, f"{T0},AAA,1,1,1,1"],
            ("AAA",),
            ["line 2 has 6 fields but the header has 7"],
            id="short-row",
        ),
        pytest.param(
            [HEADER + ",Close", row(0) + ",1"],
            ("AAA",),
            ["line 1 (header), column 'Close'", "appears twice"],
            id="duplicate-column",
        ),
    ],
)
def test_validation_errors_name_file_line_column_and_fix(
    tmp_path: Path, lines: list[str], symbols: tuple[str, ...], expected: list[str]
) -> None:
    path = write_csv(tmp_path, *lines)
    with pytest.raises(MarketDataError) as caught:
        replay(path, symbols)
    message = str(caught.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    rows = [(T0, "AAA", 1.0, 1.0, 1.0, 1.0, 1.0), (T0 + MINUTE, "AAA", 1.0, 1.0, 1.0, None, 1.0)]
    columns = {"time": "BIGINT", "symbol": "VARCHAR"}
    columns |= dict.fromkeys(("open", "high", "low", "close", "volume"), "DOUBLE")
    path = write_parquet(tmp_path / "bars.parquet", values(rows, columns))
    with pytest.raises(MarketDataError, match=r"bars\.parquet: row 2, column 'close': is empty"):
        replay(path)
    # DuckDB never writes two names that differ in case alone, as other writers do: write
    # "Xlose" and respell it in the footer (same length, so the file stays valid).
    twice = write_parquet(
        tmp_path / "twice.parquet", f"SELECT {T0} AS time, {BAR_COLUMNS}, 2 AS Xlose"
    )
    twice.write_bytes(twice.read_bytes().replace(b"Xlose", b"Close"))
    with pytest.raises(MarketDataError, match="schema, column 'Close': the column 'close' appears"):
        replay(twice)


async def test_a_parquet_file_named_like_a_pattern_is_read_alone(tmp_path: Path) -> None:
    # DuckDB reads "b*.parquet" as a pattern; the replay reads the file of that name only.
    write_parquet(tmp_path / "bx.parquet", f"SELECT {T0 + MINUTE} AS time, {BAR_COLUMNS}")
    for name in ("b*.parquet", "b?.parquet", "b[x].parquet"):
        path = write_parquet(tmp_path / name, f"SELECT {T0} AS time, {BAR_COLUMNS}")
        assert await collect(replay(path)) == [Bar("AAA", T0, 1.0, 2.0, 0.5, 1.5, 3.0)], name


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(MarketDataError, match="does not exist"):
        replay(tmp_path / "nope.csv")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(MarketDataError, match=r"broken\.parquet: cannot read it as Parquet"):
        replay(broken)


def test_bad_settings(tmp_path: Path) -> None:
    path = write_csv(tmp_path, HEADER, row(0), row(1))
    with pytest.raises(MarketDataError, match="invalid speed"):
        replay(path, speed=-1.0)
    with pytest.raises(MarketDataError, match="distinct symbols"):
        replay(path, ("AAA", "AAA"))
    with pytest.raises(MarketDataError, match="'AAA' has 2 bars, which leaves none to stream"):
        replay(path, start_after_warmup=2)


# --- history and warm-up ---------------------------------------------------------------


async def test_history_window_and_start_after_warmup(tmp_path: Path) -> None:
    path = write_csv(tmp_path, HEADER, *(row(m, s, 100.0 + m) for m in range(10) for s in "AB"))
    provider = replay(path, ("A", "B"), start_after_warmup=3)
    start = provider.stream_start("A")
    assert start == T0 + 3 * MINUTE
    warmup = await provider.history("A", end=start, count=3)
    assert [(b.time - T0) // MINUTE for b in warmup] == [0, 1, 2]
    assert [b.open for b in warmup] == [100.0, 101.0, 102.0]
    streamed = await collect(provider)
    assert [(b.time - T0) // MINUTE for b in streamed if b.symbol == "A"] == list(range(3, 10))
    assert len(streamed) == 14
    # Windows: fewer bars than asked, an end between bars, before the first bar, nothing.
    assert len(await provider.history("B", end=start, count=50)) == 3
    middle = await provider.history("B", end=T0 + 6 * MINUTE + 1, count=2)
    assert [(b.time - T0) // MINUTE for b in middle] == [5, 6]
    assert await provider.history("B", end=T0, count=5) == []
    assert await provider.history("B", end=T0 + HOUR, count=0) == []
    with pytest.raises(MarketDataError, match="'C' is not one of the session's symbols"):
        await provider.history("C", end=start, count=1)


# --- pacing, yielding, loop, close -----------------------------------------------------


async def test_paced_replay_takes_at_least_the_scaled_bar_time(tmp_path: Path) -> None:
    path = write_csv(tmp_path, HEADER, *(row(m, s) for m in range(11) for s in ("A", "B")))
    speed = 2000.0  # 10 minutes of bars in 0.3 s
    expected = 10 * MINUTE / 1000 / speed
    started = time.perf_counter()
    bars = await collect(replay(path, ("A", "B"), speed=speed))
    elapsed = time.perf_counter() - started
    assert len(bars) == 22
    assert elapsed >= 0.8 * expected  # a lower bound only: a loaded machine is slower


async def test_unpaced_replay_yields_to_the_event_loop(tmp_path: Path) -> None:
    path = write_csv(tmp_path, HEADER, *(row(m) for m in range(100)))
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    before = turns
    count = 0
    async for _bar in replay(path, loop=True).stream():  # the body never awaits
        count += 1
        if count == 50 * YIELD_EVERY:
            break
    task.cancel()
    assert turns - before >= 40


async def test_loop_shifts_each_pass_forward_so_times_keep_increasing(tmp_path: Path) -> None:
    path = write_csv(tmp_path, HEADER, *(row(m, s) for m in range(4) for s in ("A", "B")))
    provider = replay(path, ("A", "B"), loop=True, start_after_warmup=1)
    bars = await collect(provider, limit=3 * 6)
    for symbol in ("A", "B"):
        times = [(b.time - T0) // MINUTE for b in bars if b.symbol == symbol]
        # Each pass streams minutes 1..3 (minute 0 is warm-up) and the next begins right after.
        assert times == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert [b.open for b in bars[:6]] == [b.open for b in bars[6:12]]
    # history() keeps serving the file as written.
    assert [b.time for b in await provider.history("A", end=T0 + HOUR, count=9)] == [
        T0 + m * MINUTE for m in range(4)
    ]


async def test_close_ends_a_paced_stream_waiting_on_a_long_gap(tmp_path: Path) -> None:
    path = write_csv(tmp_path, HEADER, row(0), row(10_000))  # a week-long gap at real time
    provider = replay(path, speed=1.0)
    received: list[Bar] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for bar in provider.stream():
            received.append(bar)
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    await provider.close()
    await asyncio.wait_for(task, timeout=30)  # ends at once; the bound is generous on purpose
    assert len(received) == 1
