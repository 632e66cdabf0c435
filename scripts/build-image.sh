#!/usr/bin/env bash
# Builds the kubetrade image from the Containerfile with podman, once per set of inputs,
# and prints its reference on stdout, nothing else (build output goes to stderr):
#
#   scripts/build-image.sh                 build if needed; prints localhost/kubetrade:<version>-<hash>
#   scripts/build-image.sh --base IMAGE    build on IMAGE instead of the local Debian base, e.g.
#                                          docker.io/library/python:3.11-slim-bookworm where a
#                                          registry is reachable (pulled if missing)
#   scripts/build-image.sh --rebuild       build again, without podman's layer cache either
#                                          (takes in new Debian packages for the builder)
#
# The image is tagged localhost/kubetrade:<version>-<hash> and localhost/kubetrade:dev.
# <hash> covers everything the build reads: the Containerfile, .dockerignore and the files
# the Containerfile copies, as they are in the working tree, committed or not (a git tree
# made with a throw-away index; that snapshot is also the build context), this script and
# the base image's id. When an image with that hash exists nothing is built, so a second
# run, or a fresh clone on the same machine, costs a second. The image's revision label
# is HEAD's commit, with "-dirty" when the files differ from it. The three newest builds
# are kept, older ones removed.
#
# Needs: git, podman (scripts/install-container-tools.sh installs it and the rest), and, by
# default, the base image scripts/build-base-image.sh makes from Debian's mirror, since
# no container registry may be reachable. podman runs with scripts/containers/env.sh's
# settings. A cold build takes 2-3 minutes on 2 cores (the base 0.5-1.5, the image 1-2);
# after a change to kubetrade's code, 20-40 s (the dependency layers are reused).
#
# Behind a TLS-intercepting proxy the build's pip must trust the proxy's CA: the machine's
# bundle ($KUBETRADE_BUILD_CA_BUNDLE, default /etc/ssl/certs/ca-certificates.crt when it
# exists) is mounted over the image's bundle for the build steps only, never copied into
# the image.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/build-image.sh"
# shellcheck source=scripts/containers/env.sh
source "$ROOT/scripts/containers/env.sh"

REPOSITORY=localhost/kubetrade
LABEL=io.kubetrade.image.inputs
CACHE="${KUBETRADE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetrade}"
# The Containerfile, and what it copies (.dockerignore lets exactly these through).
INPUTS=(Containerfile .dockerignore pyproject.toml constraints.txt README.md runner operator
    examples/session.yaml examples/data strategies/examples/sma/sma.wasm
    scripts/containers/precompile.py)
KEEP=3

base=""
rebuild=false
while [[ $# -gt 0 ]]; do
    case "$1" in
        --base) base="${2:?--base needs an image}"; shift 2 ;;
        --rebuild) rebuild=true; shift ;;
        *) echo "usage: $0 [--base IMAGE] [--rebuild]" >&2; exit 2 ;;
    esac
done

"$ROOT/scripts/install-container-tools.sh"
if [[ -z "$base" ]]; then
    base="$("$ROOT/scripts/build-base-image.sh")"
elif ! podman image exists "$base"; then
    podman pull "$base" >&2
fi
base_id="$(podman image inspect --format '{{.Id}}' "$base")"

# A snapshot of the inputs as they are in the working tree, committed or not, made with
# a throw-away index (the repository's own index, which others may be using, is left
# alone): its git tree id goes into the key and its files are the build context, so the
# image is built from exactly what was hashed even while someone edits the tree. Ignored
# files (__pycache__, *.egg-info) stay out, as .dockerignore would keep them out.
mkdir -p "$CACHE/images"
work="$(mktemp -d "$CACHE/images/context.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export GIT_INDEX_FILE="$work/index"
tree="$(cd "$ROOT" && git add -- "${INPUTS[@]}" && git write-tree)"
key="$( { echo "$tree"; echo "$base_id"; cat "$SELF"; } | sha256sum | cut -c1-12)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -1)"
image="$REPOSITORY:$version-$key"

