"""`kubetrade strategy push|pull`: strategies to and from an OCI registry.

    kubetrade strategy push sma.wasm registry.example/strategies/sma:v3
    kubetrade strategy pull registry.example/strategies/sma:v3 -o sma.wasm

push prints the pinned reference (name@sha256:...) to put in a session; pull prints the
digest it verified. Credentials: --registry-config FILE (a docker config file, or a
directory holding a pull Secret's .dockerconfigjson), else $REGISTRY_AUTH_FILE,
$DOCKER_CONFIG/config.json or ~/.docker/config.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from kubetrade.runner.oci.artifact import pull_strategy, push_strategy
from kubetrade.runner.oci.auth import load_docker_config
from kubetrade.runner.oci.errors import OciError
from kubetrade.runner.oci.reference import Reference

_WASM_MAGIC = b"\0asm\x01\0\0\0"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    strategy = commands.add_parser("strategy", help="push or pull a strategy as an OCI artifact")
    actions = strategy.add_subparsers(dest="action", required=True)
    push = actions.add_parser("push", help="push a .wasm strategy to a registry tag")
    push.add_argument("file", type=Path, help="the strategy's .wasm")
    push.add_argument("reference", help="registry/repository:tag")
    push.add_argument("--name", help="the strategy's name (default: the file's stem)")
    push.add_argument("--revision", help="the source revision it was built from, e.g. a commit")
    pull = actions.add_parser("pull", help="pull a strategy and verify its digests")
    pull.add_argument("reference", help="registry/repository:tag or ...@sha256:<digest>")
    pull.add_argument("-o", "--output", type=Path, required=True, help="where to write the .wasm")
    for action in (push, pull):
        action.add_argument(
            "--registry-config",
            type=Path,
            help="docker config file (or a pull Secret's directory) with the registry's login",
        )


def run(args: argparse.Namespace) -> int:
    """The strategy command; exit 2 with one line for anything wrong."""
    try:
        auth = load_docker_config(args.registry_config)
        reference = Reference.parse(args.reference)
        if args.action == "push":
            wasm = _read_module(args.file)
            name = args.name or args.file.stem
            digest = asyncio.run(
                push_strategy(wasm, reference, name=name, revision=args.revision, auth=auth)
            )
            print(reference.with_digest(digest))
            return 0
        artifact = asyncio.run(pull_strategy(reference, auth=auth))
        _write(args.output, artifact.wasm)
        print(artifact.manifest_digest)
        return 0
    except OciError as exc:
        print(f"kubetrade: {exc}", file=sys.stderr)
        return 2


def _read_module(path: Path) -> bytes:
    try:
        wasm = path.read_bytes()
    except OSError as exc:
        raise OciError(f"{path}: cannot read it: {exc.strerror}") from None
    if not wasm.startswith(_WASM_MAGIC):
        raise OciError(f"{path}: not a WebAssembly module (it must start with \\0asm, version 1)")
    return wasm


def _write(path: Path, data: bytes) -> None:
    try:
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(data)
        temporary.replace(path)  # never a half-written strategy under the final name
    except OSError as exc:
        raise OciError(f"{path}: cannot write it: {exc.strerror}") from None
