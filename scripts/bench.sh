#!/usr/bin/env bash
# Every benchmark in benchmarks/ (bench_*.py), one after the other; prints one JSON
# object keyed by benchmark file name. Figures are for this machine: never pass/fail.
set -euo pipefail
# The repository root holds a directory named operator/; keep the current
# directory off sys.path so it never shadows the standard library module.
export PYTHONSAFEPATH=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The same extras as scripts/test.sh, so running both never reinstalls anything.
"$ROOT/scripts/bootstrap.sh" dev >&2
PY="$ROOT/.venv/bin/python"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
for bench in "$ROOT"/benchmarks/bench_*.py; do
    name="$(basename "$bench" .py)"
    echo "running $name ..." >&2
    "$PY" "$bench" >"$OUT/$name.json"
done
"$PY" - "$OUT" <<'PY'
import json, pathlib, sys
results = {p.stem: json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json"))}
print(json.dumps(results, indent=2))
PY
