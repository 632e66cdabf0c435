"""How the host crosses into one strategy instance: the stock path and the fast path.

Both paths define the same imports (the ABI's ``env`` host functions and the
WASI functions of ``wasi.WasiHost``) and hand ``WasmStrategy`` the same
``GuestCalls``; they differ only in how a value crosses the boundary:

* stock: wasmtime-py's ``Func.__call__`` and ``Linker.define_func``, the
  slow, obvious reference;
* fast: ``fastcall``, wasmtime's unchecked C API (see its docstring for why
  that is sound).

Everything else (parsing requests, calling ``HostApi``, checking and
serializing responses, classifying failures, the WASI functions) is shared,
so both paths give the same answers; the tests run the same sessions on both
and compare.

Pointers and lengths from the guest are unsigned 32-bit values on both paths
(wasmtime-py hands i32 over signed; a negative "pointer" must never turn into
an address before guest memory).
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from google.protobuf.message import DecodeError, Message
from wasmtime import (
    Caller,
    ExitTrap,
    Func,
    FuncType,
    Instance,
    Linker,
    Memory,
    Store,
    Trap,
    TrapCode,
    ValType,
    WasmtimeError,
)

from kubetrade.runner.strategy import abi, fastcall
from kubetrade.runner.strategy.api import DISPATCH, RESPONSES, HostApi
from kubetrade.runner.strategy.budget import CallBudget, CallTimeout
from kubetrade.runner.strategy.scratch import ResponseArena
from kubetrade.runner.strategy.wasi import SIGNATURES, WasiHost
from kubetrade.runner.strategy.wire import Packed

if TYPE_CHECKING:
    from collections.abc import Callable

    from kubetrade.runner.strategy.fastcall import Slots

U32: Final = 0xFFFF_FFFF
U64: Final = 0xFFFF_FFFF_FFFF_FFFF
WASI_MODULE: Final = abi.WASI_MODULE
HOST_TYPE: Final = FuncType([ValType.i32(), ValType.i32()], [ValType.i64()])


def _wasi_type(kinds: str) -> FuncType:
    params = [ValType.i32() if k == "i" else ValType.i64() for k in kinds]
    return FuncType(params, [ValType.i32()])


# Per WASI function, the mask that makes each parameter unsigned (i32 or i64).
_WASI_MASKS: Final = {
    name: tuple(U32 if k == "i" else U64 for k in kinds) for name, kinds in SIGNATURES.items()
}


# -- failures --------------------------------------------------------------------------------


class HostTrap(Trap):
    """Raised inside a host function; both paths re-raise this very object from the export."""

    def __init__(self, function: str, reason: str) -> None:
        super().__init__(f"host function {function} failed: {reason}")
        self.function = function
        self.reason = reason


def is_interrupt(exc: BaseException) -> bool:
    """A timeout: wasm code interrupted at its epoch deadline, or host code that found the
    deadline passed (``CallTimeout``)."""
    return isinstance(exc, CallTimeout) or (
        isinstance(exc, Trap) and exc.trap_code == TrapCode.INTERRUPT
    )


def trap_summary(exc: BaseException) -> str:
    """wasmtime's message is a backtrace followed by 'Caused by: <reason>': keep the reason."""
    text = str(exc).strip()
    _, sep, cause = text.rpartition("Caused by:")
    return " ".join(cause.split()) if sep else text.splitlines()[0] if text else repr(exc)


def _host_failure(name: str, request_type: type[Message], exc: BaseException) -> BaseException:
    """What a host function's failure becomes: a HostTrap naming it, except for failures
    that must keep their identity (a timeout, an exit, KeyboardInterrupt and the like)."""
    if isinstance(exc, HostTrap) or not isinstance(exc, Exception):
        return exc
    if isinstance(exc, Trap | WasmtimeError):
        # The guest's malloc trapped. A timeout or exit keeps its own identity; a malloc
        # interrupted at the deadline is this host function's timeout.
        if isinstance(exc, ExitTrap | CallTimeout):
            return exc
        if is_interrupt(exc):
            return CallTimeout(f"host function {name}")
        return HostTrap(name, f"guest malloc trapped: {trap_summary(exc)}")
    if isinstance(exc, DecodeError):
        return HostTrap(name, f"cannot parse {request_type.__name__}: {exc}")
    return HostTrap(name, f"{type(exc).__name__}: {exc}")


# -- the host side ---------------------------------------------------------------------------


