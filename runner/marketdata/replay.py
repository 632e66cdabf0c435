"""Replay bars from a CSV or Parquet file, as fast as possible or paced against the wall clock.

File format: one row per bar with the columns time, symbol, open, high, low, close, volume,
in any order and any case; other columns are ignored. The symbol column may be left out
when the session has exactly one symbol. Rows of symbols outside the session are skipped
without being checked.

`time` is the bar's OPEN time, in UTC, written as either
- ISO-8601 / RFC 3339 ("2024-03-01T14:00:00Z", "2024-03-01 14:00:00+01:00",
  "2024-03-01"); a time without an offset is taken as UTC; or
- an integer count since the Unix epoch, read by magnitude: below 10**11 it is
  seconds (10**11 s is the year 5138), from 10**11 up to 10**14 it is milliseconds
  (10**11 ms is March 1973, so millisecond times before then are not supported),
  and from 10**14 on it is refused as micro- or nanoseconds.
In Parquet (read with DuckDB), timestamp and date columns are read as such (a timestamp
without a time zone is taken as UTC; one with digits below the millisecond is refused)
and integer columns follow the same magnitude rule.

Every row is checked; the first problem raises MarketDataError naming the file, the
line (CSV, counting the header as line 1) or row (Parquet, counting data rows from 1),
the column, and the fix. Rows need not be sorted: they are ordered by time, then by the
session's symbol order, because a file concatenated from per-symbol exports is common
and its order carries no meaning; two rows for the same symbol and time are refused,
since no order between them could be right.

The file is loaded eagerly and held in memory, so a bad file fails the session at
start-up rather than mid-run, and `stream()` costs no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import gc
import math
import os
import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from kubetrade.runner.domain import (
    EARLIEST_TIME_MS,
    LATEST_TIME_MS,
    MAX_PRICE,
    MAX_VOLUME,
    Bar,
    format_ms,
)
from kubetrade.runner.marketdata.base import MarketDataError, MarketDataProvider
from kubetrade.runner.marketdata.excerpt import excerpt

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence

__all__ = ["YIELD_EVERY", "Pacer", "ReplayProvider", "check_speed", "interval_text"]

# An unpaced stream hands control back to the event loop once every YIELD_EVERY bars,
# so signals, HTTP probes and the engine's own timers are served during a long replay.
# Measured on the 2-core reference machine, an in-memory replay costs ~105 ns per bar
# without yielding; one `asyncio.sleep(0)` costs ~2 us, so yielding every 16 / 64 / 128 /
# 256 bars gives 249 / 130 / 115 / 108 ns per bar. 128 keeps the cost near 10% while the
# loop still gets a turn every 128 engine steps (a few ms even for a slow strategy).
YIELD_EVERY = 128

COLUMNS = ("time", "symbol", "open", "high", "low", "close", "volume")
_PRICES = ("open", "high", "low", "close")
_ORDER = ("time", *_PRICES, "volume", "symbol")  # the order of a row's cells once read
_LONGEST_TIME = 40  # characters: 2024-03-01T14:00:00.123456+05:30 is 32
_SECONDS_BELOW = 10**11
_MILLIS_BELOW = 10**14
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_INTEGER = re.compile(r"[+-]?\d+")
# DuckDB reads a path with these as a pattern (every file it matches, or none); such a
# file is read through a descriptor of our own instead.
_PATTERN = re.compile(r"[*?\[\]{}]|^~")
# The DuckDB types of a Parquet timestamp column, and how the reader counts them: as an
# integer in that many units per millisecond since the epoch, UTC.
_TIMESTAMP_COUNT = {
    **dict.fromkeys(
        ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_MS", "TIMESTAMP_S"),
        ("epoch_us", 1_000),
    ),
    **dict.fromkeys(("TIMESTAMP_NS", "TIMESTAMPTZ_NS"), ("epoch_ns", 1_000_000)),
}


@dataclass(slots=True)
class Pacer:
    """Paces a bar stream against the loop's clock (speed N > 0).

    The bar stamped t is released at origin + (t - first bar time) / N seconds, the
    origin being the loop time of the first bar: every wait is computed from that one
    reference, so rounding in one sleep never accumulates into drift. Bars that share a
    time are released together. Setting `closed` cuts a pending wait short. Bars up to
    `skip_until` were processed before a restart: they are released at once, and the
    pacing starts at the first bar after them.
    An unpaced stream needs no Pacer: it only calls `asyncio.sleep(0)` every YIELD_EVERY
    bars, inline, because a coroutine call per bar would be its largest cost.
    """

    speed: float
    closed: asyncio.Event
    skip_until: int | None = None
    _origin: tuple[int, float] | None = None  # (bar time, loop time) of the first bar
    _last_time: int | None = None

    async def wait(self, bar_time: int) -> None:
        if self.skip_until is not None and bar_time <= self.skip_until:
            return  # processed before a restart: its wait is over
        if bar_time == self._last_time:
            return  # same bar time as the previous bar: released together
        self._last_time = bar_time
        loop = asyncio.get_running_loop()
        if self._origin is None:
            self._origin = (bar_time, loop.time())
            return
        first_time, first_wall = self._origin
        delay = first_wall + (bar_time - first_time) / 1000.0 / self.speed - loop.time()
        if delay <= 0:
            # Behind schedule (slow consumer): release at once, but still let the loop run.
            await asyncio.sleep(0)
            return
        # Wait on the close event rather than sleeping, so close() ends a long gap now.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), timeout=delay)


def check_speed(speed: float) -> float:
    if not math.isfinite(speed) or speed < 0:
        raise MarketDataError(
            f"invalid speed {speed!r}: use 0 for as fast as possible, or a positive factor "
            "(1 = real time, 60 = a minute of bars per second)"
        )
    return float(speed)


def interval_text(interval_ms: int) -> str:
    """An interval as people write it: 3600000 -> "1h", 90000 -> "90s"."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if interval_ms % size == 0:
            return f"{interval_ms // size}{unit}"
    return f"{interval_ms}ms"


