"""What the runner reports about itself: Prometheus metrics and the format of its logs.

- metrics.py: a session's metrics, kept as plain numbers on the bar path and turned
  into series when Prometheus scrapes;
- metrics_session.py: what the session itself holds (account, positions, drawdown,
  risk, journal commits), read at scrape time;
- histogram.py: a histogram cheap enough for the bar path (also timing journal commits);
- build_info.py: `kubetrade_build_info`, which kubetrade, ABI and image a process runs;
- logformat.py: console or JSON log lines, every one passed through the redactor
  (the operator logs through it too).

Nothing is imported here; import the module you need.
"""
