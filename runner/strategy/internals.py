"""The parts of wasmtime-py the fast path uses that are not its public API, in one place.

``fastcall`` calls libwasmtime's C API directly, on handles taken out of
wasmtime-py's objects. Those handles, the loaded library, its ctypes types and
the constructors that wrap a C error or trap are private to wasmtime-py and
may change in any release. Every one is reached through this module, and
``missing()`` checks them all: ``fastcall`` refuses to import when something
is missing (a clear ImportError instead of a crash inside a strategy call),
and tests/unit/test_wasmtime_internals.py fails loudly on a wasmtime upgrade
that changed any of them (it also checks the attributes of live objects,
which only exist once a store and an instance do).

When that test fails: read the new wasmtime-py's ``_func.py``, ``_memory.py``,
``_store.py``, ``_error.py``, ``_trap.py`` and ``_ffi.py``, adapt the
accessors below, and re-run the fast-path tests (tests/unit/test_strategy_fastpath.py).
"""

from __future__ import annotations

import ctypes
from typing import Any, Final

import wasmtime
from wasmtime import Func, Memory, Store, Trap, WasmtimeError
from wasmtime import _ffi as ffi

from kubetrade.runner.strategy.errors import StrategyLoadError

#: Private names of the ctypes binding (``wasmtime._ffi``).
FFI_NAMES: Final = (
    "dll",  # the loaded libwasmtime: the C functions below are looked up in it
    "wasmtime_val_raw_t",  # one untyped argument/result slot
    "wasmtime_func_t",  # a function handle (store id + index), copied out of Func._func
    "wasmtime_memory_t",  # a memory handle, copied out of Memory._memory
    "wasmtime_error_t",
    "wasm_trap_t",
)
#: Private methods of wasmtime-py's classes.
CLASS_ATTRIBUTES: Final = (
    (Store, "_context"),  # the store's wasmtime_context_t*
    (WasmtimeError, "_from_ptr"),  # takes ownership of a wasmtime_error_t* (ExitTrap too)
    (Trap, "_from_ptr"),  # takes ownership of a wasm_trap_t*
    (wasmtime.Linker, "ptr"),
    (wasmtime.FuncType, "ptr"),
)
#: Private attributes of live objects (checked by the test on real ones).
INSTANCE_ATTRIBUTES: Final = ((Func, "_func"), (Memory, "_memory"))
#: libwasmtime's C functions called directly: stable C API, but not wrapped by wasmtime-py.
C_FUNCTIONS: Final = (
    "wasmtime_func_call_unchecked",
    "wasmtime_caller_context",
    "wasmtime_memory_data",
    "wasmtime_memory_data_size",
    "wasmtime_context_set_epoch_deadline",
    "wasmtime_trap_new",
    "wasmtime_linker_define_func_unchecked",
)
#: One wasmtime_val_raw_t: a 16-byte union, values little-endian in its low bytes.
VAL_RAW_BYTES: Final = 16


def missing() -> list[str]:
    """What the fast path needs of wasmtime-py and does not find, in words; [] if all is there."""
    out = [f"wasmtime._ffi.{name}" for name in FFI_NAMES if not hasattr(ffi, name)]
    out += [
        f"wasmtime.{cls.__name__}.{name}"
        for cls, name in CLASS_ATTRIBUTES
        if not callable(getattr(cls, name, None))
    ]
    lib = getattr(ffi, "dll", None)
    if lib is not None:
        out += [f"libwasmtime symbol {name}" for name in C_FUNCTIONS if not hasattr(lib, name)]
    raw = getattr(ffi, "wasmtime_val_raw_t", None)
    if raw is not None and ctypes.sizeof(raw) != VAL_RAW_BYTES:
        out.append(f"wasmtime_val_raw_t of {VAL_RAW_BYTES} bytes (it is {ctypes.sizeof(raw)})")
    return out


def library() -> Any:
    return ffi.dll


def store_context(store: Store) -> int:
    """The store's ``wasmtime_context_t*``: stable for the store's life."""
    return ctypes.cast(store._context(), ctypes.c_void_p).value or 0


def func_handle(func: Func) -> Any:
    """A private copy of the function's handle: plain data, valid while its store is."""
    return ffi.wasmtime_func_t.from_buffer_copy(_attribute(func, "_func"))


def memory_handle(memory: Memory) -> Any:
    return ffi.wasmtime_memory_t.from_buffer_copy(_attribute(memory, "_memory"))


def pointer(obj: wasmtime.Linker | wasmtime.FuncType) -> int:
    """The C object behind a linker or a function type."""
    return ctypes.cast(obj.ptr(), ctypes.c_void_p).value or 0


def error_from(address: int) -> WasmtimeError:
    """Wrap a ``wasmtime_error_t*``; wasmtime-py frees it and classifies exits (ExitTrap)."""
    return WasmtimeError._from_ptr(ctypes.cast(address, ctypes.POINTER(ffi.wasmtime_error_t)))


def trap_from(address: int) -> Trap:
    """Wrap a ``wasm_trap_t*``; wasmtime-py frees it."""
    return Trap._from_ptr(ctypes.cast(address, ctypes.POINTER(ffi.wasm_trap_t)))


MISMATCH_HINT: Final = (
    "this wasmtime release does not fit kubetrade's fast call path "
    "(kubetrade.runner.strategy.internals); install the version constraints.txt pins, "
    "or set KUBETRADE_WASM_PATH=stock"
)


def _attribute(obj: object, name: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        raise StrategyLoadError(
            f"wasmtime-py's {type(obj).__name__} has no attribute {name}: {MISMATCH_HINT}"
        ) from None
