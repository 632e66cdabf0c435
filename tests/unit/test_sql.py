"""execute_sql: DuckDB over the window, read-only, bound parameters, limits, Go-style text."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from kubetrade.runner.domain import Bar, datetime_to_ms
from kubetrade.runner.hostapi.sql import SqlEngine, SqlError, SqlLimits, go_float, go_time
from kubetrade.runner.hostapi.window import Window
from kubetrade.runner.session import HostCallError, Session
from kubetrade.runner.session.risk import RiskGate, RiskLimits
from kubetrade.runner.strategy.functions import HostFunctions
from kubetrade.runner.strategy.pb import strategy_pb2 as pb

MIN = 60_000
T0 = datetime_to_ms(datetime(2024, 3, 4, tzinfo=UTC))


def bars(symbol: str, n: int, base: float) -> list[Bar]:
    return [
        Bar(symbol, T0 + i * MIN, base + i, base + i + 1, base + i - 1, base + i, 10)
        for i in range(n)
    ]


@pytest.fixture
def window() -> Window:
    w = Window(size=100)
    for btc, eth in zip(bars("BTC", 10, 100.0), bars("ETH", 10, 50.0), strict=True):
        w.append(btc)
        w.append(eth)
    return w


@pytest.fixture
def sql(window: Window) -> Iterator[SqlEngine]:
    engine = SqlEngine(window)
    yield engine
    engine.close()


def test_market_data_table_has_the_documented_schema(sql: SqlEngine) -> None:
    [row] = sql.execute(
        "SELECT typeof(time) t, typeof(symbol) s, typeof(open) o, typeof(high) h,"
        " typeof(low) l, typeof(close) c, typeof(volume) v FROM market_data LIMIT 1",
        [],
    )
    assert row == {"t": "TIMESTAMP", "s": "VARCHAR", **dict.fromkeys("ohlcv", "DOUBLE")}
    first = sql.execute("SELECT * FROM market_data LIMIT 2", [])
    assert first == [  # rows in (time, symbol) order
        {"time": "2024-03-04 00:00:00 +0000 UTC", "symbol": "BTC", "open": "100", "high": "101",
         "low": "99", "close": "100", "volume": "10"},
        {"time": "2024-03-04 00:00:00 +0000 UTC", "symbol": "ETH", "open": "50", "high": "51",
         "low": "49", "close": "50", "volume": "10"},
    ]  # fmt: skip


def window_rows(window: Window) -> list[dict[str, str]]:
    """What `SELECT time, symbol, close FROM market_data` must give for the window."""
    rows = [b for symbol in window.series for b in window.bars(symbol)]
    if len(window.series) > 1:
        rows.sort(key=lambda b: (b.time, b.symbol))
    return [
        {"time": go_time(b.time * 1_000_000), "symbol": b.symbol, "close": go_float(b.close)}
        for b in rows
    ]


@pytest.mark.parametrize("symbols", [("BTC",), ("ETH", "BTC", "AAA")])
@pytest.mark.parametrize("every", [1, 7, 25])
def test_market_data_follows_the_window(symbols: tuple[str, ...], every: int) -> None:
    # A window of 10 bars per symbol slides on every bar; a query every `every` bars sees it
    # whole (after 25 bars none of the rows the last query saw is left).
    window = Window(size=10)
    sql = SqlEngine(window)
    query = "SELECT time, symbol, close FROM market_data"
    try:
        for i in range(200):
            for k, symbol in enumerate(symbols):
                close = 100 + i + k / 4
                window.append(Bar(symbol, T0 + i * MIN, close, close + 1, close - 1, close, 1))
                if (i * len(symbols) + k) % every == 0:
                    assert sql.execute(query, []) == window_rows(window), (i, symbol)
        # A bar out of time order, then an ordinary one: what the window says, as it says it.
        for time in (T0 + 150 * MIN, T0 + 201 * MIN):
            window.append(Bar(symbols[0], time, 1, 2, 0.5, 1.5, 1))
            assert sql.execute(query, []) == window_rows(window)
    finally:
        sql.close()


def test_parameters_are_bound_never_spliced(sql: SqlEngine) -> None:
    query = (
        "SELECT symbol, avg(close) AS mean, count(*) AS n FROM market_data"
        " WHERE symbol = ? GROUP BY symbol"
    )
    assert sql.execute(query, ["ETH"]) == [{"symbol": "ETH", "mean": "54.5", "n": "10"}]
    assert sql.execute(query, ["ETH' OR '1'='1"]) == []
    since = "SELECT count(*) AS n FROM market_data WHERE time >= $1 AND close > $2"
    assert sql.execute(since, ["2024-03-04 00:05:00", "100"]) == [{"n": "5"}]  # BTC 105..109
    with pytest.raises(SqlError, match="query failed"):
        sql.execute("SELECT * FROM market_data WHERE symbol = ?", [])


def test_new_bars_are_visible_to_the_next_query(window: Window, sql: SqlEngine) -> None:
    assert sql.execute("SELECT max(close) AS m FROM market_data WHERE symbol = 'BTC'", []) == [
        {"m": "109"}
    ]
    window.append(Bar("BTC", T0 + 10 * MIN, 110, 120, 100, 115.25, 1))
    assert sql.execute("SELECT max(close) AS m FROM market_data WHERE symbol = 'BTC'", []) == [
        {"m": "115.25"}
    ]


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO market_data VALUES (now(), 'X', 1, 1, 1, 1, 1)",
        "DELETE FROM market_data",
        "CREATE TABLE t AS SELECT * FROM market_data",
        "SELECT 1; SELECT 2",
        "COPY market_data TO '/tmp/out.csv'",
        "ATTACH '/tmp/other.db'",
        "SET threads = 8",
        "PRAGMA version",
        "INSTALL httpfs",
        "",
    ],
)
def test_only_a_single_select_is_accepted(sql: SqlEngine, query: str) -> None:
    with pytest.raises(SqlError, match="only a single SELECT statement is allowed"):
        sql.execute(query, [])


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM query('CREATE TABLE t (a INT)')",
    ],
)
def test_a_select_cannot_reach_files_or_run_other_statements(sql: SqlEngine, query: str) -> None:
    with pytest.raises(SqlError, match="query failed"):
        sql.execute(query, [])


def test_a_long_query_is_interrupted_and_the_engine_carries_on(window: Window) -> None:
    sql = SqlEngine(window, SqlLimits(timeout_s=0.2))
    try:
        with pytest.raises(SqlError, match=r"ran longer than 0\.2 s"):
            sql.execute("SELECT count(*) FROM range(100000000000) a, range(1000) b", [])
        assert sql.execute("SELECT count(*) AS n FROM market_data", []) == [{"n": "20"}]
    finally:
        sql.close()


def test_too_many_rows_is_an_error_not_a_silent_cut(window: Window) -> None:
    sql = SqlEngine(window, SqlLimits(max_rows=5))
    try:
        with pytest.raises(SqlError, match="more than 5 rows"):
            sql.execute("SELECT * FROM market_data", [])
        assert len(sql.execute("SELECT * FROM market_data LIMIT 5", [])) == 5
    finally:
        sql.close()
    sql = SqlEngine(window, SqlLimits(max_result_chars=1000))
    try:
        with pytest.raises(SqlError, match="result exceeds 1000 characters"):
            sql.execute("SELECT repeat('x', 1001) AS x", [])
        with pytest.raises(SqlError, match="Out of Memory"):
            # past 256MB after ~300,000 rows of 1 KB: a fraction of the 1 s time limit
            sql.execute("SELECT list(repeat('x', 1000)) AS l FROM range(10000000)", [])
    finally:
        sql.close()


def test_invalid_sql_names_the_problem(sql: SqlEngine) -> None:
    with pytest.raises(SqlError, match="invalid SQL"):
        sql.execute("SELEC * FROM market_data", [])
    with pytest.raises(SqlError, match=r"query failed: .*nope"):
        sql.execute("SELECT nope FROM market_data", [])


def test_values_are_formatted_as_argo_tradings_go_host_prints_them(sql: SqlEngine) -> None:
    [row] = sql.execute(
        "SELECT NULL AS n, true AS b, 42 AS i, 1234567::DOUBLE AS big, 1e-5::DOUBLE AS tiny,"
        " 2.5::DECIMAL(5,2) AS d,"
        " TIMESTAMP '2024-03-04 00:00:01.5' AS ts, TIMESTAMPTZ '2024-03-04 02:00:00+02' AS tz,"
        " DATE '2024-03-04' AS day, 'x' AS s",
        [],
    )
    assert row == {
        "n": "<nil>",
        "b": "true",
        "i": "42",
        "big": "1.234567e+06",
        "tiny": "1e-05",
        "d": "2.50",
        "ts": "2024-03-04 00:00:01.5 +0000 UTC",
        "tz": "2024-03-04 00:00:00 +0000 UTC",
        "day": "2024-03-04 00:00:00 +0000 UTC",
        "s": "x",
    }


def test_types_python_cannot_read_exactly_are_converted_in_sql(sql: SqlEngine) -> None:
    # A TIMESTAMPTZ (Python would need pytz), nanoseconds (Python's datetime stops at the
    # microsecond) and intervals (Python folds months into days) are converted in SQL;
    # the query is wrapped, so a trailing semicolon or comment must not break it.
    [row] = sql.execute(
        "SELECT TIMESTAMP_NS '2024-03-04 00:00:01.123456789' AS ns,"
        " TIMESTAMPTZ '1969-12-31 23:00:00-01' AS tz, TIME '12:30:00.25' AS t,"
        " INTERVAL '14 months -3 days 1.5 seconds' AS i, NULL::INTERVAL AS none,"
        " [TIMESTAMPTZ '2024-03-04 00:00:00+00'] AS nested; -- a comment",
        [],
    )
    assert row == {
        "ns": "2024-03-04 00:00:01.123456789 +0000 UTC",
        "tz": "1970-01-01 00:00:00 +0000 UTC",
        "t": "0001-01-01 12:30:00.25 +0000 UTC",
        "i": "MonthDayNano(months=14, days=-3, nanoseconds=1500000000)",
        "none": "<nil>",
        "nested": "['2024-03-04 00:00:00+00']",
    }
    ordered = sql.execute(
        "SELECT TIMESTAMPTZ '2024-03-04 00:00:00+00' + INTERVAL (range) HOUR AS t"
        " FROM range(3) ORDER BY range DESC;",
        [],
    )
    assert [r["t"][11:13] for r in ordered] == ["02", "01", "00"]
    with pytest.raises(SqlError, match="out of range"):
        sql.execute("SELECT TIMESTAMP '10000-01-01' AS t", [])


def test_a_call_may_shorten_the_time_budget(sql: SqlEngine) -> None:
    with pytest.raises(SqlError, match=r"ran longer than 0\.1 s"):
        sql.execute("SELECT count(*) FROM range(100000000000) a, range(1000) b", [], timeout_s=0.1)


def test_go_float_matches_go_fmt_v() -> None:
    # Expected strings printed by Go 1.x's fmt.Sprintf("%v", float64(x)).
    cases = {
        62000.0: "62000",
        61917.84: "61917.84",
        0.1: "0.1",
        1e-05: "1e-05",
        0.0001: "0.0001",
        123456789.0: "1.23456789e+08",
        1e20: "1e+20",
        1e21: "1e+21",
        12345678.9: "1.23456789e+07",
        float("inf"): "+Inf",
        float("nan"): "NaN",
        2.5e-07: "2.5e-07",
        100.0: "100",
        1e6: "1e+06",
        123456.0: "123456",
        -61917.84: "-61917.84",
        -0.0: "-0",
    }
    for value, text in cases.items():
        assert go_float(value) == text, value
    assert go_time(0) == "1970-01-01 00:00:00 +0000 UTC"


def test_host_execute_sql_returns_rows_and_traps_errors() -> None:
    state = Session.create(
        session="t",
        symbols=("BTC",),
        initial_cash=10_000,
        risk=RiskGate(limits=RiskLimits(), symbols=frozenset({"BTC"})),
        window_size=100,
        precision=8,
    )
    for bar in bars("BTC", 3, 100.0):
        state.begin_bar(bar)
    functions = HostFunctions(state)
    response = functions.execute_sql(
        pb.ExecuteSQLRequest(
            query="SELECT close FROM market_data WHERE close > ? ORDER BY time", params=["100"]
        )
    )
    assert [dict(r.fields) for r in response.results] == [{"close": "101"}, {"close": "102"}]
    with pytest.raises(HostCallError, match="execute_sql: only a single SELECT"):
        functions.execute_sql(pb.ExecuteSQLRequest(query="DROP TABLE market_data"))
