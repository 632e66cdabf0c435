"""The fast path across the wasm boundary: wasmtime's unchecked C API through ctypes.

wasmtime-py's ``Func.__call__`` looks up the function's type, allocates typed
values and converts every argument and result on each call (about 20 µs);
its host-function trampoline does the same in the other direction. This
module calls the same C library (the very ``libwasmtime`` wasmtime-py loaded,
so handles from wasmtime-py objects are valid here) through the *unchecked*
entry points, which take untyped ``wasmtime_val_raw_t`` slots:

* ``wasmtime_func_call_unchecked`` with an argument array allocated once per
  function, and results read in place;
* ``wasmtime_linker_define_func_unchecked`` with one shared C trampoline that
  finds the Python callback by an integer key;
* ``wasmtime_memory_data``/``wasmtime_memory_data_size`` for guest memory.

Why this is sound (the C API leaves these to the embedder):

* Types. "Unchecked" means wasmtime trusts the slots to match the function's
  type. Every export called here has had its exact signature checked when the
  module was loaded (``modules.compile_checked``), and each call helper below is made
  for one signature. For host functions wasmtime itself checks, at link time,
  that the guest's import has the type the function was defined with, so a
  callback reads exactly the parameters its type declares.
* Slots. One ``wasmtime_val_raw_t`` is 16 bytes; parameters occupy slots
  0..n-1 and results overwrite slots from 0. Arrays are sized
  max(params, results). Values are little-endian in the low bytes of a slot
  (wasmtime's documented layout; checked at import below), so an i32 is read
  as the low 32 bits and written as a zero-extended 64-bit value.
* Re-entrancy. wasmtime reads the arguments when a call starts and writes the
  results when it returns, so a nested call (a host function calling the
  guest's malloc) cannot disturb the outer call's slots; each helper still has
  its own array and trap slot, and reads its result immediately.
* Errors. A call returns either a ``wasmtime_error_t*`` (e.g. WASI
  ``proc_exit``) or writes a ``wasm_trap_t*`` into the trap slot; both are
  handed to wasmtime-py's own ``WasmtimeError``/``Trap`` classes, which take
  ownership and free them, and classify exits (``ExitTrap``) and trap codes
  exactly as the stock path does. The trap slot is cleared after each use.
* Exceptions in callbacks. A Python exception must never cross the C frame:
  the trampoline catches everything (BaseException included), parks the
  exception on the store's ``Boundary`` and returns a fresh trap, whose
  ownership passes to wasmtime. The call that receives that trap re-raises
  the parked exception, as wasmtime-py does with its global slot.
* Memory. Linear memory can grow whenever guest code runs. The engine is
  configured so that it never moves (``memory_may_move`` off: memory grows in
  place inside its reservation, ``modules.shared_engine``), and it never
  shrinks, so a view of the bytes seen so far stays valid for the store's
  life. Every access is bounds-checked against the size last seen, with
  pointers and lengths taken as unsigned 32-bit values; an access beyond it
  asks wasmtime for the current size (memory may have grown) and is refused
  only if it lies beyond that too.
* Contexts. Inside a callback, store operations use the context of the
  callback's ``caller`` (as the C API prescribes); outside, the store's own
  context, which is stable for the store's lifetime (wasmtime-py computes it
  once). Nothing here is used after its store is freed: ``WasmStrategy``
  refuses calls once closed, and callbacks only run during a call.
* Lifetimes. The two C function pointers handed to wasmtime (trampoline and
  finalizer) are module globals whose reference counts are raised once and
  never dropped, so they stay valid even while the interpreter shuts down.
  Each callback's Python state is dropped when wasmtime calls the finalizer
  (the linker and every store using the definition are gone); a call that
  finds no state traps instead of crashing.
* The GIL. ``wasmtime_func_call_unchecked`` is called with the GIL released
  (CFUNCTYPE), so the epoch ticker thread can interrupt a runaway guest and
  callbacks can take the GIL back; the short accessors that never run guest
  code keep the GIL (PYFUNCTYPE), which is cheaper.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import sys
from ctypes import POINTER, c_char_p, c_size_t, c_uint32, c_uint64, c_void_p
from typing import TYPE_CHECKING, Any, Final, Protocol

from wasmtime import Func, FuncType, Linker, Memory, Store, Trap
from wasmtime import _ffi as ffi

from kubetrade.runner.strategy import internals

if TYPE_CHECKING:
    from collections.abc import Callable

    #: A callback's view of its argument/result slots: 8-byte words, slot k at index 2k.
    Slots = ctypes._Pointer[c_uint64]

if sys.byteorder != "little":  # the slot layout below assumes little-endian values
    raise ImportError("the wasm fast path needs a little-endian machine")
# Everything private this module takes from wasmtime-py is listed and checked in one place.
if _missing := internals.missing():
    raise ImportError(f"{internals.MISMATCH_HINT}; missing: {', '.join(_missing)}")

U32: Final = 0xFFFF_FFFF
U64: Final = 0xFFFF_FFFF_FFFF_FFFF
_SLOT: Final = internals.VAL_RAW_BYTES

_lib = internals.library()


def _c(name: str, restype: Any, *argtypes: Any) -> Any:
    """A private prototype for one C function (GIL released during the call).

    Pointers are declared ``void*`` so plain integers pass without building ctypes
    pointer objects; the ABI of ``void*`` and a typed pointer is the same.
    """
    return ctypes.CFUNCTYPE(restype, *argtypes)((name, _lib))


def _py(name: str, restype: Any, *argtypes: Any) -> Any:
    """Like ``_c`` but keeps the GIL: only for accessors that never run guest code."""
    return ctypes.PYFUNCTYPE(restype, *argtypes)((name, _lib))


_call_unchecked = _c(
    "wasmtime_func_call_unchecked", c_void_p, c_void_p, c_void_p, c_void_p, c_size_t, c_void_p
)
_caller_context = _py("wasmtime_caller_context", c_void_p, c_void_p)
_memory_data = _py("wasmtime_memory_data", c_void_p, c_void_p, c_void_p)
_memory_data_size = _py("wasmtime_memory_data_size", c_size_t, c_void_p, c_void_p)
_set_epoch_deadline = _py("wasmtime_context_set_epoch_deadline", None, c_void_p, c_uint64)
_trap_new = _py("wasmtime_trap_new", c_void_p, c_char_p, c_size_t)

_Callback = ctypes.CFUNCTYPE(c_void_p, c_void_p, c_void_p, POINTER(c_uint64), c_size_t)
_Finalizer = ctypes.CFUNCTYPE(None, c_void_p)
_define_unchecked = _c(
    "wasmtime_linker_define_func_unchecked",
    c_void_p,
    c_void_p,
    c_char_p,
    c_size_t,
    c_char_p,
    c_size_t,
    c_void_p,
    _Callback,
    c_void_p,
    _Finalizer,
)


# -- errors ----------------------------------------------------------------------------------


class Boundary:
    """One store's side of the fast path: its context and the exception in flight.

    Holds no reference to the wasmtime-py ``Store`` (callbacks live in a global table
    until wasmtime finalizes them, and must not keep the store alive); the owner keeps
    the store alive for as long as it uses this.
    """

    __slots__ = ("_owned", "context", "pending")

    def __init__(self, store: Store) -> None:
        # wasmtime_store_context(): stable for the store's life (wasmtime-py caches it too).
        self.context: int = internals.store_context(store)
        if not self.context:
            raise ValueError("store is closed")
        # The exception a callback raised, re-raised by the call that sees its trap.
        self.pending: BaseException | None = None
        # C buffers whose addresses the call helpers use: they live as long as this does,
        # and every helper references this (through ``failure``).
        self._owned: list[object] = []

    def failure(self, error: int | None, trap: c_void_p) -> BaseException:
        """The exception for a failed call; takes ownership of the C error/trap objects."""
        raw_trap, trap.value = trap.value, None  # clear the slot for the next call
        # Wrapping hands ownership to wasmtime-py, which frees the object when collected.
        exc: BaseException | None = None
        if error:
            exc = internals.error_from(error)
        if raw_trap:
            trap_exc = internals.trap_from(raw_trap)
            exc = exc or trap_exc
        pending, self.pending = self.pending, None
        if pending is not None:
            return pending  # a callback's own exception: the trap only carried it out
        if exc is None:  # the helpers call this only when wasmtime reported one
            return Trap("wasmtime reported a failed call without an error or a trap")
        return exc

    def deadline_setter(self) -> Callable[[int], None]:
        """``set(ticks)``: the store's epoch deadline, ``ticks`` beyond the current epoch."""
        return functools.partial(_set_epoch_deadline, self.context)


