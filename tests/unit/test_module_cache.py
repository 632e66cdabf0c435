"""Compiled strategies are cached on disk, privately, and the cache does not grow forever."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import wasmtime

from kubetrade.runner.strategy import modules


def test_cache_entries_are_private_reused_and_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETRADE_CACHE", str(tmp_path))
    directory = tmp_path / "wasm"
    directory.mkdir()
    for i in range(40):  # old entries, oldest first
        old = directory / f"{i:064x}.cwasm"
        old.write_bytes(b"stale")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    engine = modules.shared_engine()
    wasm = bytes(wasmtime.wat2wasm('(module (func (export "f") (result i32) i32.const 7))'))
    modules.native_code(engine, wasm)
    entries = sorted(directory.glob("*.cwasm"))
    assert len(entries) == modules.CACHE_ENTRIES
    newest = max(entries, key=lambda p: p.stat().st_mtime)
    assert stat.S_IMODE(newest.stat().st_mode) == 0o600
    assert not (directory / f"{0:064x}.cwasm").exists()  # the oldest went first
    # A second process-equivalent load reads the cached machine code back.
    module = modules.native_code(engine, wasm)
    assert [e.name for e in module.exports] == ["f"]


def test_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETRADE_CACHE", "off")
    monkeypatch.setenv("HOME", str(tmp_path))
    wasm = bytes(wasmtime.wat2wasm("(module)"))
    modules.native_code(modules.shared_engine(), wasm)
    assert not any(tmp_path.rglob("*.cwasm"))
