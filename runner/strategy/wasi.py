"""The WASI preview 1 functions this host answers itself: output, clocks, sleep, randomness.

Everything else in ``wasi_snapshot_preview1`` is wasmtime's, configured with no
preopened directories, no environment, no arguments and an empty stdin, so a
strategy has no filesystem, no network (preview 1 sockets exist only as
preopened descriptors, and there are none), and nothing to read.

Strategy time is bar time (DESIGN.md): ``clock_time_get`` answers both the
realtime and the monotonic clock from a ``BarClock`` fed with the time of the
bar being processed, so Go's ``time.Now()`` is the bar's time and a replay is
deterministic. ``poll_oneoff`` (Go's ``time.Sleep`` and timers) does not wait:
it moves this call's clock forward to the earliest deadline and reports it,
which is what a sleep means in bar time. ``random_get`` is a deterministic
stream seeded from the session (``SeededRandom``), because Go seeds its map
iteration order and ``math/rand`` from it: with real randomness a strategy that
ranges over a map could place orders in a different order on each replay.
Strategies have no use for secrets (no network, no keys), so predictable
bytes cost nothing; the seed differs between sessions and strategy builds.

This module is pure: memory access arrives through ``GuestMemory`` so the
stock and the fast call paths share every line of it.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

# -- WASI preview 1 constants ------------------------------------------------------------------

REALTIME: Final = 0  # clockid
MONOTONIC: Final = 1
ESUCCESS: Final = 0  # errno
EBADF: Final = 8
EFAULT: Final = 21
EINVAL: Final = 28
EVENT_CLOCK: Final = 0  # eventtype
EVENT_FD_READ: Final = 1
EVENT_FD_WRITE: Final = 2
ABSTIME: Final = 1  # subclockflags: the timeout is an absolute time of the clock

#: Bar times are whole milliseconds: the clocks' honest resolution.
#: poll_oneoff's subscriptions and random_get's bytes per call: far above what a Go
#: runtime asks for, far below what would keep the host busy for long.
MAX_IOVECS: Final = 1024  # fd_write's vectors per call, as POSIX's IOV_MAX
MAX_SUBSCRIPTIONS: Final = 1024
MAX_RANDOM_BYTES: Final = 1 << 20
_MAX_WRITE: Final = 0x7FFF_FFFF  # the most one fd_write may say it wrote (a signed size)
RESOLUTION_NS: Final = 1_000_000
_U64: Final = (1 << 64) - 1
_SUBSCRIPTION: Final = struct.Struct("<QB7xIxxxxQQH6x")  # userdata, tag, clock id/fd, ...
_EVENT: Final = struct.Struct("<QHB5xQH6x")  # userdata, errno, type, nbytes, flags
_IOVEC: Final = struct.Struct("<II")
_U32_OUT: Final = struct.Struct("<I")
_U64_OUT: Final = struct.Struct("<Q")
if (_SUBSCRIPTION.size, _EVENT.size) != (48, 32):  # the preview 1 layouts
    raise ImportError("WASI preview 1 subscription/event layouts are 48/32 bytes")

#: The functions defined here: name -> parameter kinds ("i" i32, "I" i64); all return i32.
SIGNATURES: Final[Mapping[str, str]] = {
    "fd_write": "iiii",
    "clock_time_get": "iIi",
    "clock_res_get": "ii",
    "poll_oneoff": "iiii",
    "random_get": "ii",
}


class GuestMemory(Protocol):
    """Bounds-checked access to the calling guest's memory; raises IndexError outside it."""

    def read(self, ptr: int, length: int) -> bytes: ...

    def write(self, ptr: int, data: bytes) -> None: ...


class Sink(Protocol):
    """Where a guest's writes go (``output.GuestOutput``): it keeps ``room()`` more bytes
    this call; the rest of a write is only counted (``skip``)."""

    def room(self) -> int: ...

    def write(self, data: bytes) -> None: ...

    def skip(self, size: int) -> None: ...


# -- time --------------------------------------------------------------------------------------


