"""kubetrade's runner: everything a session needs to run, on a laptop or in a pod.

A bar travels stream -> window -> strategy -> risk -> broker -> journal, through these
folders:

    stream      marketdata/   one provider per feed: replay, synthetic, binance, polygon
    window      hostapi/      what the host functions answer from: the window of recent
                              bars, get_range's roll-ups, execute_sql, indicators/
    strategy    strategy/     the wasm sandbox that calls the strategy with each bar
    risk        session/      risk.py checks every order before any broker sees it
    broker      brokers/      one venue per module or subpackage: paper, ccxt/, ibkr/
    journal     session/      the session's state (book, ledger, orders) and its journal

engine.py drives that loop bar by bar and reports what happens as the typed events of
events.py; domain.py holds the types that flow through it unchanged (Bar, Order, Fill,
Position). Beside them: collector.py keeps the garbage collector off what a running
session holds for its whole life, and credentials.py loads the providers' secrets.

Around the data path: spec/ is the LiveTradingSession document, oci/ fetches strategies
from OCI registries, telemetry/ is what the runner reports about itself (metrics, log
format), and app/ is the application shell: the `kubetrade` command, the session file,
assembly of an engine, the console, the HTTP server and the report.
"""
