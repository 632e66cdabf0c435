"""The session core: the one owner of a session's state, and its journal.

`Session` (core.py) holds the book, the ledger, the risk state, the strategy's
cache and markers, and records every change to them in the `Journal`
(journal.py), which it alone writes. Around them: the journal's schema and row
checksums (schema.py, records.py), the check of every row on open (verify.py),
the upgrade of older journals (migrate.py), the group-commit bounds
(commit.py), rebuilding after a restart (restore.py) and disk errors said
plainly (storage.py).
"""

from kubetrade.runner.session.core import HostCallError, Resume, Session, client_order_id
from kubetrade.runner.session.journal import JOURNAL_FILE, Journal, JournalReader, open_journal
from kubetrade.runner.session.storage import StorageError
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
]
