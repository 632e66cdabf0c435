"""The session core: the one owner of a session's state, its rules and its journal.

`Session` (core.py) holds the book, the ledger, the risk state, the strategy's
cache and markers, and records every change to them in the `Journal`
(journal.py), which it alone writes. In the order an order meets them:

- risk.py: the pre-trade checks every order passes before any broker sees it;
- orders.py: orders sent to the venue once their intents are durable, and what the
  venue reports (fills, status changes) brought back in; after a restart it settles
  what the journal left open;
- book.py, ledger.py: every order and fill, and the cash and positions they move;
- journal.py: the durable record, with its schema and row checksums (schema.py,
  records.py), the check of every row on open (verify.py), the upgrade of older
  journals (migrate.py), the group-commit bounds (commit.py), rebuilding after a
  restart (restore.py) and disk errors said plainly (storage.py);
- venue.py: the paper venue's state, kept in the journal's venue tables and written
  in the session's transactions (legacy_venue.py reads the file older runners kept).

Keeping one runner per session: statedir.py locks the state directory, fencing.py
stops a runner that a newer epoch replaced; faults.py holds the crash points the
crash-restart tests arm.
"""

from kubetrade.runner.session.core import HostCallError, Resume, Session, client_order_id
from kubetrade.runner.session.journal import JOURNAL_FILE, Journal, JournalReader, open_journal
from kubetrade.runner.session.storage import StorageError
from kubetrade.runner.session.venue import VenueStore
from kubetrade.runner.session.verify import JournalError, Snapshot

__all__ = [
    "JOURNAL_FILE",
    "HostCallError",
    "Journal",
    "JournalError",
    "JournalReader",
    "Resume",
    "Session",
    "Snapshot",
    "StorageError",
    "client_order_id",
    "open_journal",
    "paper_venue_store",
]


def paper_venue_store(journal: Journal) -> VenueStore:
    """The paper venue's handle on its tables in `journal` (venue.py): the venue records
    its steps through it, and the session's commits write them."""
    return journal.venue_store()
