"""Moved: the journal lives in `kubetrade.runner.session` now, written by the Session alone.

What readers need stays importable from here until the layout change that groups
the runner's modules by role (issue 17, item 6): `Journal` is the read-only
journal a report opens (`JournalReader`), never the writer.
"""

from kubetrade.runner.session.journal import JournalReader as Journal
from kubetrade.runner.session.schema import SCHEMA_VERSION
from kubetrade.runner.session.verify import JournalError, Snapshot

__all__ = ["SCHEMA_VERSION", "Journal", "JournalError", "Snapshot"]
