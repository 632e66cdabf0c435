"""`kubetrade report STATE_DIR`: what a session did, from its journal.

Figures:
- trades: fills; round trips are counted at closing (selling) fills;
- realized PnL: sum of the fills' realized PnL (fees excluded, as in the ledger);
- unrealized PnL: open positions marked at each symbol's last journaled close;
- fees: sum of fill fees;
- win rate: closing fills with realized PnL > 0, over all closing fills;
- max drawdown: the largest fall of the per-bar equity curve from its running peak,
  in currency and as a fraction of that peak;
- Sharpe: mean over sample standard deviation of per-bar equity returns, times
  the square root of the number of such bars in a 365-day year (zero risk-free rate).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import statistics
import typing
from dataclasses import asdict, dataclass
from pathlib import Path

from kubetrade.runner.domain import Fill, Mark, Order, Side, format_ms
from kubetrade.runner.session import JournalReader
from kubetrade.runner.session.ledger import Ledger

_YEAR_MS = 365 * 86_400_000


@dataclass(frozen=True, slots=True)
class Report:
    session: str
    orders: int
    fills: int
    round_trips: int
    realized_pnl: float
    unrealized_pnl: float
    fees: float
    win_rate: float | None
    max_drawdown: float
    max_drawdown_pct: float
    sharpe: float | None
    final_equity: float | None
    first_bar: str | None
    last_bar: str | None


def build_report(journal: JournalReader) -> Report:
    snapshot = journal.snapshot()
    ledger = Ledger(cash=0.0)
    closing = []
    for fill in snapshot.fills:
        ledger.apply(fill)
        if fill.side is Side.SELL:
            closing.append(fill.realized_pnl)
    prices = journal.prices()
    unrealized = sum(
        p.unrealized_pnl(prices.get(s, p.average_cost))
        for s, p in ledger.positions.items()
        if p.quantity
    )
    curve = journal.equity_curve()
    drawdown, drawdown_pct = max_drawdown([e for _, e in curve])
    return Report(
        session=journal.session_name(),
        orders=len(snapshot.orders),
        fills=len(snapshot.fills),
        round_trips=len(closing),
        realized_pnl=sum(f.realized_pnl for f in snapshot.fills),
        unrealized_pnl=unrealized,
        fees=sum(f.fee for f in snapshot.fills),
        win_rate=sum(1 for pnl in closing if pnl > 0) / len(closing) if closing else None,
        max_drawdown=drawdown,
        max_drawdown_pct=drawdown_pct,
        sharpe=sharpe_ratio(curve),
        final_equity=curve[-1][1] if curve else None,
        first_bar=format_ms(curve[0][0]) if curve else None,
        last_bar=format_ms(curve[-1][0]) if curve else None,
    )


def max_drawdown(equity: list[float]) -> tuple[float, float]:
    peak = -math.inf
    worst, worst_pct = 0.0, 0.0
    for value in equity:
        peak = max(peak, value)
        fall = peak - value
        if fall > worst:
            worst, worst_pct = fall, fall / peak if peak > 0 else 0.0
    return worst, worst_pct


def sharpe_ratio(curve: list[tuple[int, float]]) -> float | None:
    if len(curve) < 3:
        return None
    returns = [b / a - 1 for (_, a), (_, b) in itertools.pairwise(curve) if a]
    spread = statistics.stdev(returns) if len(returns) > 1 else 0.0
    if spread == 0:
        return None
    bar_ms = min(b - a for (a, _), (b, _) in itertools.pairwise(curve))
    return statistics.fmean(returns) / spread * math.sqrt(_YEAR_MS / bar_ms)


def format_report(report: Report) -> str:
    def money(value: float) -> str:
        return f"{value:+.2f}"

    rows = [
        ("session", report.session),
        ("bars", f"{report.first_bar or '-'} .. {report.last_bar or '-'}"),
        ("orders", str(report.orders)),
        ("fills", str(report.fills)),
        ("round trips", str(report.round_trips)),
        ("realized PnL", money(report.realized_pnl)),
        ("unrealized PnL", money(report.unrealized_pnl)),
        ("fees", f"{report.fees:.2f}"),
        ("win rate", "-" if report.win_rate is None else f"{report.win_rate:.1%}"),
        ("max drawdown", f"{report.max_drawdown:.2f} ({report.max_drawdown_pct:.2%})"),
        ("Sharpe", "-" if report.sharpe is None else f"{report.sharpe:.2f}"),
        ("final equity", "-" if report.final_equity is None else f"{report.final_equity:.2f}"),
    ]
    return "\n".join(f"{name:<16}{value}" for name, value in rows)


def export(journal: JournalReader, directory: Path, fmt: str) -> list[Path]:
    """Write orders, fills and marks as CSV or Parquet files; return their paths."""
    snapshot = journal.snapshot()
    tables: dict[str, tuple[type, list[dict[str, object]]]] = {
        "orders": (Order, [asdict(o) for o in snapshot.orders]),
        "fills": (Fill, [asdict(f) for f in snapshot.fills]),
        "marks": (Mark, [asdict(m) for m in snapshot.marks]),
    }
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (kind, rows) in tables.items():
        rows = [{k: (str(v) if hasattr(v, "value") else v) for k, v in r.items()} for r in rows]
        path = directory / f"{name}.{fmt}"
        if fmt == "parquet":
            _write_parquet(path, kind, rows)
        else:
            with path.open("w", newline="") as handle:
                fields = list(rows[0]) if rows else []
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
        written.append(path)
    return written


def _write_parquet(path: Path, kind: type, rows: list[dict[str, object]]) -> None:
    """`rows` of the dataclass `kind` as Parquet: a column per field, typed by its annotation."""
    import duckdb  # imported on first use: only a Parquet export needs it

    hints = typing.get_type_hints(kind)
    columns = ", ".join(
        f'"{field.name}" {_sql_type(hints[field.name])}' for field in dataclasses.fields(kind)
    )
    with duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    ) as con:
        con.execute(f"CREATE TABLE export ({columns})")
        if rows:
            appender = con.appender("export")
            appender.append_rows([tuple(row.values()) for row in rows])
            appender.flush()
        con.execute("COPY export TO ? (FORMAT parquet)", [str(path)])


def _sql_type(hint: object) -> str:
    """The DuckDB type of a field annotated `hint` (X | None is a nullable X)."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if len(args) == 1:
        hint = args[0]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        fields = ", ".join(
            f'"{field.name}" {_sql_type(hints[field.name])}' for field in dataclasses.fields(hint)
        )
        return f"STRUCT({fields})"
    for python, sql in ((bool, "BOOLEAN"), (str, "VARCHAR"), (int, "BIGINT"), (float, "DOUBLE")):
        if isinstance(hint, type) and issubclass(hint, python):  # str covers the StrEnums
            return sql
    raise TypeError(f"no Parquet column type for {hint!r}")
