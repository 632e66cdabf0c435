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

# Recommends left out: podman's would bring fuse-overlayfs, slirp4netns and dbus, none
# used here. On a machine run by systemd, Debian's docker-registry package also starts a
# registry service on port 5000; without an init system (CI) it starts nothing.
exec "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" install-container-tools.sh \
    podman buildah runc netavark aardvark-dns iptables uidmap mmdebstrap \
    docker-registry apache2-utils
