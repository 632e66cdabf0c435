# shellcheck shell=bash
# Sourced by the scripts that run podman or buildah (never executed on its own): the
# settings every container command of this project runs with, kept in the repository
# so nothing under /etc has to be edited.
#
#   CONTAINERS_CONF  scripts/containers/containers.conf: runtime runc, cgroupfs, file
#                    events, default ulimits (see the file for why each is needed).
#                    podman and buildah then read this file and no system one.
#   STORAGE_DRIVER   overlay: the kernel's own overlayfs, layers shared, not copied
#                    (vfs copies the whole tree for every layer: several GB and minutes
#                    for this image). Root, or a kernel >= 5.13 rootless, needs nothing
#                    else; older kernels rootless would need fuse-overlayfs.
#
# A caller's own values win, so a machine that needs something else can say so.
_kubetrade_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$_kubetrade_root/scripts/containers/containers.conf}"
export STORAGE_DRIVER="${STORAGE_DRIVER:-overlay}"
unset _kubetrade_root
