"""A block of guest memory the host reuses for every request and host-function response.

The plugin ABI moves each message through a buffer from the guest's ``malloc``:
the host mallocs the request of every export call and frees it after the call,
and mallocs the response of every host function, which go-plugin guests never
free (the host frees those after the export returns). On a Go guest each
``malloc`` and ``free`` is a call into the Go runtime, about a microsecond
each: three of them on a plain bar, eight on a bar that places an order.

So the host mallocs one block per instance when it loads and hands out pieces
of it instead, bump-allocated and reset at the start of every export call.
That keeps the ABI's lifetimes: under it no guest may touch a request or a
response after the export call that received it returned (the host frees them
then), and a piece is reused only from the next export call on; within one
call every piece is distinct. The block itself stays malloc'd, so a guest's
allocator never hands it out. A message that does not fit takes the ABI's
ordinary path: its own malloc, freed after the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: The default block: a bar's request and the responses of a busy bar fit many times over.
SCRATCH_BYTES: Final = 64 * 1024
_ALIGN: Final = 8


@dataclass(slots=True)
class Scratch:
    base: int = 0  # the block's guest address; 0: no block, every message is malloc'd
    capacity: int = 0
    used: int = 0

    def take(self, size: int) -> int:
        """A guest address with ``size`` bytes free until the current export call returns,
        or 0 when the block cannot hold them (then the caller mallocs)."""
        start = self.used
        end = start + size
        if end > self.capacity:
            return 0
        self.used = (end + _ALIGN - 1) & -_ALIGN
        return self.base + start

    def restart(self, size: int) -> int:
        """``reset()`` then ``take(size)``: a call's request, its first piece."""
        if size > self.capacity:
            self.used = 0
            return 0
        self.used = (size + _ALIGN - 1) & -_ALIGN
        return self.base

    def holds(self, ptr: int) -> bool:
        """Whether ``ptr`` points into the block (such a pointer is never freed)."""
        return self.base <= ptr < self.base + self.capacity

    def reset(self) -> None:
        """A new export call: the previous call's pieces are free again."""
        self.used = 0
