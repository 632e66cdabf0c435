"""The Python bindings are generated from strategies/proto/strategy.proto and match it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import ROOT

from kubetrade.runner.strategy.pb import strategy_pb2 as pb


def test_committed_bindings_match_a_fresh_generation(tmp_path: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "gen-proto.sh"), str(tmp_path)], check=True)
    for name in ("strategy_pb2.py", "strategy_pb2.pyi"):
        committed = (ROOT / "runner" / "strategy" / "pb" / name).read_text()
        assert (tmp_path / name).read_text() == committed, (
            f"{name} is stale: run scripts/gen-proto.sh"
        )


def test_abi_field_numbers_that_strategies_depend_on() -> None:
    # Wire compatibility with existing strategies rests on these numbers.
    def numbers(message: type) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]

    assert numbers(pb.MarketData) == {
        "symbol": 1, "high": 2, "low": 3, "open": 4, "close": 5, "volume": 6, "time": 7,
    }  # fmt: skip
    assert numbers(pb.ExecuteOrder) == {
        "id": 1, "symbol": 2, "side": 3, "order_type": 4, "reason": 5, "price": 6,
        "strategy_name": 7, "quantity": 8, "take_profit": 9, "stop_loss": 10,
        "position_type": 11,
    }  # fmt: skip
    assert numbers(pb.AccountInfo) == {
        "balance": 1, "equity": 2, "buying_power": 3, "realized_pnl": 4,
        "unrealized_pnl": 5, "total_fees": 6, "margin_used": 7,
    }  # fmt: skip
    methods = [m.name for m in pb.DESCRIPTOR.services_by_name["StrategyApi"].methods]
    assert len(methods) == 21
    assert pb.OrderStatus.Name(4) == "ORDER_STATUS_FAILED"
    assert pb.IndicatorType.Name(14) == "INDICATOR_PSY"
