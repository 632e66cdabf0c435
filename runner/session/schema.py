"""The journal's tables, and the steps that bring an older journal up to date.

Every table carries a `crc` column: a CRC-32 of the row's canonical bytes (see
records.py), so a flipped bit anywhere in a row is found when the journal is
opened. Version 5 added it; `migrate.py` fills it in for journals written before.
"""

from __future__ import annotations

APPLICATION_ID = 0x6B74726A  # "ktrj": marks the file as a kubetrade journal
SCHEMA_VERSION = 6

# Each entry migrates the schema from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE session (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        order_type TEXT NOT NULL,
        quantity REAL NOT NULL,
        price REAL NOT NULL,
        time INTEGER NOT NULL,
        strategy_name TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        strategy_order_id TEXT NOT NULL,
        position_type TEXT NOT NULL,
        status TEXT NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0,
        filled_quantity REAL NOT NULL,
        average_price REAL NOT NULL,
        fee REAL NOT NULL,
        updated INTEGER NOT NULL
    );
    CREATE TABLE fills (
        fill_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        client_order_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        quantity REAL NOT NULL,
        price REAL NOT NULL,
        fee REAL NOT NULL,
        time INTEGER NOT NULL,
        realized_pnl REAL NOT NULL
    );
    CREATE TABLE cursor (
        symbol TEXT PRIMARY KEY,
        time INTEGER NOT NULL
    );
    CREATE TABLE cache (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE marks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        symbol TEXT NOT NULL,
        time INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE logs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        fields TEXT NOT NULL
    );
    """,
    # v2: what reports need: the equity after each bar and each symbol's last close.
    """
    CREATE TABLE equity (
        time INTEGER PRIMARY KEY,
        equity REAL NOT NULL,
        cash REAL NOT NULL
    );
    CREATE TABLE prices (
        symbol TEXT PRIMARY KEY,
        time INTEGER NOT NULL,
        close REAL NOT NULL
    );
    """,
    # v3: take-profits and stop-losses, and the entry an exit belongs to.
    """
    ALTER TABLE orders ADD COLUMN brackets TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE orders ADD COLUMN parent_id TEXT NOT NULL DEFAULT '';
    """,
    # v4: the part of a fill's fee the venue took in the traded asset (Fill.fee_base).
    """
    ALTER TABLE fills ADD COLUMN fee_base REAL NOT NULL DEFAULT 0;
    """,
    # v5: a checksum on every row (filled in by migrate.py for older rows), and the
    # cancel a strategy asked for, so a restart sends it if the venue never got it.
    """
    ALTER TABLE orders ADD COLUMN cancel INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE session ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE orders ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE fills ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE cursor ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE cache ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE marks ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE logs ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE equity ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE prices ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
    """,
    # v6: the paper venue's state (session/venue.py), until then a file of its own beside
    # the journal (imported by migrate.py), so an order bar needs one transaction, not two;
    # logs and marks without AUTOINCREMENT (their seq is given; the sqlite_sequence row
    # it kept up to date was one more page written by every commit with a log line); and
    # orders and fills keyed by their seq, not by their text ids, whose indexes were two
    # more pages per order (the ids stay unique: the writer makes them so, verify.py checks).
    """
    CREATE TABLE venue_state (
        key TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        crc INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE venue_orders (
        seq INTEGER PRIMARY KEY,
        client_order_id TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        time INTEGER NOT NULL,
        fills TEXT NOT NULL,
        crc INTEGER NOT NULL
    );
    CREATE TABLE venue_resting (
        client_order_id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        reserved REAL NOT NULL,
        crc INTEGER NOT NULL
    );
    CREATE TABLE logs_v6 (
        seq INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        fields TEXT NOT NULL,
        crc INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO logs_v6 SELECT seq, time, level, message, fields, crc FROM logs;
    DROP TABLE logs;
    ALTER TABLE logs_v6 RENAME TO logs;
    CREATE TABLE marks_v6 (
        seq INTEGER PRIMARY KEY,
        symbol TEXT NOT NULL,
        time INTEGER NOT NULL,
        body TEXT NOT NULL,
        crc INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO marks_v6 SELECT seq, symbol, time, body, crc FROM marks;
    DROP TABLE marks;
    ALTER TABLE marks_v6 RENAME TO marks;
    CREATE TABLE orders_v6 (
        seq INTEGER PRIMARY KEY,
        client_order_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        order_type TEXT NOT NULL,
        quantity REAL NOT NULL,
        price REAL NOT NULL,
        time INTEGER NOT NULL,
        strategy_name TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        strategy_order_id TEXT NOT NULL,
        position_type TEXT NOT NULL,
        status TEXT NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0,
        filled_quantity REAL NOT NULL,
        average_price REAL NOT NULL,
        fee REAL NOT NULL,
        updated INTEGER NOT NULL,
        brackets TEXT NOT NULL DEFAULT '{}',
        parent_id TEXT NOT NULL DEFAULT '',
        cancel INTEGER NOT NULL DEFAULT 0,
        crc INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO orders_v6 (seq, client_order_id, symbol, side, order_type, quantity, price,
        time, strategy_name, reason, message, strategy_order_id, position_type, status, sent,
        filled_quantity, average_price, fee, updated, brackets, parent_id, cancel, crc)
    SELECT seq, client_order_id, symbol, side, order_type, quantity, price, time,
        strategy_name, reason, message, strategy_order_id, position_type, status, sent,
        filled_quantity, average_price, fee, updated, brackets, parent_id, cancel, crc
    FROM orders ORDER BY seq;
    DROP TABLE orders;
    ALTER TABLE orders_v6 RENAME TO orders;
    CREATE TABLE fills_v6 (
        seq INTEGER PRIMARY KEY,
        fill_id TEXT NOT NULL,
        client_order_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        quantity REAL NOT NULL,
        price REAL NOT NULL,
        fee REAL NOT NULL,
        time INTEGER NOT NULL,
        realized_pnl REAL NOT NULL,
        fee_base REAL NOT NULL DEFAULT 0,
        crc INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO fills_v6 (seq, fill_id, client_order_id, symbol, side, quantity, price, fee,
        time, realized_pnl, fee_base, crc)
    SELECT seq, fill_id, client_order_id, symbol, side, quantity, price, fee, time,
        realized_pnl, fee_base, crc
    FROM fills ORDER BY seq;
    DROP TABLE fills;
    ALTER TABLE fills_v6 RENAME TO fills;
    """,
)

# Every table of the current schema, in the order they are checked.
TABLES = (
    "session", "orders", "fills", "cursor", "cache", "marks", "logs", "equity", "prices",
    "venue_state", "venue_orders", "venue_resting",
)  # fmt: skip


def statements(script: str) -> list[str]:
    """The statements of one migration script, to run one by one inside a transaction
    (`executescript` would commit whatever transaction is open first)."""
    return [s.strip() for s in script.split(";") if s.strip()]
