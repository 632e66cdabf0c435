"""Sessions sharing a process share one freeze of the garbage collector."""

from __future__ import annotations

import gc
import weakref

from kubetrade.runner import collector


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_the_freeze_lasts_until_the_last_session_stops() -> None:
    assert gc.get_freeze_count() == 0
    collector.session_started()
    assert gc.get_freeze_count() > 0
    collector.session_started()  # a second session while the first runs
    collector.session_stopped()
    assert gc.get_freeze_count() > 0  # the other one still runs
    collector.session_stopped()
    assert gc.get_freeze_count() == 0


def test_dead_cycles_are_collected_not_frozen() -> None:
    dead = weakref.ref(Node())  # garbage at once, but only the collector can free it
    gc.disable()  # no automatic pass may free it first
    try:
        assert dead() is not None
        collector.session_started()
        try:
            assert dead() is None
        finally:
            collector.session_stopped()
    finally:
        gc.enable()
