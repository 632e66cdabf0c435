#!/usr/bin/env bash
# Idempotent set-up of everything kubetrade needs on a fresh machine:
# a virtualenv with the Python dependencies pinned by constraints.txt.
# Re-running is cheap: each step is skipped when its inputs have not changed.
set -euo pipefail
# The repository root holds a directory named operator/; keep the current
# directory off sys.path so it never shadows the standard library module.
export PYTHONSAFEPATH=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
EXTRAS="${1:-}"   # "dev" installs the test and lint tools too

find_python() {
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "bootstrap: kubetrade needs Python >= 3.11 on PATH" >&2
    return 1
}

if [[ ! -x "$VENV/bin/python" ]]; then
    "$(find_python)" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi

# The stamp records what was installed; a change to the dependency list,
# the pins or the requested extras triggers a reinstall, nothing else does.
spec="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt"; echo "extras=$EXTRAS")"
want="$(printf '%s' "$spec" | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.kubetrade-deps"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    target="$ROOT"
    [[ -n "$EXTRAS" ]] && target="$ROOT[$EXTRAS]"
    # pip and the build backend are chatty; keep their output for a failure.
    log="$VENV/bootstrap.log"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check \
        -c "$ROOT/constraints.txt" -e "$target" >"$log" 2>&1; then
        cat "$log" >&2
        echo "bootstrap: installing Python dependencies failed (log above)" >&2
        exit 1
    fi
    echo "$want" >"$stamp"
fi
