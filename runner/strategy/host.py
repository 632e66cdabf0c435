"""The wasmtime host: loads one strategy module and calls it through the plugin ABI.

One ``WasmStrategy`` owns one wasmtime store and instance for the life of a
session. Calls are synchronous; call a strategy from one thread at a time
(wasmtime-py carries host-callback exceptions in a process-global slot).

Sandbox: WASI preview 1 with no preopened directories, no environment and no
arguments, the guest's stdout and stderr forwarded to logging (logger
"kubetrade.strategy"); linear memory capped by ``Store.set_limits``; every
export call bounded by epoch interruption, driven by one process-wide ticker
thread.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import logging
import math
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from google.protobuf.message import DecodeError, Message
from wasmtime import (
    Caller,
    Config,
    Engine,
    ExitTrap,
    Func,
    FuncType,
    Instance,
    Linker,
    Memory,
    MemoryType,
    Module,
    Store,
    Trap,
    TrapCode,
    ValType,
    WasiConfig,
    WasmtimeError,
)

from kubetrade.runner.domain import Bar, format_ms
from kubetrade.runner.strategy import abi
from kubetrade.runner.strategy.api import DISPATCH, RESPONSES, HostApi
from kubetrade.runner.strategy.pb import strategy_pb2 as pb

if TYPE_CHECKING:
    from collections.abc import Callable
    from os import PathLike

logger = logging.getLogger("kubetrade.strategy")

M = TypeVar("M", bound=Message)

_MIB: Final = 1024 * 1024
_TICK_S: Final = 0.01  # epoch period: the timeout's resolution
_MAX_LINE: Final = 16 * 1024  # a guest writing without newlines is forwarded in chunks of this
_BUILD_HINT: Final = (
    "build the strategy with `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared` "
    f"against the argo-trading plugin SDK (ABI version {abi.API_VERSION})"
)


class StrategyError(Exception):
    """The strategy returned an error string or trapped during one call."""

    def __init__(
        self, message: str, *, call: str, trapped: bool, host_function: str | None = None
    ) -> None:
        super().__init__(message)
        self.call = call  # the export that failed, e.g. "trading_strategy_process_data"
        self.trapped = trapped  # False: the strategy returned an error string
        self.host_function = host_function  # set when a host function's failure caused the trap


class StrategyLoadError(Exception):
    """The module cannot be used: invalid, wrong ABI version, missing exports, or its
    start (``_initialize``) trapped. The message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class SandboxLimits:
    max_memory_bytes: int = 256 * _MIB
    call_timeout_s: float = 5.0


# -- the shared engine -----------------------------------------------------------------------

_engine: Engine | None = None
_engine_lock = threading.Lock()


def _shared_engine() -> Engine:
    """One engine per process: compiled code is shared and one ticker drives every deadline."""
    global _engine
    with _engine_lock:
        if _engine is None:
            config = Config()
            config.epoch_interruption = True  # deadlines are per store, set before each call
            _engine = Engine(config)
            threading.Thread(
                target=_tick, args=(_engine,), name="kubetrade-wasm-epoch", daemon=True
            ).start()
        return _engine


def _tick(engine: Engine) -> None:
    while True:
        time.sleep(_TICK_S)
        engine.increment_epoch()


_modules: dict[bytes, Module] = {}
_MODULE_CACHE_SIZE: Final = 4


def _cached_compile(engine: Engine, wasm: bytes) -> Module:
    """Compiling a Go strategy takes seconds; a module is reusable by every store."""
    key = hashlib.sha256(wasm).digest()
    with _engine_lock:
        module = _modules.get(key)
    if module is None:
        module = _compile(engine, wasm)
        with _engine_lock:
            if len(_modules) >= _MODULE_CACHE_SIZE:
                del _modules[next(iter(_modules))]  # oldest first
            _modules[key] = module
    return module


# -- guest memory ----------------------------------------------------------------------------
# The base address is looked up on every access: malloc (ours or the guest's own) may grow
# and move linear memory at any time.


def _read(store: Store | Caller, memory: Memory, ptr: int, length: int) -> bytes:
    if length == 0:
        return b""
    if ptr + length > memory.data_len(store):
        raise IndexError(
            f"buffer [{ptr}, {ptr + length}) lies outside guest memory "
            f"({memory.data_len(store)} bytes)"
        )
    return ctypes.string_at(ctypes.addressof(memory.data_ptr(store).contents) + ptr, length)


