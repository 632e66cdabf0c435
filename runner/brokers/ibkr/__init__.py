"""Interactive Brokers through TWS or IB Gateway (ibkr-paper, ibkr-live), with ib_async.

broker.py is the Broker; contracts.py says which contract a session symbol means and
its trading rules, orders.py turns IB's news about our orders into OrderUpdate and
Fill events.

Nothing is imported here: ib_async loads only when a session uses this provider.
"""
