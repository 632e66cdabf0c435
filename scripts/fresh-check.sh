#!/usr/bin/env bash
# Proves the README's two commands work from nothing: clones HEAD into a temporary
# directory and runs them there with a throw-away HOME and empty pip, Go and
# kubetrade caches, as a machine that has never seen the project would.
#
#   scripts/fresh-check.sh            demo, then the full test suite
#   scripts/fresh-check.sh --demo     the demo only (minutes, not the ~10-20 of the suite)
#   KEEP=1 scripts/fresh-check.sh     keep the temporary directory for a post-mortem
#
# Not part of the normal test run: it rebuilds every cached tool (the API server
# alone takes ~10 minutes on 2 cores). What it cannot reset: Debian packages and the
# Go toolchain already on the machine (they are system-wide); the scripts install the
# Debian packages they need themselves, idempotently.
# Prints a timing line per command and exits non-zero if either fails.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
only_demo=false
[[ "${1:-}" == "--demo" ]] && only_demo=true

work="$(mktemp -d "${TMPDIR:-/tmp}/kubetrade-fresh.XXXXXX")"
cleanup() {
    if [[ -n "${KEEP:-}" ]]; then
        echo "fresh-check: kept $work" >&2
    else
        chmod -R u+w "$work" 2>/dev/null || true   # Go's module cache is read-only
        rm -rf "$work"
    fi
}
trap cleanup EXIT

git clone --quiet --no-local "$ROOT" "$work/kubetrade"
git -C "$work/kubetrade" log -1 --format='fresh-check: HEAD %h %s' >&2
mkdir -p "$work/home" "$work/tmp"

# Nothing of this machine's per-user state reaches the run: a new HOME (so no
# ~/.cache, ~/.config/pip, ~/.netrc), no pip cache, empty Go and kubetrade caches.
fresh_env=(
    env -i
    PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/go/bin"
    HOME="$work/home"
    TMPDIR="$work/tmp"
    LANG=C.UTF-8
    PIP_NO_CACHE_DIR=1
    GOPATH="$work/go"
    GOMODCACHE="$work/go/pkg/mod"
    GOCACHE="$work/go/build"
    KUBETRADE_CACHE="$work/cache"
    XDG_CACHE_HOME="$work/home/.cache"
)
# How this machine reaches the registries (its proxy, the CA bundle that trusts it,
# the index addresses) passes through; local wheel directories (PIP_FIND_LINKS) do not.
for name in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy \
    SSL_CERT_FILE SSL_CERT_DIR REQUESTS_CA_BUNDLE CURL_CA_BUNDLE PIP_CERT \
    PIP_INDEX_URL PIP_DEFAULT_TIMEOUT GOPROXY GOSUMDB; do
    [[ -n "${!name:-}" ]] && fresh_env+=("$name=${!name}")
done

run() {
    local label="$1"; shift
    local start=$SECONDS
    echo "fresh-check: $label: $*" >&2
    if (cd "$work/kubetrade" && "${fresh_env[@]}" "$@"); then
        echo "fresh-check: $label passed in $((SECONDS - start)) s" >&2
    else
        local rc=$?
        echo "fresh-check: $label FAILED (rc $rc) after $((SECONDS - start)) s" >&2
        exit "$rc"
    fi
}

total=$SECONDS
run demo ./scripts/demo.sh --summary-json "$work/demo-summary.json"
echo "fresh-check: demo summary $(cat "$work/demo-summary.json")" >&2
if ! $only_demo; then
    run tests ./scripts/test.sh
fi
echo "fresh-check: all passed in $((SECONDS - total)) s" >&2
