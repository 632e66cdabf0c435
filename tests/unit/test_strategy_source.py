"""Strategies load from plain, xz- or gzip-compressed files; anything else is refused clearly."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

import pytest
from helpers import SMA_WASM

from kubetrade.runner.strategy import source
from kubetrade.runner.strategy.source import StrategySourceError, read_strategy


def test_compressed_strategies_give_the_same_bytes(tmp_path: Path) -> None:
    wasm = SMA_WASM.read_bytes()
    xz = tmp_path / "sma.wasm.xz"
    xz.write_bytes(lzma.compress(wasm, preset=9 | lzma.PRESET_EXTREME))
    gz = tmp_path / "strategy"  # the name does not matter, the magic bytes do
    gz.write_bytes(gzip.compress(wasm))
    assert len(xz.read_bytes()) < 1024 * 1024  # fits a ConfigMap
    assert read_strategy(xz) == wasm
    assert read_strategy(gz) == wasm
    assert read_strategy(SMA_WASM) == wasm


def test_not_wasm_and_bombs_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(StrategySourceError, match="not a WebAssembly module"):
        read_strategy(text)
    broken = tmp_path / "broken.xz"
    broken.write_bytes(lzma.compress(b"\x00asm" + bytes(1000))[:40])
    with pytest.raises(StrategySourceError, match="cannot decompress"):
        read_strategy(broken)
    monkeypatch.setattr(source, "MAX_WASM_BYTES", 10_000)
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(b"\x00asm" + bytes(50_000)))
    with pytest.raises(StrategySourceError, match="more than 10000 bytes"):
        read_strategy(bomb)
