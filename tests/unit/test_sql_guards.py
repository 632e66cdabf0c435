"""execute_sql cannot build a gigabyte value in one function call, and a query gets no more
time than what is left of the strategy call."""

from __future__ import annotations

import time

import pytest

from kubetrade.runner.hostapi.sql import SqlEngine, SqlError
from kubetrade.runner.hostapi.window import Window


def test_sql_that_builds_a_gigabyte_value_is_refused_at_once() -> None:
    # Before: 2 GB of RSS beyond DuckDB's memory limit and 7.5 s, not interruptible.
    engine = SqlEngine(Window(size=10))
    started = time.monotonic()
    for query in (
        "SELECT repeat('x', 1000000000) AS s",
        "SELECT length(lpad('x', 1000000000, 'y')) AS n",
        "SELECT length(rpad('x', 1000000000, 'y')) AS n",
        "SELECT replace(repeat('x', 1000000), 'x', repeat('y', 1000)) AS s",
    ):
        with pytest.raises(SqlError, match="would be longer than 16777216 characters"):
            engine.execute(query, [])
    assert time.monotonic() - started < 2.0
    # The functions still do their work within the cap.
    assert engine.execute(
        "SELECT repeat('ab', 3) AS s, lpad('7', 3, '0') AS p, rpad('7', 2, '.') AS q,"
        " replace('a-b', '-', '+') AS r, repeat([1], 2) AS l",
        [],
    ) == [{"s": "ababab", "p": "007", "q": "7.", "r": "a+b", "l": "[1, 1]"}]
    engine.close()


def test_a_query_gets_no_more_than_what_is_left_of_the_call() -> None:
    engine = SqlEngine(Window(size=10))
    started = time.monotonic()
    with pytest.raises(SqlError, match=r"ran longer than 0\.3 s"):
        engine.execute(
            "SELECT sum(a.range * b.range) AS s FROM range(100000) a, range(100000) b",
            [],
            timeout_s=0.3,
        )
    assert time.monotonic() - started < 0.9
    engine.close()


def test_sql_that_builds_a_huge_list_is_refused_at_once() -> None:
    # Before: len(range(2e8)) took 122 s and GBs, uninterruptible (one scalar call).
    engine = SqlEngine(Window(size=10))
    for query in (
        "SELECT len(range(200000000)) AS n",
        "SELECT len(range(0, 200000000)) AS n",
        "SELECT len(range(0, 200000000, 1)) AS n",
        "SELECT len(generate_series(200000000)) AS n",
        "SELECT len(range(TIMESTAMP '2000-01-01', TIMESTAMP '2100-01-01', INTERVAL 1 SECOND)) AS n",
        "SELECT len(list_resize([1], 200000000)) AS n",
        "SELECT len(array_resize([1], 200000000, 0)) AS n",
    ):
        with pytest.raises(SqlError, match="more than 1000000 elements"):
            engine.execute(query, [])
    # Within the cap they still work, timestamps and negative steps included; as a table
    # function range() streams and stays under the call deadline instead.
    assert engine.execute(
        "SELECT len(range(10)) AS a, len(range(10, 0, -1)) AS b, len(generate_series(0, 10, 2))"
        " AS c, len(range(TIMESTAMP '2024-01-01', TIMESTAMP '2024-01-02', INTERVAL 1 HOUR)) AS d,"
        " len(list_resize([1], 3)) AS e, (SELECT count(*) FROM range(5)) AS f",
        [],
    ) == [{"a": "10", "b": "10", "c": "6", "d": "24", "e": "3", "f": "5"}]
    engine.close()