# podman keeps an untagged image per builder step as its layer cache. The Containerfile
# labels them (io.kubetrade.build-stage): "code" for the steps that kubetrade's own code
# changes, which every build leaves behind, "dependencies" for those before, which stay
# as the cache while the dependencies do not change. After a build, earlier builds' code
# images go, then dependency images that nothing is built on any more. --no-prune: only
# these; a parent goes in a later pass once it has no child left.
remove_old_builder_images() {
    local before="$1" id ids removed
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        ids="$( { podman images --all --quiet --filter "until=$before" \
                --filter label=io.kubetrade.build-stage=code
            podman images --all --quiet --filter "until=$before" --filter dangling=true \
                --filter label=io.kubetrade.build-stage=dependencies; } | sort -u)"
        removed=false
        for id in $ids; do
            podman rmi --no-prune "$id" >/dev/null 2>&1 && removed=true
        done
        [[ "$removed" == true ]] || break
    done
}

built() {
    [[ "$(podman image inspect --format "{{index .Labels \"$LABEL\"}}" "$image" 2>/dev/null)" == "$key" ]]
}
if [[ "$rebuild" == false ]] && built; then
    podman tag "$image" "$REPOSITORY:dev"
    echo "$image"
    exit 0
fi

# Two builds starting at once build once: the second waits, then finds the image.
exec 9>"$CACHE/images/.image.lock"
flock 9
if [[ "$rebuild" == true ]] || ! built; then
    # The commit the files came from; "-dirty" when the snapshot differs from it.
    revision="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
    if [[ "$revision" != unknown ]] &&
        ! git -C "$ROOT" diff-index --cached --quiet HEAD -- "${INPUTS[@]}"; then
        revision="$revision-dirty"
    fi
    # The snapshot's files, with one fixed time: podman's layer cache then sees the same
    # files as the same (the dependency layer is reused), and the bytecode made in the
    # image is checked against the times its sources keep there.
    git -C "$ROOT" checkout-index --all --prefix="$work/context/"
    find "$work/context" -exec touch --no-dereference --date=@946684800 {} +
    options=(--network host --layers)
    [[ "$rebuild" == true ]] && options+=(--no-cache)
    bundle="${KUBETRADE_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
    if [[ -f "$bundle" ]]; then
        options+=(--volume "$bundle:/etc/ssl/certs/ca-certificates.crt:ro")
    fi
    replaced="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
    echo "build-image.sh: building $image on $base" >&2
    start=$SECONDS
    started_at="$(date +%s)"
    podman build "${options[@]}" \
        --build-arg "BASE=$base" \
        --build-arg "VERSION=$version" \
        --build-arg "REVISION=$revision" \
        --label "$LABEL=$key" \
        --file "$work/context/Containerfile" \
        --tag "$image" \
        "$work/context" >&2
    echo "build-image.sh: built in $((SECONDS - start)) s: $image" >&2
    remove_old_builder_images "$started_at"
    # --rebuild moved the tag: the image it named goes, unless a container still uses it.
    if [[ -n "$replaced" && "$replaced" != "$(podman image inspect --format '{{.Id}}' "$image")" ]]; then
        podman rmi "$replaced" >/dev/null 2>&1 || true
    fi
    # Older builds go (with their untagged parents); one still in use by a container stays.
    podman images --sort created --format '{{.Repository}}:{{.Tag}}' \
        --filter "reference=$REPOSITORY" | grep -v -e ':dev$' -e ':<none>$' |
        tail -n +$((KEEP + 1)) | while read -r old; do
            [[ "$old" == "$image" ]] || podman rmi "$old" >/dev/null 2>&1 || true
        done
fi
podman tag "$image" "$REPOSITORY:dev"
echo "$image"