# -- calling guest functions -----------------------------------------------------------------


class _Call:
    """What one guest function's call helpers share: the function, its slots, its trap slot."""

    __slots__ = ("args", "func", "trap")

    def __init__(self, boundary: Boundary, func: Func, slots: int) -> None:
        # A private copy of the handle (store id + index): plain data, valid while the store is.
        self.func = internals.func_handle(func)
        self.args = (ffi.wasmtime_val_raw_t * slots)()
        self.trap = c_void_p()
        boundary._owned.append(self)  # the addresses below must stay valid


def _addresses(call: _Call) -> tuple[int, int, int]:
    return ctypes.addressof(call.func), ctypes.addressof(call.args), ctypes.addressof(call.trap)


def call_i32_i32_to_i64(boundary: Boundary, func: Func) -> Callable[[int, int, int], int]:
    """``(i32, i32) -> i64`` (the strategy exports): returns the result as unsigned 64 bits.

    The helper takes the context first: the store's own outside callbacks, the caller's
    inside one.
    """
    c = _Call(boundary, func, 2)
    faddr, aaddr, taddr = _addresses(c)
    p0, p1 = c_uint64.from_address(aaddr), c_uint64.from_address(aaddr + _SLOT)
    result, trap, call, failure = p0, c.trap, _call_unchecked, boundary.failure

    def invoke(context: int, a: int, b: int) -> int:
        # Writing u64 zero-extends the i32 into its slot; the masks make ptr/len unsigned.
        p0.value, p1.value = a & U32, b & U32
        error = call(context, faddr, aaddr, 2, taddr)
        if error or trap.value:
            raise failure(error, trap)
        return result.value

    return invoke


