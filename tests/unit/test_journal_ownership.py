"""Only the session writes the journal: no module but the Session's and the journal's own.

The Session (runner/session/core.py) is the one owner of a session's state and
records every change in the journal itself. This reads every runner module and
fails if one outside runner/session/ calls a method only the journal's writer
has, imports the writer, or uses SQLite at all (which could open the journal
file behind the session's back). The paper venue's state lives in the journal's
venue tables (session/venue.py): the venue records its steps through the store
the session package hands it, and only the session's commits write them.
"""

from __future__ import annotations

import ast
from pathlib import Path

from kubetrade.runner.session.journal import Journal, JournalReader

RUNNER = Path(__file__).resolve().parents[2] / "runner"
SESSION = RUNNER / "session"
# The Session and its journal: the modules that may write it. The session's rules that
# live beside them (risk, orders, book, ledger, fencing, statedir, faults) are checked
# like every other module.
JOURNAL_OWNERS = {
    SESSION / f"{name}.py"
    for name in (
        "__init__", "core", "commit", "journal", "legacy_venue", "migrate", "records", "restore",
        "schema", "storage", "venue", "verify",
    )
}  # fmt: skip
SQLITE_ALLOWED: set[Path] = set()

# What only the writer can do; the reader's methods (snapshot, prices, ...) are open to all.
WRITER_ONLY = {
    name
    for name in set(dir(Journal)) - set(dir(JournalReader))
    if not name.startswith("_") and callable(getattr(Journal, name))
}


def modules() -> list[Path]:
    return [p for p in sorted(RUNNER.rglob("*.py")) if p not in JOURNAL_OWNERS]


def test_the_session_rules_beside_the_journal_are_checked_too() -> None:
    checked = set(modules())
    assert {SESSION / "orders.py", SESSION / "risk.py", SESSION / "book.py"} <= checked
    assert all(owner.exists() for owner in JOURNAL_OWNERS), "a journal module was renamed"


def violations(path: Path, source: str | None = None) -> list[str]:
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(RUNNER.parent)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and node.attr in WRITER_ONLY:
            found.append(f"{where} calls the journal writer's {node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "kubetrade.runner.session"
        ):
            found += [
                f"{where} imports the journal writer"
                for alias in node.names
                if alias.name == "Journal"
            ]
        elif isinstance(node, ast.Import | ast.ImportFrom) and path not in SQLITE_ALLOWED:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            found += [f"{where} imports sqlite3" for n in names if n and n.startswith("sqlite3")]
    return found


def test_the_writer_has_methods_to_guard() -> None:
    assert {"record_order", "record_fill", "commit_records", "check_epoch"} <= WRITER_ONLY


def test_no_module_outside_the_session_writes_the_journal() -> None:
    found = [v for path in modules() for v in violations(path)]
    assert found == []


def test_the_check_sees_a_module_that_would() -> None:
    # The check itself: a module doing each forbidden thing is caught.
    source = (
        "import sqlite3\n"
        "from kubetrade.runner.session import Journal\n"
        "def f(journal):\n"
        "    journal.record_fill(None)\n"
        "    journal.commit_records()\n"
    )
    found = violations(RUNNER / "rogue.py", source)
    assert len(found) == 4, found