def _write(store: Store | Caller, memory: Memory, ptr: int, data: bytes) -> None:
    if ptr + len(data) > memory.data_len(store):
        raise IndexError(
            f"guest malloc returned {ptr}, but {len(data)} bytes there overrun guest memory "
            f"({memory.data_len(store)} bytes)"
        )
    ctypes.memmove(ctypes.addressof(memory.data_ptr(store).contents) + ptr, data, len(data))


# -- host functions --------------------------------------------------------------------------


class _HostTrap(Trap):
    """Raised inside a host function: wasmtime-py re-raises this very object from the export."""

    def __init__(self, function: str, reason: str) -> None:
        super().__init__(f"host function {function} failed: {reason}")
        self.function = function
        self.reason = reason


class _HostCalls:
    """What the host functions (and fd_write) touch.

    It holds no reference to the Store or the WasmStrategy: wasmtime-py keeps host callbacks
    in a global table until the linker is freed, and a reference back would keep the whole
    instance alive forever.
    """

    def __init__(self, api: HostApi, outputs: dict[int, _Output]) -> None:
        self.api: HostApi | None = api
        self.outputs = outputs  # WASI file descriptor -> where its writes go
        self.memory: Memory | None = None
        self.malloc: Func | None = None
        # Pointers the host malloc'd for host-function responses during the current export call.
        self.responses: list[int] = []

    def function(self, name: str) -> Callable[[Caller, int, int], int]:
        request_type, method = DISPATCH[name]
        response_type = RESPONSES[name]
        handler: Callable[[Any], Message] | None = getattr(self.api, method, None)

        def host_function(caller: Caller, ptr: int, length: int) -> int:
            try:
                if handler is None:
                    raise NotImplementedError(f"{type(self.api).__name__} has no method {method}")
                memory, malloc = self.memory, self.malloc
                assert memory is not None, "called before instantiation"
                assert malloc is not None, "called before instantiation"
                request = request_type.FromString(_read(caller, memory, ptr, length))
                response = handler(request)
                if type(response) is not response_type:
                    raise TypeError(
                        f"{method}() returned {type(response).__name__}, "
                        f"expected {response_type.__name__}"
                    )
                data = response.SerializeToString()
                if not data:
                    return 0  # an empty message: the guest reads (0, 0) as empty bytes
                out = malloc(caller, len(data))
                if not out:
                    raise MemoryError(f"guest malloc({len(data)}) returned 0")
                self.responses.append(out)  # before writing, so it is freed even if that fails
                _write(caller, memory, out, data)
                return abi.to_i64((out << 32) | len(data))
            except _HostTrap:
                raise
            except (Trap, WasmtimeError) as exc:
                # The guest's malloc trapped. A timeout or exit keeps its own identity.
                if isinstance(exc, ExitTrap) or _is_interrupt(exc):
                    raise
                raise _HostTrap(name, f"guest malloc trapped: {_trap_summary(exc)}") from exc
            except DecodeError as exc:
                raise _HostTrap(name, f"cannot parse {request_type.__name__}: {exc}") from exc
            except Exception as exc:
                raise _HostTrap(name, f"{type(exc).__name__}: {exc}") from exc

        return host_function

    def fd_write(self, caller: Caller, fd: int, iovs: int, count: int, nwritten: int) -> int:
        """WASI fd_write, replacing wasmtime's: stdout and stderr go to logging, and no other
        descriptor exists (the sandbox has no preopened directories).

        This is the simplest correct route for guest output. WasiConfig.stdout_custom runs its
        callback on a wasmtime worker thread and calls its finalizer whenever that thread drops
        the stream, which aborts the process when it happens during interpreter exit; and
        WasiConfig.stdout_file needs a writable filesystem (a pod's may be read-only) and does
        not append, so the file could never be truncated after reading and would grow for the
        whole session. Here the write happens synchronously on the calling thread, so flushing
        the last partial line after each export call keeps the log in order.
        """
        output, memory = self.outputs.get(fd), self.memory
        if output is None or memory is None:
            return _EBADF
        try:
            vectors = _read(caller, memory, iovs, 8 * count)
            data = b"".join(
                _read(caller, memory, ptr, length)
                for ptr, length in struct.iter_unpack("<II", vectors)
            )
            _write(caller, memory, nwritten, struct.pack("<I", len(data)))
        except IndexError:
            return _EFAULT
        output.write(data)
        return 0


_HOST_TYPE: Final = FuncType([ValType.i32(), ValType.i32()], [ValType.i64()])
_FD_WRITE_TYPE: Final = FuncType([ValType.i32()] * 4, [ValType.i32()])
_EBADF: Final = 8  # WASI preview 1 errno values
_EFAULT: Final = 21


