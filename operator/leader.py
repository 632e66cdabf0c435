"""Leader election on a coordination.k8s.io Lease: of several operator replicas, only the
one holding the Lease reconciles.

Why a Lease of our own rather than kopf's peering: kopf's peering pauses operators of a
*lower* priority and lets operators of the same priority all run (with a warning), so two
replicas of one Deployment (one priority) would both reconcile; it needs cluster-wide
peering CRDs and RBAC on them; and nothing in it stops a paused operator that resumes
from writing. A Lease is the cluster's own primitive for this (kube-controller-manager
and the scheduler use it), needs `get`, `create` and `update` on one Lease in the
operator's namespace only, and gives the fence (fence.py) its deadline.

As client-go's leaderelection does it:
- a candidate reads the Lease every `retry_seconds`; it takes the Lease when nobody
  holds it, or when it has seen the same record (holder, renewTime, resourceVersion)
  unchanged for the record's leaseDurationSeconds on its own monotonic clock (never the
  holder's timestamps: clocks of two machines differ); the write carries the
  resourceVersion it read, so of two candidates only one wins;
- the holder renews every `retry_seconds`; each success opens the fence until the
  renewal's send time plus `renew_seconds` (less than the lease's duration); when no
  renewal succeeds in that time, or the Lease turns out to be someone else's, leadership
  is lost: the fence is closed already and the operator stops (`hold` raises);
- a holder that stops cleanly releases the Lease (holder cleared) after its last write,
  and a standby takes it within `retry_seconds`.

Takeover after the leader dies without releasing (kill -9, its node gone) therefore takes
between `lease_seconds` and `lease_seconds + retry_seconds`, plus the new leader's start
(watches listed, every session looked at); the runners do not notice: they never talk to
the operator.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp

from kubetrade.operator.fence import Fence
from kubetrade.operator.kube import ApiError, Kube

log = logging.getLogger("kubetrade.operator.leader")

Obj = dict[str, Any]

LEASE_NAME: Final = "kubetrade-operator"
SERVICE_ACCOUNT_NAMESPACE: Final = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class LeadershipLost(Exception):
    """The Lease could not be renewed in time, or another candidate holds it."""


def micro_time(now: datetime | None = None) -> str:
    """A Kubernetes MicroTime: RFC 3339 with microseconds, UTC."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    # The pod's name (its hostname) says which replica leads; the suffix tells two
    # processes of one host apart (a restarted container, the e2e test's two operators).
    return f"{socket.gethostname()}_{random.getrandbits(32):08x}"


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    namespace: str
    name: str = LEASE_NAME
    identity: str = field(default_factory=default_identity)
    lease_seconds: float = 15.0  # client-go's defaults: 15, 10, 2
    renew_seconds: float = 10.0
    retry_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_seconds < self.renew_seconds < self.lease_seconds:
            raise ValueError(
                "leader election needs 0 < retry < renew deadline < lease duration; got"
                f" {self.retry_seconds:g}, {self.renew_seconds:g}, {self.lease_seconds:g}"
            )


