"""The ABI's packing rules and name tables, checked against the proto itself."""

from __future__ import annotations

import re

import pytest
from google.protobuf.empty_pb2 import Empty

from kubetrade.runner.strategy import HostApi, abi
from kubetrade.runner.strategy.api import DISPATCH, RESPONSES
from kubetrade.runner.strategy.pb import strategy_pb2 as pb


def _snake(rpc: str) -> str:
    # GetRange -> get_range, ExecuteSQL -> execute_sql
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", rpc).lower()


def test_pack_places_pointer_high_and_length_low() -> None:
    assert abi.pack(0x1234, 0x56) == 0x0000_1234_0000_0056
    assert abi.unpack(0x0000_1234_0000_0056) == abi.Packed(ptr=0x1234, length=0x56, is_error=False)


def test_error_bit_is_bit_31_of_the_length() -> None:
    packed = abi.pack(8, 5, is_error=True)
    assert packed & 0xFFFF_FFFF == (1 << 31) | 5
    assert abi.unpack(packed) == abi.Packed(ptr=8, length=5, is_error=True)


def test_high_pointers_round_trip_through_signed_i64() -> None:
    # wasmtime returns i64 results signed: a pointer with bit 31 set makes the value negative.
    packed = abi.pack(0xFFFF_FFF0, 3)
    assert packed < 0
    assert abi.unpack(packed) == abi.Packed(ptr=0xFFFF_FFF0, length=3, is_error=False)
    # The unsigned spelling of the same bits unpacks identically.
    assert abi.unpack(packed + (1 << 64)) == abi.unpack(packed)


def test_zero_is_an_empty_response() -> None:
    assert abi.unpack(0) == abi.Packed(ptr=0, length=0, is_error=False)


@pytest.mark.parametrize(("ptr", "length"), [(-1, 0), (1 << 32, 0), (0, 1 << 31), (0, -1)])
def test_pack_refuses_values_that_do_not_fit(ptr: int, length: int) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        abi.pack(ptr, length)


def test_host_functions_mirror_the_strategy_api_service() -> None:
    service = pb.DESCRIPTOR.services_by_name["StrategyApi"]
    expected = {_snake(m.name): m for m in service.methods}
    assert set(abi.HOST_FUNCTIONS) == set(expected) == set(DISPATCH) == set(RESPONSES)
    assert len(abi.HOST_FUNCTIONS) == 21
    for name, method in expected.items():
        request_type, handler = DISPATCH[name]
        assert request_type.DESCRIPTOR.full_name == method.input_type.full_name, name
        assert RESPONSES[name].DESCRIPTOR.full_name == method.output_type.full_name, name
        assert handler == name
        assert callable(getattr(HostApi, handler)), name


def test_strategy_exports_mirror_the_trading_strategy_service() -> None:
    service = pb.DESCRIPTOR.services_by_name["TradingStrategy"]
    expected = {f"trading_strategy_{_snake(m.name)}" for m in service.methods}
    assert set(abi.STRATEGY_EXPORTS) == expected


def test_empty_requests_use_the_well_known_empty() -> None:
    assert DISPATCH["get_positions"][0] is Empty
    assert RESPONSES["place_order"] is Empty
    assert abi.API_VERSION == 1