# -- guest output ----------------------------------------------------------------------------


class _Output:
    """Forwards one guest output stream (stdout or stderr) to logging, a line at a time."""

    def __init__(self, session: str, stream: str, level: int) -> None:
        self._label = f"{session} {stream}" if session else stream
        self._level = level
        self._partial = bytearray()
        # The first line written since take_first(): a Go panic or fatal error starts there.
        self._first: str | None = None

    def write(self, data: bytes) -> None:
        self._partial += data
        if b"\n" not in data and len(self._partial) < _MAX_LINE:
            return
        *lines, rest = bytes(self._partial).split(b"\n")
        self._partial = bytearray(rest)
        for line in lines:
            self._emit(line)

    def flush(self) -> None:
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            self._emit(line)

    def take_first(self) -> str | None:
        self.flush()
        first, self._first = self._first, None
        return first

    def _emit(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if self._first is None and text.strip():
            self._first = text.strip()
        logger.log(self._level, "[%s] %s", self._label, text)


# -- module checks ---------------------------------------------------------------------------


def _signature(ty: FuncType) -> str:
    params = ", ".join(str(t) for t in ty.params)
    results = ", ".join(str(t) for t in ty.results)
    return f"({params}) -> ({results})"


_EXPORTS: Final = {
    abi.INITIALIZE_REACTOR: "() -> ()",
    abi.MALLOC: "(i32) -> (i32)",
    abi.FREE: "(i32) -> ()",
    abi.API_VERSION_EXPORT: "() -> (i64)",
    **dict.fromkeys(abi.STRATEGY_EXPORTS, "(i32, i32) -> (i64)"),
}
_HOST_SIGNATURE: Final = _signature(_HOST_TYPE)
_WASI_MODULE: Final = "wasi_snapshot_preview1"


def _cache_dir() -> Path | None:
    """Where compiled modules are kept between processes; None turns the cache off."""
    root = os.environ.get("KUBETRADE_CACHE")
    if root == "off":
        return None
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "kubetrade")
    return Path(root) / "wasm"


def _native_code(engine: Engine, wasm: bytes) -> Module:
    """Compile, or load the machine code a previous process compiled from the same bytes.

    A Go strategy takes 1-2 s to compile; a runner restarting after a crash, or
    a test starting many runners, should not pay that each time. wasmtime
    refuses a file made by another version or configuration, and the key
    includes both. The directory is private to the user (0700): loading
    machine code trusts whoever could write there. Any cache failure (a
    read-only filesystem in a pod, say) just means compiling.
    """
    directory = _cache_dir()
    if directory is None:
        return Module(engine, wasm)
    engine_id = f"|wasmtime {importlib.metadata.version('wasmtime')}|epoch-interruption"
    key = hashlib.sha256(wasm + engine_id.encode()).hexdigest()
    path = directory / f"{key}.cwasm"
    if path.is_file():
        try:
            return Module.deserialize_file(engine, str(path))
        except WasmtimeError:
            logger.info("compiled strategy cache entry %s is stale; recompiling", path.name)
    module = Module(engine, wasm)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.touch(mode=0o600)  # before the bytes: never readable by others
        partial.write_bytes(module.serialize())
        partial.replace(path)  # atomic: readers never see half a file
    except OSError as exc:
        logger.debug("cannot cache the compiled strategy: %s", exc)
    return module


def _compile(engine: Engine, wasm: bytes) -> Module:
    try:
        module = _native_code(engine, wasm)
    except WasmtimeError as exc:
        raise StrategyLoadError(f"not a valid WebAssembly module ({exc}); {_BUILD_HINT}") from exc
    problems: list[str] = []
    exports = {e.name: e.type for e in module.exports}
    if not isinstance(exports.get(abi.MEMORY), MemoryType):
        problems.append(f"missing export {abi.MEMORY!r} (linear memory)")
    for name, want in _EXPORTS.items():
        ty = exports.get(name)
        if ty is None:
            problems.append(f"missing export {name!r}")
        elif not isinstance(ty, FuncType) or _signature(ty) != want:
            problems.append(f"export {name!r} must be a function {want}")
    ty = exports.get(abi.ENGINE_VERSION_EXPORT)
    if ty is not None and (not isinstance(ty, FuncType) or _signature(ty) != "() -> (i64)"):
        problems.append(f"export {abi.ENGINE_VERSION_EXPORT!r} must be a function () -> (i64)")
    for imp in module.imports:
        where = f"{imp.module}.{imp.name}"
        if imp.module == abi.HOST_MODULE:
            if imp.name not in DISPATCH:
                problems.append(f"imports unknown host function {where}")
            elif not isinstance(imp.type, FuncType) or _signature(imp.type) != _HOST_SIGNATURE:
                problems.append(f"import {where} must be a function {_HOST_SIGNATURE}")
        elif imp.module != _WASI_MODULE:
            problems.append(f"imports {where} from a module this host does not provide")
    if problems:
        raise StrategyLoadError(
            "not a kubetrade/argo-trading strategy: " + "; ".join(problems) + f". {_BUILD_HINT}"
        )
    return module