@dataclass(slots=True)
class _Rows:
    """Raw rows from one file: where each came from and its cells."""

    path: Path
    where: str  # "line" (CSV) or "row" (Parquet)
    has_symbol: bool  # whether the file has a symbol column
    # (line or row number, cells): time, open, high, low, close, volume[, symbol]
    rows: Iterable[tuple[int, Sequence[object]]]
    # A Parquet timestamp column arrives as an integer count of this many units per
    # millisecond since the epoch; None: the time cells are as written.
    time_per_ms: int | None = None


@dataclass(slots=True)
class _Loaded:
    by_symbol: dict[str, list[Bar]]  # per session symbol, sorted by time
    times: dict[str, list[int]]  # the same bars' times, for bisection


class ReplayProvider(MarketDataProvider):
    """Replay a CSV or Parquet file of bars for the session's symbols.

    - `speed` 0 streams as fast as the consumer takes bars; N > 0 spaces distinct
      bar times (Δ bar time) / N apart on the wall clock (1 = real time).
    - `fmt` "auto" picks the format from the suffix (.csv, .parquet/.pq), else from
      the content; "csv" and "parquet" force it.
    - `loop` replays the streamed bars again and again, each pass shifted forward by
      the span of one pass (a whole number of intervals), so times keep increasing.
      Prices jump where one pass meets the next.
    - `start_after_warmup` N reserves the first N bars of every symbol for
      `history()`: the stream starts at each symbol's bar N, so an engine that warms
      up with `history(symbol, end=stream_start(symbol), count=N)` sees every bar
      exactly once. Each symbol needs more than N bars.

    `history()` always serves the file as written (never the shifted loop passes).
    Each `stream()` call starts a fresh pass from the beginning; `close()` ends any
    running stream at its next bar.
    """

    def __init__(
        self,
        *,
        path: Path,
        symbols: Sequence[str],
        interval_ms: int,
        speed: float = 0.0,
        fmt: str = "auto",
        loop: bool = False,
        start_after_warmup: int = 0,
    ) -> None:
        path = Path(path)
        if not symbols or len(set(symbols)) != len(symbols):
            raise MarketDataError(f"replay of {path}: give one or more distinct symbols")
        if interval_ms <= 0:
            raise MarketDataError(f"replay of {path}: interval_ms must be positive")
        if start_after_warmup < 0:
            raise MarketDataError(
                f"replay of {path}: the warm-up bars (spec.engine.warmupBars) must be 0 or more"
            )
        self._path = path
        self._symbols = tuple(symbols)
        self._interval_ms = interval_ms
        self._speed = check_speed(speed)
        self._loop = loop
        self._warmup = start_after_warmup
        self._closed = asyncio.Event()
        self._resume_until: int | None = None
        loaded = _load(path, fmt=fmt, symbols=self._symbols, interval_ms=interval_ms)
        self._bars = loaded.by_symbol
        self._times = loaded.times
        for symbol, bars in self._bars.items():
            if len(bars) <= start_after_warmup:
                raise MarketDataError(
                    f"{path}: symbol {symbol!r} has {len(bars)} bars, which leaves none to "
                    f"stream after the {start_after_warmup} warm-up bars; lower "
                    "spec.engine.warmupBars or add rows"
                )
        # The streamed bars in stream order: time, then the session's symbol order. The
        # per-symbol lists are concatenated in session order and the sort is stable.
        streamed = [bar for bars in self._bars.values() for bar in bars[start_after_warmup:]]
        streamed.sort(key=lambda bar: bar.time)
        self._streamed = streamed
        # One loop pass later starts one interval after this pass's last bar.
        self._pass_span = streamed[-1].time - streamed[0].time + interval_ms

    def resume_after(self, cursor: Mapping[str, int]) -> None:
        """After a restart: per symbol, the last bar processed before it. A paced stream
        passes over those bars at once instead of waiting through them again."""
        self._resume_until = max(cursor.values(), default=None)

    def stream_start(self, symbol: str) -> int:
        """The time of `symbol`'s first streamed bar: where its warm-up history ends."""
        return self._symbol_bars(symbol)[self._warmup].time

    async def history(self, symbol: str, *, end: int, count: int) -> list[Bar]:
        bars = self._symbol_bars(symbol)
        if count <= 0:
            return []
        stop = bisect_left(self._times[symbol], end)
        return bars[max(0, stop - count) : stop]

    def _symbol_bars(self, symbol: str) -> list[Bar]:
        bars = self._bars.get(symbol)
        if bars is None:
            raise MarketDataError(
                f"replay of {self._path}: {symbol!r} is not one of the session's symbols "
                f"{list(self._symbols)}"
            )
        return bars

    async def stream(self) -> AsyncIterator[Bar]:
        pacer = None
        if self._speed > 0:
            pacer = Pacer(speed=self._speed, closed=self._closed, skip_until=self._resume_until)
        closed = self._closed
        countdown = YIELD_EVERY
        shift = 0
        while True:
            for bar in self._streamed:
                if shift:
                    bar = Bar(bar.symbol, bar.time + shift, bar.open, bar.high, bar.low,
                              bar.close, bar.volume)  # fmt: skip
                if pacer is not None:
                    await pacer.wait(bar.time)
                else:
                    countdown -= 1
                    if not countdown:  # unpaced: give the loop a turn now and then
                        countdown = YIELD_EVERY
                        await asyncio.sleep(0)
                if closed.is_set():
                    return  # closed by close(), possibly while we waited
                yield bar
            if not self._loop:
                return
            shift += self._pass_span  # the next pass starts one interval after this one

    async def close(self) -> None:
        self._closed.set()


