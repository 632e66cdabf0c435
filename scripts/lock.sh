#!/usr/bin/env bash
# Regenerates constraints.txt, the exact version of every Python package the
# project installs, from the ranges in pyproject.toml (the default and dev extras).
#
#   scripts/lock.sh                    keep today's pins, resolve what pyproject.toml changed
#   scripts/lock.sh --upgrade          move every pin to the newest version allowed
#   scripts/lock.sh -P NAME            move only NAME
#
# Pins are never edited by hand: change pyproject.toml, run this, commit both.
# `uv pip compile` resolves against the package index alone (a pin can never name a
# file on this machine; tests/unit/test_setup_pins.py checks the result), installs
# nothing, and is one pinned binary wheel; pip-tools must match the virtualenv's
# pip version, which the bootstrap upgrades.
set -euo pipefail
export PYTHONSAFEPATH=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
UV_VERSION=0.13.9
TOOLS="$ROOT/.cache/tools/uv-$UV_VERSION"
if [[ ! -x "$TOOLS/bin/uv" ]]; then
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
# The pins are for the machines the project runs on: CPython 3.11 on x86-64 Linux
# (the image's platform too). --output-file makes uv keep the pins already there.
"$TOOLS/bin/uv" pip compile pyproject.toml --extra dev --quiet \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --no-header --no-annotate --output-file constraints.txt "$@"
echo "lock.sh: constraints.txt pins $(grep -c '==' constraints.txt) packages"