class GuestAccess(Protocol):
    """The calling guest, as a host function sees it: its memory and its malloc."""

    def read(self, ptr: int, length: int) -> bytes: ...

    def write(self, ptr: int, data: bytes) -> None: ...

    def malloc(self, size: int) -> int: ...


class HostSide:
    """What host callbacks touch, on either path.

    It holds no reference to the Store or the WasmStrategy: callbacks are kept in global
    tables (wasmtime-py's and fastcall's) until wasmtime finalizes them, and a reference
    back would keep the whole instance alive.
    """

    def __init__(
        self, api: HostApi, wasi: WasiHost, budget: CallBudget, *, arena_bytes: int = 0
    ) -> None:
        self.api: HostApi | None = api
        self.wasi = wasi
        # Its deadline bounds host time too: every host and WASI function checks it first.
        self.budget = budget
        self.arena = ResponseArena(arena_bytes)
        # Responses that took their own malloc during the current export call (freed after).
        self.responses: list[int] = []

    def server(self, name: str) -> Callable[[GuestAccess, int, int], int]:
        """The body of host function ``name``: returns the packed response (unsigned)."""
        request_type, method = DISPATCH[name]
        response_type = RESPONSES[name]
        handler: Callable[[Any], Message | Packed] | None = getattr(self.api, method, None)
        parse = request_type.FromString
        responses, arena, budget = self.responses, self.arena, self.budget
        where = f"host function {name}"

        def serve(guest: GuestAccess, ptr: int, length: int) -> int:
            try:
                budget.check(where)  # a guest calling slow host functions gets no more time
                if handler is None:
                    raise NotImplementedError(f"{type(self.api).__name__} has no method {method}")
                response = handler(parse(guest.read(ptr, length)))
                if type(response) is response_type:
                    data = response.SerializeToString()
                elif isinstance(response, Packed) and response.message is response_type:
                    data = response  # packed by hand on a hot path (wire.py)
                else:
                    raise TypeError(
                        f"{method}() returned {type(response).__name__}, "
                        f"expected {response_type.__name__}"
                    )
                if not data:
                    return 0  # an empty message: the guest reads (0, 0) as empty bytes
                out = arena.take(len(data), guest.malloc)
                if not out:
                    out = guest.malloc(len(data))
                    if not out:
                        raise MemoryError(f"guest malloc({len(data)}) returned 0")
                    responses.append(out)  # before writing, so it is freed even if that fails
                guest.write(out, data)
                return (out << 32) | len(data)
            except BaseException as exc:
                failure = _host_failure(name, request_type, exc)
                if failure is exc:
                    raise
                raise failure from exc

        return serve


@dataclass(slots=True)
class GuestCalls:
    """One instance, as ``WasmStrategy`` drives it from outside any callback.

    Pointers, lengths and packed results are unsigned. Failures raise wasmtime-py's
    ``Trap``/``WasmtimeError`` (or a host function's exception), memory accesses
    outside the guest IndexError.
    """

    malloc: Callable[[int], int]
    free: Callable[[int], None]
    exports: dict[str, Callable[[int, int], int]]  # the (ptr, len) -> packed exports
    read: Callable[[int, int], bytes]
    write: Callable[[int, bytes], None]
    set_deadline: Callable[[int], None]
    run: Callable[[str], None]  # a () -> () export
    run_i64: Callable[[str], int]  # a () -> i64 export


class CallPath(Protocol):
    fast: bool

    def define(self, linker: Linker) -> None:
        """Define the host's imports (WASI overrides and ``env``) on the linker."""

    def bind(self, store: Store, instance: Instance) -> GuestCalls:
        """Connect the callbacks to the instantiated module and return its calls."""

    def forget(self) -> None:
        """Drop the callbacks' state (the strategy is closed)."""


def _export(store: Store, instance: Instance, name: str) -> Func:
    func = instance.exports(store)[name]
    if not isinstance(func, Func):  # preflight checked every export's kind and signature
        raise TypeError(f"export {name!r} is not a function")
    return func


def _memory(store: Store, instance: Instance) -> Memory:
    memory = instance.exports(store)[abi.MEMORY]
    if not isinstance(memory, Memory):  # checked by preflight
        raise TypeError(f"export {abi.MEMORY!r} is not a memory")
    return memory


# -- the stock path --------------------------------------------------------------------------


