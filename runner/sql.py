"""execute_sql: read-only DuckDB queries over the session's market data window.

The window is exposed as one table,

    market_data(time TIMESTAMP, symbol VARCHAR,
                open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE)

with `time` the bar's open time in UTC and rows in (time, symbol) order. Only a
single SELECT (or WITH ... SELECT, VALUES, FROM-first) statement is accepted;
parameters bind to `?` (or `$1`) placeholders and are never spliced into the
text. They arrive as strings (the ABI's params are strings), which DuckDB
casts where the comparison needs it, as it does for argo-trading.

The sandbox: one in-process DuckDB per session, created on first use, with
file and network access, extension loading and Python object lookups off and
the configuration locked; one thread, a memory cap, a wall-clock budget per
query (the query is interrupted, the call traps), a row cap and a cap on the
result's size. DuckDB checks for an interrupt between operations, so a single
huge operation (repeat('x', 10^9)) overruns the budget by its own duration.

Values come back as text formatted the way argo-trading's Go host formats them
(fmt's %v): 62000, 61917.84, 1.5e+06, true, <nil> for NULL, and timestamps as
"2024-03-04 00:00:00 +0000 UTC". Lists, structs and intervals use Python's
text; cast them to VARCHAR in the query for a stable form.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from kubetrade.runner.window import Window

if TYPE_CHECKING:
    import duckdb

_NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1)
_YEAR_ONE = datetime(1, 1, 1)
_TIME_UNITS = {"s": _NS, "ms": 1_000_000, "us": 1_000, "ns": 1}
_SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("us")),  # microseconds: DuckDB's plain TIMESTAMP
        ("symbol", pa.string()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
    ]
)


class SqlError(Exception):
    """The query was refused or failed; the message says why."""


@dataclass(frozen=True, slots=True)
class SqlLimits:
    timeout_s: float = 1.0  # wall-clock budget per query
    max_rows: int = 10_000  # more rows than this is an error, not a silent cut
    max_result_chars: int = 16 << 20  # the answer is copied into the strategy's memory
    max_query_chars: int = 100_000
    memory_limit: str = "256MB"


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


def _texts(column: pa.Array) -> list[str]:
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _texts(column.dictionary_decode())
    if pa.types.is_timestamp(kind) or pa.types.is_time(kind):
        scale = _TIME_UNITS[kind.unit]
        base = _EPOCH if pa.types.is_timestamp(kind) else _YEAR_ONE  # Go's TIME is on 0001-01-01
        raw = column.cast(pa.int64()).to_pylist()  # instants in UTC, whatever the zone
        return ["<nil>" if v is None else go_time(v * scale, base) for v in raw]
    if pa.types.is_date(kind):
        days = column.cast(pa.date32()).cast(pa.int32()).to_pylist()
        return ["<nil>" if v is None else go_time(v * 86_400 * _NS) for v in days]
    return [_text(v) for v in column.to_pylist()]


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


class SqlEngine:
    """Answers execute_sql for one session."""

    def __init__(self, window: Window, limits: SqlLimits | None = None) -> None:
        self._window = window
        self.limits = limits or SqlLimits()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._version: tuple[tuple[str, int], ...] | None = None
        self._watchdog = _Watchdog()

    def execute(self, query: str, params: Sequence[str]) -> list[dict[str, str]]:
        limits = self.limits
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
        self._sync(con)
        self._watchdog.arm(con, limits.timeout_s)
        try:
            rows = self._run(con, query, list(params))
        except duckdb.InterruptException:
            raise SqlError(f"query stopped: it ran longer than {limits.timeout_s:g} s") from None
        except duckdb.Error as exc:
            raise SqlError(f"query failed: {exc}") from None
        finally:
            # An interrupt that lands after the query finished changes nothing:
            # DuckDB clears it when the next query starts.
            self._watchdog.disarm()
        return rows

    def close(self) -> None:
        self._watchdog.close()
        if self._con is not None:
            self._con.close()
            self._con = None

    def _run(
        self, con: duckdb.DuckDBPyConnection, query: str, params: list[str]
    ) -> list[dict[str, str]]:
        cap = self.limits.max_rows
        # A relation streams its result in Arrow batches, so the row cap stops
        # reading early; the watchdog covers the reading too.
        reader = con.sql(query, params=params).to_arrow_reader(min(cap + 1, 2048))
        rows: list[dict[str, str]] = []
        names = reader.schema.names
        size = 0
        for batch in reader:
            if len(rows) + batch.num_rows > cap:
                raise SqlError(f"query returned more than {cap} rows; add a LIMIT or aggregate")
            columns = [_texts(column) for column in batch.columns]
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

            self._con = duckdb.connect(
                ":memory:",
                config={
                    "enable_external_access": False,  # no files, network, ATTACH or COPY
                    "autoinstall_known_extensions": False,
                    "autoload_known_extensions": False,
                    "python_enable_replacements": False,  # no lookups of Python variables
                    "threads": 1,  # leave the cores to the engine
                    "memory_limit": self.limits.memory_limit,
                    "lock_configuration": True,  # a query cannot undo any of this
                },
            )
        return self._con

    def _sync(self, con: duckdb.DuckDBPyConnection) -> None:
        """Re-expose the window if a bar was added since the last query."""
        window = self._window
        version = tuple((s, last.time) for s in window.series if (last := window.last(s)))
        if version == self._version:
            return
        bars = [b for symbol in window.series for b in window.bars(symbol)]
        if len(window.series) > 1:
            bars.sort(key=lambda b: (b.time, b.symbol))
        table = pa.table(
            [
                pa.array([b.time * 1000 for b in bars], pa.int64()).cast(pa.timestamp("us")),
                pa.array([b.symbol for b in bars], pa.string()),
                pa.array([b.open for b in bars], pa.float64()),
                pa.array([b.high for b in bars], pa.float64()),
                pa.array([b.low for b in bars], pa.float64()),
                pa.array([b.close for b in bars], pa.float64()),
                pa.array([b.volume for b in bars], pa.float64()),
            ],
            schema=_SCHEMA,
        )
        con.register("market_data", table)
        self._version = version
