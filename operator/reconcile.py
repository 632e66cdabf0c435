"""One reconciliation of one session: observe, decide, act, record.

Level-based: whatever woke us (a session event, a runner pod event, the resync timer, the
deletion handler), we read the session, its runner pods, its ConfigMap and its claim
afresh, resolve its strategy's tag if a new spec is taken up (resolve.py), read its
runner's figures when they are due or a new spec is on probation, let `plan` decide from
those alone, take that one step, and write down what we saw. The next event carries the
work on, so an operator restart, a lost event or a hand-deleted pod all end in the same
place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp

from kubetrade.operator import children, rollout, status
from kubetrade.operator.kube import ApiError, Kube, core_path, session_path
from kubetrade.operator.plan import Observed, Plan, owned_by, plan, previous_status
from kubetrade.operator.resolve import resolve_strategy
from kubetrade.operator.status import Outcome, SessionStatus

log = logging.getLogger("kubetrade.operator")

Obj = dict[str, Any]


class Reconciler:
    """Carries out `plan` against the API server, one session at a time."""

    def __init__(self, kube: Kube, settings: children.RunnerSettings) -> None:
        self.kube = kube
        self.settings = settings
        # kopf calls us from several tasks (session events, pod events, timers): one
        # reconciliation of a session at a time, or two could each create a pod.
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._figures_tried: dict[tuple[str, str], float] = {}  # monotonic seconds

    async def reconcile(self, namespace: str, name: str) -> bool:
        """Move one session one step; True when nothing of it is left to stop."""
        key = (namespace, name)
        async with self._locks.setdefault(key, asyncio.Lock()):
            session = await self.kube.session(namespace, name)
            if session is None:
                self._locks.pop(key, None)
                self._figures_tried.pop(key, None)
                return True
            pods = await self.kube.runner_pods(namespace, name)
            # A runner pod whose labels were edited away is still a runner: look it up by
            # its fixed name too, and tell it from somebody else's pod of that name.
            pod_name = children.runner_pod_name(name)
            name_taken = False
            if all(p["metadata"]["name"] != pod_name for p in pods):
                stray = await self.kube.get(core_path(namespace, "pods", pod_name))
                if stray is not None and owned_by(stray, session):
                    pods.append(stray)
                name_taken = stray is not None and not owned_by(stray, session)
            config_map = children.config_map_name(name)
            claim = children.claim_name(name)
            previous = previous_status(session)
            if previous is None and session.get("status"):
                # Its records (lastReconciledSpec, ...) are lost to this pass: say so.
                log.warning("%s/%s: the status is unreadable; planning afresh", namespace, name)
            resolution = None
            deleting = bool(session["metadata"].get("deletionTimestamp"))
            if not deleting and rollout.needs_resolution(session, previous, self.settings.image):
                resolution = await resolve_strategy(self.kube, session)
            figures, figures_from = await self._figures(session, previous, pods)
            observed = Observed(
                session=session,
                pods=pods,
                config_map=await self.kube.get(core_path(namespace, "configmaps", config_map)),
                name_taken=name_taken,
                claim=await self.kube.get(core_path(namespace, "persistentvolumeclaims", claim)),
                resolution=resolution,
                figures=figures,
                figures_from=figures_from,
                now=datetime.now(UTC),
            )
            step = plan(observed, self.settings)
            await self._act(observed, step)
            await self._record(session, step, observed.now)
            return step.finished

    async def _act(self, observed: Observed, step: Plan) -> None:
        namespace = observed.session["metadata"]["namespace"]
        for pod, why in step.delete_pods:
            meta = pod["metadata"]
            # The uid precondition: never delete a successor that took the name meanwhile.
            body = {"preconditions": {"uid": meta["uid"]}}
            await self.kube.delete(core_path(namespace, "pods", meta["name"]), body)
            log.info("%s/%s: deleting (uid %s): %s", namespace, meta["name"], meta["uid"], why)
        wanted = step.write_config_map
        if wanted is not None:
            name = wanted["metadata"]["name"]
            try:
                if observed.config_map is None:
                    await self.kube.create(core_path(namespace, "configmaps"), wanted)
                else:
                    version = observed.config_map["metadata"]["resourceVersion"]
                    body = {
                        **wanted,
                        "metadata": {**wanted["metadata"], "resourceVersion": version},
                    }
                    await self.kube.replace(core_path(namespace, "configmaps", name), body)
            except ApiError as exc:
                # 409: someone wrote it meanwhile, the next event shows it; a namespace
                # being deleted takes the session too, the next event shows that.
                if exc.status != 409 and not _namespace_terminating(exc):
                    raise
        if step.delete_config_map:
            name = children.config_map_name(observed.session["metadata"]["name"])
            await self.kube.delete(core_path(namespace, "configmaps", name))
        claims = core_path(namespace, "persistentvolumeclaims")
        try:
            if step.create_claim is not None:
                await self.kube.create(claims, step.create_claim)
            if step.patch_claim is not None:
                name = children.claim_name(observed.session["metadata"]["name"])
                await self.kube.merge_patch(f"{claims}/{name}", step.patch_claim)
        except ApiError as exc:
            # Made, changed or deleted meanwhile, or the namespace is going: the next event
            # shows it.
            if exc.status not in (404, 409) and not _namespace_terminating(exc):
                raise
        if step.create_pod is not None:
            try:
                await self.kube.create(core_path(namespace, "pods"), step.create_pod)
                log.info("%s/%s: created", namespace, step.create_pod["metadata"]["name"])
            except ApiError as exc:
                if _namespace_terminating(exc):
                    pass  # the session goes with its namespace: nothing to start
                elif exc.status != 409:  # 409: a pod of that name exists after all; wait
                    message = f"the API server refused the runner pod: {exc.message}"
                    step.outcome = Outcome("Failed", "RunnerPodRejected", message, stalled=True)
                    # Retried at every resync: one Event, not one per attempt.
                    previous = previous_status(observed.session)
                    again = previous is not None and previous.reason == "RunnerPodRejected"
                    step.events = [] if again else [("Warning", "RunnerPodRejected", message)]
        for kind, reason, message in step.events:
            await self.kube.event(observed.session, kind, reason, message)

    async def _record(self, session: Obj, step: Plan, now: datetime) -> None:
        """Write the status if it says something new; an Event when the phase changes."""
        meta = session["metadata"]
        previous = previous_status(session)
        outcome = step.outcome
        new = SessionStatus(
            phase=outcome.phase,
            reason=outcome.reason,
            message=outcome.message,
            observed_generation=int(meta.get("generation", 0)),
            runner_pod=step.runner_pod,
            strategy=step.strategy,
            strategy_digest=step.strategy_digest,
            real_money=step.real_money,
            conditions=status.conditions(
                outcome,
                suspended=bool((session.get("spec") or {}).get("suspend")),
                generation=int(meta.get("generation", 0)),
                previous=previous.conditions if previous is not None else [],
                now=now,
                deployment=step.deployed,
            ),
            summary=step.summary,
            last_reconciled_spec=step.deployed,
            last_stable_spec=step.stable,
        ).dump()
        old = session.get("status") or {}
        if new != old:
            # A merge patch keeps keys it does not mention: name the dropped ones as null.
            patch = {**dict.fromkeys(old.keys() - new.keys()), **new}
            try:
                path = session_path(meta["namespace"], meta["name"]) + "/status"
                await self.kube.merge_patch(path, {"status": patch})
            except ApiError as exc:
                if exc.status != 404:  # gone meanwhile: nothing left to describe
                    raise
        # One Event per transition: a new phase, or a new trouble within Degraded/Failed.
        troubled = outcome.phase in ("Degraded", "Failed", "RolledBack")
        before = (previous.phase, previous.reason) if previous is not None else None
        moved = before is None or before[0] != outcome.phase
        if moved:
            name = f"{meta['namespace']}/{meta['name']}"
            log.info("%s: %s (%s) %s", name, outcome.phase, outcome.reason, outcome.message)
        # The step's own Events tell an ordinary transition; a trouble has its own Event,
        # unless the step already told it by that reason.
        told = {reason for _, reason, _ in step.events}
        quiet = outcome.reason in told if troubled else bool(step.events)
        if (moved or (troubled and before != (outcome.phase, outcome.reason))) and not quiet:
            kind = "Warning" if troubled else "Normal"
            # Rolled back: the Event says so (the status's reason keeps the cause).
            reason = "RolledBack" if outcome.phase == "RolledBack" else outcome.reason
            await self.kube.event(session, kind, reason or outcome.phase, outcome.message)

    async def _figures(
        self, session: Obj, previous: SessionStatus | None, pods: list[Obj]
    ) -> tuple[Obj | None, str | None]:
        """A running runner's /status and its pod's uid: while a new spec is on probation
        at every pass (its stability is judged from them), else at most every 15 s."""
        key = (session["metadata"]["namespace"], session["metadata"]["name"])
        up = [
            p
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and (p.get("status") or {}).get("podIP")
            and "running" in ((p["status"].get("containerStatuses") or [{}])[0].get("state") or {})
        ]
        if not up:
            return None, None
        deployed = previous.last_reconciled_spec if previous is not None else None
        probation = deployed is None or deployed.state == "Deployed"
        tried = self._figures_tried.get(key)
        recently = tried is not None and time.monotonic() - tried < status.SUMMARY_INTERVAL_SECONDS
        summary = previous.summary if previous is not None else None
        now = datetime.now(UTC)
        if not probation and (recently or not status.summary_due(summary, now)):
            return None, None
        self._figures_tried[key] = time.monotonic()
        pod = up[0]
        ports = pod["spec"]["containers"][0].get("ports") or [{}]
        port = int(next((p for p in ports if p.get("name") == "metrics"), ports[0]).get(
            "containerPort", session["spec"].get("metricsPort", 9102)
        ))  # fmt: skip
        try:
            payload = await self.kube.runner_status(pod["status"]["podIP"], port)
        except aiohttp.ClientError:
            payload = None
        return payload, (pod["metadata"]["uid"] if payload is not None else None)


def _namespace_terminating(exc: ApiError) -> bool:
    """The API server refuses new objects in a namespace that is being deleted."""
    return exc.status == 403 and "being terminated" in exc.message
