"""execute_sql: read-only DuckDB queries over the session's market data window.

The window is exposed as one table,

    market_data(time TIMESTAMP, symbol VARCHAR,
                open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE)

with `time` the bar's open time in UTC and rows in (time, symbol) order. Only a
single SELECT (or WITH ... SELECT, VALUES, FROM-first) statement is accepted;
parameters bind to `?` (or `$1`) placeholders and are never spliced into the
text. They arrive as strings (the ABI's params are strings), which DuckDB
casts where the comparison needs it, as it does for argo-trading.

`market_data` is a view over a DuckDB table kept in step with the window: before
a query runs, the bars that arrived since the last query are appended and those
that left the window deleted (the table is reloaded whole only when the window
changed in another way), so a query per bar costs the same whatever the window's
size. The table's rows do not count against the query's memory cap.

The sandbox: one in-process DuckDB per session, created on first use, with
file and network access, extension loading and Python object lookups off and
the configuration locked; one thread, a memory cap, a wall-clock budget per
query (the query is interrupted, the call traps), a row cap and a cap on the
result's size. DuckDB checks for an interrupt between operations, and its
memory cap does not cover the values an expression builds, so the functions
that build a huge value in one call (repeat('x', 10^9)) are capped before they
run (sql_guards); other list and string functions are not.

Values come back as text formatted the way argo-trading's Go host formats them
(fmt's %v): 62000, 61917.84, 1.5e+06, true, <nil> for NULL, and timestamps as
"2024-03-04 00:00:00 +0000 UTC". Lists, structs, maps and intervals use Python's
text; cast them to VARCHAR in the query for a stable form.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from kubetrade.runner.hostapi import sql_guards
from kubetrade.runner.hostapi.window import Window

if TYPE_CHECKING:
    import duckdb

    from kubetrade.runner.domain import Bar

_NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1)
_YEAR_ONE = datetime(1, 1, 1)
# One window row in DuckDB's memory (measured: 76 bytes), twice while the table is compacted.
_ROW_BYTES = 160

# The window's rows: `seq` numbers each symbol's bars in the order they arrived.
_TABLE = "kubetrade_window"
_CREATE = (
    f"CREATE OR REPLACE TABLE {_TABLE} (seq BIGINT, time TIMESTAMP, symbol VARCHAR,"
    " open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE)"
)
_APPENDED = {"seq": "BIGINT", "ms": "BIGINT", "symbol": "VARCHAR", "open": "DOUBLE",
             "high": "DOUBLE", "low": "DOUBLE", "close": "DOUBLE", "volume": "DOUBLE"}  # fmt: skip
_INSERT = (
    f"INSERT INTO {_TABLE} SELECT seq, epoch_ms(ms), symbol, open, high, low, close, volume"
    " FROM appender_data"
)
# One symbol's rows are appended in time order; several symbols' need sorting.
_VIEW = (
    "CREATE OR REPLACE VIEW market_data AS"
    f" SELECT time, symbol, open, high, low, close, volume FROM {_TABLE}"
)
_SORTED_VIEW = _VIEW + " ORDER BY time, symbol, seq"
# DuckDB keeps deleted rows in memory and skips them in every scan until their whole row
# group (122,880 rows) is gone; a copy of the live rows replaces the table instead once
# this many rows (or a window's worth, if more) were deleted.
_COMPACT_AFTER = 64
_COMPACT = f"CREATE OR REPLACE TABLE {_TABLE} AS FROM {_TABLE}"


class SqlError(Exception):
    """The query was refused or failed; the message says why."""


@dataclass(frozen=True, slots=True)
class SqlLimits:
    timeout_s: float = 1.0  # wall-clock budget per query
    max_rows: int = 10_000  # more rows than this is an error, not a silent cut
    max_result_chars: int = 16 << 20  # the answer is copied into the strategy's memory
    max_query_chars: int = 100_000
    memory_limit: int = 256 << 20  # bytes a query may use, beyond the window's own rows


# -- values as Go prints them ------------------------------------------------


def go_float(x: float) -> str:
    """Go's %v of a float64: shortest digits, exponent form below 1e-4 or from 1e6."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(x)).as_tuple()  # repr: shortest round trip
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent += len("".join(map(str, digit_tuple))) - len(digits)
    point = len(digits) + exponent  # the value is 0.<digits> * 10**point
    exp = point - 1
    minus = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{minus}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return minus + digits + "0" * (point - len(digits))
    return f"{minus}{digits[:point]}.{digits[point:]}"


