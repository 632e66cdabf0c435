"""A block of guest memory the host reuses for the request of every export call.

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

Host-function responses do not come here. A go-plugin guest never frees
them, and a goroutine that outlives its export call may hold one it has not
read yet (it resumes only in a later call): a block rewritten on every call
would hand it another call's bytes. They keep their own malloc each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: The default block: a bar's request (about 70 bytes) fits with room for big configs.
SCRATCH_BYTES: Final = 64 * 1024


@dataclass(slots=True)
class Scratch:
    base: int = 0  # the block's guest address; 0: no block, every request is malloc'd
    capacity: int = 0

    def place(self, size: int) -> int:
        """Where a request of ``size`` bytes goes: the block, or 0 if it does not fit."""
        return self.base if size <= self.capacity else 0

    def holds(self, ptr: int) -> bool:
        """Whether ``ptr`` points into the block (such a pointer is never freed)."""
        return self.base <= ptr < self.base + self.capacity