class BarClock:
    """The guest's clocks: the current bar's time, plus whatever it slept during the bar.

    ``source`` returns the bar time in nanoseconds; without one the clock reads ``bar_ns``,
    which the host sets before each bar. The monotonic clock never goes back, even when
    the source does (bars of several symbols need not arrive in time order).
    """

    def __init__(self, source: Callable[[], int] | None = None) -> None:
        self._source = source
        self.bar_ns = 0
        self._base = 0  # the source value the sleep offset belongs to
        self._slept = 0  # ns the guest has slept since the source last changed
        self._monotonic = 0

    def realtime(self) -> int:
        now = self._source() if self._source is not None else self.bar_ns
        if now != self._base:
            self._base, self._slept = now, 0  # a new bar: sleeping starts over
        return min(max(now + self._slept, 0), _U64)

    def monotonic(self) -> int:
        # Never 0: Go's runtime refuses to start on a monotonic clock that reads 0 ("nanotime
        # returning zero"), which is what bar time is before the first bar.
        self._monotonic = max(self._monotonic, self.realtime(), 1)
        return self._monotonic

    def read(self, clock_id: int) -> int | None:
        """The clock's value in ns, or None for a clock this host does not have."""
        if clock_id == REALTIME:
            return self.realtime()
        if clock_id == MONOTONIC:
            return self.monotonic()
        return None  # process/thread CPU time: meaningless in bar time

    def advance_to(self, clock_id: int, deadline: int) -> None:
        """Sleep: move time forward until ``clock_id`` reads at least ``deadline``."""
        current = self.read(clock_id)
        if current is None or current >= deadline:
            return
        # Both clocks move with the realtime value; a monotonic clock held above it
        # by an earlier, later bar needs realtime to catch up to the deadline.
        self._slept += deadline - self.realtime()


# -- randomness --------------------------------------------------------------------------------


class SeededRandom:
    """A deterministic byte stream: BLAKE2b in counter mode, keyed with the seed.

    The stream does not depend on how the guest splits its requests.
    """

    def __init__(self, seed: bytes) -> None:
        self._key = hashlib.blake2b(seed, digest_size=64).digest()
        self._counter = 0
        self._buffer = b""

    def read(self, length: int) -> bytes:
        chunks = [self._buffer]
        have = len(self._buffer)
        while have < length:
            block = hashlib.blake2b(self._counter.to_bytes(8, "little"), key=self._key).digest()
            self._counter += 1
            chunks.append(block)
            have += len(block)
        data = b"".join(chunks)
        self._buffer = data[length:]
        return data[:length]


def session_seed(session: str, module_digest: bytes) -> bytes:
    """The default seed: one stream per session and strategy build, the same on every run."""
    return b"kubetrade wasi random_get\0" + session.encode() + b"\0" + module_digest


# -- the functions -----------------------------------------------------------------------------


