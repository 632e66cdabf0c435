"""The node's storage: a provisioner of node-local volumes for PersistentVolumeClaims.

In a cluster a claim gets its volume from the provisioner its StorageClass names, the
PersistentVolume controller binds the two, and the kubelet mounts the volume into every pod
that uses the claim. Here the same parts do the same, with the node agent as provisioner:

- the harness makes StorageClass `kubetrade-node-local` (provisioner
  `kubetrade.io/node-agent`, reclaim policy Delete, binding Immediate) the cluster's
  default, so a claim without a storageClassName gets it from the DefaultStorageClass
  admission plugin, and runs kube-controller-manager's persistentvolume-binder, claim
  protection and volume protection controllers;
- the binder marks a claim of that class for this provisioner
  (`volume.kubernetes.io/storage-provisioner`); `Provisioner` then makes a directory on
  this machine, `<work dir>/persistent-volumes/pvc-<claim uid>`, mode 0777 (any pod user
  may write it, as local-path provisioners make them), and a hostPath PersistentVolume for
  it, pre-bound to the claim and pinned to this node; the binder binds them: both Bound;
- a pod's `persistentVolumeClaim` volume is that directory (node_files), the same one for
  every pod that uses the claim, so a replaced pod finds what its predecessor wrote;
- when the claim is deleted its volume is Released; with reclaim policy Delete the
  provisioner removes the directory and the PersistentVolume, as an external provisioner
  does. With Retain both stay.

It acts as its own identity, bound to the cluster's `system:persistent-volume-provisioner`
ClusterRole, which is what an external provisioner is given.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any, Final

import aiohttp

from .kubeclient import ApiError, KubeClient

log = logging.getLogger("node_agent.storage")

Obj = dict[str, Any]

PROVISIONER: Final = "kubetrade.io/node-agent"
STORAGE_CLASS: Final = "kubetrade-node-local"
ANNOTATION_PROVISIONER: Final = "volume.kubernetes.io/storage-provisioner"
ANNOTATION_PROVISIONED_BY: Final = "pv.kubernetes.io/provisioned-by"


def storage_class() -> Obj:
    """The StorageClass the harness installs: the cluster's default, provisioned here."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": False,
    }


def volume_for(claim: Obj, *, node_name: str, directory: Path) -> Obj:
    """The PersistentVolume for `claim`: a directory of this node, pre-bound to the claim."""
    meta, spec = claim["metadata"], claim["spec"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{meta['uid']}",
            "annotations": {ANNOTATION_PROVISIONED_BY: PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec.get("storageClassName") or STORAGE_CLASS,
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "hostPath": {"path": str(directory), "type": "Directory"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            # Only this node has the directory.
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [node_name],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }


class Provisioner:
    """Provisions and deletes this node's volumes; `run` watches until cancelled."""

    def __init__(self, client: KubeClient, *, node_name: str, directory: Path) -> None:
        self.client = client
        self.node_name = node_name
        self.directory = directory

    async def run(self) -> None:
        await asyncio.gather(self._claims(), self._volumes())

    async def _claims(self) -> None:
        async for kind, claim in self.client.watch("/api/v1/persistentvolumeclaims"):
            if kind in ("ADDED", "MODIFIED") and self._wants_volume(claim):
                await self._provision(claim)

    async def _volumes(self) -> None:
        async for kind, volume in self.client.watch("/api/v1/persistentvolumes"):
            if kind in ("ADDED", "MODIFIED") and self._released(volume):
                await self._delete(volume)

    @staticmethod
    def _wants_volume(claim: Obj) -> bool:
        meta = claim["metadata"]
        return (
            (meta.get("annotations") or {}).get(ANNOTATION_PROVISIONER) == PROVISIONER
            and not meta.get("deletionTimestamp")
            and not claim["spec"].get("volumeName")
            and (claim.get("status") or {}).get("phase", "Pending") == "Pending"
        )

    @staticmethod
    def _released(volume: Obj) -> bool:
        annotations = volume["metadata"].get("annotations") or {}
        return (
            annotations.get(ANNOTATION_PROVISIONED_BY) == PROVISIONER
            and (volume.get("status") or {}).get("phase") == "Released"
            and volume["spec"].get("persistentVolumeReclaimPolicy") == "Delete"
            and not volume["metadata"].get("deletionTimestamp")
        )

    async def _provision(self, claim: Obj) -> None:
        meta = claim["metadata"]
        directory = self.directory / f"pvc-{meta['uid']}"
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o777)  # mkdir's mode is filtered by the umask
        body = volume_for(claim, node_name=self.node_name, directory=directory)
        try:
            await self.client.create("/api/v1/persistentvolumes", body)
        except ApiError as exc:
            if exc.status != 409:  # 409: made already, at an earlier event of the claim
                log.warning("provisioning %s/%s failed: %s", meta["namespace"], meta["name"], exc)
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("provisioning %s/%s failed: %s", meta["namespace"], meta["name"], exc)
            return
        log.info("provisioned %s for claim %s/%s", directory, meta["namespace"], meta["name"])

    async def _delete(self, volume: Obj) -> None:
        name = volume["metadata"]["name"]
        path = Path(volume["spec"]["hostPath"]["path"])
        if path.parent == self.directory:  # never anything this provisioner did not make
            await asyncio.to_thread(shutil.rmtree, path, True)
        try:
            await self.client.delete(f"/api/v1/persistentvolumes/{name}")
        except ApiError as exc:
            if exc.status != 404:
                log.warning("deleting volume %s failed: %s", name, exc)
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("deleting volume %s failed: %s", name, exc)
            return
        log.info("deleted volume %s and %s", name, path)
