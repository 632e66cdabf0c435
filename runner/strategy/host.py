"""The wasmtime host: loads one strategy module and calls it through the plugin ABI.

One ``WasmStrategy`` owns one wasmtime store and instance for the life of a
session. Calls are synchronous; call a strategy from one thread at a time.

Sandbox: WASI preview 1 with no preopened directories, no environment, no
arguments and an empty stdin; the guest's stdout and stderr forwarded to
logging, in bounded lines at a bounded rate (``output``); clocks that return
bar time, sleeps that advance it, and randomness seeded from the session
(``wasi``). One memory budget (``SandboxLimits.max_memory_bytes``) covers the
module's one linear memory and its one table together (``Store.set_limits``);
every export call is bounded in time by epoch interruption, driven by one
process-wide ticker thread (``ticker``), and by host and WASI functions
checking the same deadline (``budget``), which also caps what a call may make
the host keep. Modules are checked, compiled and cached once per process
(``preflight``, ``modules``).

Calls cross the boundary on one of two paths (``guest``): the fast path
through wasmtime's unchecked C API (``fastcall``, the default) or wasmtime-py's
stock calls. Choose with ``WasmStrategy(fast=...)`` or the environment
variable ``KUBETRADE_WASM_PATH=fast|stock``; both give the same results.
Export requests travel through one block of guest memory malloc'd when the
module loads, and host-function responses through blocks filled front to back
(``scratch``), so a bar costs no malloc or free in the guest; bars are packed
straight into wire bytes (``wire``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from google.protobuf.message import DecodeError, Message
from wasmtime import (
    ExitTrap,
    Instance,
    Linker,
    Memory,
    Store,
    Trap,
    WasiConfig,
    WasmtimeError,
)

from kubetrade.runner.domain import Bar, format_ms
from kubetrade.runner.strategy import abi, modules, preflight, ticker, wire
from kubetrade.runner.strategy.api import HostApi
from kubetrade.runner.strategy.budget import Budgeted, CallBudget, CallTimeout
from kubetrade.runner.strategy.errors import StrategyError, StrategyLoadError
from kubetrade.runner.strategy.guest import (
    CallPath,
    FastPath,
    GuestCalls,
    HostSide,
    HostTrap,
    StockPath,
    is_interrupt,
    trap_summary,
)
from kubetrade.runner.strategy.output import GuestOutput
from kubetrade.runner.strategy.pb import strategy_pb2 as pb
from kubetrade.runner.strategy.printable import printable
from kubetrade.runner.strategy.scratch import SCRATCH_BYTES, Scratch
from kubetrade.runner.strategy.version import check_engine_version
from kubetrade.runner.strategy.wasi import BarClock, SeededRandom, WasiHost, session_seed

if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from os import PathLike

logger = logging.getLogger("kubetrade.strategy")

M = TypeVar("M", bound=Message)

_MIB: Final = 1024 * 1024
_LENGTH: Final = abi.ERROR_BIT - 1  # a packed result's length bits
_QUOTE: Final = 1024  # the most of a strategy's error string a message quotes
# The session's names for the limits, which every message about them uses.
TIMEOUT_FIELD: Final = "spec.engine.strategyCallTimeoutSeconds"
MEMORY_FIELD: Final = "spec.engine.strategyMemoryLimitMiB"

__all__ = ["SandboxLimits", "StrategyError", "StrategyLoadError", "WasmStrategy"]


@dataclass(frozen=True)
class SandboxLimits:
    """The session's strategy limits: spec.engine.strategyMemoryLimitMiB (in bytes here) and
    spec.engine.strategyCallTimeoutSeconds. Messages name the spec fields."""

    max_memory_bytes: int = 256 * _MIB  # linear memory and table together
    call_timeout_s: float = 5.0


# -- traps -----------------------------------------------------------------------------------


def _where(export: str, bar: Bar | None) -> str:
    """Names the failed call for a user: built only when something failed."""
    return f"{export} on {bar.symbol} bar {format_ms(bar.time)}" if bar else export


# -- the strategy ----------------------------------------------------------------------------

_PATH_ENV: Final = "KUBETRADE_WASM_PATH"


def _fast_by_default(fast: bool | None) -> bool:
    """An explicit choice wins; then the environment; the fast path is the default."""
    if fast is not None:
        return fast
    choice = os.environ.get(_PATH_ENV, "fast").strip().lower() or "fast"
    if choice not in ("fast", "stock"):
        raise StrategyLoadError(f"{_PATH_ENV} must be 'fast' or 'stock', not {choice!r}")
    return choice == "fast"


class WasmStrategy:
    """One strategy instance. Not thread-safe: call it from one thread at a time."""

    engine_version: str  # the strategy SDK's engine version string, "" if it does not say
    fast: bool  # which call path this instance uses

    def __init__(
        self,
        wasm: bytes,
        api: HostApi,
        *,
        session: str = "",
        limits: SandboxLimits = SandboxLimits(),  # frozen, so sharing the default is safe
        clock: Callable[[], int] | None = None,
        random_seed: bytes | None = None,
        fast: bool | None = None,
        scratch_bytes: int = SCRATCH_BYTES,
    ) -> None:
        """``clock`` returns the current bar time in ns for the guest's WASI clocks; without
        it the clock reads the bar passed to ``process_data`` (0 before the first bar).
        ``random_seed`` seeds WASI random_get; the default derives it from the session
        name and the module. ``fast`` picks the call path (see the module docstring).
        ``scratch_bytes`` sizes the block every export request reuses and the blocks
        responses are packed into (``scratch``); 0 mallocs and frees every message, as
        the ABI's reference host does (less its leak of responses)."""
        self.session = session
        self.limits = limits
        self.fast = _fast_by_default(fast)
        # The call deadline, in epoch ticks, which host functions check too; and what a call
        # may make the host keep. The host functions charge the same budget.
        self._budget = budget = CallBudget(limits.call_timeout_s)
        if isinstance(api, Budgeted):
            api.budget = budget
        self._armed_at = -1  # the tick in which the deadline was last set
        self._closed = False
        self._exit_code: int | None = None
        self._stdout = GuestOutput(session, "stdout", logging.INFO)
        self._stderr = GuestOutput(session, "stderr", logging.WARNING)

        engine = modules.shared_engine()
        digest = hashlib.sha256(wasm).digest()
        module, shape = modules.compiled(engine, wasm, digest)
        memory_bytes = self._memory_budget(shape)
        self._clock = BarClock(clock)
        wasi = WasiHost(
            clock=self._clock,
            random=SeededRandom(random_seed or session_seed(session, digest)),
            outputs={1: self._stdout, 2: self._stderr},
        )
        self._host = HostSide(api, wasi, budget, arena_bytes=scratch_bytes)
        self._scratch = Scratch()  # empty until the module has loaded
        self._store = store = Store(engine)
        # One budget for all the guest's memory: the one linear memory gets what the table
        # (8 bytes an element, fixed at its declared size: table.grow fails) leaves of it.
        # One instance, one memory, at most one table (preflight refused anything else).
        store.set_limits(
            memory_size=memory_bytes,
            table_elements=shape.table_min,
            instances=1,
            tables=shape.tables,
            memories=1,
        )
        store.set_wasi(WasiConfig())  # no preopens, no env, no args, no stdin
        self._linker = linker = Linker(engine)
        linker.define_wasi()
        # Ours replace wasmtime's fd_write, clock_time_get, clock_res_get, poll_oneoff and
        # random_get (see wasi.py); the env host functions are ours alone.
        linker.allow_shadowing = True
        self._path: CallPath = FastPath(store, self._host) if self.fast else StockPath(self._host)
        self._path.define(linker)

        store.set_epoch_deadline(budget.allowed)
        try:
            self._instance: Instance = linker.instantiate(store, module)
        except (WasmtimeError, Trap) as exc:
            raise StrategyLoadError(self._load_failure("instantiation", exc)) from exc
        memory = self._instance.exports(store)[abi.MEMORY]
        if not isinstance(memory, Memory):  # preflight checked it: wasmtime disagrees
            raise StrategyLoadError(f"export {abi.MEMORY!r} is not a memory; {modules.BUILD_HINT}")
        self._memory = memory
        self._calls: GuestCalls = self._path.bind(store, self._instance)

        # A reactor's constructor must run before any other export (Go: runtime and package init).
        self._load_call(abi.INITIALIZE_REACTOR)
        version = self._load_call(abi.API_VERSION_EXPORT, i64=True)
        if version != abi.API_VERSION:
            raise StrategyLoadError(
                f"the strategy speaks plugin ABI version {abi.to_i64(version)}, but this runner "
                f"speaks only version {abi.API_VERSION}; {modules.BUILD_HINT}"
            )
        self.engine_version = self._check_engine_version()
        if scratch_bytes > 0:
            self._allocate_scratch(scratch_bytes)

    def _memory_budget(self, shape: preflight.Shape) -> int:
        """What the linear memory may grow to: the budget less the table, in whole pages."""
        cap = self.limits.max_memory_bytes
        table = shape.table_bytes
        need = shape.memory_min_pages * preflight.PAGE_BYTES + table
        if need > cap:
            raise StrategyLoadError(
                f"the module needs {need / _MIB:.4g} MiB to start (its initial memory and "
                f"table), more than {MEMORY_FIELD} ({cap / _MIB:g} MiB) allows"
            )
        return (cap - table) // preflight.PAGE_BYTES * preflight.PAGE_BYTES

    def _allocate_scratch(self, size: int) -> None:
        base = self._load_call(abi.MALLOC, size=size)
        if not base:
            return  # no block: every message takes its own malloc, as without one
        end = self._memory.data_len(self._store)
        if base + size > end:
            raise StrategyLoadError(
                f"the strategy's malloc({size}) returned {base}, but guest memory ends at "
                f"{end}: its allocator is broken; {modules.BUILD_HINT}"
            )
        self._scratch.base, self._scratch.capacity = base, size

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
        self._clock.bar_ns = bar.time * 1_000_000  # the guest's clocks read this bar's time
        self._call(abi.PROCESS_DATA, wire.process_data_request(bar), bar)

    def name(self) -> str:
        return self._ask(abi.NAME, pb.NameResponse).name

    def identifier(self) -> str:
        return self._ask(abi.GET_IDENTIFIER, pb.GetIdentifierResponse).identifier

    def description(self) -> str:
        return self._ask(abi.GET_DESCRIPTION, pb.GetDescriptionResponse).description

    def config_schema(self) -> str:
        return self._ask(abi.GET_CONFIG_SCHEMA, pb.GetConfigSchemaResponse).schema

    def close(self) -> None:
        """Release the instance. Needed when ``api`` refers back to this object: host
        callbacks are held globally until wasmtime finalizes them, so such a cycle is never
        garbage-collected."""
        if self._closed:
            return
        self._closed = True
        self._stdout.flush()
        self._stderr.flush()
        self._host.api = None
        self._path.forget()
        del self._calls, self._memory, self._instance
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
        calls = self._calls
        if self._armed_at != ticker.ticks:
            self._arm()
        if self._budget.spent:  # the last call placed orders, logged or marked
            self._budget.reset()
        request_ptr = result_ptr = malloced = 0
        try:
            if payload:
                request_ptr = self._scratch.place(len(payload))
                if not request_ptr:
                    request_ptr = malloced = calls.malloc(len(payload))
                    if not request_ptr:
                        raise IndexError(f"the strategy's malloc({len(payload)}) returned 0")
                calls.write(request_ptr, payload)
            packed = calls.exports[export](request_ptr, len(payload))
            result_ptr = packed >> 32
            # (0, 0), an empty message, is what process_data returns on almost every bar.
            result = calls.read(result_ptr, packed & _LENGTH) if packed else b""
        except (Trap, WasmtimeError) as exc:
            raise self._trap_error(_where(export, bar), export, exc) from exc
        except IndexError as exc:
            raise StrategyError(
                f"{_where(export, bar)} passed a bad buffer: {exc}", call=export, trapped=False
            ) from exc
        finally:
            if malloced or result_ptr or self._host.responses or self._host.arena.pending:
                self._release(malloced, result_ptr)
            elif self._stdout.written or self._stderr.written:  # nothing to free
                self._stdout.take_first()
                self._stderr.take_first()
        if packed & abi.ERROR_BIT:
            # The strategy's own words: printable, and no longer than a message should be.
            text = printable(result[:_QUOTE].decode("utf-8", "replace"))
            more = f" ... ({len(result)} bytes)" if len(result) > _QUOTE else ""
            raise StrategyError(
                f"{_where(export, bar)} failed: {text}{more}", call=export, trapped=False
            )
        return result

    def _arm(self) -> None:
        """Give the next call its full time budget: the deadline is ``_deadline`` ticks past
        the current epoch. Setting it is a call into wasmtime, and a bar's call usually
        takes a few microseconds, so ``_call`` re-arms only when the epoch has ticked since
        the last time; a skipped re-arm costs at most the one tick the +1 in ``_deadline``
        allows for (the ticker bumps the epoch and ``ticker.ticks`` one after the other).
        Host and WASI functions check the same deadline (``budget``)."""
        self._armed_at = ticker.ticks
        self._budget.arm()
        self._calls.set_deadline(self._budget.allowed)

    def _release(self, request_ptr: int, result_ptr: int) -> None:
        """Free this call's buffers in the guest, then forward its output.

        Besides the request and the result, this frees the responses the host malloc'd for
        host functions during the call, and response blocks that filled up a call earlier:
        go-plugin guests never free responses (they would stay in the Go allocator's map
        forever, a leak in a long session). A guest still reading one (a goroutine parked
        across calls) holds a Go slice into it, which keeps the allocation alive once freed
        (see ``scratch``). A buffer may appear twice (a guest returning a host response as
        its own result), hence the set. A result inside the request block or a response
        block belongs to the block and is never freed on its own.
        """
        responses, arena = self._host.responses, self._host.arena
        if self._scratch.holds(result_ptr) or arena.holds(result_ptr):
            result_ptr = 0
        if responses or arena.pending:
            pointers: Collection[int] = {
                p for p in (request_ptr, result_ptr, *responses, *arena.drain()) if p
            }
            responses.clear()
        elif not result_ptr or result_ptr == request_ptr:  # the common case: no set to build
            pointers = (request_ptr,) if request_ptr else ()
        else:
            pointers = (request_ptr, result_ptr) if request_ptr else (result_ptr,)
        # An exited guest cannot run again, not even free().
        if pointers and self._exit_code is None:
            calls = self._calls
            self._arm()  # the call may have used most of it up
            try:
                for p in pointers:
                    calls.free(p)
            except (Trap, WasmtimeError) as exc:
                logger.warning(
                    "[%s] the strategy's free() trapped: %s", self.session, trap_summary(exc)
                )
        self._stdout.take_first()
        self._stderr.take_first()  # the next call's error quotes only its own stderr

    def _trap_error(self, where: str, export: str, exc: Exception) -> StrategyError:
        if isinstance(exc, HostTrap):
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
        if is_interrupt(exc):
            inside = f" inside {exc.where}" if isinstance(exc, CallTimeout) else ""
            return StrategyError(
                f"strategy call {where} exceeded {self.limits.call_timeout_s:g}s and was stopped"
                f"{inside} ({TIMEOUT_FIELD}); look for an endless loop or heavy per-bar work",
                call=export,
                trapped=True,
                timed_out=True,
            )
        # A Go panic or fatal error prints to stderr, then executes `unreachable`: the stderr
        # line is the useful part. After a panic the Go runtime is broken for good.
        return StrategyError(
            f"{where} trapped: {trap_summary(exc)}{said}{self._memory_hint()}",
            call=export,
            trapped=True,
        )

    def _memory_hint(self) -> str:
        # A guest whose memory.grow is refused usually aborts. Nothing reports the refusal, and
        # a Go runtime asks for big blocks, so mention the cap once memory is three-quarters used.
        used, cap = self._memory.data_len(self._store), self.limits.max_memory_bytes
        if used * 4 < cap * 3:
            return ""
        used_mib, cap_mib = used / _MIB, cap / _MIB
        return f" (memory: {used_mib:g} MiB used of the {cap_mib:g} MiB allowed by {MEMORY_FIELD})"

    def _unusable(self, export: str) -> str:
        if self._closed:
            return f"{export}: the strategy has been closed"
        return (
            f"{export}: the strategy exited earlier with code {self._exit_code} and cannot run "
            "again; restart the session"
        )

    # -- loading ----------------------------------------------------------------------------

    def _load_call(self, name: str, *, i64: bool = False, size: int | None = None) -> int:
        """Call an export while loading: a parameterless one (returning its i64 result,
        unsigned, if ``i64``) or, given ``size``, ``malloc(size)``."""
        self._arm()
        try:
            if size is not None:
                return self._calls.malloc(size)
            if i64:
                return self._calls.run_i64(name)
            self._calls.run(name)
            return 0
        except (Trap, WasmtimeError) as exc:
            stderr = self._stderr.take_first()
            said = f"; its stderr began: {stderr}" if stderr else ""
            raise StrategyLoadError(self._load_failure(name, exc) + said) from exc
        finally:
            self._stdout.flush()
            self._stderr.take_first()

    def _load_failure(self, step: str, exc: Exception) -> str:
        if is_interrupt(exc):
            return f"{step} exceeded {self.limits.call_timeout_s:g}s ({TIMEOUT_FIELD})"
        if "memory" in str(exc) and "limit" in str(exc):
            return (
                f"{step} failed: {trap_summary(exc)}; the module needs more memory than "
                f"{MEMORY_FIELD} ({self.limits.max_memory_bytes / _MIB:g} MiB) allows"
            )
        if isinstance(exc, ExitTrap):
            return f"{step} failed: the strategy exited with code {exc.code} (see its stderr)"
        if isinstance(exc, HostTrap):
            return f"{step} failed: {exc}"
        return f"{step} failed: {trap_summary(exc)}"

    def _check_engine_version(self) -> str:
        """Read the optional engine version and apply the policy of ``version.py``."""
        text = self._read_engine_version()
        verdict = check_engine_version(text)
        if not verdict.accepted:
            raise StrategyLoadError(verdict.reason)
        level = logging.WARNING if verdict.unclear else logging.INFO
        logger.log(level, "[%s] strategy engine version: %s", self.session, verdict.reason)
        return text

    def _read_engine_version(self) -> str:
        if abi.ENGINE_VERSION_EXPORT not in self._instance.exports(self._store):
            return ""
        packed = abi.unpack(self._load_call(abi.ENGINE_VERSION_EXPORT, i64=True))
        try:
            text = self._calls.read(packed.ptr, packed.length)
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
