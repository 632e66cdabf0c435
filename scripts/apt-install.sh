#!/usr/bin/env bash
# Installs the Debian packages given that are missing, and nothing else: silent when all
# are installed. The project's install-*.sh scripts call it with their own name (for
# messages) and their package lists:
#
#   scripts/apt-install.sh WHO PACKAGE...
#
# As root it runs apt-get; as another user through sudo (or says what to run as root).
# Recommends are left out (the callers say why they need none). Another apt run (another
# script, unattended upgrades) may hold the lock: it waits for it rather than fail.
set -euo pipefail
who="$1"
shift

missing=()
for package in "$@"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)"
    [[ "$status" == installed ]] || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "$who: needs a Debian-like system with apt-get; install ${missing[*]} by hand" >&2
    exit 1
fi
sudo=()
if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "$who: not root and no sudo; as root run:" \
            "apt-get install --no-install-recommends ${missing[*]}" >&2
        exit 1
    }
    sudo=(sudo)
fi

echo "$who: installing ${missing[*]}" >&2
apt_options=(-o DPkg::Lock::Timeout=600 -q)
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" apt-get "${apt_options[@]}" update &&
    "${sudo[@]}" apt-get "${apt_options[@]}" install -y --no-install-recommends \
        "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "$who: apt-get failed (output above)" >&2
    exit 1
fi
