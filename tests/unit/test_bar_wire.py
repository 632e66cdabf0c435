"""The hand-packed ProcessDataRequest decodes exactly as the protobuf runtime's own."""

from __future__ import annotations

import random

import pytest

from kubetrade.runner.domain import Bar
from kubetrade.runner.strategy import bar_wire
from kubetrade.runner.strategy.pb import strategy_pb2 as pb


def reference(bar: Bar) -> pb.ProcessDataRequest:
    seconds, ms = divmod(bar.time, 1000)
    request = pb.ProcessDataRequest()
    data = request.data
    data.symbol = bar.symbol
    data.open, data.high, data.low, data.close = bar.open, bar.high, bar.low, bar.close
    data.volume = bar.volume
    data.time.seconds, data.time.nanos = seconds, ms * 1_000_000
    return request


EDGES = [
    Bar("BTCUSDT", 1_704_067_200_000, 42_000.5, 42_100.0, 41_900.25, 42_050.0, 12.5),
    Bar("BTCUSDT", 1_704_067_200_123, 0.0, 0.0, 0.0, 0.0, 0.0),  # zeros, milliseconds
    Bar("X", 0, 1.0, 2.0, 0.5, 1.5, 3.0),  # the epoch: no seconds, no nanos
    Bar("AAPL", 999, -0.0, 1e308, 5e-324, float("inf"), float("nan")),  # odd doubles
    Bar("EURUSD", 86_400_000 * 365 * 1200, 1.1, 1.2, 1.0, 1.15, 1e9),  # year 3170: 6 bytes
    Bar("OLD", 100_000_000, 1.0, 1.0, 1.0, 1.0, 1.0),  # 1973: a 4-byte varint
    Bar("NEG", -60_000, 1.0, 1.0, 1.0, 1.0, 1.0),  # before 1970: ten-byte varint
    Bar("Ü" * 200, 1_704_067_200_000, 1.0, 1.0, 1.0, 1.0, 1.0),  # a long UTF-8 symbol
]


@pytest.mark.parametrize("bar", EDGES, ids=[b.symbol[:8] + str(b.time) for b in EDGES])
def test_edge_bars_decode_like_the_runtimes_encoding(bar: Bar) -> None:
    decoded = pb.ProcessDataRequest.FromString(bar_wire.encode(bar))
    want = reference(bar)
    # NaN != NaN: compare the canonical serializations of both decoded messages.
    assert decoded.SerializeToString(deterministic=True) == want.SerializeToString(
        deterministic=True
    )


def test_random_bars_decode_like_the_runtimes_encoding() -> None:
    rng = random.Random(7)
    for _ in range(5_000):
        bar = Bar(
            rng.choice(["BTCUSDT", "ETHUSDT", "SPY", "A"]),
            rng.randrange(-10**12, 10**14),
            rng.uniform(-1e6, 1e6), rng.uniform(0, 1e6), rng.uniform(0, 1e6),
            rng.uniform(0, 1e6), rng.choice([0.0, rng.uniform(0, 1e9)]),
        )  # fmt: skip
        assert pb.ProcessDataRequest.FromString(bar_wire.encode(bar)) == reference(bar)
