"""Guest memory the host reuses for requests and host-function responses.

The plugin ABI moves each message through a buffer from the guest's ``malloc``:
the host mallocs the request of every export call, writes it, calls the
export and frees the request after the call. On a Go guest ``malloc`` and
``free`` are calls into the Go runtime, about a microsecond each, twice on
every bar. So the host mallocs one block per instance when it loads and
writes each request there instead. That keeps the ABI's lifetime: the export
reads its request (go-plugin exports unmarshal it, copying, before anything
else) and must not touch it once the call returned, when the host would have
freed it; the block is rewritten only by the next export call. The block
stays malloc'd, so the guest's allocator never hands it out, and a guest
that returns a pointer into it as its result gets nothing freed. A request
that does not fit takes the ABI's ordinary path: its own malloc and free.

Host-function responses need more care. A go-plugin guest never frees them,
and a goroutine that outlives its export call may hold one it has not read
yet (it resumes only in a later call): memory rewritten on every call could
hand it another call's bytes. So responses go to a ``ResponseArena``: blocks
filled front to back and never rewritten. A full block is replaced by a new
one and freed one export call after the call that filled it; a goroutine still
reading a response in it keeps it alive, since its slice points into that Go
allocation, which is what protected such a goroutine when each response had
its own malloc, freed after the call. The arena saves that malloc and free per
response. A response bigger than a quarter block takes its own malloc, freed
after the call. No message starts at a block's own address, so a guest that
frees what it receives (some go-plugin wrappers do) cannot free a block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

#: The default block size, for the request block and each response block.
SCRATCH_BYTES: Final = 16 * 1024
#: Messages start this far into a block. No pointer handed to the guest is then a block's own
#: address: some guests free what they receive, and freeing the block would free it all.
_GAP: Final = 8


@dataclass(slots=True)
class Scratch:
    base: int = 0  # the block's guest address; 0: no block, every request is malloc'd
    capacity: int = 0

    def place(self, size: int) -> int:
        """Where a request of ``size`` bytes goes: in the block, or 0 if it does not fit."""
        return self.base + _GAP if self.base and size <= self.capacity - _GAP else 0

    def holds(self, ptr: int) -> bool:
        """Whether ``ptr`` points into the block (such a pointer is never freed)."""
        return self.base <= ptr < self.base + self.capacity


@dataclass(slots=True)
class ResponseArena:
    """Host-function responses, packed front to back into blocks that are never rewritten."""

    block_bytes: int  # 0: no arena, every response takes its own malloc
    block: int = 0  # the current block's guest address; 0: none yet
    used: int = 0
    retired: list[int] = field(default_factory=list)  # filled up during this export call
    aging: list[int] = field(default_factory=list)  # filled up during the previous one

    def take(self, size: int, malloc: Callable[[int], int]) -> int:
        """A guest address for a response of ``size`` bytes, or 0 if it should have its own
        malloc. A full block is replaced by a new one."""
        if size > self.block_bytes // 4:
            return 0
        if not self.block or self.used + size > self.block_bytes:
            fresh = malloc(self.block_bytes)
            if not fresh:
                return 0  # the guest cannot spare a block: per-response mallocs report it
            if self.block:
                self.retired.append(self.block)
            self.block, self.used = fresh, _GAP
        out = self.block + self.used
        self.used += (size + 7) & -8
        return out

    def holds(self, ptr: int) -> bool:
        """Whether ``ptr`` points into a block (a guest may return a response as its result:
        that pointer is never freed on its own)."""
        size = self.block_bytes
        return any(b <= ptr < b + size for b in (self.block, *self.retired, *self.aging) if b)

    @property
    def pending(self) -> bool:
        return bool(self.retired or self.aging)

    def drain(self) -> list[int]:
        """Blocks to free now that an export call has returned: those that filled up in the
        call before it. A block outlives the call that retired it by one more call, for a
        goroutine parked between a host call and reading its answer."""
        due, self.aging, self.retired = self.aging, self.retired, []
        return due