# -- traps -----------------------------------------------------------------------------------


def _is_interrupt(exc: BaseException) -> bool:
    return isinstance(exc, Trap) and exc.trap_code == TrapCode.INTERRUPT


def _trap_summary(exc: BaseException) -> str:
    """wasmtime's message is a backtrace followed by 'Caused by: <reason>': keep the reason."""
    text = str(exc).strip()
    _, sep, cause = text.rpartition("Caused by:")
    return " ".join(cause.split()) if sep else text.splitlines()[0] if text else repr(exc)


def _where(export: str, bar: Bar | None) -> str:
    """Names the failed call for a user: built only when something failed."""
    return f"{export} on {bar.symbol} bar {format_ms(bar.time)}" if bar else export


# -- the strategy ----------------------------------------------------------------------------


class WasmStrategy:
    """One strategy instance. Not thread-safe: call it from one thread at a time."""

    engine_version: str  # the strategy SDK's engine version string, "" if it does not say

    def __init__(
        self,
        wasm: bytes,
        api: HostApi,
        *,
        session: str = "",
        limits: SandboxLimits = SandboxLimits(),  # frozen, so sharing the default is safe
    ) -> None:
        self.session = session
        self.limits = limits
        self._deadline = math.ceil(limits.call_timeout_s / _TICK_S) + 1  # +1: ticks are ragged
        self._closed = False
        self._exit_code: int | None = None
        self._stdout = _Output(session, "stdout", logging.INFO)
        self._stderr = _Output(session, "stderr", logging.WARNING)
        # Reused for every bar: one less message allocation on the hot path.
        self._bar_request = pb.ProcessDataRequest()

        engine = _shared_engine()
        module = _cached_compile(engine, wasm)
        self._host = _HostCalls(api, {1: self._stdout, 2: self._stderr})
        self._store = store = Store(engine)
        store.set_limits(memory_size=limits.max_memory_bytes)
        store.set_wasi(WasiConfig())  # no preopens, no env, no args, no stdin
        self._linker = linker = Linker(engine)
        linker.define_wasi()
        linker.allow_shadowing = True  # our fd_write replaces wasmtime's: see _HostCalls.fd_write
        linker.define_func(
            _WASI_MODULE, "fd_write", _FD_WRITE_TYPE, self._host.fd_write, access_caller=True
        )
        for name in abi.HOST_FUNCTIONS:
            linker.define_func(
                abi.HOST_MODULE, name, _HOST_TYPE, self._host.function(name), access_caller=True
            )

        store.set_epoch_deadline(self._deadline)
        try:
            self._instance: Instance = linker.instantiate(store, module)
        except (WasmtimeError, Trap) as exc:
            raise StrategyLoadError(self._load_failure("instantiation", exc)) from exc
        exports = self._instance.exports(store)
        memory = exports[abi.MEMORY]
        assert isinstance(memory, Memory)  # checked by _compile
        self._memory = memory
        self._malloc = self._func(abi.MALLOC)
        self._free = self._func(abi.FREE)
        self._exports = {name: self._func(name) for name in abi.STRATEGY_EXPORTS}
        self._host.memory, self._host.malloc = memory, self._malloc

        # A reactor's constructor must run before any other export (Go: runtime and package init).
        self._load_call(abi.INITIALIZE_REACTOR)
        version = self._load_call(abi.API_VERSION_EXPORT)
        if version != abi.API_VERSION:
            raise StrategyLoadError(
                f"the strategy speaks plugin ABI version {version}, but this runner speaks only "
                f"version {abi.API_VERSION}; {_BUILD_HINT}"
            )
        self.engine_version = self._read_engine_version()

    @classmethod
    def from_file(cls, path: str | PathLike[str], api: HostApi, **kw: Any) -> WasmStrategy:
        try:
            wasm = Path(path).read_bytes()
        except OSError as exc:
            raise StrategyLoadError(f"cannot read strategy module {path}: {exc}") from exc
        return cls(wasm, api, **kw)

    # -- the TradingStrategy service ---------------------------------------------------------

    def initialize(self, config_json: str) -> None:
        self._call(abi.INITIALIZE, pb.InitializeRequest(config=config_json).SerializeToString())

    def process_data(self, bar: Bar) -> None:
        data = self._bar_request.data
        data.symbol = bar.symbol
        data.open, data.high, data.low, data.close = bar.open, bar.high, bar.low, bar.close
        data.volume = bar.volume
        seconds, ms = divmod(bar.time, 1000)
        data.time.seconds, data.time.nanos = seconds, ms * 1_000_000
        self._call(abi.PROCESS_DATA, self._bar_request.SerializeToString(), bar)

    def name(self) -> str:
        return self._ask(abi.NAME, pb.NameResponse).name

    def identifier(self) -> str:
        return self._ask(abi.GET_IDENTIFIER, pb.GetIdentifierResponse).identifier

    def description(self) -> str:
        return self._ask(abi.GET_DESCRIPTION, pb.GetDescriptionResponse).description

    def config_schema(self) -> str:
        return self._ask(abi.GET_CONFIG_SCHEMA, pb.GetConfigSchemaResponse).schema

    def close(self) -> None:
        """Release the instance. Needed when ``api`` refers back to this object: wasmtime-py
        holds host callbacks globally, so such a cycle is never garbage-collected."""
        if self._closed:
            return
        self._closed = True
        self._stdout.flush()
        self._stderr.flush()
        self._host.api = self._host.memory = self._host.malloc = None
        del self._exports, self._malloc, self._free, self._memory, self._instance
        del self._linker, self._store

    def __enter__(self) -> WasmStrategy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calling exports ---------------------------------------------------------------------

    def _ask(self, export: str, response_type: type[M]) -> M:
        """Call a getter (its request message is empty) and parse its response."""
        result = self._call(export, b"")
        try:
            return response_type.FromString(result)
        except DecodeError as exc:
            raise StrategyError(
                f"{export} returned bytes that are not a {response_type.__name__}: {exc}",
                call=export,
                trapped=False,
            ) from exc

    def _call(self, export: str, payload: bytes, bar: Bar | None = None) -> bytes:
        """Copy the request in, call, copy the result out, free: every export takes this path.

        Returns the response bytes; raises StrategyError for an error string or a trap, naming
        the bar being processed if there is one.
        """
        if self._closed or self._exit_code is not None:
            raise StrategyError(self._unusable(export), call=export, trapped=False)
        store, memory = self._store, self._memory
        store.set_epoch_deadline(self._deadline)
        request_ptr = result_ptr = 0
        try:
            if payload:
                request_ptr = self._malloc(store, len(payload))
                if not request_ptr:
                    raise IndexError(f"the strategy's malloc({len(payload)}) returned 0")
                _write(store, memory, request_ptr, payload)
            packed = abi.unpack(self._exports[export](store, request_ptr, len(payload)))
            result_ptr = packed.ptr
            result = _read(store, memory, packed.ptr, packed.length)
        except (Trap, WasmtimeError) as exc:
            raise self._trap_error(_where(export, bar), export, exc) from exc
        except IndexError as exc:
            raise StrategyError(
                f"{_where(export, bar)} passed a bad buffer: {exc}", call=export, trapped=False
            ) from exc
        finally:
            self._release(request_ptr, result_ptr)
        if packed.is_error:
            text = result.decode("utf-8", "replace")
            raise StrategyError(f"{_where(export, bar)} failed: {text}", call=export, trapped=False)
        return result

    def _release(self, request_ptr: int, result_ptr: int) -> None:
        """Free this call's buffers in the guest, then forward its output.

        Besides the request and the result, this frees the responses the host malloc'd for
        host functions during the call: go-plugin guests never free those (they stay in the
        Go allocator's map forever, a leak in a long session), and generated guests copy each
        response out while unmarshalling (strings included) before the export returns, so
        nothing can still point at them. A buffer may appear twice (a guest returning a host
        response as its own result), hence the set.
        """
        responses = self._host.responses
        pointers = {p for p in (request_ptr, result_ptr, *responses) if p}
        responses.clear()
        # An exited guest cannot run again, not even free().
        if pointers and self._exit_code is None:
            self._store.set_epoch_deadline(self._deadline)  # the call may have used it all up
            try:
                for p in pointers:
                    self._free(self._store, p)
            except (Trap, WasmtimeError) as exc:
                logger.warning(
                    "[%s] the strategy's free() trapped: %s", self.session, _trap_summary(exc)
                )
        self._stdout.flush()
        self._stderr.take_first()  # the next call's error quotes only its own stderr

    def _trap_error(self, where: str, export: str, exc: Exception) -> StrategyError:
        if isinstance(exc, _HostTrap):
            return StrategyError(
                f"{where} aborted: host function {exc.function} failed: {exc.reason}",
                call=export,
                trapped=True,
                host_function=exc.function,
            )
        stderr = self._stderr.take_first()
        said = f"; its stderr began: {stderr}" if stderr else ""
        if isinstance(exc, ExitTrap):
            self._exit_code = exc.code
            return StrategyError(
                f"{where}: the strategy exited with code {exc.code}{said}. It cannot run "
                "again: fix the strategy and restart the session",
                call=export,
                trapped=True,
            )
        if _is_interrupt(exc):
            return StrategyError(
                f"strategy call {where} exceeded {self.limits.call_timeout_s}s and was stopped "
                "(limits.call_timeout_s); look for an endless loop or heavy per-bar work",
                call=export,
                trapped=True,
            )
        # A Go panic or fatal error prints to stderr, then executes `unreachable`: the stderr
        # line is the useful part. After a panic the Go runtime is broken for good.
        return StrategyError(
            f"{where} trapped: {_trap_summary(exc)}{said}{self._memory_hint()}",
            call=export,
            trapped=True,
        )

    def _memory_hint(self) -> str:
        # A guest whose memory.grow is refused usually aborts. Nothing reports the refusal, and
        # a Go runtime asks for big blocks, so mention the cap once memory is three-quarters used.
        used, cap = self._memory.data_len(self._store), self.limits.max_memory_bytes
        if used * 4 < cap * 3:
            return ""
        return (
            f" (memory: {used / _MIB:g} MiB used of the {cap / _MIB:g} MiB allowed by "
            "limits.max_memory_bytes)"
        )

    def _unusable(self, export: str) -> str:
        if self._closed:
            return f"{export}: the strategy has been closed"
        return (
            f"{export}: the strategy exited earlier with code {self._exit_code} and cannot run "
            "again; restart the session"
        )

    # -- loading ----------------------------------------------------------------------------

    def _func(self, name: str) -> Func:
        func = self._instance.exports(self._store)[name]
        assert isinstance(func, Func)  # checked by _compile
        return func

    def _load_call(self, name: str) -> Any:
        self._store.set_epoch_deadline(self._deadline)
        try:
            return self._func(name)(self._store)
        except (Trap, WasmtimeError) as exc:
            stderr = self._stderr.take_first()
            said = f"; its stderr began: {stderr}" if stderr else ""
            raise StrategyLoadError(self._load_failure(name, exc) + said) from exc
        finally:
            self._stdout.flush()
            self._stderr.take_first()

    def _load_failure(self, step: str, exc: Exception) -> str:
        if _is_interrupt(exc):
            return f"{step} exceeded {self.limits.call_timeout_s}s (limits.call_timeout_s)"
        if "memory" in str(exc) and "limit" in str(exc):
            return (
                f"{step} failed: {_trap_summary(exc)}; the module needs more memory than "
                f"limits.max_memory_bytes ({self.limits.max_memory_bytes} bytes) allows"
            )
        if isinstance(exc, ExitTrap):
            return f"{step} failed: the strategy exited with code {exc.code} (see its stderr)"
        return f"{step} failed: {_trap_summary(exc)}"

    def _read_engine_version(self) -> str:
        if not isinstance(self._instance.exports(self._store).get(abi.ENGINE_VERSION_EXPORT), Func):
            return ""
        packed = abi.unpack(self._load_call(abi.ENGINE_VERSION_EXPORT))
        try:
            text = _read(self._store, self._memory, packed.ptr, packed.length)
        except IndexError as exc:
            raise StrategyLoadError(
                f"{abi.ENGINE_VERSION_EXPORT} returned a bad buffer: {exc}"
            ) from exc
        self._release(0, packed.ptr)
        if packed.is_error:
            logger.warning(
                "[%s] %s failed: %s",
                self.session,
                abi.ENGINE_VERSION_EXPORT,
                text.decode("utf-8", "replace"),
            )
            return ""
        return text.decode("utf-8", "replace")
