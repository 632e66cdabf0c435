#!/usr/bin/env bash
# The demo: the example SMA strategy trades replayed market data in paper mode.
set -euo pipefail
# The repository root holds a directory named operator/; keep the current
# directory off sys.path so it never shadows the standard library module.
export PYTHONSAFEPATH=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
exec "$ROOT/.venv/bin/kubetrade" run "$ROOT/examples/session.yaml" "$@"
