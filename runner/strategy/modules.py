"""Strategy modules compiled once: the process's wasmtime Engine, and compiled modules
cached in memory and on disk, each checked against the plugin ABI before it compiles.

Compiling a Go strategy takes seconds, so a module is compiled once per process (and its
machine code kept on disk between processes) and shared by every store. One engine serves
every strategy in the process, and one ticker thread (``ticker``) advances its epoch,
which is what bounds each strategy call (``WasmStrategy`` sets a deadline a number of
ticks ahead). A module is read by ``preflight`` first: one that is too big, has too many
functions, or is not a plugin-ABI strategy is refused before it costs a compile.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import threading
from pathlib import Path
from typing import Final

from wasmtime import Config, Engine, Module, WasmtimeError

from kubetrade.runner.strategy import abi, preflight, ticker
from kubetrade.runner.strategy.api import DISPATCH
from kubetrade.runner.strategy.errors import StrategyLoadError

logger = logging.getLogger("kubetrade.strategy")

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
            ticker.start(_engine)
        return _engine


_modules: dict[bytes, tuple[Module, preflight.Shape]] = {}
_MODULE_CACHE_SIZE: Final = 4
_HOST_FUNCTIONS: Final = frozenset(DISPATCH)


def compiled(engine: Engine, wasm: bytes, key: bytes) -> tuple[Module, preflight.Shape]:
    """Compiling a Go strategy takes seconds; a module is reusable by every store.

    ``key`` is the SHA-256 of ``wasm``. Returns the module and its shape (``preflight``).
    """
    with _engine_lock:
        entry = _modules.get(key)
    if entry is None:
        entry = compile_checked(engine, wasm)
        with _engine_lock:
            if len(_modules) >= _MODULE_CACHE_SIZE:
                del _modules[next(iter(_modules))]  # oldest first
            _modules[key] = entry
    return entry


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


def compile_checked(engine: Engine, wasm: bytes) -> tuple[Module, preflight.Shape]:
    """Check the module's bytes against the caps and the ABI, then compile it (or load it
    from the disk cache): nothing that fails the checks is compiled or cached."""
    try:
        shape = preflight.read_shape(wasm)
    except preflight.ModuleRefused as exc:
        raise StrategyLoadError(f"strategy module refused: {exc}; {BUILD_HINT}") from None
    problems = preflight.abi_problems(shape, host_functions=_HOST_FUNCTIONS)
    if problems:
        raise StrategyLoadError(
            "not a kubetrade/argo-trading strategy: " + "; ".join(problems) + f". {BUILD_HINT}"
        )
    try:
        module = native_code(engine, wasm)
    except WasmtimeError as exc:
        raise StrategyLoadError(f"not a valid WebAssembly module ({exc}); {BUILD_HINT}") from exc
    return module, shape
