#!/usr/bin/env bash
# Builds the base image localhost/kubetrade-base:bookworm from Debian's package mirror
# and imports it into podman's storage; prints the image reference on stdout, nothing else.
#
#   scripts/build-base-image.sh             build if needed (a cold build takes ~1 minute)
#   scripts/build-base-image.sh --refresh   build again even if inputs are unchanged, e.g.
#                                           to take in Debian security updates
#
# Why: the Containerfile starts from Docker Hub's python:3.11-slim-bookworm, but where no
# container registry is reachable (this project's CI) there is no image to pull. This one
# is made from the same Debian release with mmdebstrap (minbase: Essential packages and
# apt) plus python3 (3.11), python3-venv (the builder stage makes a virtualenv with it)
# and ca-certificates (the runner talks HTTPS to exchanges and verifies them against
# Debian's bundle). It is meant for `--build-arg BASE=localhost/kubetrade-base:bookworm`.
#
# Cached in podman's storage: the image carries a label with a hash of its inputs (this
# script, the mirror); a run whose hash matches the existing image does nothing.
# Debian mirror: $KUBETRADE_DEBIAN_MIRROR (default http://deb.debian.org/debian, the one
# this machine's apt uses); the security suite comes from .../debian-security beside it.
# Build output goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/build-base-image.sh"
# shellcheck source=scripts/containers/env.sh
source "$ROOT/scripts/containers/env.sh"

IMAGE=localhost/kubetrade-base:bookworm
LABEL=io.kubetrade.base.inputs
SUITE=bookworm
MIRROR="${KUBETRADE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${MIRROR%/debian}/debian-security"
CACHE="${KUBETRADE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetrade}"

refresh=false
for arg in "$@"; do
    case "$arg" in
        --refresh) refresh=true ;;
        *) echo "usage: $0 [--refresh]" >&2; exit 2 ;;
    esac
done

"$ROOT/scripts/install-container-tools.sh"

key="$( { cat "$SELF"; echo "$MIRROR"; } | sha256sum | cut -c1-16)"
current() {
    podman image inspect --format "{{index .Labels \"$LABEL\"}}" "$IMAGE" 2>/dev/null || true
}
if [[ "$refresh" == false && "$(current)" == "$key" ]]; then
    echo "$IMAGE"
    exit 0
fi

mkdir -p "$CACHE/images"
# Two builds starting at once build once: the second waits, then finds the image.
exec 9>"$CACHE/images/.base.lock"
flock 9
if [[ "$refresh" == true || "$(current)" != "$key" ]]; then
    echo "build-base-image.sh: building $IMAGE from $MIRROR" >&2
    start=$SECONDS
    work="$(mktemp -d "$CACHE/images/base.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    old_id="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
    # - merged-usr hook: /bin -> usr/bin made up front, as Debian does since bookworm;
    #   without it apt installs the usrmerge package, which pulls in all of perl (+47 MB).
    #   The hook ships with Debian's mmdebstrap package.
    # - No manuals, info pages, translations or documentation but the copyright files,
    #   as Docker's slim images do; the options stay in /etc/dpkg/dpkg.cfg.d, so packages
    #   a derived image installs leave them out too.
    # - No device nodes in the tarball: the container runtime provides /dev.
    # mmdebstrap drops apt's package lists and caches from the result itself.
    mmdebstrap --variant=minbase --mode=auto \
        --include=python3,python3-venv,ca-certificates \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/lintian/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --skip=output/dev \
        "$SUITE" "$work/rootfs.tar" \
        "deb $MIRROR $SUITE main" \
        "deb $MIRROR $SUITE-updates main" \
        "deb $SECURITY_MIRROR $SUITE-security main" >&2
    # What python:3.11-slim sets too: a UTF-8 locale (C.UTF-8 is built into glibc) and
    # PATH, which an imported tarball has no default for.
    podman import \
        --change "LABEL $LABEL=$key" \
        --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "ENV LANG=C.UTF-8" \
        --change 'CMD ["python3"]' \
        "$work/rootfs.tar" "$IMAGE" >/dev/null
    # The replaced image goes unless an image built on it still needs its layers.
    new_id="$(podman image inspect --format '{{.Id}}' "$IMAGE")"
    if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
        podman rmi "$old_id" >/dev/null 2>&1 || true
    fi
    echo "build-base-image.sh: built in $((SECONDS - start)) s: $IMAGE" >&2
fi
echo "$IMAGE"