def call_i32_to_i32(boundary: Boundary, func: Func) -> Callable[[int, int], int]:
    """``(i32) -> i32`` (malloc): returns the result as an unsigned 32-bit value."""
    c = _Call(boundary, func, 1)
    faddr, aaddr, taddr = _addresses(c)
    p0, r0 = c_uint64.from_address(aaddr), c_uint32.from_address(aaddr)
    trap, call, failure = c.trap, _call_unchecked, boundary.failure

    def invoke(context: int, a: int) -> int:
        p0.value = a & U32
        error = call(context, faddr, aaddr, 1, taddr)
        if error or trap.value:
            raise failure(error, trap)
        return r0.value

    return invoke


def call_i32(boundary: Boundary, func: Func) -> Callable[[int, int], None]:
    """``(i32) -> ()`` (free)."""
    c = _Call(boundary, func, 1)
    faddr, aaddr, taddr = _addresses(c)
    p0 = c_uint64.from_address(aaddr)
    trap, call, failure = c.trap, _call_unchecked, boundary.failure

    def invoke(context: int, a: int) -> None:
        p0.value = a & U32
        error = call(context, faddr, aaddr, 1, taddr)
        if error or trap.value:
            raise failure(error, trap)

    return invoke


def call_to_i64(boundary: Boundary, func: Func) -> Callable[[int], int]:
    """``() -> i64`` (version exports): unsigned 64 bits."""
    c = _Call(boundary, func, 1)
    faddr, aaddr, taddr = _addresses(c)
    r0 = c_uint64.from_address(aaddr)
    trap, call, failure = c.trap, _call_unchecked, boundary.failure

    def invoke(context: int) -> int:
        error = call(context, faddr, aaddr, 1, taddr)
        if error or trap.value:
            raise failure(error, trap)
        return r0.value

    return invoke


def call_void(boundary: Boundary, func: Func) -> Callable[[int], None]:
    """``() -> ()`` (``_initialize``). One slot anyway: a zero-length array has no address."""
    c = _Call(boundary, func, 1)
    faddr, aaddr, taddr = _addresses(c)
    trap, call, failure = c.trap, _call_unchecked, boundary.failure

    def invoke(context: int) -> None:
        error = call(context, faddr, aaddr, 0, taddr)
        if error or trap.value:
            raise failure(error, trap)

    return invoke


# -- guest memory ----------------------------------------------------------------------------


class RawMemory:
    """A store's linear memory by handle, read and written through a view of its bytes.

    Requires an engine whose memories never move (``memory_may_move`` off, as
    ``modules.shared_engine`` configures it): the view then stays valid as memory grows,
    and only an access beyond the size seen last asks wasmtime for the current size.
    Memory never shrinks, so a stale size can only refuse too much, never too little,
    and a refusal is re-checked against the current size before it is reported.
    """

    __slots__ = ("_base", "_handle", "_size", "_view", "address")

    def __init__(self, memory: Memory) -> None:
        self._handle = internals.memory_handle(memory)
        self.address = ctypes.addressof(self._handle)
        self._size = 0
        self._base = 0  # where the view starts; 0 until memory is first seen
        self._view = memoryview(b"")

    def _grown(self, where: Where, end: int) -> memoryview | None:
        """The view after memory grew, if ``end`` lies inside it now; None if it does not."""
        context = where.context()
        size: int = _memory_data_size(context, self.address)
        if size != self._size:
            base: int = _memory_data(context, self.address) or 0
            if self._base and base != self._base:
                # Every access since the last growth went through the old view: an engine
                # with memory_may_move on breaks this class's premise. Refuse loudly.
                raise RuntimeError(
                    "guest memory moved when it grew; the fast path needs an engine with "
                    "memory_may_move off (modules.shared_engine)"
                )
            self._view = memoryview((ctypes.c_ubyte * size).from_address(base)).cast("B")
            self._base, self._size = base, size
        return self._view if end <= size else None

    def size(self, context: int) -> int:
        return int(_memory_data_size(context, self.address))

    def read(self, where: Where, ptr: int, length: int) -> bytes:
        end = ptr + length
        view = self._view if end <= self._size else self._grown(where, end)
        if view is None or (ptr | length) < 0:  # (callers pass unsigned values; be sure)
            raise IndexError(
                f"buffer [{ptr}, {end}) lies outside guest memory ({self._size} bytes)"
            )
        return view[ptr:end].tobytes()

    def write(self, where: Where, ptr: int, data: bytes) -> None:
        end = ptr + len(data)
        view = self._view if end <= self._size else self._grown(where, end)
        if view is None or ptr < 0:
            raise IndexError(
                f"guest malloc returned {ptr}, but {len(data)} bytes there overrun guest "
                f"memory ({self._size} bytes)"
            )
        view[ptr:end] = data