def go_time(ns: int, base: datetime = _EPOCH) -> str:
    """Go's %v of a UTC time.Time, e.g. "2024-03-04 00:00:01.5 +0000 UTC"."""
    seconds, fraction = divmod(ns, _NS)
    t = base + timedelta(seconds=seconds)
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + " +0000 UTC"


def _text(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, bytes):
        return "[" + " ".join(str(b) for b in value) + "]"
    return str(value)


def _datetime_text(value: datetime | str | None) -> str:
    """A TIMESTAMP as go_time prints the same instant (DuckDB gives naive UTC)."""
    if value is None:
        return "<nil>"
    if isinstance(value, str):  # DuckDB gives its text for a time Python cannot hold
        raise OverflowError(f"{value} is outside years 1 to 9999")
    text = value.isoformat(" ")  # 2024-03-04 00:00:01[.500000]
    return (text.rstrip("0") if value.microsecond else text) + " +0000 UTC"


def _date_text(value: date | str | None) -> str:
    if isinstance(value, str):  # DuckDB gives its text for a date Python cannot hold
        raise OverflowError(f"{value} is outside years 1 to 9999")
    return "<nil>" if value is None else value.isoformat() + " 00:00:00 +0000 UTC"


def _clock_text(value: clock | None) -> str:
    """A TIME as Go prints a time of day: on 0001-01-01 (a TIMETZ's offset is dropped)."""
    if value is None:
        return "<nil>"
    text = f"0001-01-01 {value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + " +0000 UTC"


def _interval_text(value: list[int | None] | None) -> str:
    """An INTERVAL (months, days, microseconds) in the form it has always been shown."""
    if value is None or value[0] is None:
        return "<nil>"
    months, days, micros = value
    return f"MonthDayNano(months={months}, days={days}, nanoseconds={(micros or 0) * 1000})"


def _nanos_text(base: datetime, scale: int) -> Callable[[int | None], str]:
    return lambda value: "<nil>" if value is None else go_time(value * scale, base)


# Per DuckDB type: how Python's value of a column becomes text. Python reads these
# exactly; the types in _CONVERTED it cannot (it needs pytz for a TIMESTAMPTZ, cuts
# nanoseconds and folds an interval's months into days), so SQL turns them into
# integers first.
_TEXT: dict[str, Callable[[Any], str]] = {
    **dict.fromkeys(("TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS"), _datetime_text),
    "DATE": _date_text,
    "TIME": _clock_text,
    "TIME WITH TIME ZONE": _clock_text,
}
_CONVERTED: dict[str, tuple[str, Callable[[Any], str]]] = {
    "TIMESTAMP WITH TIME ZONE": ("epoch_us({})", _nanos_text(_EPOCH, 1_000)),
    "TIMESTAMP_NS": ("epoch_ns({})", _nanos_text(_EPOCH, 1)),
    "TIMESTAMPTZ_NS": ("epoch_ns({})", _nanos_text(_EPOCH, 1)),
    "TIME_NS": ("epoch_ns({})", _nanos_text(_YEAR_ONE, 1)),
    "INTERVAL": (
        "[datepart('year', {0}) * 12 + datepart('month', {0}), datepart('day', {0}),"
        " datepart('hour', {0}) * 3600000000 + datepart('minute', {0}) * 60000000"
        " + datepart('microseconds', {0})]",
        _interval_text,
    ),
}
_NESTED = frozenset({"list", "struct", "map", "array", "union"})
_AS_VARCHAR = ("CAST({} AS VARCHAR)", _text)  # a nested value holding a TIMESTAMPTZ


def _column_text(kind: duckdb.sqltypes.DuckDBPyType) -> tuple[str | None, Callable[[Any], str]]:
    """The SQL that converts a column of this type first (None: none) and its text."""
    name = str(kind)
    if name in _CONVERTED:
        return _CONVERTED[name]
    if kind.id in _NESTED and ("TIME ZONE" in name or "TIMESTAMPTZ_NS" in name):
        return _AS_VARCHAR
    if kind.id == "map":
        return None, lambda value: _text(None if value is None else list(value.items()))
    if kind.id == "array":
        return None, lambda value: _text(None if value is None else list(value))
    return None, _TEXT.get(name, _text)