def stock_read(store: Store | Caller, memory: Memory, ptr: int, length: int) -> bytes:
    """Bounds-checked; the base address is looked up on every access: malloc (ours or the
    guest's own) may grow and move linear memory at any time."""
    ptr, length = ptr & U32, length & U32
    size = memory.data_len(store)
    if ptr + length > size:
        raise IndexError(f"buffer [{ptr}, {ptr + length}) lies outside guest memory ({size} bytes)")
    if not length:
        return b""
    return ctypes.string_at(ctypes.addressof(memory.data_ptr(store).contents) + ptr, length)


def stock_write(store: Store | Caller, memory: Memory, ptr: int, data: bytes) -> None:
    ptr = ptr & U32
    size = memory.data_len(store)
    if ptr + len(data) > size:
        raise IndexError(
            f"guest malloc returned {ptr}, but {len(data)} bytes there overrun guest memory "
            f"({size} bytes)"
        )
    ctypes.memmove(ctypes.addressof(memory.data_ptr(store).contents) + ptr, data, len(data))


class _StockAccess:
    __slots__ = ("_caller", "_malloc", "_memory")

    def __init__(self, caller: Caller, memory: Memory, malloc: Func) -> None:
        self._caller, self._memory, self._malloc = caller, memory, malloc

    def read(self, ptr: int, length: int) -> bytes:
        return stock_read(self._caller, self._memory, ptr, length)

    def write(self, ptr: int, data: bytes) -> None:
        stock_write(self._caller, self._memory, ptr, data)

    def malloc(self, size: int) -> int:
        return int(self._malloc(self._caller, size)) & U32


class _StockState:
    """The callbacks' view on the stock path (no Store reference: see HostSide)."""

    def __init__(self) -> None:
        self.memory: Memory | None = None
        self.malloc: Func | None = None

    def access(self, caller: Caller, what: str) -> _StockAccess:
        if self.memory is None or self.malloc is None:
            raise HostTrap(what, "called before the module was instantiated")
        return _StockAccess(caller, self.memory, self.malloc)


class StockPath:
    """wasmtime-py's own calls and callbacks: the reference the fast path is tested against."""

    fast = False

    def __init__(self, host: HostSide) -> None:
        self._host = host
        self._state = _StockState()

    def define(self, linker: Linker) -> None:
        for name, kinds in SIGNATURES.items():
            linker.define_func(
                WASI_MODULE, name, _wasi_type(kinds), self._wasi(name), access_caller=True
            )
        for name in abi.HOST_FUNCTIONS:
            linker.define_func(
                abi.HOST_MODULE, name, HOST_TYPE, self._host_function(name), access_caller=True
            )

    def _wasi(self, name: str) -> Callable[..., int]:
        wasi, state, masks = self._host.wasi, self._state, _WASI_MASKS[name]
        budget, where = self._host.budget, f"WASI {name}"

        def wasi_function(caller: Caller, *args: int) -> int:
            budget.check(where)
            values = tuple(a & m for a, m in zip(args, masks, strict=True))
            return wasi.call(name, state.access(caller, name), values)

        return wasi_function

    def _host_function(self, name: str) -> Callable[[Caller, int, int], int]:
        serve, state = self._host.server(name), self._state

        def host_function(caller: Caller, ptr: int, length: int) -> int:
            return abi.to_i64(serve(state.access(caller, name), ptr & U32, length & U32))

        return host_function

    def bind(self, store: Store, instance: Instance) -> GuestCalls:
        memory = _memory(store, instance)
        malloc, free = _export(store, instance, abi.MALLOC), _export(store, instance, abi.FREE)
        self._state.memory, self._state.malloc = memory, malloc

        def export(name: str) -> Callable[[int, int], int]:
            func = _export(store, instance, name)
            return lambda ptr, length: int(func(store, ptr, length)) & U64

        return GuestCalls(
            malloc=lambda size: int(malloc(store, size)) & U32,
            free=lambda ptr: free(store, ptr),
            exports={name: export(name) for name in abi.STRATEGY_EXPORTS},
            read=functools.partial(stock_read, store, memory),
            write=functools.partial(stock_write, store, memory),
            set_deadline=store.set_epoch_deadline,
            run=lambda name: _export(store, instance, name)(store),
            run_i64=lambda name: int(_export(store, instance, name)(store)) & U64,
        )

    def forget(self) -> None:
        self._state.memory = self._state.malloc = None


# -- the fast path ---------------------------------------------------------------------------


