"""The hand-packed hot-path messages decode exactly as the protobuf runtime's own."""

from __future__ import annotations

import random

import pytest

from kubetrade.runner.domain import Bar, Position
from kubetrade.runner.strategy import wire
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
    Bar("LO", 0x1000_0000 * 1000, 1.0, 1.0, 1.0, 1.0, 1.0),  # the first five-byte second
    Bar("HI", (0x8_0000_0000 - 1) * 1000, 1.0, 1.0, 1.0, 1.0, 1.0),  # the last one
    Bar("", 1_704_067_260_000, 1.0, 1.0, 1.0, 1.0, 1.0),  # no symbol
]


@pytest.mark.parametrize("bar", EDGES, ids=[b.symbol[:8] + str(b.time) for b in EDGES])
def test_edge_bars_decode_like_the_runtimes_encoding(bar: Bar) -> None:
    decoded = pb.ProcessDataRequest.FromString(wire.process_data_request(bar))
    want = reference(bar)
    # NaN != NaN: compare the canonical serializations of both decoded messages.
    assert decoded.SerializeToString(deterministic=True) == want.SerializeToString(
        deterministic=True
    )


def test_random_bars_decode_like_the_runtimes_encoding() -> None:
    rng = random.Random(7)
    for _ in range(5_000):
        step = rng.choice([1, 1000])  # milliseconds, or whole seconds as most bars have
        bar = Bar(
            rng.choice(["BTCUSDT", "ETHUSDT", "SPY", "A"]),
            rng.randrange(-10**12, 10**14) // step * step,
            rng.uniform(-1e6, 1e6), rng.uniform(0, 1e6), rng.uniform(0, 1e6),
            rng.uniform(0, 1e6), rng.choice([0.0, rng.uniform(0, 1e9)]),
        )  # fmt: skip
        assert pb.ProcessDataRequest.FromString(wire.process_data_request(bar)) == reference(bar)


def reference_position(p: Position, name: str) -> pb.Position:
    seconds, ms = divmod(p.open_time, 1000)
    return pb.Position(
        symbol=p.symbol,
        quantity=p.quantity,
        total_in_quantity=p.total_in_quantity,
        total_out_quantity=p.total_out_quantity,
        total_in_amount=p.total_in_amount,
        total_out_amount=p.total_out_amount,
        total_in_fee=p.total_in_fee,
        total_out_fee=p.total_out_fee,
        open_timestamp={"seconds": seconds, "nanos": ms * 1_000_000},
        strategy_name=name,
    )


POSITION_EDGES = [
    (Position("BTCUSDT", 0.5, 42_000.0, 0.0, 1.0, 0.5, 42_000.0, 21_500.0, 42.0, 21.5,
              1_704_067_200_123), "sma-crossover"),
    (Position("ETHUSDT"), ""),  # flat, never traded: zeros, the epoch, no strategy name
    (Position("", -0.0, 0.0, 0.0, float("inf"), 5e-324, 1e308, float("nan"), 0.0, 0.0,
              -60_000), "ü" * 300),  # odd doubles, before 1970, a long UTF-8 name
]  # fmt: skip


@pytest.mark.parametrize(("position", "name"), POSITION_EDGES)
def test_edge_positions_decode_like_the_runtimes_encoding(position: Position, name: str) -> None:
    packed = wire.position(position, name)
    assert packed.message is pb.Position
    decoded = pb.Position.FromString(packed)
    assert decoded.SerializeToString(deterministic=True) == reference_position(
        position, name
    ).SerializeToString(deterministic=True)


def test_random_positions_decode_like_the_runtimes_encoding() -> None:
    rng = random.Random(11)
    for _ in range(5_000):
        position = Position(rng.choice(["BTCUSDT", "SPY"]))
        for name in ("quantity", "total_in_quantity", "total_out_quantity", "total_in_amount",
                     "total_out_amount", "total_in_fee", "total_out_fee"):  # fmt: skip
            setattr(position, name, rng.choice([0.0, rng.uniform(0, 1e7)]))
        position.open_time = rng.randrange(-(10**12), 10**14)
        name = rng.choice(["", "sma-crossover"])
        want = reference_position(position, name)
        assert pb.Position.FromString(wire.position(position, name)) == want


def test_a_list_of_positions_decodes_like_the_runtimes_encoding() -> None:
    held = [position for position, _ in POSITION_EDGES]
    packed = wire.positions(held, "sma-crossover")
    assert packed.message is pb.GetPositionsResponse
    want = pb.GetPositionsResponse(positions=[reference_position(p, "sma-crossover") for p in held])
    assert pb.GetPositionsResponse.FromString(packed).SerializeToString(
        deterministic=True
    ) == want.SerializeToString(deterministic=True)
    assert wire.positions([], "x") == b""  # none held: the empty message
