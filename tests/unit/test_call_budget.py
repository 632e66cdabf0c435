"""What one strategy call may make the host spend: the call deadline covers time inside
host functions and WASI calls, and host functions cap what a strategy makes the host keep
(orders, log lines and marks per call; marks and the cache per session)."""

from __future__ import annotations

import logging
import time

import pytest
from hostile import module, repeat

from kubetrade.runner.domain import Bar
from kubetrade.runner.session import Session
from kubetrade.runner.session.risk import RiskGate, RiskLimits
from kubetrade.runner.strategy import SandboxLimits, StrategyError, WasmStrategy
from kubetrade.runner.strategy import budget as caps
from kubetrade.runner.strategy.functions import HostFunctions
from kubetrade.runner.strategy.pb import strategy_pb2 as pb

BAR = Bar(symbol="BTC", time=1_704_067_200_000, open=1, high=2, low=0.5, close=1.5, volume=1)


def _call(body: str, api: object, *, timeout_s: float = 5.0, **data: bytes) -> StrategyError:
    strategy = WasmStrategy(
        module(data=data, process_data=body),
        api,  # type: ignore[arg-type]
        limits=SandboxLimits(call_timeout_s=timeout_s),
    )
    with pytest.raises(StrategyError) as info:
        strategy.process_data(BAR)
    strategy.close()
    return info.value


# -- the deadline covers host time -----------------------------------------------------------


class SlowApi:
    def __init__(self) -> None:
        self.calls = 0

    def get_range(self, request: pb.GetRangeRequest) -> pb.GetRangeResponse:
        self.calls += 1
        time.sleep(0.1)
        return pb.GetRangeResponse()


def test_slow_host_calls_end_the_call_at_its_deadline() -> None:
    # 30 host calls of 0.1 s in a row, with no loop between them: wasm code never checks
    # its epoch deadline, so before, the call ran 3 s at a 0.3 s timeout, with no error.
    api = SlowApi()
    request = pb.GetRangeRequest(symbol="BTC").SerializeToString()
    started = time.monotonic()
    error = _call("(drop (call $get_range {ptr:r} {len:r}))" * 30, api, timeout_s=0.3, r=request)
    assert time.monotonic() - started < 0.8
    assert api.calls < 8
    assert error.trapped and error.host_function is None  # a timeout: the instance is replaced
    assert "exceeded 0.3s and was stopped inside host function get_range" in str(error)
    assert "(spec.engine.strategyCallTimeoutSeconds)" in str(error)


class SlowHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(0.05)


def test_wasi_calls_check_the_deadline_too() -> None:
    handler = SlowHandler()
    logger = logging.getLogger("kubetrade.strategy")
    logger.addHandler(handler)
    try:
        write = (
            "(i32.store (i32.const 65536) {ptr:line}) (i32.store (i32.const 65540) {len:line})"
            "(drop (call $fd_write (i32.const 2) (i32.const 65536) (i32.const 1)"
            " (i32.const 131072)))"
        )
        started = time.monotonic()
        error = _call(write * 40, object(), timeout_s=0.3, line=b"a line\n")
    finally:
        logger.removeHandler(handler)
    assert time.monotonic() - started < 1.0  # not 40 x 50 ms
    assert "stopped inside WASI fd_write" in str(error)


# -- host functions cap what the host keeps -------------------------------------------------------


def _session() -> Session:
    return Session.create(
        session="t",
        symbols=("BTC",),
        initial_cash=10_000,
        risk=RiskGate(limits=RiskLimits(), symbols=frozenset({"BTC"})),
        window_size=10,
        precision=8,
    )


def _hoard(name: str, request: bytes, times: int) -> tuple[StrategyError, HostFunctions]:
    functions = HostFunctions(_session())
    body = repeat(f"(drop (call ${name} {{ptr:r}} {{len:r}}))", times)
    return _call(body, functions, r=request), functions


