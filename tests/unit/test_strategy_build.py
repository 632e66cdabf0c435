"""The committed strategy .wasm files: their shape, and that they rebuild bit for bit.

The shape tests need only wasmtime and run everywhere. The rebuild test needs the Go
toolchain (``strategies/build.sh --check`` regenerates the SDK bindings and recompiles
every strategy into a temporary directory, then compares bytes).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import wasmtime

from kubetrade.runner.strategy.pb import strategy_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
STRATEGIES = ROOT / "strategies"
WASM_FILES = (
    "examples/sma/sma.wasm",
    "examples/hostcheck/hostcheck.wasm",
    "testdata/apicheck/apicheck.wasm",
    "testdata/faulty/faulty.wasm",
)

# The guest side of the ABI: name -> (params, results).
GUEST_EXPORTS: dict[str, tuple[list[str], list[str]]] = {
    "_initialize": ([], []),
    "malloc": (["i32"], ["i32"]),
    "free": (["i32"], []),
    "trading_strategy_api_version": ([], ["i64"]),
    **{
        f"trading_strategy_{name}": (["i32", "i32"], ["i64"])
        for name in (
            "initialize",
            "process_data",
            "name",
            "get_config_schema",
            "get_description",
            "get_identifier",
        )
    },
}


def snake_case(method: str) -> str:
    """go-plugin's import name for a service method: ``ExecuteSQL`` -> ``execute_sql``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", method)
    return re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", spaced).lower()


@functools.cache
def load(relpath: str) -> wasmtime.Module:
    # Only the module's shape is inspected: skip optimisation, compile each file once.
    config = wasmtime.Config()
    config.cranelift_opt_level = "none"
    return wasmtime.Module(wasmtime.Engine(config), (STRATEGIES / relpath).read_bytes())


def host_functions() -> set[str]:
    service = pb.DESCRIPTOR.services_by_name["StrategyApi"]
    return {snake_case(method.name) for method in service.methods}


def signature(func_type: wasmtime.FuncType) -> tuple[list[str], list[str]]:
    return [str(p) for p in func_type.params], [str(r) for r in func_type.results]


def test_every_strategy_directory_has_its_wasm() -> None:
    # A new example is built by build.sh automatically; this keeps the list above honest.
    dirs = sorted(
        main.parent.relative_to(STRATEGIES)
        for pattern in ("examples/*/main.go", "testdata/*/main.go")
        for main in STRATEGIES.glob(pattern)
    )
    assert [str(d / f"{d.name}.wasm") for d in dirs] == sorted(WASM_FILES)


def test_snake_case_matches_go_plugin_names() -> None:
    assert snake_case("ExecuteSQL") == "execute_sql"
    assert snake_case("GetOpenOrders") == "get_open_orders"
    assert snake_case("Log") == "log"
    assert {"place_order", "get_range", "cancel_all_orders"} <= host_functions()


@pytest.mark.parametrize("relpath", WASM_FILES)
def test_wasm_has_the_strategy_abi(relpath: str) -> None:
    data = (STRATEGIES / relpath).read_bytes()
    assert data[:8] == b"\0asm\x01\0\0\0", "not a WebAssembly 1.0 binary module"
    module = load(relpath)

    exports = {e.name: e.type for e in module.exports}
    for name, expected in GUEST_EXPORTS.items():
        assert name in exports, f"{relpath} does not export {name}"
        func = exports[name]
        assert isinstance(func, wasmtime.FuncType), name
        assert signature(func) == expected, name
    assert isinstance(exports.get("memory"), wasmtime.MemoryType)

    modules = {i.module for i in module.imports}
    assert modules <= {"env", "wasi_snapshot_preview1"}, modules
    known = host_functions()
    for imp in module.imports:
        if imp.module == "env":
            assert imp.name in known, f"{relpath} imports unknown host function {imp.name}"
            assert isinstance(imp.type, wasmtime.FuncType), imp.name
            assert signature(imp.type) == (["i32", "i32"], ["i64"]), imp.name


def test_hostcheck_imports_every_host_function_it_checks() -> None:
    module = load("examples/hostcheck/hostcheck.wasm")
    imported = {i.name for i in module.imports if i.module == "env"}
    assert imported == {
        "place_order",
        "get_positions",
        "get_position",
        "get_account_info",
        "get_open_orders",
        "cancel_order",
        "cancel_all_orders",
        "get_order_status",
        "get_range",
        "read_last_data",
        "get_cache",
        "set_cache",
        "log",
    }


@pytest.mark.go
def test_build_check_reproduces_the_committed_files() -> None:
    if shutil.which("go") is None:
        pytest.skip("the Go toolchain (go) is not on PATH; build.sh --check needs it")
    # A cold cache downloads the go-plugin module (and maybe the pinned toolchain).
    result = subprocess.run(
        [str(STRATEGIES / "build.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
