"""Strategy modules compiled once: the process's wasmtime Engine, its epoch ticker, and
compiled modules cached in memory and on disk, each checked against the plugin ABI.

Compiling a Go strategy takes seconds, so a module is compiled once per process (and its
machine code kept on disk between processes) and shared by every store. One engine serves
every strategy in the process, and one ticker thread advances its epoch, which is what
bounds each strategy call (``WasmStrategy`` sets a deadline a number of ticks ahead).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import threading
import time
from pathlib import Path
from typing import Final

from wasmtime import Config, Engine, FuncType, MemoryType, Module, WasmtimeError

from kubetrade.runner.strategy import abi
from kubetrade.runner.strategy.api import DISPATCH
from kubetrade.runner.strategy.errors import StrategyLoadError
from kubetrade.runner.strategy.guest import HOST_TYPE, WASI_MODULE

logger = logging.getLogger("kubetrade.strategy")

TICK_S: Final = 0.01  # epoch period: the timeout's resolution
BUILD_HINT: Final = (
    "build the strategy with `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared` "
    f"against the argo-trading plugin SDK (ABI version {abi.API_VERSION})"
)


_engine: Engine | None = None
_engine_lock = threading.Lock()


def shared_engine() -> Engine:
    """One engine per process: compiled code is shared and one ticker drives every deadline."""
    global _engine
    with _engine_lock:
        if _engine is None:
            config = Config()
            config.epoch_interruption = True  # deadlines are per store, set before each call
            # Memory grows in place and never moves, so the fast path keeps one view of it
            # for the store's life (fastcall.RawMemory). A 32-bit memory fits the default
            # 4 GiB reservation whole, so this limits nothing.
            config.memory_may_move = False
            _engine = Engine(config)
            threading.Thread(
                target=_tick, args=(_engine,), name="kubetrade-wasm-epoch", daemon=True
            ).start()
        return _engine


#: Epoch ticks so far, as Python sees them: a call within the tick of the previous call
#: keeps that call's deadline instead of setting it again (see WasmStrategy._arm).
ticks = 0


def _tick(engine: Engine) -> None:
    global ticks
    while True:
        time.sleep(TICK_S)
        engine.increment_epoch()
        ticks += 1


_modules: dict[bytes, Module] = {}
_MODULE_CACHE_SIZE: Final = 4


def compiled(engine: Engine, wasm: bytes, key: bytes) -> Module:
    """Compiling a Go strategy takes seconds; a module is reusable by every store.

    ``key`` is the SHA-256 of ``wasm``.
    """
    with _engine_lock:
        module = _modules.get(key)
    if module is None:
        module = compile_checked(engine, wasm)
        with _engine_lock:
            if len(_modules) >= _MODULE_CACHE_SIZE:
                del _modules[next(iter(_modules))]  # oldest first
            _modules[key] = module
    return module


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
_HOST_SIGNATURE: Final = _signature(HOST_TYPE)


def _cache_dir() -> Path | None:
    """Where compiled modules are kept between processes; None turns the cache off."""
    root = os.environ.get("KUBETRADE_CACHE")
    if root == "off":
        return None
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "kubetrade")
    return Path(root) / "wasm"


def native_code(engine: Engine, wasm: bytes) -> Module:
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
    engine_id = (
        f"|wasmtime {importlib.metadata.version('wasmtime')}|epoch-interruption|memory-may-move=off"
    )
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
        _prune(directory)
    except OSError as exc:
        logger.debug("cannot cache the compiled strategy: %s", exc)
    return module


CACHE_ENTRIES: Final = 32  # a Go strategy compiles to ~10 MB of machine code


def _prune(directory: Path) -> None:
    """Keep the most recently written entries; rebuilt strategies leave old ones behind."""
    entries = sorted(directory.glob("*.cwasm"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[CACHE_ENTRIES:]:
        stale.unlink(missing_ok=True)


def compile_checked(engine: Engine, wasm: bytes) -> Module:
    try:
        module = native_code(engine, wasm)
    except WasmtimeError as exc:
        raise StrategyLoadError(f"not a valid WebAssembly module ({exc}); {BUILD_HINT}") from exc
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
        elif imp.module != WASI_MODULE:
            problems.append(f"imports {where} from a module this host does not provide")
    if problems:
        raise StrategyLoadError(
            "not a kubetrade/argo-trading strategy: " + "; ".join(problems) + f". {BUILD_HINT}"
        )
    return module
