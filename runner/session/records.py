"""What one journal row holds, and its checksum.

Each table's row is a tuple of plain values (text, integer, real) in a fixed
column order, followed by a CRC-32 of the row's canonical form: the `repr` of
the values as SQLite gives them back (for the all-numbers equity rows, their
packed bytes), seeded with the table's name. `repr` is
exact for every value kind (a float's shortest round-trip digits, an escaped
string), so the writer and a later reader compute the same bytes; the table name
in the seed keeps a row from passing for a row of another table. CRC-32 finds
every single flipped bit and any burst of up to 32 bits, which is the damage a
disk or a copy does; it is no defence against someone forging rows on purpose.

Reals are stored as given except: -0.0 becomes 0.0 (SQLite keeps whole reals as
integers on disk and gives back +0.0) and NaN, which SQLite cannot store as a
real, is kept as the text 'NaN'.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kubetrade.runner.domain import Bracket, Fill, Mark, Order, OrderStatus, OrderType, Side

Value = str | int | float

# JSON with sorted keys, as json.dumps(..., sort_keys=True) writes it, without building
# an encoder on every call as json.dumps does for any non-default option (rows are made
# on every commit).
sorted_json = json.JSONEncoder(sort_keys=True).encode


class RecordError(Exception):
    """A row that is not what was written: its message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]  # the data columns, in row order; `crc` follows them
    kinds: str  # per column: t text, i integer, r real
    key: int  # the column that names a row in messages (and its upserts replace by)
    rowid: bool = True  # False: a WITHOUT ROWID table, read in its key's order
    primary: int | None = None  # the primary key's column, if not `key`

    @property
    def seed(self) -> int:
        return zlib.crc32(self.name.encode())

    @property
    def select_sql(self) -> str:
        columns = ", ".join(self.columns)
        if not self.rowid:
            key = self.columns[self.key]
            return f"SELECT NULL, {columns}, crc FROM {self.name} ORDER BY {key}"
        return f"SELECT rowid, {columns}, crc FROM {self.name} ORDER BY rowid"


SESSION = Table("session", ("key", "value"), "tt", 0)
ORDERS = Table(
    "orders",
    (
        "client_order_id", "seq", "symbol", "side", "order_type", "quantity", "price", "time",
        "strategy_name", "reason", "message", "strategy_order_id", "position_type", "status",
        "sent", "filled_quantity", "average_price", "fee", "updated", "brackets", "parent_id",
        "cancel",
    ),
    "titttrritttttti" "rrritti",
    0,
    primary=1,  # seq (schema 6): rows append, where a text key would land anywhere
)  # fmt: skip
FILLS = Table(
    "fills",
    ("fill_id", "seq", "client_order_id", "symbol", "side", "quantity", "price", "fee", "time",
     "realized_pnl", "fee_base"),
    "titttrrrirr",
    0,
)  # fmt: skip
CURSOR = Table("cursor", ("symbol", "time"), "ti", 0)
CACHE = Table("cache", ("key", "value"), "tt", 0)
MARKS = Table("marks", ("seq", "symbol", "time", "body"), "itit", 0)
LOGS = Table("logs", ("seq", "time", "level", "message", "fields"), "iittt", 0)
EQUITY = Table("equity", ("time", "equity", "cash"), "irr", 0)
PRICES = Table("prices", ("symbol", "time", "close"), "tir", 0)

# The paper venue's state (session/venue.py): bodies are JSON objects of domain values.
VENUE_STATE = Table("venue_state", ("key", "body"), "tt", 0, rowid=False)
VENUE_ORDERS = Table(
    "venue_orders", ("seq", "client_order_id", "status", "reason", "message", "time", "fills"),
    "ittttit", 0,
)  # fmt: skip
VENUE_RESTING = Table("venue_resting", ("client_order_id", "body", "reserved"), "ttr", 0)
VENUE_TABLES = (VENUE_STATE, VENUE_ORDERS, VENUE_RESTING)

TABLES = (SESSION, ORDERS, FILLS, CURSOR, CACHE, MARKS, LOGS, EQUITY, PRICES, *VENUE_TABLES)
_SEEDS = {table.name: table.seed for table in TABLES}


