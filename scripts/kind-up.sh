#!/usr/bin/env bash
# kubetrade on a local kind cluster, for a machine with Docker and internet access:
#
#   scripts/kind-up.sh          create (or reuse) the cluster, build and load the image,
#                               helm install or upgrade, run the example session until it
#                               is Running
#   scripts/kind-up.sh --down   delete the cluster
#
# Needs docker, kind (https://kind.sigs.k8s.io), kubectl, helm 3 and xz on PATH. The
# cluster is $KIND_CLUSTER_NAME (kind's own variable), default "kubetrade"; the session
# runs in $KUBETRADE_NAMESPACE, default "default". Every step can run again: a second run
# rebuilds the image (Docker's cache makes that quick), loads it if it changed, upgrades the
# release and re-applies the session.
#
# Not run by the tests (they have no Docker daemon and no image registry to pull kind's node
# image from): tests/e2e/test_helm_install.py proves the same install with podman, a local
# registry and a real API server instead.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${KIND_CLUSTER_NAME:-kubetrade}"
NAMESPACE="${KUBETRADE_NAMESPACE:-default}"
RELEASE=kubetrade
SYSTEM=kubetrade-system
REPOSITORY=kubetrade/kubetrade
SESSION=sma-paper

say() { echo "kind-up.sh: $*" >&2; }

missing=()
for tool in docker kind kubectl helm xz; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    say "needs ${missing[*]} on PATH (docker: https://docs.docker.com/get-docker/," \
        "kind: https://kind.sigs.k8s.io, helm: https://helm.sh/docs/intro/install/)"
    exit 1
fi

if [[ "${1:-}" == --down ]]; then
    kind delete cluster --name "$CLUSTER"
    exit 0
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--down]" >&2
    exit 2
fi

# kind names the kubeconfig context after the cluster; every command names it, so the
# user's current context (perhaps a real cluster) is never touched by mistake.
CONTEXT="kind-$CLUSTER"
kube() { kubectl --context "$CONTEXT" "$@"; }

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    say "reusing kind cluster $CLUSTER"
else
    say "creating kind cluster $CLUSTER"
    kind create cluster --name "$CLUSTER" --wait 180s
fi

# The image, tagged by its content: a changed image gets a new tag, so helm upgrade rolls
# the operator and new runner pods use it (a reused tag would leave nodes on the old bytes
# under IfNotPresent).
say "building the image (docker build -f Containerfile)"
docker build -f "$ROOT/Containerfile" -t "$REPOSITORY:kind-build" "$ROOT"
tag="$(docker image inspect --format '{{.Id}}' "$REPOSITORY:kind-build" | sed 's/^sha256://' | cut -c1-12)"
docker tag "$REPOSITORY:kind-build" "$REPOSITORY:$tag"
# kind nodes pull nothing from Docker's local images: load it into them.
kind load docker-image --name "$CLUSTER" "$REPOSITORY:$tag"

# Helm installs a chart's CRD on the first install only and never upgrades it: applying it
# first keeps it current on every run (as helm/kubetrade/README.md says for upgrades).
kube apply --server-side -f "$ROOT/helm/kubetrade/crds/"
say "installing the chart (release $RELEASE in $SYSTEM)"
helm upgrade --install "$RELEASE" "$ROOT/helm/kubetrade" --kube-context "$CONTEXT" \
    --namespace "$SYSTEM" --create-namespace \
    --set image.repository="$REPOSITORY" --set image.tag="$tag" \
    --set image.pullPolicy=IfNotPresent \
    --wait --timeout 5m

# The strategy in a ConfigMap, as examples/k8s/README.md does it: a Go strategy is ~4.5 MB,
# over a ConfigMap's 1 MiB, ~0.85 MB with xz -9e. Server-side apply: a client-side one would
# copy the bytes into an annotation, which may hold only 256 KiB.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
xz -9e -c "$ROOT/strategies/examples/sma/sma.wasm" >"$work/sma.wasm.xz"
kube get namespace "$NAMESPACE" >/dev/null 2>&1 || kube create namespace "$NAMESPACE"
kube -n "$NAMESPACE" create configmap sma-strategy --from-file=sma.wasm.xz="$work/sma.wasm.xz" \
    --dry-run=client -o yaml | kube apply --server-side -f -
kube -n "$NAMESPACE" apply -f "$ROOT/examples/k8s/session.yaml"

say "waiting for session $SESSION to be Running"
if ! kube -n "$NAMESPACE" wait "lts/$SESSION" --for=jsonpath='{.status.phase}'=Running \
    --timeout=300s; then
    kube -n "$NAMESPACE" describe "lts/$SESSION" >&2 || true
    kube -n "$NAMESPACE" logs "$SESSION-runner" --tail=40 >&2 || true
    say "the session did not reach Running (its description and runner log are above)"
    exit 1
fi
kube -n "$NAMESPACE" get lts -o wide
cat >&2 <<EOF
kind-up.sh: kubetrade runs on kind cluster $CLUSTER. Next:
  kubectl --context $CONTEXT -n $NAMESPACE get lts -w            # bars and equity
  kubectl --context $CONTEXT -n $NAMESPACE logs -f $SESSION-runner  # orders and fills
  scripts/kind-up.sh --down                                      # delete the cluster
EOF
