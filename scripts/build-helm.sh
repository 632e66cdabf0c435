#!/usr/bin/env bash
# Builds helm (v3, pinned below) from its Go module once per machine and prints the
# binary's path. The chart tests (tests/unit/test_helm_chart.py) and the e2e install
# use it; nothing else on the machine is touched.
#
#   scripts/build-helm.sh    build if needed; stdout is the path, nothing else
#
# This machine reaches the Go module proxy but no GitHub release downloads, so helm
# is compiled from helm.sh/helm/v3 at the pinned tag rather than fetched as a tarball.
# The binary is cached under $KUBETRADE_CACHE/helm/<version>-<hash>/helm (default
# ~/.cache/kubetrade), keyed by the version and a hash of this script, so a second run,
# or a fresh clone on the same machine, costs nothing, and a change to the build
# below rebuilds. Go's module and build caches live in $KUBETRADE_CACHE/go, shared
# with scripts/build-apiserver.sh and strategies/build.sh. Build output goes to stderr.
set -euo pipefail

# The pinned release. Check what the proxy has with `go list -m -versions helm.sh/helm/v3`.
HELM_VERSION=v3.22.0
# The Kubernetes minor version helm's own k8s.io modules are at (k8s.io/client-go
# v0.37.x in helm v3.22.0's go.mod). helm reports it as the cluster version to
# `helm template` and checks deprecated APIs against it in `helm lint`; helm's Makefile
# sets it the same way, and without it helm falls back to an old default (v1.20).
K8S_MAJOR=1
K8S_MINOR=37
# The Go toolchain that builds it: the one strategies/ and tools/apiserver pin, so one
# toolchain serves every build on the machine (Go fetches it if the local go is older).
GO_TOOLCHAIN=go1.26.8

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/build-helm.sh"

CACHE="${KUBETRADE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetrade}"
key="$(sha256sum <"$SELF" | cut -c1-16)"
out_dir="$CACHE/helm/$HELM_VERSION-$key"
bin="$out_dir/helm"
# The cached binary: no Go needed at all once it exists.
if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi

GO="$(command -v go || true)"
[[ -n "$GO" ]] || { [[ -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go; }
if [[ -z "$GO" ]]; then
    echo "build-helm.sh: the chart tests need helm, built from its Go module; install Go" \
        "(https://go.dev/dl/) and put it on PATH" >&2
    exit 1
fi

export GOPATH="$CACHE/go"
export GOMODCACHE="$GOPATH/pkg/mod"
export GOCACHE="$GOPATH/build"
export GOTOOLCHAIN="$GO_TOOLCHAIN"
# Settings that would otherwise leak in from the caller's environment or go env.
# CGO off: a static binary, and no C compiler needed. GOFLAGS empty: `go install
# pkg@version` builds in module mode from helm's own go.mod and refuses -mod.
export GOFLAGS= CGO_ENABLED=0 GOEXPERIMENT=
unset GOOS GOARCH GOBIN

mkdir -p "$CACHE/helm"
# Two test runs starting at once build once: the second waits, then finds the binary.
exec 9>"$CACHE/helm/.lock"
flock 9
if [[ ! -x "$bin" ]]; then
    # What helm's Makefile sets: the version `helm version` reports (else "v3.22"),
    # a clean tree, and the Kubernetes version its template and lint default to.
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldflags+=" -X $pkg.k8sVersionMajor=$K8S_MAJOR -X $pkg.k8sVersionMinor=$K8S_MINOR"
    done
    echo "build-helm.sh: building helm $HELM_VERSION (a cold build takes a few minutes)" >&2
    start=$SECONDS
    # Built into a scratch directory and moved into place, so an interrupted build
    # never leaves a half-written binary that the check above would take as done.
    tmp="$(mktemp -d "$CACHE/helm/.build.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    # -trimpath and no debug symbols (-s -w): smaller, reproducible, faster to link.
    GOBIN="$tmp" "$GO" install -trimpath -buildvcs=false -ldflags="$ldflags" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
    "$tmp/helm" version --short >&2
    mkdir -p "$out_dir"
    mv "$tmp/helm" "$bin"
    echo "build-helm.sh: built in $((SECONDS - start)) s: $bin" >&2
    # Keep the three newest builds; each is ~60 MB.
    (cd "$CACHE/helm" && ls -1t | tail -n +4 | while read -r old; do rm -rf "./$old"; done)
fi
echo "$bin"
