"""Freed memory goes back to the system: the operator's resident size follows what it
holds, not the highest it ever held (its Pod's memory limit is set against it)."""

from __future__ import annotations

import asyncio
import os

from kubetrade.operator import memory


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_freed_heap_memory_is_returned_by_a_trim() -> None:
    trim = memory._malloc_trim()
    assert trim is not None  # glibc, as in the image
    # 100 KiB blocks come from the heap (under glibc's mmap threshold); the last one, kept,
    # pins the heap's top, so freeing the others returns nothing by itself.
    blocks = [bytearray(100 * 1024) for _ in range(2000)]
    kept = blocks[-1]
    held = resident_mb()
    del blocks
    before = resident_mb()
    trim()
    after = resident_mb()
    assert kept is not None
    assert held - before < 50, (held, before)  # freeing alone gave (almost) nothing back
    assert before - after > 100, (before, after)  # the trim gave back most of 195 MiB


def test_the_trimming_task_runs_until_cancelled() -> None:
    async def scenario() -> None:
        task = asyncio.create_task(memory.trim_now_and_then(0.01))
        await asyncio.sleep(0.05)
        assert not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled()

    asyncio.run(scenario())


def test_large_blocks_go_back_when_freed_once_configured() -> None:
    # A list response or a watch buffer is a large block: with the thresholds fixed it
    # gets pages of its own, returned at free, even after glibc has seen such blocks freed
    # (which otherwise raises its threshold until they come from the heap and stay).
    assert memory.configure()
    for _ in range(3):  # frees that would have raised a dynamic threshold
        blocks = [bytearray(512 * 1024) for _ in range(20)]
        del blocks
    base = resident_mb()
    blocks = [bytearray(512 * 1024) for _ in range(400)]  # 200 MiB
    pin = bytearray(1000)  # what comes after them, as in a running operator
    held = resident_mb()
    del blocks
    after = resident_mb()
    assert pin  # held across the measurement
    # (Without configure() this process kept all 200 MiB: measured 200 -> 200.)
    assert held - base > 150, (base, held)
    assert after - base < 20, (base, held, after)  # given back without a trim
