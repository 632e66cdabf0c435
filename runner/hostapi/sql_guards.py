"""Caps on the DuckDB functions that make a huge value out of a small query.

DuckDB's ``memory_limit`` covers its buffer manager (sorts, hash tables,
materialized results), not the vectors an expression builds: ``SELECT
repeat('x', 1e9)`` allocated 2 GB beyond a 256 MB limit and, being one call of
one function, could not be interrupted for 7.5 s. These macros shadow the
string functions whose result size is a parameter (``repeat``, ``lpad``,
``rpad``) or a product of their inputs (``replace``) and raise an error before
the call when the result could exceed ``MAX_RESULT_CHARS``; the built-in
still does the work (``system.main.<name>``). Queries may only be SELECTs, so a
strategy cannot drop or redefine them.

The list builders are capped the same way at ``MAX_LIST_ELEMENTS``:
``range`` and ``generate_series`` as scalars (``len(range(2e8))`` took 122 s
and GBs, uninterruptible; as table functions, ``FROM range(...)``, they stream
and stay interruptible, so they are left alone), counting integer and
timestamp ranges alike, and ``list_resize``/``array_resize``.

Not covered: any other function whose result outgrows its input. Only running
DuckDB in a process of its own, with its own memory limit, bounds those; see
the note in ``sql``.
"""

from __future__ import annotations

from typing import Final

#: Longer than any text a strategy has a use for; the answer is capped at 16 Mi characters too.
MAX_RESULT_CHARS: Final = 16 * 1024 * 1024


def _too_long(name: str) -> str:
    return f"error('{name}(): the result would be longer than {MAX_RESULT_CHARS} characters')"


#: More elements than a strategy's window of bars has a use for.
MAX_LIST_ELEMENTS: Final = 1_000_000


def _elements(a: str, b: str, step: str) -> str:
    """How many elements range(a, b, step) makes: numbers, or timestamps by an interval."""
    return (
        f"coalesce(abs(try_cast({b} AS DOUBLE) - try_cast({a} AS DOUBLE))"
        f" / nullif(abs(try_cast({step} AS DOUBLE)), 0),"
        f" abs(epoch_us(try_cast({b} AS TIMESTAMP)) - epoch_us(try_cast({a} AS TIMESTAMP)))"
        f" / nullif(abs(epoch(try_cast({step} AS INTERVAL))) * 1e6, 0), 0)"
    )


def _capped(name: str, count: str, argument: str) -> str:
    """`argument`, or an error when the list would hold more than MAX_LIST_ELEMENTS."""
    return (
        f"CASE WHEN {count} > {MAX_LIST_ELEMENTS} THEN error('{name}(): more than"
        f" {MAX_LIST_ELEMENTS} elements') ELSE {argument} END"
    )


def _series(name: str) -> str:
    return (
        f"CREATE MACRO {name}(a) AS system.main.{name}"
        f"({_capped(name, 'try_cast(a AS DOUBLE)', 'a')}),"
        f" (a, b) AS system.main.{name}(a, {_capped(name, _elements('a', 'b', '1'), 'b')}),"
        f" (a, b, s) AS system.main.{name}(a, b, {_capped(name, _elements('a', 'b', 's'), 's')})"
    )


def _resize(name: str) -> str:
    return (
        f"CREATE MACRO {name}(l, n) AS system.main.{name}(l, {_capped(name, 'n', 'n')}),"
        f" (l, n, v) AS system.main.{name}(l, {_capped(name, 'n', 'n')}, v)"
    )


MACROS: Final = (
    _series("range"),
    _series("generate_series"),
    _resize("list_resize"),
    _resize("array_resize"),
    # The count is replaced by an error when the result would be too long (NULLs pass).
    f"CREATE MACRO repeat(s, n) AS system.main.repeat(s, CASE WHEN n > 0 AND length(s) * n > "
    f"{MAX_RESULT_CHARS} THEN {_too_long('repeat')} ELSE n END)",
    f"CREATE MACRO lpad(s, n, p) AS system.main.lpad(s, CASE WHEN n > {MAX_RESULT_CHARS} "
    f"THEN {_too_long('lpad')} ELSE n END, p)",
    f"CREATE MACRO rpad(s, n, p) AS system.main.rpad(s, CASE WHEN n > {MAX_RESULT_CHARS} "
    f"THEN {_too_long('rpad')} ELSE n END, p)",
    # Each match of a may become b: at most length(s) / length(a) times.
    f"CREATE MACRO replace(s, a, b) AS system.main.replace(s, a, CASE WHEN length(s) * "
    f"length(b) > {MAX_RESULT_CHARS} * greatest(length(a), 1) THEN {_too_long('replace')} "
    "ELSE b END)",
)
