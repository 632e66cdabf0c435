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
    # the journal (imported by migrate.py), so an order bar needs one transaction, not two.
    """
    CREATE TABLE venue_account (
        key TEXT PRIMARY KEY,
        value REAL NOT NULL,
        crc INTEGER NOT NULL
    );
    CREATE TABLE venue_positions (
        symbol TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        crc INTEGER NOT NULL
    );
    CREATE TABLE venue_resting (
        client_order_id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        reserved REAL NOT NULL,
        crc INTEGER NOT NULL
    );
    CREATE TABLE venue_known (
        client_order_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        time INTEGER NOT NULL,
        crc INTEGER NOT NULL
    );
    CREATE TABLE venue_fills (
        fill_id TEXT PRIMARY KEY,
        client_order_id TEXT NOT NULL,
        body TEXT NOT NULL,
        crc INTEGER NOT NULL
    );
    CREATE TABLE venue_bars (
        symbol TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        crc INTEGER NOT NULL
    );
    """,
)

# Every table of the current schema, in the order they are checked.
TABLES = (
    "session", "orders", "fills", "cursor", "cache", "marks", "logs", "equity", "prices",
    "venue_account", "venue_positions", "venue_resting", "venue_known", "venue_fills",
    "venue_bars",
)  # fmt: skip


def statements(script: str) -> list[str]:
    """The statements of one migration script, to run one by one inside a transaction
    (`executescript` would commit whatever transaction is open first)."""
    return [s.strip() for s in script.split(";") if s.strip()]
