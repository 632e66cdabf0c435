#!/usr/bin/env bash
# Builds a small Go tool of the test suite, tools/NAME, once per machine and prints the
# binary's path (stdout: the path and nothing else; build output to stderr).
#
#   scripts/build-tool.sh luahealth
#
# Cached under $KUBETRADE_CACHE/tools/NAME/<hash>/NAME (default ~/.cache/kubetrade), keyed
# by the tool's go.mod, go.sum, sources and this script, with Go's module and build caches
# in $KUBETRADE_CACHE/go, as scripts/build-apiserver.sh does for the API server.
set -euo pipefail
export PYTHONSAFEPATH=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME="${1:?usage: scripts/build-tool.sh NAME (a directory of tools/)}"
SRC="$ROOT/tools/$NAME"
[[ -f "$SRC/go.mod" ]] || { echo "build-tool.sh: no Go module at tools/$NAME" >&2; exit 2; }

CACHE="${KUBETRADE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetrade}"
key="$(cd "$SRC" && cat go.mod $(ls go.sum 2>/dev/null) $(LC_ALL=C ls ./*.go) "$ROOT/scripts/build-tool.sh" | sha256sum | cut -c1-16)"
out_dir="$CACHE/tools/$NAME/$key"
bin="$out_dir/$NAME"
if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi

GO="$(command -v go || true)"
[[ -n "$GO" ]] || { [[ -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go; }
[[ -n "$GO" ]] || { echo "build-tool.sh: tools/$NAME needs the Go toolchain on PATH" >&2; exit 1; }
export GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/pkg/mod" GOCACHE="$CACHE/go/build"
GOTOOLCHAIN="$(sed -n 's/^toolchain \(go[0-9.]*\)$/\1/p' "$SRC/go.mod")"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
# Nothing from the caller's environment changes what is built.
export GOFLAGS=-mod=readonly CGO_ENABLED=0 GOEXPERIMENT=
unset GOOS GOARCH

mkdir -p "$CACHE/tools/$NAME"
exec 9>"$CACHE/tools/$NAME/.lock"
flock 9  # two test runs starting at once build once
if [[ ! -x "$bin" ]]; then
    mkdir -p "$out_dir"
    (cd "$SRC" && "$GO" build -trimpath -buildvcs=false -ldflags="-s -w" -o "$bin.tmp" .) >&2
    mv "$bin.tmp" "$bin"
    # Keep the three newest builds.
    (cd "$CACHE/tools/$NAME" && ls -1t | tail -n +4 | while read -r old; do rm -rf "./$old"; done)
fi
echo "$bin"