# --- loading ---------------------------------------------------------------------------


def _load(path: Path, *, fmt: str, symbols: tuple[str, ...], interval_ms: int) -> _Loaded:
    if not path.is_file():
        raise MarketDataError(f"replay file {path} does not exist or is not a file; fix the path")
    if _detect_format(path, fmt) == "parquet":
        return _build(_read_parquet(path), symbols=symbols, interval_ms=interval_ms)
    try:
        handle = path.open("r", encoding="utf-8-sig", newline="")  # -sig: drop an Excel BOM
    except OSError as exc:
        raise MarketDataError(f"{path}: cannot open it ({exc}); check the permissions") from exc
    with handle:
        return _build(_read_csv(path, handle), symbols=symbols, interval_ms=interval_ms)


def _detect_format(path: Path, fmt: str) -> str:
    if fmt in ("csv", "parquet"):
        return fmt
    if fmt != "auto":
        raise MarketDataError(f"replay of {path}: unknown format {fmt!r}; use auto, csv or parquet")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    with path.open("rb") as handle:  # no telling suffix: Parquet files start with PAR1
        return "parquet" if handle.read(4) == b"PAR1" else "csv"


def _columns(path: Path, place: str, header: Sequence[str]) -> list[int]:
    """The header positions of time, open, high, low, close, volume[, symbol].

    Names match case-insensitively and surrounding spaces are ignored.
    """
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        key = name.strip().lower()
        if key in COLUMNS:
            if key in found:
                raise MarketDataError(
                    f"{path}: {place}, column {excerpt(name)}: the column {key!r} appears "
                    "twice (names are case-insensitive); keep one of them"
                )
            found[key] = index
    missing = [name for name in COLUMNS if name not in found and name != "symbol"]
    if missing:
        raise MarketDataError(
            f"{path}: missing column(s) {', '.join(missing)} (the header has "
            f"{', '.join(excerpt(h) for h in header[:20]) or 'nothing'}); a replay file needs the"
            " columns "
            "time, symbol, open, high, low, close, volume in any order and case (symbol may be "
            "left out when the session has one symbol)"
        )
    return [found[name] for name in _ORDER if name in found]


