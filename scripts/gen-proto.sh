#!/usr/bin/env bash
# Regenerates the Python bindings of strategies/proto/strategy.proto into
# runner/strategy/pb/ with the protoc bundled in grpcio-tools (a dev dependency),
# so the generated code always matches the pinned protobuf runtime.
set -euo pipefail
# The repository root holds a directory named operator/; keep the current
# directory off sys.path so it never shadows the standard library module.
export PYTHONSAFEPATH=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$ROOT/runner/strategy/pb}"
mkdir -p "$out"
"$ROOT/.venv/bin/python" -m grpc_tools.protoc -I "$ROOT/strategies/proto" \
    --python_out="$out" --pyi_out="$out" strategy.proto
