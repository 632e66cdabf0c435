#!/usr/bin/env bash
# Installs the container tools the image build and the container tests need, from
# Debian's package mirrors, only those that are missing:
#
#   podman, buildah, runc   build and run the image (no Docker daemon needed); runc,
#                           because crun refuses cgroups hybrid hosts
#   netavark, aardvark-dns  podman's network stack (bridge networks, their DNS);
#   iptables                netavark sets up a bridge network's NAT with it (without it
#                           a plain `podman run` fails: "netavark: No such file")
#   uidmap                  newuidmap/newgidmap: user namespaces (rootless podman,
#                           mmdebstrap --mode=unshare)
#   mmdebstrap              builds the Debian base image from the mirror, because no
#                           container registry may be reachable to pull one
#   docker-registry         a real OCI registry for tests that push and pull
#   apache2-utils           htpasswd, for that registry's basic auth
#
#   scripts/install-container-tools.sh      install what is missing; silent when nothing is
#
# Storage driver: overlay (the kernel's overlayfs; scripts/containers/env.sh explains
# why not vfs). fuse-overlayfs is not installed: root and kernels >= 5.13 do not need it.
# podman's configuration is scripts/containers/containers.conf, selected by
# CONTAINERS_CONF (scripts/containers/env.sh), so no file under /etc is edited.
#
# As root (this project's CI) it needs nothing else. As another user it runs apt-get
# through sudo; rootless podman then also needs subordinate ids for that user
# (`sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 "$USER"`),
# and the base image is built with mmdebstrap's unshare mode, which needs the same.
set -euo pipefail

packages=(podman buildah runc netavark aardvark-dns iptables uidmap mmdebstrap
    docker-registry apache2-utils)

missing=()
for package in "${packages[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)"
    [[ "$status" == installed ]] || missing+=("$package")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-container-tools.sh: needs a Debian-like system with apt-get; install" \
        "${missing[*]} by hand" >&2
    exit 1
fi
sudo=()
if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "install-container-tools.sh: not root and no sudo; as root run:" \
            "apt-get install --no-install-recommends ${missing[*]}" >&2
        exit 1
    }
    sudo=(sudo)
fi

echo "install-container-tools.sh: installing ${missing[*]}" >&2
# Another apt run (another engineer's script, unattended upgrades) may hold the lock:
# wait for it rather than fail.
apt_options=(-o DPkg::Lock::Timeout=600 -q)
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# Recommends left out: podman's would bring fuse-overlayfs, slirp4netns and dbus, none
# used here. On a machine run by systemd, Debian's docker-registry package also starts a
# registry service on port 5000; without an init system (CI) it starts nothing.
if ! { "${sudo[@]}" apt-get "${apt_options[@]}" update &&
    "${sudo[@]}" apt-get "${apt_options[@]}" install -y --no-install-recommends \
        "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-container-tools.sh: apt-get failed (output above)" >&2
    exit 1
fi
