"""`kubetrade report DIR --html OUT`: one self-contained HTML page of what a session did.

The page holds the summary figures (the very ones `kubetrade report --json` prints, each
cell carrying its exact value in `data-value`), the equity curve, the drawdown, each
symbol's trades marked on its price, and a table of the trades. Charts are inline SVG
drawn here (svg_chart.py): no script, nothing fetched, so the file opens anywhere.

The journal keeps the equity after every bar but only each symbol's last close, so the
price line is drawn through the prices the session traded at, ending at that last close.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Final

from kubetrade.runner.app.report import Report
from kubetrade.runner.app.svg_chart import Chart, Markers, Point
from kubetrade.runner.domain import Fill, Side, format_ms
from kubetrade.runner.session import JournalReader

_BUY: Final = "#1a7f37"
_SELL: Final = "#cf222e"
_MAX_TRADE_ROWS: Final = 2000  # the newest; a long session's table would dwarf the page

_STYLE: Final = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1000px;
       color: #1f2328; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: #59636e; margin-bottom: 16px; }
table { border-collapse: collapse; } td, th { padding: 3px 10px; text-align: right; }
th { background: #f6f8fa; } tr:nth-child(even) td { background: #f6f8fa; }
.figures td:first-child, .figures th:first-child { text-align: left; }
.figures { min-width: 420px; } .trades { width: 100%; font-size: 13px; }
.pos { color: #1a7f37; } .neg { color: #cf222e; }
figure { margin: 12px 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
.legend { font-weight: 400; margin-left: 16px; color: #59636e; }
.key { margin-right: 12px; } .key i { display: inline-block; width: 10px; height: 10px;
       margin-right: 4px; border-radius: 2px; }
.axis { font-size: 11px; fill: #59636e; } .empty { color: #59636e; }
"""


def _money(value: float) -> str:
    return f"{value:+,.2f}"


def _figures(report: Report) -> list[tuple[str, str, object, str]]:
    """(field of Report, label, exact value, as shown)."""
    pct: Callable[[float | None], str] = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    return [
        ("orders", "orders", report.orders, str(report.orders)),
        ("fills", "fills", report.fills, str(report.fills)),
        ("round_trips", "round trips", report.round_trips, str(report.round_trips)),
        ("realized_pnl", "realized PnL", report.realized_pnl, _money(report.realized_pnl)),
        ("unrealized_pnl", "unrealized PnL", report.unrealized_pnl, _money(report.unrealized_pnl)),
        ("fees", "fees", report.fees, f"{report.fees:,.2f}"),
        ("win_rate", "win rate", report.win_rate, pct(report.win_rate)),
        ("max_drawdown", "max drawdown", report.max_drawdown, f"{report.max_drawdown:,.2f}"),
        (
            "max_drawdown_pct",
            "max drawdown %",
            report.max_drawdown_pct,
            f"{report.max_drawdown_pct:.2%}",
        ),
        (
            "sharpe",
            "Sharpe",
            report.sharpe,
            "-" if report.sharpe is None else f"{report.sharpe:.2f}",
        ),
        (
            "final_equity",
            "final equity",
            report.final_equity,
            "-" if report.final_equity is None else f"{report.final_equity:,.2f}",
        ),
    ]


def _data_value(value: object) -> str:
    return "null" if value is None else repr(value)


def _drawdown(curve: list[Point]) -> list[Point]:
    """The fall from the running peak after each bar, as a negative fraction."""
    out: list[Point] = []
    peak = float("-inf")
    for t, equity in curve:
        peak = max(peak, equity)
        out.append((t, -(peak - equity) / peak if peak > 0 else 0.0))
    return out


def _trades_chart(symbol: str, fills: list[Fill], last: tuple[int, float] | None) -> str:
    mine = [f for f in fills if f.symbol == symbol]
    line: list[Point] = [(f.time, f.price) for f in mine]
    if last is not None and (not line or last[0] >= line[-1][0]):
        line.append(last)
    chart = Chart(f"{symbol}: trades on price", unit=lambda v: f"{v:,.6g}")
    chart.line("price traded at (and last close)", "#57606a", line)
    chart.mark(Markers([(f.time, f.price) for f in mine if f.side is Side.BUY], _BUY, True, "buy"))
    chart.mark(
        Markers([(f.time, f.price) for f in mine if f.side is Side.SELL], _SELL, False, "sell")
    )
    return chart.svg()


def _trades_table(fills: list[Fill]) -> str:
    shown = fills[-_MAX_TRADE_ROWS:]
    note = (
        f"<p class=sub>the newest {len(shown)} of {len(fills)} trades</p>"
        if len(shown) < len(fills)
        else ""
    )
    rows = []
    for f in shown:
        pnl_class = "pos" if f.realized_pnl > 0 else "neg" if f.realized_pnl < 0 else ""
        side_class = "pos" if f.side is Side.BUY else "neg"
        rows.append(
            "<tr>"
            f"<td>{format_ms(f.time)}</td><td>{html.escape(f.symbol)}</td>"
            f"<td class={side_class}>{f.side}</td><td>{f.quantity:g}</td>"
            f"<td>{f.price:,.8g}</td><td>{f.fee:,.4f}</td>"
            f"<td class='{pnl_class}'>{_money(f.realized_pnl) if f.realized_pnl else ''}</td>"
            f"<td>{html.escape(f.client_order_id)}</td>"
            "</tr>"
        )
    return (
        note + "<table class=trades id=trades><thead><tr><th>time (UTC)</th><th>symbol</th>"
        "<th>side</th><th>quantity</th><th>price</th><th>fee</th><th>realized PnL</th>"
        "<th>order</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def render_html(journal: JournalReader, report: Report) -> str:
    """The page for the session whose journal is open, with its figures `report`."""
    snapshot = journal.snapshot()
    curve = journal.equity_curve()
    fills = sorted(snapshot.fills, key=lambda f: (f.time, f.fill_id))
    title = f"kubetrade session {report.session}"
    figures = "".join(
        f'<tr><th>{label}</th><td data-figure="{name}" data-value="{_data_value(value)}">'
        f"{html.escape(shown)}</td></tr>"
        for name, label, value, shown in _figures(report)
    )
    initial = journal.initial_cash()
    equity = Chart("Equity").line("equity after each bar", "#0969da", curve)
    if initial is not None and curve:
        equity.line("initial cash", "#8c959f", [(curve[0][0], initial), (curve[-1][0], initial)])
    drawdown = Chart("Drawdown", unit=lambda v: f"{v:.1%}")
    drawdown.fill = True
    drawdown.line("below the running peak", _SELL, _drawdown(curve))
    symbols = sorted({f.symbol for f in fills} | set(snapshot.prices))
    prices = snapshot.prices
    trades = "".join(_trades_chart(s, fills, prices.get(s)) for s in symbols)
    period = f"{report.first_bar or '-'} .. {report.last_bar or '-'}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<div class=sub>bars {html.escape(period)} · epoch {journal.epoch} ·
from {html.escape(str(journal.path))}</div>
<h2>Summary</h2>
<table class=figures id=figures>{figures}</table>
<h2>Equity and drawdown</h2>
{equity.svg()}
{drawdown.svg()}
<h2>Trades</h2>
{trades or '<p class="empty">no trades</p>'}
{_trades_table(fills)}
</body></html>
"""