def test_orders_per_call_are_capped() -> None:
    order = pb.ExecuteOrder(
        symbol="BTC", side=pb.PURCHASE_TYPE_BUY, order_type=pb.ORDER_TYPE_MARKET, quantity=1
    )
    error, functions = _hoard("place_order", order.SerializeToString(), 1000)
    assert f"more than {caps.MAX_ORDERS_PER_CALL} orders in one strategy call" in str(error)
    assert len(functions._state.book.orders) == caps.MAX_ORDERS_PER_CALL
    many = pb.PlaceMultipleOrdersRequest(orders=[order] * 101).SerializeToString()
    error, functions = _hoard("place_multiple_orders", many, 1)
    assert "more than 100 orders" in str(error) and not functions._state.book.orders


def test_log_lines_and_their_size_are_capped() -> None:
    line = pb.LogRequest(message="x" * 100, fields={"k": "v"}).SerializeToString()
    error, _ = _hoard("log", line, 1000)
    assert f"more than {caps.MAX_LOG_LINES_PER_CALL} log lines" in str(error)
    big = pb.LogRequest(message="x" * 30_000).SerializeToString()
    error, _ = _hoard("log", big, 5)
    assert f"more than {caps.MAX_LOG_BYTES_PER_CALL} bytes of log text" in str(error)
    fields = pb.LogRequest(fields={str(i): "v" for i in range(40)}).SerializeToString()
    error, _ = _hoard("log", fields, 1)
    assert "a log line with 40 fields" in str(error)


def test_marks_are_capped_per_call_in_size_and_per_session() -> None:
    mark = pb.MarkRequest(mark=pb.Mark(title="t")).SerializeToString()
    error, functions = _hoard("mark", mark, 1000)
    assert f"more than {caps.MAX_MARKS_PER_CALL} marks" in str(error)
    assert len(functions._state.marks) == caps.MAX_MARKS_PER_CALL
    big = pb.MarkRequest(mark=pb.Mark(message="x" * 5000)).SerializeToString()
    error, _ = _hoard("mark", big, 1)
    assert "a mark of 5003 bytes" in str(error)
    # Each call may add 20 marks, for ever; the session keeps 10,000.
    functions = HostFunctions(_session())
    strategy = WasmStrategy(
        module(data={"r": mark}, process_data=repeat("(drop (call $mark {ptr:r} {len:r}))", 20)),
        functions,
    )
    for _ in range(caps.MAX_MARKS // caps.MAX_MARKS_PER_CALL):
        strategy.process_data(BAR)
    with pytest.raises(StrategyError, match="already holds 10000 marks"):
        strategy.process_data(BAR)
    assert len(functions._state.marks) == caps.MAX_MARKS
    strategy.close()


def test_the_cache_is_capped_in_keys_values_and_total() -> None:
    value = "v" * caps.MAX_CACHE_VALUE_CHARS
    functions = HostFunctions(_session())
    for i in range(caps.MAX_CACHE_CHARS // caps.MAX_CACHE_VALUE_CHARS - 1):
        functions.set_cache(pb.SetRequest(key=f"k{i}", value=value))
    with pytest.raises(Exception, match="would hold more than 16777216 characters"):
        functions.set_cache(pb.SetRequest(key="one-more", value=value))
    functions.set_cache(pb.SetRequest(key="k0", value="small"))  # replacing frees room
    functions.set_cache(pb.SetRequest(key="one-more", value=value))
    with pytest.raises(Exception, match="cache key of 2000 characters"):
        functions.set_cache(pb.SetRequest(key="k" * 2000, value=""))


def test_the_per_call_counts_start_over_with_each_call() -> None:
    line = pb.LogRequest(message="x").SerializeToString()
    functions = HostFunctions(_session())
    strategy = WasmStrategy(
        module(data={"r": line}, process_data=repeat("(drop (call $log {ptr:r} {len:r}))", 60)),
        functions,
    )
    for _ in range(5):  # 60 lines a call, 300 in all: each call within its 100
        strategy.process_data(BAR)
    strategy.close()