def _read_csv(path: Path, handle: TextIO) -> _Rows:
    # The stdlib csv reader rather than DuckDB's read_csv: it tells the exact physical line of
    # every record (errors must name it), it leaves each cell a string for our own strict
    # parsing instead of guessing types, and it is fast enough for files held in memory.
    reader = csv.reader(handle)
    try:
        header = next(reader, [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise MarketDataError(
            f"{path}: cannot read it as CSV ({exc}); save it as UTF-8 CSV"
        ) from exc
    columns = _columns(path, "line 1 (header)", header)

    def rows() -> Iterator[tuple[int, Sequence[object]]]:
        line = reader.line_num
        try:
            for record in reader:
                start, line = line + 1, reader.line_num  # a quoted field may span lines
                if len(record) != len(header):
                    if not record or (len(record) == 1 and not record[0].strip()):
                        continue  # a blank line
                    raise MarketDataError(
                        f"{path}: line {start} has {len(record)} fields but the header has "
                        f"{len(header)}; give every row one value per column"
                    )
                yield start, list(map(record.__getitem__, columns))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise MarketDataError(
                f"{path}: line {line + 1}: cannot read it as CSV ({exc}); fix the quoting or "
                "save the file as UTF-8"
            ) from exc

    return _Rows(path=path, where="line", has_symbol=len(columns) == 7, rows=rows())


def _read_parquet(path: Path) -> _Rows:
    import duckdb  # imported on first use: a CSV replay never pays for it

    source, descriptor = str(path), None
    try:
        if _PATTERN.search(source):
            descriptor = os.open(path, os.O_RDONLY)
            source = f"/dev/fd/{descriptor}"  # the file itself, whatever its name says
        # One in-process database per load, without network or extension downloads.
        con = duckdb.connect(
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        )
        try:
            # The names as written: DuckDB renames a second "close" to "close_1", which
            # would hide the duplicate _columns refuses.
            names = _top_level_names(
                con.execute("SELECT name, num_children FROM parquet_schema(?)", [source]).fetchall()
            )
            columns = _columns(path, "schema", names)
            con.execute("SELECT * FROM read_parquet(?) LIMIT 0", [source])
            kinds = [str(column[1]) for column in con.description or ()]
            # Columns by position (#n), so no name is ever spliced into the query.
            selected, time_per_ms = [], None
            for position, index in enumerate(columns):
                count = _TIMESTAMP_COUNT.get(kinds[index]) if position == 0 else None  # time
                if count is not None:
                    function, time_per_ms = count
                    selected.append(f"{function}(#{index + 1})")
                else:
                    selected.append(f"#{index + 1}")
            query = f"SELECT {', '.join(selected)} FROM read_parquet(?)"
            rows = con.execute(query, [source]).fetchall()
        finally:
            con.close()
    except (OSError, duckdb.Error) as exc:
        raise MarketDataError(f"{path}: cannot read it as Parquet ({exc}); check the file") from exc
    finally:
        if descriptor is not None:
            os.close(descriptor)
    return _Rows(
        path=path,
        where="row",
        has_symbol=len(columns) == 7,
        rows=enumerate(rows, start=1),
        time_per_ms=time_per_ms,
    )


def _top_level_names(schema: list[tuple[str, int | None]]) -> list[str]:
    """The top-level column names of a flattened Parquet schema (the root first)."""
    names: list[str] = []
    pending = 0  # descendants of the current column still to skip
    for name, children in schema[1:]:
        if pending:
            pending += (children or 0) - 1
        else:
            names.append(name)
            pending = children or 0
    return names


class _CellError(Exception):
    """A bad cell: the column and what is wrong with it, located by the caller."""

    def __init__(self, column: str, problem: str) -> None:
        super().__init__(column, problem)
        self.column, self.problem = column, problem


def _build(source: _Rows, *, symbols: tuple[str, ...], interval_ms: int) -> _Loaded:
    path, where = source.path, source.where
    if not source.has_symbol and len(symbols) != 1:
        raise MarketDataError(
            f"{path}: there is no 'symbol' column, which is allowed only when the session has "
            f"exactly one symbol (it has {len(symbols)}: {', '.join(symbols)}); add a symbol "
            "column naming each row's symbol"
        )
    by_symbol: dict[str, list[Bar]] = {symbol: [] for symbol in symbols}
    seen: dict[tuple[str, int], int] = {}  # (symbol, time) -> line of first sighting
    others: set[str] = set()
    number = 0
    per_ms = source.time_per_ms
    parse_time: Callable[[object], int] = (
        _time if per_ms is None else functools.partial(_timestamp, per_ms=per_ms)
    )
    # The cyclic GC would rescan the growing list of bars over and over (40% of the load
    # time for a million rows); nothing built here forms a cycle, so pause it meanwhile.
    with _gc_paused():
        try:
            for number, cells in source.rows:
                if source.has_symbol:
                    raw = cells[6]
                    symbol = raw.strip() if isinstance(raw, str) else _text(raw)
                    if symbol not in by_symbol:
                        if len(others) < 1000:
                            others.add(symbol)
                        continue  # another instrument in the same file: not ours
                else:
                    symbol = symbols[0]
                bar = _bar(symbol, cells, interval_ms, parse_time)
                first = seen.setdefault((symbol, bar.time), number)
                if first != number:
                    raise _CellError(
                        "time",
                        f"a second bar for {symbol} at {_show_time(bar.time)} (the first is on "
                        f"{where} {first}); keep one row per symbol and time",
                    )
                by_symbol[symbol].append(bar)
        except _CellError as error:
            raise MarketDataError(
                f"{path}: {where} {number}, column {error.column!r}: {error.problem}"
            ) from None
    times: dict[str, list[int]] = {}
    for symbol, bars in by_symbol.items():
        if not bars:
            listed = ", ".join(excerpt(other) for other in sorted(others)[:20]) or "none"
            raise MarketDataError(
                f"{path}: no rows for the session's symbol {symbol!r} (other symbols in the "
                f"file: {listed}); fix the session's symbols or add its rows "
                "(symbols match exactly, case included)"
            )
        bars.sort(key=lambda bar: bar.time)  # accepted unsorted: see the module docstring
        times[symbol] = [bar.time for bar in bars]
    return _Loaded(by_symbol=by_symbol, times=times)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _bar(
    symbol: str, cells: Sequence[object], interval_ms: int, parse_time: Callable[[object], int]
) -> Bar:
    """One checked bar from its cells (time, open, high, low, close, volume, ...)."""
    time = parse_time(cells[0])
    if not EARLIEST_TIME_MS <= time < LATEST_TIME_MS:
        raise _CellError(
            "time",
            f"{_show_time(time)} is outside the years 1900 to 2199 that kubetrade reads;"
            " check the column's unit (epoch milliseconds or seconds, or ISO-8601)",
        )
    rest = time % interval_ms
    if rest:
        raise _CellError(
            "time",
            f"{_show_time(time)} is not aligned to the {interval_text(interval_ms)} interval "
            f"(time % {interval_ms} = {rest} ms); write each bar's open time on the interval "
            "grid, or set the session's interval to the file's",
        )
    open_, high, low, close, volume = (
        _number(cells[1], "open"),
        _number(cells[2], "high"),
        _number(cells[3], "low"),
        _number(cells[4], "close"),
        _number(cells[5], "volume"),
    )
    if not (0 < low <= open_ <= high and low <= close <= high and volume >= 0):
        _explain(open_, high, low, close, volume)  # raises, naming the first broken rule
    # Bounded so that no price times a quantity, or sum of volumes, can overflow.
    if high > MAX_PRICE:
        raise _CellError("high", f"price {high!r} is above {MAX_PRICE:g}; check the column's unit")
    if volume > MAX_VOLUME:
        raise _CellError("volume", f"volume {volume!r} is above {MAX_VOLUME:g}")
    return Bar(symbol, time, open_, high, low, close, volume)


def _explain(open_: float, high: float, low: float, close: float, volume: float) -> None:
    for name, value in zip(_PRICES, (open_, high, low, close), strict=True):
        if value <= 0:
            raise _CellError(
                name, f"price {value!r} is not positive; every price must be above zero"
            )
    if high < low:
        raise _CellError(
            "high",
            f"high {high!r} is below low {low!r}; correct the row so that low <= open, "
            "close <= high",
        )
    for name, value in (("open", open_), ("close", close)):
        if not low <= value <= high:
            raise _CellError(
                name,
                f"{name} {value!r} is outside [low {low!r}, high {high!r}]; correct the row so "
                f"that low <= {name} <= high",
            )
    raise _CellError("volume", f"volume {volume!r} is negative; volume must be 0 or more")


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _number(value: object, column: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]  # str, int, float or Decimal; else below
    except (ValueError, TypeError):
        text = _text(value)
        what = "is empty" if not text else f"{excerpt(text)} is not a number"
        raise _CellError(column, f"{what}; write a plain decimal number such as 101.25") from None
    if not math.isfinite(number) or isinstance(value, bool):
        raise _CellError(column, f"{excerpt(value)} is not a finite number; write a real value")
    return number


_BAD_TIME = (
    "; write ISO-8601 (2024-03-01T14:00:00Z, UTC when no offset is given) or integer epoch "
    "milliseconds or seconds"
)


def _epoch(value: int) -> int:
    magnitude = abs(value)
    if magnitude < _SECONDS_BELOW:
        return value * 1000
    if magnitude < _MILLIS_BELOW:
        return value
    raise _CellError(
        "time",
        f"{excerpt(value)} looks like micro- or nanoseconds since the epoch; write epoch"
        " milliseconds "
        "or seconds, or ISO-8601",
    )


def _time(value: object) -> int:
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _LONGEST_TIME:  # also keeps int() off a 5,000-digit string
            raise _CellError("time", f"{excerpt(text)} is not a time" + _BAD_TIME)
        if _INTEGER.fullmatch(text):
            return _epoch(int(text))
        if not text:
            raise _CellError("time", "the time is empty" + _BAD_TIME)
        if text[-1] in "zZ":
            text = text[:-1] + "+00:00"  # RFC 3339 "Z"; also covers a lowercase "z"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise _CellError(
                "time", f"{excerpt(value.strip())} is not a time" + _BAD_TIME
            ) from None
        return _datetime_ms(parsed)
    if isinstance(value, bool) or value is None:
        raise _CellError("time", f"{excerpt(value)} is not a time" + _BAD_TIME)
    if isinstance(value, int):
        return _epoch(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise _CellError("time", f"{excerpt(value)} is not a whole epoch count" + _BAD_TIME)
        return _epoch(int(value))
    if isinstance(value, datetime):
        return _datetime_ms(value)
    if isinstance(value, date):
        return _datetime_ms(datetime(value.year, value.month, value.day))
    raise _CellError("time", f"{excerpt(value)} is not a time" + _BAD_TIME)


def _timestamp(value: object, per_ms: int) -> int:
    """A Parquet timestamp cell, counted in 1/per_ms milliseconds since the epoch (UTC)."""
    if not isinstance(value, int):
        raise _CellError("time", "the time is empty" + _BAD_TIME)  # NULL
    ms, rest = divmod(value, per_ms)
    if rest:
        raise _CellError("time", "the timestamp has sub-millisecond digits" + _BAD_TIME)
    return ms


def _datetime_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # no offset: UTC, as documented
    # Exact integer arithmetic: float timestamps could be off by one millisecond.
    ms, rest = divmod(value - _EPOCH, _ONE_MS)
    if rest:
        raise _CellError("time", f"{value.isoformat()} has sub-millisecond digits" + _BAD_TIME)
    return int(ms)


def _show_time(ms: int) -> str:
    try:
        return f"{format_ms(ms)} ({ms} ms)" if ms % 1000 == 0 else f"{ms} ms"
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"
