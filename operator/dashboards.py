"""The Grafana dashboards, as code: one source for the JSON the chart ships.

    python -m kubetrade.operator.dashboards --out helm/kubetrade/dashboards

writes what the chart holds (tests/unit/test_dashboards.py fails when they differ).

Two dashboards: a fleet overview (sessions by phase, equity and PnL per session, errors,
lag, the operator's work) and a per-session drill-down (equity curve, drawdown, orders
and fills, latency percentiles, stream health). Plain Python builds Grafana's dashboard
JSON model (schemaVersion 39): the grafana-foundation-sdk is not on PyPI here, and the
model needed is small. `queries()` lists every panel's PromQL, so a test can run each one
against a real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

Obj = dict[str, Any]

SCHEMA_VERSION: Final = 39
DATASOURCE: Final = {"type": "prometheus", "uid": "${datasource}"}
# Every runner series is selected by these; "All" is the regex .* (local runs carry no
# namespace label, which .* matches too).
SEL: Final = 'namespace=~"$namespace", session=~"$session"'
RATE: Final = "$__rate_interval"


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(slots=True)
class Panel:
    title: str
    queries: Sequence[Query]
    kind: str = "timeseries"  # timeseries | stat | table | bargauge
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    options: Obj = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: Sequence[Panel]
    variables: Sequence[str] = ("namespace", "session")


def _quantiles(metric: str, title: str, description: str) -> Panel:
    return Panel(
        title,
        [
            Query(
                f"histogram_quantile({q}, sum by (namespace, session, le) "
                f"(rate({metric}_bucket{{{SEL}}}[{RATE}])))",
                f"p{round(q * 100)} {{{{session}}}}",
            )
            for q in (0.5, 0.9, 0.99)
        ],
        unit="s",
        description=description,
    )


FLEET: Final = Dashboard(
    uid="kubetrade-fleet",
    title="kubetrade / fleet",
    description="Every session at a glance: phases, money, errors, lag, and the operator.",
    panels=[
        Panel(
            "Sessions by phase",
            [Query("sum by (phase) (kubetrade_operator_sessions)", "{{phase}}")],
            kind="bargauge",
            width=8,
            height=6,
            description="LiveTradingSessions the operator serves, by status.phase.",
        ),
        Panel(
            "Runners ready",
            [Query(f"sum(kubetrade_ready{{{SEL}}})", "ready")],
            kind="stat",
            width=4,
            height=6,
        ),
        Panel(
            "Risk halts in force",
            [Query(f"sum(kubetrade_risk_halted{{{SEL}}})", "halted")],
            kind="stat",
            width=4,
            height=6,
        ),
        Panel(
            "Operator",
            [
                Query(
                    f"sum by (result) (rate(kubetrade_operator_reconciliations_total[{RATE}]))",
                    "reconciliations {{result}}",
                ),
                Query("sum(kubetrade_operator_queue_depth)", "queue depth"),
            ],
            width=8,
            height=6,
            description="Reconciliations per second by result, and those waiting their turn.",
        ),
        Panel(
            "Equity per session",
            [Query(f"kubetrade_equity{{{SEL}}}", "{{namespace}}/{{session}}")],
            unit="currencyUSD",
        ),
        Panel(
            "PnL per session (realized + unrealized)",
            [
                Query(
                    f"kubetrade_realized_pnl{{{SEL}}} + kubetrade_unrealized_pnl{{{SEL}}}",
                    "{{namespace}}/{{session}}",
                )
            ],
            unit="currencyUSD",
        ),
        Panel(
            "Drawdown",
            [Query(f"kubetrade_drawdown_ratio{{{SEL}}}", "{{namespace}}/{{session}}")],
            unit="percentunit",
        ),
        Panel(
            "Strategy errors and order rejections per second",
            [
                Query(
                    f"sum by (namespace, session) "
                    f"(rate(kubetrade_strategy_errors_total{{{SEL}}}[{RATE}]))",
                    "errors {{namespace}}/{{session}}",
                ),
                Query(
                    f"sum by (namespace, session, reason) "
                    f"(rate(kubetrade_order_rejections_total{{{SEL}}}[{RATE}]))",
                    "rejected {{reason}} {{namespace}}/{{session}}",
                ),
            ],
            unit="ops",
        ),
        Panel(
            "Stream lag (bar close to processed)",
            [Query(f"kubetrade_stream_lag_seconds{{{SEL}}}", "{{namespace}}/{{session}}")],
            unit="s",
        ),
        Panel(
            "Seconds since the last bar",
            [
                Query(
                    f"time() - kubetrade_last_bar_processed_timestamp_seconds{{{SEL}}}",
                    "{{namespace}}/{{session}}",
                )
            ],
            unit="s",
            description="A stalled stream climbs here; the KubetradeStreamStalled alert "
            "fires past twice the bar interval plus a grace.",
        ),
    ],
)

SESSION: Final = Dashboard(
    uid="kubetrade-session",
    title="kubetrade / session",
    description="One session in detail: money, orders, latency and its market data stream.",
    panels=[
        Panel(
            "Equity",
            [
                Query(f"kubetrade_equity{{{SEL}}}", "equity {{session}}"),
                Query(f"kubetrade_cash{{{SEL}}}", "cash {{session}}"),
                Query(f"kubetrade_equity_peak{{{SEL}}}", "peak {{session}}"),
            ],
            unit="currencyUSD",
            width=16,
        ),
        Panel(
            "Drawdown",
            [Query(f"kubetrade_drawdown_ratio{{{SEL}}}", "{{session}}")],
            unit="percentunit",
            width=8,
        ),
        Panel(
            "PnL and fees",
            [
                Query(f"kubetrade_realized_pnl{{{SEL}}}", "realized {{session}}"),
                Query(f"kubetrade_unrealized_pnl{{{SEL}}}", "unrealized {{session}}"),
                Query(f"kubetrade_fees_total{{{SEL}}}", "fees {{session}}"),
            ],
            unit="currencyUSD",
        ),
        Panel(
            "Positions (notional)",
            [Query(f"kubetrade_position_notional{{{SEL}}}", "{{symbol}} {{session}}")],
            unit="currencyUSD",
        ),
        Panel(
            "Orders and fills",
            [
                Query(
                    f"sum by (session, side, status) "
                    f"(increase(kubetrade_orders_total{{{SEL}}}[{RATE}]))",
                    "{{side}} {{status}} {{session}}",
                ),
                Query(f"increase(kubetrade_fills_total{{{SEL}}}[{RATE}])", "fills {{session}}"),
            ],
        ),
        Panel(
            "Rejections by reason",
            [
                Query(
                    f"sum by (session, reason) "
                    f"(increase(kubetrade_order_rejections_total{{{SEL}}}[{RATE}]))",
                    "{{reason}} {{session}}",
                ),
                Query(f"kubetrade_risk_halted{{{SEL}}}", "risk halted {{session}}"),
            ],
        ),
        _quantiles(
            "kubetrade_tick_to_order_seconds",
            "Tick to order",
            "From the bar handed to the strategy to the broker receiving the order.",
        ),
        _quantiles(
            "kubetrade_strategy_call_duration_seconds",
            "Strategy call duration",
            "The strategy's ProcessData call on each bar, in the wasm sandbox.",
        ),
        _quantiles(
            "kubetrade_journal_commit_duration_seconds",
            "Journal commit",
            "Each journal transaction, its fsync included (with a state directory).",
        ),
        Panel(
            "Strategy errors, traps and timeouts",
            [
                Query(
                    f"increase(kubetrade_strategy_{kind}_total{{{SEL}}}[{RATE}])",
                    f"{kind} {{{{session}}}}",
                )
                for kind in ("errors", "traps", "timeouts", "restarts")
            ],
        ),
        Panel(
            "Stream: lag and bars",
            [
                Query(f"kubetrade_stream_lag_seconds{{{SEL}}}", "processing lag {{session}}"),
                Query(
                    f"kubetrade_marketdata_lag_seconds{{{SEL}}}",
                    "feed lag {{provider}} {{session}}",
                ),
                Query(
                    f"sum by (session) (rate(kubetrade_bars_total{{{SEL}}}[{RATE}]))",
                    "bars/s {{session}}",
                ),
            ],
            unit="s",
        ),
        Panel(
            "Stream health",
            [
                Query(f"kubetrade_marketdata_connected{{{SEL}}}", "connected {{provider}}"),
                *(
                    Query(
                        f"increase(kubetrade_marketdata_{name}_total{{{SEL}}}[{RATE}])",
                        f"{name.replace('_', ' ')} {{{{provider}}}}",
                    )
                    for name in (
                        "reconnects",
                        "malformed_frames",
                        "duplicate_bars",
                        "backfilled_bars",
                    )
                ),
            ],
        ),
        Panel(
            "Build",
            [Query(f"kubetrade_build_info{{{SEL}}}", "{{version}} abi {{abi}} {{image}}")],
            kind="table",
            width=24,
            height=5,
        ),
    ],
)

DASHBOARDS: Final = (FLEET, SESSION)


def _variables(dashboard: Dashboard) -> list[Obj]:
    out: list[Obj] = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        }
    ]
    queries = {
        "namespace": 'label_values(kubetrade_build_info{component="runner"}, namespace)',
        "session": 'label_values(kubetrade_build_info{namespace=~"$namespace"}, session)',
    }
    for name in dashboard.variables:
        out.append(
            {
                "name": name,
                "label": name,
                "type": "query",
                "datasource": DATASOURCE,
                "query": {"query": queries[name], "refId": f"{name}-values"},
                "definition": queries[name],
                "refresh": 2,
                "includeAll": True,
                "allValue": ".*",
                "multi": True,
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "sort": 1,
                "hide": 0,
            }
        )
    return out


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> Obj:
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": panel.options,
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": DATASOURCE,
                "expr": query.expr,
                "legendFormat": query.legend,
                "range": panel.kind == "timeseries",
                "instant": panel.kind != "timeseries",
            }
            for index, query in enumerate(panel.queries)
        ],
    }


def render(dashboard: Dashboard) -> Obj:
    """Grafana's dashboard JSON model of `dashboard`; panels flow left to right in rows."""
    panels = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append(_panel(panel, panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["kubetrade"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": _variables(dashboard)},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def file_name(dashboard: Dashboard) -> str:
    return f"{dashboard.uid}.json"


def rendered() -> dict[str, str]:
    """File name -> the JSON text, as the chart holds it."""
    return {
        file_name(d): json.dumps(render(d), indent=2, ensure_ascii=False) + "\n" for d in DASHBOARDS
    }


def queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard uid, panel title, PromQL) for every query of every panel."""
    for dashboard in DASHBOARDS:
        for panel in dashboard.panels:
            for query in panel.queries:
                yield dashboard.uid, panel.title, query.expr


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kubetrade.operator.dashboards", description="write the dashboards' JSON"
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        (args.out / name).write_text(text)
        print(f"wrote {args.out / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
