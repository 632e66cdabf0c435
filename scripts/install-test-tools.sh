#!/usr/bin/env bash
# Installs test tools from Debian's package mirrors, only those that
# are missing (issue 16):
#
#   prometheus   the real server the metrics tests start on 127.0.0.1 with their own
#                configuration and storage; it brings promtool, which unit-tests the
#                chart's alert rules
#   chromium     headless, to screenshot `kubetrade report --html` pages
#   strace       lists the runner's fsyncs, so a test can count when the journal waits
#                for the disk (tests/integration/test_journal_sync.py)
#
#   scripts/install-test-tools.sh      install what is missing; silent when nothing is
#
# Debian's prometheus package enables and starts a system service (port 9090) where the
# machine is run by systemd. The tests never use it, and a server left running would keep
# a port and write to /var/lib/prometheus: it is stopped and disabled right after the
# install. Without an init system (containers, CI) nothing is started in the first place.
# Recommends are left out: prometheus's would add node-exporter, another service.
set -euo pipefail

status="$(dpkg-query -W -f='${db:Status-Status}' prometheus 2>/dev/null || true)"
"$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" install-test-tools.sh prometheus chromium strace
# A prometheus that was there before is somebody's: left as it is.
[[ "$status" == installed ]] && exit 0

# The package's own service, just installed: not wanted, whatever started it.
sudo=()
if [[ $EUID -ne 0 ]]; then
    sudo=(sudo)
fi
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    "${sudo[@]}" systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif [[ -x /etc/init.d/prometheus ]]; then
    if "${sudo[@]}" /etc/init.d/prometheus status >/dev/null 2>&1; then
        "${sudo[@]}" /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    fi
fi