def _wrapped(query: str, columns: list[str]) -> str:
    """`query` as a subquery, its columns (by position) converted by `columns`."""
    import duckdb

    end = len(query)
    tokens = [
        offset for offset, kind in duckdb.tokenize(query) if kind != duckdb.token_type.comment
    ]
    while tokens and query[tokens[-1]] == ";":  # a subquery ends at its parenthesis
        end = tokens.pop()
    # The newline keeps a trailing -- comment from swallowing the parenthesis.
    return f"SELECT {', '.join(columns)} FROM (\n{query[:end]}\n) AS kubetrade_query"


# -- the watchdog ------------------------------------------------------------


class _Watchdog:
    """One thread per engine that interrupts a query running past its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._target: duckdb.DuckDBPyConnection | None = None
        self._deadline = 0.0
        self._closed = False
        self._thread: threading.Thread | None = None

    def arm(self, target: duckdb.DuckDBPyConnection, seconds: float) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sql-watchdog", daemon=True)
                self._thread.start()
            self._target, self._deadline = target, time.monotonic() + seconds
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._target = None

    def close(self) -> None:
        with self._cond:
            self._closed, self._target = True, None
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if self._target is None:
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._target.interrupt()
                self._target = None


# -- the engine --------------------------------------------------------------


@dataclass(slots=True)
class _Synced:
    """What the table holds of one symbol: its rows are seq low .. next_seq - 1."""

    last: Bar  # the newest of them
    next_seq: int
    low: int = 0
    in_order: bool = True  # strictly increasing times, so new bars can be appended


class SqlEngine:
    """Answers execute_sql for one session."""

    def __init__(self, window: Window, limits: SqlLimits | None = None) -> None:
        self._window = window
        self.limits = limits or SqlLimits()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._appender: duckdb.Appender | None = None
        self._synced: dict[str, _Synced] = {}
        self._sorted = False  # whether market_data is the sorted view (several symbols)
        self._deleted = 0  # rows deleted from the table since it was last compacted
        self._watchdog = _Watchdog()

    def execute(
        self, query: str, params: Sequence[str], *, timeout_s: float | None = None
    ) -> list[dict[str, str]]:
        """The query's rows as text; `timeout_s` shortens the limits' budget for this query."""
        limits = self.limits
        timeout = limits.timeout_s if timeout_s is None else min(limits.timeout_s, timeout_s)
        if len(query) > limits.max_query_chars:
            raise SqlError(f"query is longer than {limits.max_query_chars} characters")
        import duckdb  # imported on first use: sessions without SQL never pay for it

        con = self._connection()
        try:
            statements = con.extract_statements(query)
        except duckdb.Error as exc:
            raise SqlError(f"invalid SQL: {exc}") from None
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            kinds = ", ".join(s.type.name for s in statements) or "nothing"
            raise SqlError(
                f"only a single SELECT statement is allowed (market_data is read-only); got {kinds}"
            )
        try:
            self._sync(con)
        except duckdb.Error as exc:
            self._synced.clear()  # what the table holds is unknown: reload it next time
            raise SqlError(f"cannot load the market data window: {exc}") from None
        self._watchdog.arm(con, timeout)
        try:
            rows = self._run(con, query, list(params))
        except duckdb.InterruptException:
            raise SqlError(f"query stopped: it ran longer than {timeout:g} s") from None
        except duckdb.Error as exc:
            raise SqlError(f"query failed: {exc}") from None
        except OverflowError as exc:  # a time beyond what Go or Python can show
            raise SqlError(f"query failed: a value is out of range ({exc})") from None
        finally:
            # An interrupt that lands after the query finished changes nothing:
            # DuckDB clears it when the next statement starts.
            self._watchdog.disarm()
        return rows

    def close(self) -> None:
        self._watchdog.close()
        if self._con is not None:
            self._con.close()
            self._con = self._appender = None
            self._synced.clear()

    def _run(
        self, con: duckdb.DuckDBPyConnection, query: str, params: list[str]
    ) -> list[dict[str, str]]:
        cap = self.limits.max_rows
        con.execute(query, params)  # runs until its first rows are ready
        description = con.description or []
        names = [column[0] for column in description]
        plan = [_column_text(column[1]) for column in description]
        if any(sql for sql, _ in plan):  # a type Python cannot read exactly: convert in SQL
            converted = [(sql or "{}").format(f"#{i}") for i, (sql, _) in enumerate(plan, start=1)]
            con.execute(_wrapped(query, converted), params)
        texts = [text for _, text in plan]
        # The result streams, so the row cap stops reading early; the watchdog covers
        # the reading too.
        rows: list[dict[str, str]] = []
        size = 0
        while batch := con.fetchmany(min(cap + 1, 2048)):
            if len(rows) + len(batch) > cap:
                raise SqlError(f"query returned more than {cap} rows; add a LIMIT or aggregate")
            columns = [
                list(map(text, column))
                for text, column in zip(texts, zip(*batch, strict=True), strict=True)
            ]
            size += sum(len(text) for column in columns for text in column)
            if size > self.limits.max_result_chars:
                raise SqlError(f"query result exceeds {self.limits.max_result_chars} characters")
            rows.extend(
                dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)
            )
        return rows

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            import duckdb

            # The window's rows live in DuckDB's memory: they come on top of the cap.
            window = self._window
            rows = window.size * max(1, len(window.series))
            con = duckdb.connect(
                ":memory:",
                config={
                    "enable_external_access": False,  # no files, network, ATTACH or COPY
                    "autoinstall_known_extensions": False,
                    "autoload_known_extensions": False,
                    "python_enable_replacements": False,  # no lookups of Python variables
                    "threads": 1,  # leave the cores to the engine
                    "memory_limit": f"{self.limits.memory_limit + rows * _ROW_BYTES}B",
                    "lock_configuration": True,  # a query cannot undo any of this
                },
            )
            con.execute(_CREATE)
            con.execute(_VIEW)
            for macro in sql_guards.MACROS:  # repeat() and the like, capped (sql_guards)
                con.execute(macro)
            self._appender = con.query_appender(_INSERT, _APPENDED)
            self._con, self._sorted = con, False
        return self._con

    def _sync(self, con: duckdb.DuckDBPyConnection) -> None:
        """Bring the table in step with the window: append what arrived, drop what left."""
        window = self._window
        rows: list[tuple[object, ...]] = []
        cuts: list[object] = []  # symbol, lowest seq kept, for each symbol that slid
        for symbol in window.series:
            last = window.last(symbol)
            synced = self._synced.get(symbol)
            if last is None or (synced is not None and synced.last is last):
                continue  # nothing new
            if synced is None:
                fresh, synced = window.bars(symbol), _Synced(last=last, next_seq=0)
                self._synced[symbol] = synced
            elif synced.in_order:
                # A bar the table holds and the ones after it; pure appends keep the
                # table's newest bar in the window, followed by later times only.
                fresh = window.range(symbol, synced.last.time, last.time)
                if not fresh or fresh[0] is not synced.last or fresh[-1] is not last:
                    self._reload(con)
                    return
                fresh = fresh[1:]
            else:
                self._reload(con)
                return
            if not all(a.time < b.time for a, b in pairwise([synced.last, *fresh])):
                synced.in_order = False  # kept as written; the next change reloads
            seq = synced.next_seq
            rows.extend(
                (seq + i, b.time, symbol, b.open, b.high, b.low, b.close, b.volume)
                for i, b in enumerate(fresh)
            )
            synced.last, synced.next_seq = last, seq + len(fresh)
            if synced.next_seq - window.size > synced.low:
                synced.low = synced.next_seq - window.size
                cuts += (symbol, synced.low)
        self._write(con, rows, cuts)

    def _reload(self, con: duckdb.DuckDBPyConnection) -> None:
        """Replace the table's rows with the window's."""
        window = self._window
        con.execute(_CREATE)  # a new table: the old one's deleted rows go with it
        self._synced.clear()
        self._deleted = 0
        rows: list[tuple[object, ...]] = []
        for symbol in window.series:
            bars = window.bars(symbol)
            if not bars:
                continue
            rows.extend(
                (i, b.time, symbol, b.open, b.high, b.low, b.close, b.volume)
                for i, b in enumerate(bars)
            )
            in_order = all(a.time < b.time for a, b in pairwise(bars))
            self._synced[symbol] = _Synced(bars[-1], len(bars), in_order=in_order)
        self._write(con, rows, [])

    def _write(
        self, con: duckdb.DuckDBPyConnection, rows: list[tuple[object, ...]], cuts: list[object]
    ) -> None:
        if rows:
            assert self._appender is not None
            self._appender.append_rows(rows)
            self._appender.flush()
        if cuts:
            where = " OR ".join(["(symbol = ? AND seq < ?)"] * (len(cuts) // 2))
            [(deleted,)] = con.execute(f"DELETE FROM {_TABLE} WHERE {where}", cuts).fetchall()
            self._deleted += deleted
            if self._deleted >= max(_COMPACT_AFTER, self._window.size):
                con.execute(_COMPACT)
                self._deleted = 0
        if len(self._synced) > 1 and not self._sorted:
            con.execute(_SORTED_VIEW)
            self._sorted = True