def upsert_sql(table: Table) -> str:
    """Insert a row, or replace every column of the row with the same key."""
    names = (*table.columns, "crc")
    primary = table.key if table.primary is None else table.primary
    updates = ", ".join(f"{n}=excluded.{n}" for i, n in enumerate(names) if i != primary)
    return (
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
        f"ON CONFLICT({table.columns[primary]}) DO UPDATE SET {updates}"
    )


def insert_sql(table: Table) -> str:
    names = (*table.columns, "crc")
    return f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


# -- checksums -------------------------------------------------------------------------


def real(value: float) -> float:
    """A real as it reads back from SQLite: a float, never -0.0."""
    return float(value) + 0.0


def stored(value: float) -> float | str:
    """How a real is stored: NaN as text, since SQLite turns a NaN real into NULL."""
    return value if value == value else "NaN"


def crc(table: str, values: Sequence[Value]) -> int:
    """The checksum of a row's values (as `seal` computes it)."""
    if table == "equity":
        time, equity, cash = values
        return _equity_crc(int(time), float(equity), float(cash))
    return zlib.crc32(repr(tuple(values)).encode("utf-8", "surrogatepass"), _SEEDS[table])


# An equity row is written for every bar: its canonical form is packed, not repr'd (5x
# cheaper). NaN has several bit patterns; one stands for them all.
_EQUITY_ROW = struct.Struct("<qdd")
_EQUITY_SEED = zlib.crc32(b"equity")


def _equity_crc(time: int, equity: float, cash: float) -> int:
    if equity != equity or cash != cash:
        equity, cash = (x if x == x else math.nan for x in (equity, cash))
    return zlib.crc32(_EQUITY_ROW.pack(time, equity, cash), _EQUITY_SEED)


def seal_equity(time: int, equity: float, cash: float) -> tuple[Value, ...]:
    """`seal` for an equity row; the reals as `real` gives them."""
    return (time, stored(equity), stored(cash), _equity_crc(time, equity, cash))


def seal_equity_rows(points: Iterable[tuple[int, tuple[float, float]]]) -> list[tuple[Value, ...]]:
    """`seal_equity` over (time, (equity, cash)) points, the reals as `real` gives them: one
    loop, since a commit holds a row per bar since the last one."""
    pack, crc32, seed = _EQUITY_ROW.pack, zlib.crc32, _EQUITY_SEED
    rows: list[tuple[Value, ...]] = []
    for time, (equity, cash) in points:
        time, equity, cash = int(time), float(equity) + 0.0, float(cash) + 0.0
        if equity == equity and cash == cash:
            rows.append((time, equity, cash, crc32(pack(time, equity, cash), seed)))
        else:  # a NaN: stored as text, and one bit pattern stands for them all
            rows.append(seal_equity(time, equity, cash))
    return rows


def seal(table: Table, values: tuple[Value, ...]) -> tuple[Value, ...]:
    """The row to write: values (reals as stored) and their checksum."""
    if table is EQUITY:
        time, equity, cash = values
        return seal_equity(int(time), float(equity), float(cash))
    text = repr(values)
    check = zlib.crc32(text.encode("utf-8", "surrogatepass"), _SEEDS[table.name])
    if "nan" in text:  # rare (and cheap to look for): a NaN real is stored as text
        values = tuple(stored(v) if isinstance(v, float) else v for v in values)
    return (*values, check)


def unseal(table: Table, row: Sequence[object]) -> tuple[Value, ...]:
    """The values of a row read back (rowid first, crc last), checked against its crc."""
    values: list[Value] = []
    for kind, value in zip(table.kinds, row[1:-1], strict=True):
        values.append(typed(kind, value))
    if row[-1] != crc(table.name, values):
        raise RecordError("fails its checksum")
    return tuple(values)


def typed(kind: str, value: object) -> Value:
    """A value read back, if it has the column's kind (else RecordError)."""
    if kind == "r":
        if isinstance(value, float):
            return value
        if value == "NaN":
            return math.nan
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
    elif kind == "i":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, str):
        return value
    raise RecordError(f"holds {type(value).__name__} where {_KIND_NAMES[kind]} belongs")


_KIND_NAMES = {"t": "text", "i": "an integer", "r": "a real"}


