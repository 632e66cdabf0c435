"""Reading a strategy's bytes: plain .wasm, or compressed with xz or gzip.

A compiled Go strategy is ~4.5 MB, past the 1 MiB a Kubernetes ConfigMap can
hold; compressed with `xz -9e` it is ~0.85 MB and fits. Compression is
recognised by its magic bytes, whatever the file is called.
"""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

WASM_MAGIC = b"\x00asm"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_GZIP_MAGIC = b"\x1f\x8b"
MAX_WASM_BYTES = 64 * 1024 * 1024  # far above any real strategy; stops a decompression bomb


class StrategySourceError(Exception):
    """The strategy file cannot be read as WebAssembly."""


def read_strategy(path: Path) -> bytes:
    data = path.read_bytes()
    if data.startswith(_XZ_MAGIC):
        data = _inflate(lzma.LZMADecompressor(), data, path)
    elif data.startswith(_GZIP_MAGIC):
        data = _inflate(_GzipDecompressor(), data, path)
    if not data.startswith(WASM_MAGIC):
        raise StrategySourceError(
            f"{path} is not a WebAssembly module (nor one compressed with xz or gzip); "
            "build it with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared"
        )
    return data


class _GzipDecompressor:
    def __init__(self) -> None:
        import zlib

        self._inner = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return self._inner.decompress(data, max_length)

    @property
    def eof(self) -> bool:
        return self._inner.eof


def _inflate(
    decompressor: lzma.LZMADecompressor | _GzipDecompressor, data: bytes, path: Path
) -> bytes:
    try:
        out = decompressor.decompress(data, MAX_WASM_BYTES + 1)
    except (lzma.LZMAError, OSError, gzip.BadGzipFile, ValueError) as exc:
        raise StrategySourceError(f"{path}: cannot decompress the strategy: {exc}") from exc
    if len(out) > MAX_WASM_BYTES:
        raise StrategySourceError(
            f"{path}: the strategy decompresses to more than {MAX_WASM_BYTES} bytes"
        )
    if not decompressor.eof:
        raise StrategySourceError(f"{path}: cannot decompress the strategy: the file is truncated")
    return out
