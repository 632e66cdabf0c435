#!/usr/bin/env bash
# The full test suite: bootstrap, lint, type-check, then every test.
set -euo pipefail
# The repository root holds a directory named operator/; keep the current
# directory off sys.path so it never shadows the standard library module.
export PYTHONSAFEPATH=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh dev
scripts/lint.sh
# The real kube-apiserver for tests/e2e: built once per machine and cached
# (a cold build takes ~6 minutes on 2 cores, then it is instant).
scripts/build-apiserver.sh >/dev/null
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
