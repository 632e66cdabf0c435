#!/usr/bin/env bash
# Builds tools/apiserver (kube-apiserver, embedded etcd and kube-controller-manager
# in one binary, for the e2e tests) once per machine and prints the binary's path.
#
#   scripts/build-apiserver.sh    build if needed; stdout is the path, nothing else
#
# The binary is cached under $KUBETRADE_CACHE/apiserver/<hash>/kubetrade-apiserver
# (default ~/.cache/kubetrade), keyed by a hash of go.mod, go.sum, the Go sources
# and this script, so a second run, or a fresh clone on the same machine, costs
# nothing. Go's module and build caches live in $KUBETRADE_CACHE/go, shared with
# strategies/build.sh. Build output goes to stderr.
set -euo pipefail
# The repository root holds a directory named operator/; keep the current
# directory off sys.path so it never shadows the standard library module.
export PYTHONSAFEPATH=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/tools/apiserver"
SELF="$ROOT/scripts/build-apiserver.sh"

CACHE="${KUBETRADE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetrade}"
key="$(cd "$SRC" && cat go.mod go.sum $(LC_ALL=C ls ./*.go) "$SELF" | sha256sum | cut -c1-16)"
out_dir="$CACHE/apiserver/$key"
bin="$out_dir/kubetrade-apiserver"
if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi

GO="$(command -v go || true)"
[[ -n "$GO" ]] || { [[ -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go; }
if [[ -z "$GO" ]]; then
    echo "build-apiserver.sh: the e2e tests need the Go toolchain to build kube-apiserver;" \
        "install Go (https://go.dev/dl/) and put it on PATH" >&2
    exit 1
fi

export GOPATH="$CACHE/go"
export GOMODCACHE="$GOPATH/pkg/mod"
export GOCACHE="$GOPATH/build"
# The exact toolchain named in go.mod, whatever go is on PATH.
GOTOOLCHAIN="$(sed -n 's/^toolchain \(go[0-9.]*\)$/\1/p' "$SRC/go.mod")"
[[ -n "$GOTOOLCHAIN" ]] || { echo "build-apiserver.sh: go.mod has no toolchain line" >&2; exit 1; }
export GOTOOLCHAIN
# Settings that would otherwise leak in from the caller's environment or go env.
# CGO off: a static binary, and no C compiler needed.
export GOFLAGS=-mod=readonly CGO_ENABLED=0 GOEXPERIMENT=
unset GOOS GOARCH

mkdir -p "$CACHE/apiserver"
# Two test runs starting at once build once: the second waits, then finds the binary.
exec 9>"$CACHE/apiserver/.lock"
flock 9
if [[ ! -x "$bin" ]]; then
    k8s_version="$(sed -n 's/^\s*k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$SRC/go.mod" | head -1)"
    [[ -n "$k8s_version" ]] || { echo "build-apiserver.sh: no k8s.io/kubernetes in go.mod" >&2; exit 1; }
    major="${k8s_version#v}"; major="${major%%.*}"
    minor="${k8s_version#v*.}"; minor="${minor%%.*}"
    pkg=k8s.io/component-base/version
    # Without these the server reports v0.0.0-master, which kubectl warns about.
    ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
    echo "build-apiserver.sh: building kube-apiserver $k8s_version (a cold build takes minutes)" >&2
    start=$SECONDS
    mkdir -p "$out_dir"
    # -trimpath and no debug symbols (-s -w): smaller, reproducible, faster to link.
    (cd "$SRC" && "$GO" build -trimpath -buildvcs=false -ldflags="$ldflags" \
        -o "$out_dir/kubetrade-apiserver.tmp" .)
    mv "$out_dir/kubetrade-apiserver.tmp" "$bin"
    echo "build-apiserver.sh: built in $((SECONDS - start)) s: $bin" >&2
    # Keep the three newest builds; each is ~100 MB.
    (cd "$CACHE/apiserver" && ls -1t | tail -n +4 | while read -r old; do rm -rf "./$old"; done)
fi
echo "$bin"
