"""What the host functions answer from: the session's recent bars and what is computed on them.

The strategy calls host functions (strategy/functions.py); these are their back ends, in
the order a bar meets them:

- window.py: the per-symbol sliding window of recent bars; every bar is appended here;
- rollup.py: get_range's interval aggregation, the window's bars rolled up into coarser
  bars (marketdata/aggregate.py is another thing: it builds bars from a feed's parts);
- sql.py: execute_sql, read-only DuckDB queries over the window, with the caps on
  DuckDB's functions in sql_guards.py;
- indicators/: configure_indicator and get_signal, computed over the window.

Nothing is imported here; import the module you need.
"""
