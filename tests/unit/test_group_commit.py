"""Quiet bars are committed in groups bounded by count and by time."""

from __future__ import annotations

from kubetrade.runner.session.commit import GroupCommit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def bars_until_due(group: GroupCommit, clock: Clock, step: float) -> int:
    count = 0
    while True:
        count += 1
        clock.now += step
        if group.bar_done():
            group.committed()
            return count


def test_a_group_is_due_after_max_bars() -> None:
    clock = Clock()
    group = GroupCommit(max_bars=100, max_seconds=60, clock=clock)
    assert [bars_until_due(group, clock, 0.0001) for _ in range(3)] == [100, 100, 100]


def test_a_group_of_slow_bars_is_due_after_max_seconds() -> None:
    clock = Clock()
    group = GroupCommit(max_bars=1000, max_seconds=0.2, clock=clock)
    assert bars_until_due(group, clock, 0.001) == 201  # 0.2 s after the group's first bar
    assert bars_until_due(group, clock, 0.5) == 2


def test_one_bar_groups_when_max_bars_is_one() -> None:
    clock = Clock()
    group = GroupCommit(max_bars=1, max_seconds=60, clock=clock)
    assert [bars_until_due(group, clock, 0.0) for _ in range(3)] == [1, 1, 1]