class WasiHost:
    """The WASI functions of one instance. Each returns a WASI errno."""

    def __init__(
        self, *, clock: BarClock, random: SeededRandom, outputs: Mapping[int, Sink]
    ) -> None:
        self.clock = clock
        self.random = random
        self.outputs = outputs  # file descriptor -> where its writes go (1, 2)

    def call(self, name: str, memory: GuestMemory, args: tuple[int, ...]) -> int:
        """Dispatch by name; a guest pointer outside its memory is EFAULT, as in wasmtime."""
        try:
            if name == "fd_write":
                return self.fd_write(memory, *args)
            if name == "clock_time_get":
                return self.clock_time_get(memory, *args)
            if name == "clock_res_get":
                return self.clock_res_get(memory, *args)
            if name == "poll_oneoff":
                return self.poll_oneoff(memory, *args)
            if name == "random_get":
                return self.random_get(memory, *args)
        except IndexError:
            return EFAULT
        raise LookupError(f"no WASI function {name}")

    def fd_write(self, memory: GuestMemory, fd: int, iovs: int, count: int, written: int) -> int:
        """stdout and stderr go to logging; no other descriptor exists (no preopens).

        This replaces wasmtime's own fd_write. WasiConfig.stdout_custom runs its callback
        on a wasmtime worker thread and calls its finalizer whenever that thread drops the
        stream, which aborts the process when it happens during interpreter exit; and
        WasiConfig.stdout_file needs a writable filesystem (a pod's may be read-only) and
        does not append, so the file could never be truncated after reading. Here the write
        happens synchronously on the calling thread, in order with the host's own logging.

        A write is read from guest memory only as far as the output keeps it this call (a
        guest may point a thousand vectors at all of its memory); the rest is checked to lie
        inside memory, counted and reported written, so the guest does not retry it.
        """
        output = self.outputs.get(fd)
        if output is None:
            return EBADF
        if count > MAX_IOVECS:
            return EINVAL
        vectors = memory.read(iovs, _IOVEC.size * count)
        room = output.room()
        parts: list[bytes] = []
        total = 0
        for ptr, length in _IOVEC.iter_unpack(vectors):
            take = min(length, room)
            if take:
                parts.append(memory.read(ptr, take))
                room -= take
            if length > take:
                memory.read(ptr + length, 0)  # the unread rest lies inside memory (or EFAULT)
            total += length
        if total > _MAX_WRITE:
            return EINVAL
        memory.write(written, _U32_OUT.pack(total))
        data = b"".join(parts)
        output.write(data)
        if total > len(data):
            output.skip(total - len(data))
        return ESUCCESS

    def clock_time_get(self, memory: GuestMemory, clock_id: int, precision: int, out: int) -> int:
        now = self.clock.read(clock_id)
        if now is None:
            return EINVAL
        memory.write(out, _U64_OUT.pack(now))
        return ESUCCESS

    def clock_res_get(self, memory: GuestMemory, clock_id: int, out: int) -> int:
        if clock_id not in (REALTIME, MONOTONIC):
            return EINVAL
        memory.write(out, _U64_OUT.pack(RESOLUTION_NS))
        return ESUCCESS

    def random_get(self, memory: GuestMemory, buf: int, length: int) -> int:
        if length > MAX_RANDOM_BYTES:
            return EINVAL
        # Check the whole buffer before generating its bytes: a bad length asks for 4 GiB.
        memory.read(buf + length - 1, 1) if length else memory.read(buf, 0)
        memory.write(buf, self.random.read(length))
        return ESUCCESS

    def poll_oneoff(
        self, memory: GuestMemory, subscriptions: int, events: int, count: int, out: int
    ) -> int:
        """Wait for the first of ``count`` subscriptions, in bar time: no real waiting.

        Descriptor subscriptions are answered at once (stdout/stderr are always writable;
        any other descriptor does not exist: EBADF), together with the clocks already due.
        With only clocks, time moves to the earliest deadline, and every clock due by then
        is reported.
        """
        if count == 0 or count > MAX_SUBSCRIPTIONS:
            return EINVAL
        raw = memory.read(subscriptions, _SUBSCRIPTION.size * count)
        ready: list[bytes] = []
        clocks: list[tuple[int, int, int]] = []  # (userdata, clock id, deadline)
        for userdata, tag, ident, timeout, _precision, flags in _SUBSCRIPTION.iter_unpack(raw):
            if tag == EVENT_CLOCK:
                now = self.clock.read(ident)
                if now is None:
                    ready.append(_EVENT.pack(userdata, EINVAL, tag, 0, 0))
                    continue
                deadline = timeout if flags & ABSTIME else now + timeout
                clocks.append((userdata, ident, deadline))
            elif tag == EVENT_FD_WRITE and ident in self.outputs:
                ready.append(_EVENT.pack(userdata, ESUCCESS, tag, 0, 0))
            elif tag in (EVENT_FD_READ, EVENT_FD_WRITE):
                ready.append(_EVENT.pack(userdata, EBADF, tag, 0, 0))
            else:
                return EINVAL
        if not ready and clocks:
            userdata, ident, deadline = min(clocks, key=lambda c: c[2] - self._now(c[1]))
            self.clock.advance_to(ident, deadline)
        for userdata, ident, deadline in clocks:
            if self._now(ident) >= deadline:
                ready.append(_EVENT.pack(userdata, ESUCCESS, EVENT_CLOCK, 0, 0))
        memory.write(events, b"".join(ready))
        memory.write(out, _U32_OUT.pack(len(ready)))
        return ESUCCESS

    def _now(self, clock_id: int) -> int:
        now = self.clock.read(clock_id)
        # Only clocks that read() accepted get here; 0 keeps a broken invariant harmless.
        return 0 if now is None else now
