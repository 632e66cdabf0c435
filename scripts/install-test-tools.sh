#!/usr/bin/env bash
# Installs the observability test tools from Debian's package mirrors, only those that
# are missing (issue 16):
#
#   prometheus   the real server the metrics tests start on 127.0.0.1 with their own
#                configuration and storage; it brings promtool, which unit-tests the
#                chart's alert rules
#   chromium     headless, to screenshot `kubetrade report --html` pages
#
#   scripts/install-test-tools.sh      install what is missing; silent when nothing is
#
# Debian's prometheus package enables and starts a system service (port 9090) where the
# machine is run by systemd. The tests never use it, and a server left running would keep
# a port and write to /var/lib/prometheus: it is stopped and disabled right after the
# install. Without an init system (containers, CI) nothing is started in the first place.
# Recommends are left out: prometheus's would add node-exporter, another service.
set -euo pipefail

packages=(prometheus chromium)

missing=()
for package in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)"
    [[ "$status" == installed ]] || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-tools.sh: needs a Debian-like system with apt-get; install" \
        "${missing[*]} by hand" >&2
    exit 1
fi
sudo=()
if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "install-test-tools.sh: not root and no sudo; as root run:" \
            "apt-get install --no-install-recommends ${missing[*]}" >&2
        exit 1
    }
    sudo=(sudo)
fi

echo "install-test-tools.sh: installing ${missing[*]}" >&2
# Another apt run (install-container-tools.sh, unattended upgrades) may hold the lock:
# wait for it rather than fail.
apt_options=(-o DPkg::Lock::Timeout=600 -q)
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" apt-get "${apt_options[@]}" update &&
    "${sudo[@]}" apt-get "${apt_options[@]}" install -y --no-install-recommends \
        "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-test-tools.sh: apt-get failed (output above)" >&2
    exit 1
fi

# The package's own service: not wanted, whatever started it.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    "${sudo[@]}" systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif [[ -x /etc/init.d/prometheus ]]; then
    if "${sudo[@]}" /etc/init.d/prometheus status >/dev/null 2>&1; then
        "${sudo[@]}" /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    fi
fi