class Where(Protocol):
    """Where an access happens: the store context to use if wasmtime must be asked.

    Inside a callback that is the caller's context (``caller_context``), which costs a call
    into wasmtime to obtain; an access inside the view seen so far never needs it.
    """

    def context(self) -> int: ...


class Outside:
    """Accesses outside any callback: the store's own context."""

    __slots__ = ("_context",)

    def __init__(self, context: int) -> None:
        self._context = context

    def context(self) -> int:
        return self._context


def caller_context(caller: int) -> int:
    """The store context to use inside a callback (valid only during that callback)."""
    return int(_caller_context(caller))


# -- host functions --------------------------------------------------------------------------

#: key -> (callback, boundary). A callback receives the caller pointer and the slots.
_callbacks: dict[int, tuple[Callable[[int, Slots], None], Boundary]] = {}
_keys = itertools.count(1)  # 0 would arrive as NULL (None)
_TRAP_MESSAGE: Final = b"kubetrade host function failed"


def _trampoline(env: int | None, caller: int, slots: Slots, count: int) -> int | None:
    # Runs on the calling thread with the GIL taken by ctypes. Never lets an exception out:
    # ctypes would print it and return NULL, which wasmtime reads as success.
    try:
        callback, boundary = _callbacks[env or 0]
    except BaseException:
        return _trap_new(_TRAP_MESSAGE, len(_TRAP_MESSAGE))  # type: ignore[no-any-return]
    try:
        callback(caller, slots)
        return None
    except BaseException as exc:
        boundary.pending = exc
        return _trap_new(_TRAP_MESSAGE, len(_TRAP_MESSAGE))  # type: ignore[no-any-return]


def _finalize(env: int | None) -> None:
    # During interpreter shutdown the dict may already be gone: nothing is left to free.
    with contextlib.suppress(BaseException):
        _callbacks.pop(env or 0, None)


_TRAMPOLINE: Final = _Callback(_trampoline)
_FINALIZER: Final = _Finalizer(_finalize)
# wasmtime may call these until the last store is dropped, which can happen while the
# interpreter tears modules down: never let their memory be freed.
for _pinned in (_TRAMPOLINE, _FINALIZER):
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(_pinned))


def define(
    linker: Linker,
    module: str,
    name: str,
    ty: FuncType,
    boundary: Boundary,
    callback: Callable[[int, Slots], None],
) -> None:
    """Define ``module.name`` on the linker, answered by ``callback(caller, slots)``.

    The callback reads parameters from slots 0.. (``slots[2 * k]``) and writes its result
    to ``slots[0]``; an exception it raises traps the guest and is re-raised by the call.
    """
    key = next(_keys)
    _callbacks[key] = (callback, boundary)
    module_b, name_b = module.encode(), name.encode()
    linker_ptr = internals.pointer(linker)
    ty_ptr = internals.pointer(ty)
    error = _define_unchecked(
        linker_ptr,
        module_b,
        len(module_b),
        name_b,
        len(name_b),
        ty_ptr,
        _TRAMPOLINE,
        key,
        _FINALIZER,
    )
    if error:
        _callbacks.pop(key, None)
        raise internals.error_from(error)


def forget(boundary: Boundary) -> None:
    """Drop every callback of this store now (close()); a later call would trap safely."""
    for key in [k for k, (_, b) in _callbacks.items() if b is boundary]:
        _callbacks.pop(key, None)


def live_callbacks() -> int:
    """How many callbacks wasmtime may still call (tests: nothing leaks)."""
    return len(_callbacks)