@dataclass
class Elector:
    kube: Kube
    settings: LeaseSettings
    fence: Fence
    _lease: Obj | None = None  # the Lease as our last successful write left it
    _seen: tuple[str, str, str] | None = None  # holder, renewTime, resourceVersion
    _seen_at: float = 0.0  # monotonic: when that record was first seen

    @property
    def path(self) -> str:
        s = self.settings
        return f"/apis/coordination.k8s.io/v1/namespaces/{s.namespace}/leases/{s.name}"

    @property
    def holding(self) -> bool:
        return self._lease is not None

    async def acquire(self) -> None:
        """Return once this candidate holds the Lease (its fence open)."""
        s = self.settings
        log.info("standby as %s: waiting for %s", s.identity, self.where)
        while True:
            if await self._attempt():
                break
            await asyncio.sleep(s.retry_seconds * random.uniform(1.0, 1.2))
        log.info("leading as %s: holding %s", s.identity, self.where)

    async def hold(self) -> None:
        """Renew the Lease for as long as it can be held; raise LeadershipLost after."""
        s = self.settings
        while True:
            await asyncio.sleep(s.retry_seconds)
            try:
                await self._renew()
            except LeadershipLost:
                self.fence.close()
                self._lease = None
                raise
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("renewing %s failed: %r", self.where, exc)
            if not self.fence.is_open():
                self._lease = None
                raise LeadershipLost(f"the Lease was not renewed within {s.renew_seconds:g} s")

    @property
    def where(self) -> str:
        return f"Lease {self.settings.namespace}/{self.settings.name}"

    async def release(self) -> None:
        """After the last write: close the fence and hand the Lease over at once."""
        self.fence.close()
        lease, self._lease = self._lease, None
        if lease is None:
            return
        spec = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
        spec["renewTime"] = micro_time()
        try:
            async with asyncio.timeout(self.settings.renew_seconds):
                body = {**lease, "spec": spec}
                await self.kube.request("PUT", self.path, body=body, fenced=False)
            log.info("released %s", self.where)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            # Taken meanwhile or unreachable: it expires by itself.
            log.warning("releasing %s failed: %r", self.where, exc)

    # ----------------------------------------------------------------------------------

    async def _attempt(self) -> bool:
        """One look at the Lease; True once we hold it."""
        sent = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.renew_seconds):
                lease = await self.kube.get(self.path)
                if lease is None:
                    return await self._write("POST", self._fresh(None), sent)
                spec = lease.get("spec") or {}
                holder = str(spec.get("holderIdentity") or "")
                record = (holder, str(spec.get("renewTime")), lease["metadata"]["resourceVersion"])
                now = time.monotonic()
                if record != self._seen:
                    self._seen, self._seen_at = record, now
                duration = float(spec.get("leaseDurationSeconds") or self.settings.lease_seconds)
                if holder and holder != self.settings.identity and now < self._seen_at + duration:
                    return False  # another's, and alive as far as we can tell
                return await self._write("PUT", self._fresh(lease), sent)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("reading %s failed: %r", self.where, exc)
            return False

    async def _renew(self) -> None:
        lease = self._lease
        if lease is None:
            raise LeadershipLost("the Lease is not held")
        sent = time.monotonic()
        async with asyncio.timeout(self.settings.renew_seconds):
            spec = {**lease["spec"], "renewTime": micro_time()}
            if await self._write("PUT", {**lease, "spec": spec}, sent):
                return
            found = await self.kube.get(self.path)
        holder = ((found or {}).get("spec") or {}).get("holderIdentity")
        if found is not None and holder == self.settings.identity:
            # Our own renewal went through though its answer was lost: carry on from it
            # (the fence opens again with the next renewal whose answer arrives).
            self._lease = found
            return
        raise LeadershipLost(f"the Lease is held by {holder or 'nobody'} now")

    def _fresh(self, lease: Obj | None) -> Obj:
        """The Lease as this candidate takes it over (or renews it)."""
        s = self.settings
        spec = (lease or {}).get("spec") or {}
        now = micro_time()
        ours = spec.get("holderIdentity") == s.identity
        transitions = int(spec.get("leaseTransitions") or 0)
        metadata: Obj = {"name": s.name, "namespace": s.namespace}
        if lease is not None:
            metadata["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": s.identity,
                # Rounded up: a standby waits at least as long as this holder's fence is
                # open (round() made 10.5 s a 10 s lease against a 10.25 s renew deadline).
                "leaseDurationSeconds": math.ceil(s.lease_seconds),
                "acquireTime": spec.get("acquireTime") if ours else now,
                "renewTime": now,
                "leaseTransitions": transitions if ours or lease is None else transitions + 1,
            },
        }

    async def _write(self, method: str, lease: Obj, sent: float) -> bool:
        """Create or update the Lease as ours; False if another write came first (409).
        Success opens the fence until `sent` plus the renew deadline."""
        path = self.path if method == "PUT" else self.path.rsplit("/", 1)[0]
        try:
            self._lease = await self.kube.request(method, path, body=lease, fenced=False)
        except ApiError as exc:
            if exc.status == 409:
                return False
            raise
        self.fence.open_until(sent + self.settings.renew_seconds)
        return True