def name_of(table: Table, row: Sequence[object]) -> str:
    """How a message names a row: its key if readable, else its position."""
    key = row[1 + table.key]
    if isinstance(key, str | int) and not isinstance(key, bool):
        return f"the row with {table.columns[table.key]} {repr(key)[:60]}"
    return f"the row at rowid {row[0]}" if row[0] is not None else "a row with an unreadable key"


# -- domain values <-> rows ----------------------------------------------------------------


def order_values(order: Order, *, seq: int, sent: bool, cancel: bool) -> tuple[Value, ...]:
    if order.take_profit is None and order.stop_loss is None:
        brackets = "{}"  # most orders: json.dumps({}) without the call
    else:
        brackets = json.dumps(
            {
                name: {"side": b.side.value, "price": b.price}
                for name, b in (("take_profit", order.take_profit), ("stop_loss", order.stop_loss))
                if b is not None
            },
            sort_keys=True,
        )
    # str(): a text field may hold a StrEnum (a RejectReason), whose repr is not its text's.
    return (
        str(order.client_order_id), seq, str(order.symbol), order.side.value,
        order.order_type.value, real(order.quantity), real(order.price), int(order.time),
        str(order.strategy_name), str(order.reason), str(order.message),
        str(order.strategy_order_id), str(order.position_type), order.status.value, int(sent),
        real(order.filled_quantity), real(order.average_price), real(order.fee),
        int(order.updated), brackets, str(order.parent_id), int(cancel),
    )  # fmt: skip


def order_from(v: Sequence[Value]) -> tuple[Order, int, bool, bool]:
    """An order and its seq, sent and cancel flags."""
    brackets = {
        name: Bracket(side=Side(b["side"]), price=float(b["price"]))
        for name, b in json.loads(str(v[19])).items()
    }
    order = Order(
        client_order_id=str(v[0]),
        symbol=str(v[2]),
        side=Side(str(v[3])),
        order_type=OrderType(str(v[4])),
        quantity=float(v[5]),
        price=float(v[6]),
        time=int(v[7]),
        strategy_name=str(v[8]),
        reason=str(v[9]),
        message=str(v[10]),
        strategy_order_id=str(v[11]),
        position_type=str(v[12]),
        status=OrderStatus(str(v[13])),
        filled_quantity=float(v[15]),
        average_price=float(v[16]),
        fee=float(v[17]),
        updated=int(v[18]),
        take_profit=brackets.get("take_profit"),
        stop_loss=brackets.get("stop_loss"),
        parent_id=str(v[20]),
    )
    return order, int(v[1]), bool(v[14]), bool(v[21])


def fill_values(fill: Fill, *, seq: int) -> tuple[Value, ...]:
    return (
        str(fill.fill_id), seq, str(fill.client_order_id), str(fill.symbol), fill.side.value,
        real(fill.quantity), real(fill.price), real(fill.fee), int(fill.time),
        real(fill.realized_pnl), real(fill.fee_base),
    )  # fmt: skip


def fill_from(v: Sequence[Value]) -> Fill:
    return Fill(
        fill_id=str(v[0]),
        client_order_id=str(v[2]),
        symbol=str(v[3]),
        side=Side(str(v[4])),
        quantity=float(v[5]),
        price=float(v[6]),
        fee=float(v[7]),
        time=int(v[8]),
        realized_pnl=float(v[9]),
        fee_base=float(v[10]),
    )


_MARK_FIELDS = ("color", "shape", "title", "message", "category", "signal_type", "level")


def mark_values(mark: Mark, *, seq: int) -> tuple[Value, ...]:
    body = {name: str(getattr(mark, name)) for name in _MARK_FIELDS}
    return (seq, str(mark.symbol), int(mark.time), sorted_json(body))


def mark_from(v: Sequence[Value]) -> Mark:
    body = json.loads(str(v[3]))
    return Mark(symbol=str(v[1]), time=int(v[2]), **{k: str(body[k]) for k in _MARK_FIELDS})


def log_values(seq: int, time: int, level: str, message: str, fields: dict[str, str]) -> tuple[
        Value, ...]:  # fmt: skip
    return (seq, int(time), str(level), str(message), sorted_json(fields))
