"""Bringing a journal written by an older kubetrade up to the current schema.

Runs only after `verify.read_snapshot` has read every row of the old journal
and found its structure sound and every value of the right type (rows written
before version 5 carry no checksum, so that is all that can be checked). Then,
in one transaction, the missing columns are added and every row gets the
checksum of what it holds now, with the row counts in the tally. A failure
leaves the journal as it was.
"""

from __future__ import annotations

import json
import sqlite3

from kubetrade.runner.session import records as rec
from kubetrade.runner.session.schema import MIGRATIONS, SCHEMA_VERSION, statements
from kubetrade.runner.session.venue import VenueState, state_rows
from kubetrade.runner.session.verify import Snapshot


def upgrade(db: sqlite3.Connection, snapshot: Snapshot, *, venue: VenueState | None = None) -> None:
    """Migrate a checked journal of an older version in place (one transaction).
    `venue`: the paper venue a runner before schema 6 kept in a file of its own
    (legacy_venue.py), taken into the journal's venue tables in the same transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for script in MIGRATIONS[snapshot.version :]:
            for statement in statements(script):
                db.execute(statement)
        for table in rec.TABLES:
            if table in rec.VENUE_TABLES:
                continue  # new in version 6, with their checksums from the start
            select = f"SELECT rowid, {', '.join(table.columns)}, NULL FROM {table.name}"
            sealed = [
                (rec.crc(table.name, _typed(table, row)), row[0])
                for row in db.execute(select).fetchall()
            ]
            db.executemany(f"UPDATE {table.name} SET crc=? WHERE rowid=?", sealed)
        if venue is not None:
            state_rows(venue).write(db)
            snapshot.venue = venue
        tally = json.dumps(snapshot.counts, sort_keys=True)
        db.execute(rec.upsert_sql(rec.SESSION), rec.seal(rec.SESSION, ("tally", tally)))
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    snapshot.meta["tally"] = tally
    snapshot.version = SCHEMA_VERSION


def _typed(table: rec.Table, row: tuple[object, ...]) -> tuple[rec.Value, ...]:
    return tuple(rec.typed(k, v) for k, v in zip(table.kinds, row[1:-1], strict=True))