class _FastAccess:
    """One callback's access to the guest; also the ``fastcall.Where`` of its accesses."""

    __slots__ = ("_caller", "_malloc", "_memory")

    def __init__(
        self, caller: int, memory: fastcall.RawMemory, malloc: Callable[[int, int], int]
    ) -> None:
        self._caller, self._memory, self._malloc = caller, memory, malloc

    def context(self) -> int:
        # Asked for only when wasmtime must be called (see fastcall.Where).
        return fastcall.caller_context(self._caller)

    def read(self, ptr: int, length: int) -> bytes:
        return self._memory.read(self, ptr, length)

    def write(self, ptr: int, data: bytes) -> None:
        self._memory.write(self, ptr, data)

    def malloc(self, size: int) -> int:
        # Re-enters the guest with the caller's context; may grow memory, which write()
        # notices when it writes beyond the size it saw last.
        return self._malloc(self.context(), size)


class _FastState:
    """The callbacks' view on the fast path (no Store reference: see HostSide)."""

    def __init__(self) -> None:
        self.memory: fastcall.RawMemory | None = None
        self.malloc: Callable[[int, int], int] | None = None

    def access(self, caller: int, what: str) -> _FastAccess:
        if self.memory is None or self.malloc is None:
            raise HostTrap(what, "called before the module was instantiated")
        return _FastAccess(caller, self.memory, self.malloc)


class FastPath:
    """wasmtime's unchecked C API through ``fastcall``."""

    fast = True

    def __init__(self, store: Store, host: HostSide) -> None:
        self._host = host
        self._state = _FastState()
        self._boundary = fastcall.Boundary(store)

    def define(self, linker: Linker) -> None:
        boundary = self._boundary
        for name, kinds in SIGNATURES.items():
            fastcall.define(
                linker, WASI_MODULE, name, _wasi_type(kinds), boundary, self._wasi(name)
            )
        for name in abi.HOST_FUNCTIONS:
            fastcall.define(
                linker, abi.HOST_MODULE, name, HOST_TYPE, boundary, self._host_function(name)
            )

    def _wasi(self, name: str) -> Callable[[int, Slots], None]:
        wasi, state, masks = self._host.wasi, self._state, _WASI_MASKS[name]
        budget, where = self._host.budget, f"WASI {name}"

        def wasi_function(caller: int, slots: Slots) -> None:
            budget.check(where)
            # Parameter k is in slot k (8-byte index 2k); wasmtime checked the import's type.
            values = tuple(slots[2 * k] & m for k, m in enumerate(masks))
            slots[0] = wasi.call(name, state.access(caller, name), values)

        return wasi_function

    def _host_function(self, name: str) -> Callable[[int, Slots], None]:
        serve, state = self._host.server(name), self._state

        def host_function(caller: int, slots: Slots) -> None:
            # (i32 ptr, i32 len) -> i64: the result overwrites slot 0.
            slots[0] = serve(state.access(caller, name), slots[0] & U32, slots[2] & U32)

        return host_function

    def bind(self, store: Store, instance: Instance) -> GuestCalls:
        boundary, context = self._boundary, self._boundary.context
        memory = fastcall.RawMemory(_memory(store, instance))
        outside = fastcall.Outside(context)
        malloc = fastcall.call_i32_to_i32(boundary, _export(store, instance, abi.MALLOC))
        free = fastcall.call_i32(boundary, _export(store, instance, abi.FREE))
        self._state.memory, self._state.malloc = memory, malloc
        exports: dict[str, Callable[[int, int], int]] = {
            name: functools.partial(
                fastcall.call_i32_i32_to_i64(boundary, _export(store, instance, name)), context
            )
            for name in abi.STRATEGY_EXPORTS
        }

        def run(name: str) -> None:
            fastcall.call_void(boundary, _export(store, instance, name))(context)

        def run_i64(name: str) -> int:
            return fastcall.call_to_i64(boundary, _export(store, instance, name))(context)

        return GuestCalls(
            malloc=functools.partial(malloc, context),
            free=functools.partial(free, context),
            exports=exports,
            read=functools.partial(memory.read, outside),
            write=functools.partial(memory.write, outside),
            set_deadline=boundary.deadline_setter(),
            run=run,
            run_i64=run_i64,
        )

    def forget(self) -> None:
        self._state.memory = self._state.malloc = None
        fastcall.forget(self._boundary)
