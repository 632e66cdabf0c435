"""A strategy module's shape, read from its bytes before anything compiles it.

Compiling is the expensive step (a Go strategy takes 1-2 s; a 200 MB or
200,000-function module took 1.27 GB and up to 23 s), and a compiled module
is cached on disk. So a module is refused here, by reading the WebAssembly
binary format's section headers and the few sections that describe its
interface, before wasmtime sees it: too big, too many functions or sections,
more than one memory or table, a memory or table feature this host does not
sandbox (64-bit or shared memory), or an interface that is not the plugin
ABI's (exports, their signatures, imports). wasmtime still validates every
byte when it compiles; this only decides whether compiling is worth it.

The format (https://webassembly.github.io/spec/core/binary/): the magic
``\\0asm``, version 1, then sections, each an id byte and a LEB128 size.
Only the type, import, function, table, memory and export sections are
decoded; the code and data sections are skipped by their sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from kubetrade.runner.strategy import abi

#: The largest module compiled at all. A Go strategy is 4-5 MB; compiling
#: takes about 250 MB of host memory per 10 MB of code.
MAX_MODULE_BYTES: Final = 32 * 1024 * 1024
#: A Go strategy defines about 3,000 functions. Compiling takes time and host memory in
#: proportion (20,000 small functions: 1.1 s and 125 MiB; 50,000: 2.4 s and 290 MiB).
MAX_FUNCTIONS: Final = 20_000
#: Each standard section appears at most once (the format says so); custom sections
#: (names, producers, debug info) are free-form, so their number is capped.
MAX_SECTIONS: Final = 100
MAX_TYPES: Final = 10_000
MAX_IMPORTS: Final = 1_000
MAX_EXPORTS: Final = 1_000
#: The one table of function references, its size fixed at what the module declares
#: (``table.grow`` is refused): 8 bytes an element, counted into the memory budget.
MAX_TABLE_ELEMENTS: Final = 1 << 20
TABLE_ELEMENT_BYTES: Final = 8
PAGE_BYTES: Final = 65536

_MAGIC: Final = b"\x00asm"
_VERSION_1: Final = b"\x01\x00\x00\x00"

# Section ids.
_CUSTOM, _TYPE, _IMPORT, _FUNCTION, _TABLE, _MEMORY, _GLOBAL, _EXPORT = range(8)

_VALTYPES: Final = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128"}
_FUNC_FORM: Final = 0x60

I32_I32_TO_I64: Final = "(i32, i32) -> (i64)"
#: The exports the ABI needs, with their signatures (``abi`` has the names).
REQUIRED_EXPORTS: Final = {
    abi.INITIALIZE_REACTOR: "() -> ()",
    abi.MALLOC: "(i32) -> (i32)",
    abi.FREE: "(i32) -> ()",
    abi.API_VERSION_EXPORT: "() -> (i64)",
    **dict.fromkeys(abi.STRATEGY_EXPORTS, I32_I32_TO_I64),
}
OPTIONAL_EXPORTS: Final = {abi.ENGINE_VERSION_EXPORT: "() -> (i64)"}


class ModuleRefused(Exception):
    """The bytes are not a module this host will compile; the message says why."""


@dataclass(slots=True)
class Shape:
    """What the checks need from a module: counts, its one memory and table, its interface."""

    functions: int = 0  # imported and defined
    memories: int = 0
    memory_min_pages: int = 0
    tables: int = 0
    table_min: int = 0
    table_max: int | None = None
    sections: int = 0
    # name -> signature text (functions) or kind ("memory", "table", "global", "tag")
    exports: dict[str, str] = field(default_factory=dict)
    imports: list[tuple[str, str, str]] = field(default_factory=list)  # module, name, signature

    @property
    def table_bytes(self) -> int:
        """Host memory the table takes, rounded up to whole pages of the memory budget."""
        raw = self.table_min * TABLE_ELEMENT_BYTES
        return -(-raw // PAGE_BYTES) * PAGE_BYTES


class _Reader:
    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes | memoryview, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos = data, pos
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise ModuleRefused("the module ends in the middle of a section")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u32(self) -> int:
        """An unsigned LEB128 of at most 5 bytes (the format's u32)."""
        result = shift = 0
        for _ in range(5):
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                if result > 0xFFFF_FFFF:
                    break
                return result
            shift += 7
        raise ModuleRefused("a malformed number (LEB128) in the module")

    def u64(self) -> int:
        result = shift = 0
        for _ in range(10):
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
        raise ModuleRefused("a malformed number (LEB128) in the module")

    def peek(self) -> int:
        if self.pos >= self.end:
            raise ModuleRefused("the module ends in the middle of a section")
        return self.data[self.pos]

    def skip(self, size: int) -> None:
        if size > self.end - self.pos:
            raise ModuleRefused("a section or name runs past the end of the module")
        self.pos += size

    def name(self) -> str:
        size = self.u32()
        start = self.pos
        self.skip(size)
        try:
            return bytes(self.data[start : self.pos]).decode("utf-8")
        except UnicodeDecodeError:
            raise ModuleRefused("a name in the module is not UTF-8") from None

    def count(self, what: str, cap: int) -> int:
        n = self.u32()
        if n > cap:
            raise ModuleRefused(f"the module declares {n} {what}; a strategy may have {cap}")
        return n


def _valtype(r: _Reader) -> str:
    code = r.byte()
    if code in _VALTYPES:
        return _VALTYPES[code]
    if code == 0x70:
        return "funcref"
    if code == 0x6F:
        return "externref"
    raise ModuleRefused(
        f"the module uses a value type (0x{code:02x}) from a WebAssembly proposal "
        "this host does not run strategies with (GC or typed references)"
    )


def _signature(r: _Reader) -> str:
    if r.byte() != _FUNC_FORM:
        raise ModuleRefused(
            "the module declares types from the WebAssembly GC proposal, which strategies "
            "may not use"
        )
    params = [_valtype(r) for _ in range(r.count("parameters", 1000))]
    results = [_valtype(r) for _ in range(r.count("results", 1000))]
    return f"({', '.join(params)}) -> ({', '.join(results)})"


def _limits(r: _Reader, what: str) -> tuple[int, int | None]:
    flags = r.byte()
    if flags & 0x02:
        raise ModuleRefused(f"the module declares a shared {what} (threads); strategies may not")
    if flags & 0x04:
        raise ModuleRefused(f"the module declares a 64-bit {what}; strategies may not")
    if flags & ~0x01:
        raise ModuleRefused(f"the module declares a {what} with flags 0x{flags:02x}")
    minimum = r.u32()
    maximum = r.u32() if flags & 0x01 else None
    return minimum, maximum


def _table(r: _Reader, shape: Shape) -> None:
    _valtype(r)  # the element type: funcref or externref, 8 bytes an element either way
    minimum, maximum = _limits(r, "table")
    shape.tables += 1
    shape.table_min, shape.table_max = minimum, maximum


def _memory(r: _Reader, shape: Shape) -> None:
    minimum, _ = _limits(r, "memory")
    shape.memories += 1
    shape.memory_min_pages = minimum


def _global_type(r: _Reader) -> None:
    _valtype(r)
    if r.byte() not in (0, 1):
        raise ModuleRefused("a global in the module has a malformed mutability flag")


# The standard sections in the order they must appear, each at most once (13: tags, 12: the
# data count); section id -> rank.
_ORDER: Final = {s: rank for rank, s in enumerate((1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11), 1)}
_KINDS: Final = {1: "table", 2: "memory", 3: "global", 4: "tag"}


def read_shape(wasm: bytes) -> Shape:
    """Read the module's shape; raise ModuleRefused if it is malformed or over a cap."""
    if len(wasm) > MAX_MODULE_BYTES:
        raise ModuleRefused(
            f"the module is {len(wasm)} bytes; a strategy may be at most {MAX_MODULE_BYTES} "
            f"bytes ({MAX_MODULE_BYTES >> 20} MiB)"
        )
    if wasm[:4] != _MAGIC:
        raise ModuleRefused("not a valid WebAssembly module (no \\0asm header)")
    if wasm[4:8] != _VERSION_1:
        raise ModuleRefused(
            "not a valid WebAssembly module of version 1 (a component, or another version)"
        )
    data = memoryview(wasm)
    top = _Reader(data, 8)
    shape = Shape()
    types: list[str] = []
    defined: list[int] = []  # the type of each defined function
    imports: list[tuple[str, str, int | str]] = []  # a function's type index, or its kind
    exports: list[tuple[str, int, int]] = []
    last = 0
    while top.pos < top.end:
        section = top.byte()
        size = top.u32()
        start = top.pos
        top.skip(size)
        shape.sections += 1
        if shape.sections > MAX_SECTIONS:
            raise ModuleRefused(f"the module has more than {MAX_SECTIONS} sections")
        if section != _CUSTOM:
            rank = _ORDER.get(section)
            if rank is None:
                raise ModuleRefused(f"the module has a section of unknown kind {section}")
            if rank <= last:
                raise ModuleRefused(f"the module has section {section} twice or out of order")
            last = rank
        r = _Reader(data, start, start + size)
        if section == _TYPE:
            types = [_signature(r) for _ in range(r.count("types", MAX_TYPES))]
        elif section == _IMPORT:
            for _ in range(r.count("imports", MAX_IMPORTS)):
                imports.append(_import(r, shape))
        elif section == _FUNCTION:
            defined = [r.u32() for _ in range(r.count("functions", MAX_FUNCTIONS))]
        elif section == _TABLE:
            for _ in range(r.count("tables", 16)):
                if r.peek() == 0x40:  # a table with an initializer expression
                    raise ModuleRefused("the module declares a table with an initializer")
                _table(r, shape)
        elif section == _MEMORY:
            for _ in range(r.count("memories", 16)):
                _memory(r, shape)
        elif section == _EXPORT:
            for _ in range(r.count("exports", MAX_EXPORTS)):
                exports.append((r.name(), r.byte(), r.u32()))
        else:
            continue  # skipped by its size: code, data, globals, custom sections
        if r.pos != r.end:
            raise ModuleRefused(f"section {section} of the module has trailing bytes")

    def signature(index: int) -> str:
        if index >= len(types):
            raise ModuleRefused(f"the module refers to type {index}, which it does not declare")
        return types[index]

    functions = [signature(k) for _, _, k in imports if isinstance(k, int)]
    functions += [signature(k) for k in defined]
    shape.functions = len(functions)
    if shape.functions > MAX_FUNCTIONS:
        raise ModuleRefused(
            f"the module has {shape.functions} functions; a strategy may have {MAX_FUNCTIONS}"
        )
    shape.imports = [(m, n, signature(k) if isinstance(k, int) else k) for m, n, k in imports]
    for name, kind, index in exports:
        if kind != 0:
            shape.exports[name] = _KINDS.get(kind, f"kind {kind}")
        elif index < len(functions):
            shape.exports[name] = functions[index]
        else:
            raise ModuleRefused(f"export {name!r} names function {index}, which is not there")
    return shape


def _import(r: _Reader, shape: Shape) -> tuple[str, str, int | str]:
    module, name, kind = r.name(), r.name(), r.byte()
    if kind == 0x00:
        return module, name, r.u32()  # the function's type index
    if kind == 0x01:
        _table(r, shape)
    elif kind == 0x02:
        _memory(r, shape)
    elif kind == 0x03:
        _global_type(r)
    else:
        raise ModuleRefused(f"the module imports {module}.{name} of kind {kind}")
    return module, name, _KINDS[kind]


def abi_problems(shape: Shape, *, host_functions: frozenset[str]) -> list[str]:
    """What keeps the module from being a plugin-ABI strategy this host can run."""
    problems: list[str] = []
    if shape.memories != 1:
        problems.append(
            f"declares {shape.memories} linear memories; a strategy has exactly one"
            if shape.memories
            else f"missing export {abi.MEMORY!r} (linear memory)"
        )
    if shape.exports.get(abi.MEMORY) != "memory" and shape.memories:
        problems.append(f"missing export {abi.MEMORY!r} (linear memory)")
    if shape.tables > 1:
        problems.append(f"declares {shape.tables} tables; a strategy has at most one")
    if shape.table_min > MAX_TABLE_ELEMENTS:
        problems.append(
            f"declares a table of {shape.table_min} elements; a strategy may have "
            f"{MAX_TABLE_ELEMENTS}"
        )
    for name, want in REQUIRED_EXPORTS.items():
        have = shape.exports.get(name)
        if have is None:
            problems.append(f"missing export {name!r}")
        elif have != want:
            problems.append(f"export {name!r} must be a function {want}")
    for name, want in OPTIONAL_EXPORTS.items():
        have = shape.exports.get(name)
        if have is not None and have != want:
            problems.append(f"export {name!r} must be a function {want}")
    for module, name, kind in shape.imports:
        where = f"{module}.{name}"
        if module == abi.HOST_MODULE:
            if name not in host_functions:
                problems.append(f"imports unknown host function {where}")
            elif kind != I32_I32_TO_I64:
                problems.append(f"import {where} must be a function {I32_I32_TO_I64}")
        elif module == abi.WASI_MODULE:
            if kind in ("memory", "table", "global"):
                problems.append(f"imports a {kind} {where}; this host provides only functions")
        else:
            problems.append(f"imports {where} from a module this host does not provide")
    return problems
