#!/usr/bin/env bash
# ruff and mypy over the whole project.
set -euo pipefail
# The repository root holds a directory named operator/; keep the current
# directory off sys.path so it never shadows the standard library module.
export PYTHONSAFEPATH=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# mypy cannot follow setuptools' editable import hook, so it gets a view of the
# packages under their import names (kubetrade.runner -> runner/) through links.
mkdir -p .cache/typecheck/kubetrade
ln -sfn ../../../runner .cache/typecheck/kubetrade/runner
ln -sfn ../../../operator .cache/typecheck/kubetrade/operator
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# mypy runs from that view too: from the repository root it would take operator/ for
# the standard library's operator module, as Python itself would.
cd .cache/typecheck
../../.venv/bin/mypy --config-file ../../pyproject.toml -p kubetrade.runner -p kubetrade.operator
../../.venv/bin/mypy --config-file ../../pyproject.toml ../../tests ../../benchmarks
