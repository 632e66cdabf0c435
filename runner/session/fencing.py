"""Epoch fencing: a runner that a newer one has replaced must send nothing more.

Every start of a session opens a new epoch in its journal, and the epoch is
part of every client order id. On Kubernetes an old runner pod may still live
(on another node, where the state directory's flock does not reach) while a
new one has resumed the session. The epoch is the fencing token: the journal
and the paper venue each check, in the very transaction that records a step,
that the newest epoch is still the runner's own, and refuse the step if not.
"""

from __future__ import annotations

from pathlib import Path


class Fenced(Exception):
    """A newer runner has taken over this session's state; this one must stop."""

    def __init__(self, what: str, path: Path, *, ours: int, newest: int) -> None:
        super().__init__(
            f"{what} {path} was taken over by epoch {newest} of this session (this runner "
            f"is epoch {ours}): a newer runner resumed the session, so this one stops and "
            "sends nothing more"
        )
        self.ours = ours
        self.newest = newest
