"""The application shell around the data path: the `kubetrade` command and what it shows.

- cli.py: the `kubetrade` console script: `run`, `report`, `schema`, `crd`, `strategy`
  (oci/command.py) and `operator` (which starts kubetrade.operator);
- session_file.py: a LiveTradingSession loaded from a file, a document or flags, with
  errors a user can act on (the operator loads documents through it too);
- assemble.py: a loaded session turned into a ready-to-run Engine, the one place that
  maps spec fields onto the parts;
- console.py: live progress on a terminal; logevents.py: the same events as JSON lines;
- server.py: the runner's HTTP endpoints (/healthz, /readyz, /metrics, /status);
- report.py: what a session did, from its journal; report_html.py: the same as one
  self-contained HTML page, with charts drawn by svg_chart.py.

Nothing here is on the bar path's import graph: the engine and the session never
import the shell. Nothing is imported here; import the module you need.
"""
