"""Trading through ccxt: Binance spot (binance-paper, binance-live), or any exchange ccxt
supports (the `ccxt` provider).

broker.py is the Broker and says what happens to an order; around it: which exchange
and endpoints (venue.py), one client whose requests are classified and retried when
safe (client.py), what each ccxt failure means and redaction (errors.py), orders as the
broker follows them (orders.py) and the account in the engine's terms (account.py). The
market's trading rules are checked before sending by brokers/venue_rules.py.

Nothing is imported here: the ccxt library loads only when a session uses this provider.
"""
