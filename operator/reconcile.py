"""One reconciliation of one session: observe, decide, act, record.

Level-based: whatever asked for it (a session, runner pod, ConfigMap or claim event, the
session's due time), a pass looks at the session and its children, resolves its
strategy's tag if a new spec is taken up (resolve.py), reads its runner's figures when
they are due or a new spec is on probation, lets `plan` decide from those alone, takes
that one step and writes down what it saw. The next event carries the work on, so an
operator restart, a lost event or a hand-deleted pod all end in the same place.

Two ways to look (cache.py says why):
- from the watches' cache first. Most passes end there: nothing to do and nothing new to
  say costs no request. When the only news is the status (new figures, a verdict on a
  spec), it is written with the session's resourceVersion as a precondition, so a status
  planned from a session that has moved on is refused (409) and planned again afresh;
- afresh from the API server (quorum reads, the session's children read in parallel)
  whenever the step changes a child or the finalizer, a tag must be resolved, or the
  session has not been read afresh for `resync_seconds`. Never two runner pods rests on
  these reads, as it always has, and on the pod's fixed name.

The operator keeps its own finalizer: added (with the session's resourceVersion) before
the first child is made, removed once a deleted session's runner has stopped, so a
session never goes while its runner still trades.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp

from kubetrade.operator import children, rollout, status
from kubetrade.operator.cache import Cache
from kubetrade.operator.children import FINALIZER
from kubetrade.operator.kube import ApiError, Kube, core_path, session_path
from kubetrade.operator.plan import Observed, Plan, owned_by, plan, previous_status
from kubetrade.operator.resolve import resolve_strategy
from kubetrade.operator.status import Outcome, SessionStatus

log = logging.getLogger("kubetrade.operator")

Obj = dict[str, Any]
Key = tuple[str, str]
Figures = tuple[Obj | None, str | None]  # a runner's /status and its pod's uid, or nothing

RESYNC_SECONDS: Final = 300.0  # how long a session may go without a read from the API server
STOPPING_SECONDS: Final = 5.0  # a deleted session looks again this often while its runner stops
RESOLVE_RETRY_SECONDS: Final = 30.0  # an unresolved tag is tried again at least this often
PROBATION_SECONDS: Final = (5.0, 30.0)  # a new spec's runner is judged every bar, within these


class Reconciler:
    """Carries out `plan` against the API server, one session at a time (workqueue.py
    sees to that: one pass of a session at a time)."""

    def __init__(
        self,
        kube: Kube,
        settings: children.RunnerSettings,
        *,
        cache: Cache | None = None,
        resync_seconds: float = RESYNC_SECONDS,
        summary_seconds: float = status.SUMMARY_INTERVAL_SECONDS,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.cache = cache if cache is not None else Cache()
        self.resync_seconds = resync_seconds
        self.summary_seconds = summary_seconds
        self._figures_tried: dict[Key, float] = {}  # monotonic seconds
        self._fresh_at: dict[Key, float] = {}  # monotonic seconds of the last fresh read
        # Sessions whose cached children a write found out of date (409): read afresh next.
        self._doubted: set[Key] = set()

    async def reconcile(self, namespace: str, name: str) -> float | None:
        """Move one session one step; seconds until it should be looked at again without
        an event, or None once nothing of it is left to look at."""
        key = (namespace, name)
        cached = self.cache.session(key)
        # The watches' first listing is as fresh as a read: the resync counts from there.
        fresh_at = self._fresh_at.setdefault(key, time.monotonic())
        due = key in self._doubted or time.monotonic() - fresh_at >= self.resync_seconds
        figures: Figures | None = None  # not read yet in this pass
        pods, maps, claims = self.cache.children(key)
        # A runner pod on its way out is read afresh: a watch that relists after a gap
        # never says that a pod went in the gap.
        if cached is not None and not due and not self._resolving(cached) and not _stopping(pods):
            figures = await self._figures(cached, previous_status(cached), pods)
            observed = Observed(
                session=cached,
                pods=pods,
                config_map=maps.get(children.config_map_name(name)),
                claim=claims.get(children.claim_name(name)),
                figures=figures[0],
                figures_from=figures[1],
                now=datetime.now(UTC),
                summary_seconds=self.summary_seconds,
            )
            step = plan(observed, self.settings)
            if not _acts(step) and await self._record(observed, step, precondition=True):
                return self._next(observed, step)
            # It must act, or the session moved on since the cache saw it: look afresh.
        session = await self.kube.session(namespace, name)
        if session is None:
            self._forget(key)
            return None
        if due:
            self._fresh_at[key] = time.monotonic()
            self._doubted.discard(key)
        observed = await self._observe(session, figures, complete=due)
        step = plan(observed, self.settings)
        if step.delete_pods and not due:
            # Pods of other names came from the cache, which may still hold one that is
            # gone (its DELETED not seen yet): a delete is decided on a complete read only,
            # or the real runner could go as a "duplicate" of a ghost.
            self._fresh_at[key] = time.monotonic()
            observed = await self._observe(session, figures, complete=True)
            step = plan(observed, self.settings)
        if await self._act(observed, step):
            await self._record(observed, step)
        return self._next(observed, step)

    # --- looking ---------------------------------------------------------------------

    def _resolving(self, session: Obj) -> bool:
        """A new spec's OCI tag must be resolved: that pass reads afresh."""
        if session["metadata"].get("deletionTimestamp"):
            return False
        return rollout.needs_resolution(session, previous_status(session), self.settings.image)

    async def _observe(self, session: Obj, figures: Figures | None, *, complete: bool) -> Observed:
        """The session's runner pod read afresh by its name (the only one this operator
        makes), and with `complete` (the periodic resync) every pod with its labels, its
        ConfigMap and its claim too. Otherwise those come from the cache, where a write
        that a stale copy misleads is refused by its precondition (a name taken, a
        resourceVersion moved on) and the next event plans again."""
        meta = session["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        key = (namespace, name)
        pod_name = children.runner_pod_name(name)
        map_name, claim_name = children.config_map_name(name), children.claim_name(name)
        config_map: Obj | None
        claim: Obj | None
        if complete:
            pods, by_name, config_map, claim = await asyncio.gather(
                self.kube.runner_pods(namespace, name),
                self.kube.get(core_path(namespace, "pods", pod_name)),
                self.kube.get(core_path(namespace, "configmaps", map_name)),
                self.kube.get(core_path(namespace, "persistentvolumeclaims", claim_name)),
            )
        else:
            by_name = await self.kube.get(core_path(namespace, "pods", pod_name))
            if by_name is None:
                self.cache.pod_gone(key, pod_name)
            cached, maps, claims = self.cache.children(key)
            # Labelled pods of other names are made only by hand: the watch shows them.
            pods = [p for p in cached if p["metadata"]["name"] != pod_name]
            if by_name is not None and children.is_runner_of(by_name, name):
                pods.append(by_name)
            config_map, claim = maps.get(map_name), claims.get(claim_name)
        # A runner pod whose labels were edited away is still a runner: look it up by its
        # fixed name too, and tell it from somebody else's pod of that name.
        name_taken = False
        if all(p["metadata"]["name"] != pod_name for p in pods) and by_name is not None:
            if owned_by(by_name, session):
                pods.append(by_name)
            name_taken = not owned_by(by_name, session)
        previous = previous_status(session)
        if previous is None and session.get("status"):
            # Its records (lastReconciledSpec, ...) are lost to this pass: say so.
            log.warning("%s/%s: the status is unreadable; planning afresh", namespace, name)
        resolution = None
        if self._resolving(session):
            resolution = await resolve_strategy(self.kube, session)
        if figures is None or (
            figures[1] is not None and all(p["metadata"].get("uid") != figures[1] for p in pods)
        ):
            figures = await self._figures(session, previous, pods)  # not read, or another pod's
        return Observed(
            session=session,
            pods=pods,
            config_map=config_map,
            name_taken=name_taken,
            claim=claim,
            resolution=resolution,
            figures=figures[0],
            figures_from=figures[1],
            now=datetime.now(UTC),
            summary_seconds=self.summary_seconds,
        )

    def _next(self, observed: Observed, step: Plan) -> float:
        """Seconds until the session should be looked at without an event."""
        meta = observed.session["metadata"]
        key = (meta["namespace"], meta["name"])
        now = time.monotonic()
        after = self.resync_seconds - (now - self._fresh_at.get(key, now))
        if key in self._doubted:
            after = min(after, 1.0)  # a write was refused: look again, afresh, soon
        if meta.get("deletionTimestamp"):
            after = min(after, STOPPING_SECONDS)  # events say when it stopped; this in case
        if _stopping(observed.pods):
            # A runner pod on its way out: its DELETED event brings the successor, but a
            # watch that relists after a gap never sends a DELETED for what went in the
            # gap. Look again soon (reading the pod afresh) rather than wait for the
            # resync with a ghost.
            after = min(after, STOPPING_SECONDS)
        if self._resolving(observed.session):
            after = min(after, RESOLVE_RETRY_SECONDS)
        if _runner_up(observed.pods):
            tried = self._figures_tried.get(key, now)
            after = min(after, tried + self.summary_seconds - now)
            if step.deployed is not None and step.deployed.state == "Deployed":
                low, high = PROBATION_SECONDS
                after = min(after, max(low, min(high, rollout.bar_seconds(step.deployed))))
        return max(after, 0.5)

    def _forget(self, key: Key) -> None:
        self._figures_tried.pop(key, None)
        self._fresh_at.pop(key, None)
        self._doubted.discard(key)

    def _doubt(self, observed: Observed) -> None:
        """A write found a child other than the cache said: the next pass reads all."""
        meta = observed.session["metadata"]
        self._doubted.add((meta["namespace"], meta["name"]))

    # --- acting ----------------------------------------------------------------------

    async def _act(self, observed: Observed, step: Plan) -> bool:
        """Take the step; False when the session changed meanwhile (the next event plans
        again) or it is gone."""
        session = observed.session
        namespace = session["metadata"]["namespace"]
        if step.add_finalizer and not step.delete_pods:
            # A new session: its finalizer, session file and claim are independent writes,
            # sent at once (one round trip before the pod, not two: under a thousand new
            # sessions each round trip is a fraction of a second). The pod still waits for
            # the finalizer, so a deleted session waits for its runner to stop; a file or
            # claim made for a session that changed meanwhile is adopted by the next pass.
            added, written, _ = await _together(
                self._finalizer(session, add=True),
                self._write_config_map(observed, step),
                self._claim(observed, step),
            )
            if not added:
                return False
            return await self._start(observed, step, written=written)
        # Before the first child: a deleted session then waits for its runner to stop.
        if step.add_finalizer and not await self._finalizer(session, add=True):
            return False
        for pod, why in step.delete_pods:
            meta = pod["metadata"]
            # The uid precondition: never delete a successor that took the name meanwhile.
            body = {"preconditions": {"uid": meta["uid"]}}
            answer = await self.kube.delete(core_path(namespace, "pods", meta["name"]), body)
            self.cache.wrote("pods", answer or {})
            log.info("%s/%s: deleting (uid %s): %s", namespace, meta["name"], meta["uid"], why)
        # The session file and the claim are independent of each other; the pod waits for
        # the file, so a runner never starts on an older one (or one edited by hand).
        written, _ = await _together(
            self._write_config_map(observed, step), self._claim(observed, step)
        )
        return await self._start(observed, step, written=written)

    async def _start(self, observed: Observed, step: Plan, *, written: bool) -> bool:
        """The rest of a step once the session file is written: the pod, the step's
        Events, and the finalizer's release."""
        session = observed.session
        if step.create_pod is not None and written:
            await self._create_pod(observed, step)
        for kind, reason, message in step.events:
            await self.kube.event(session, kind, reason, message)
        if step.remove_finalizer:
            await self._finalizer(session, add=False)
            return False  # released: the session goes, nothing left to describe
        return True

    async def _finalizer(self, session: Obj, *, add: bool) -> bool:
        """Add or remove the operator's finalizer, if the session is as we read it."""
        meta = session["metadata"]
        others = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        finalizers = [*others, FINALIZER] if add else others
        version = meta["resourceVersion"]
        body = {"metadata": {"finalizers": finalizers or None, "resourceVersion": version}}
        try:
            answer = await self.kube.merge_patch(
                session_path(meta["namespace"], meta["name"]), body
            )
            self.cache.wrote("sessions", answer)
        except ApiError as exc:
            if exc.status not in (404, 409):  # gone, or changed meanwhile: the next event
                raise
            return False
        return True

    async def _write_config_map(self, observed: Observed, step: Plan) -> bool:
        """Write the runner's session file; False if it changed meanwhile (409)."""
        wanted = step.write_config_map
        if wanted is None:
            return True
        namespace = observed.session["metadata"]["namespace"]
        name = wanted["metadata"]["name"]
        try:
            if observed.config_map is None:
                answer = await self.kube.create(core_path(namespace, "configmaps"), wanted)
            else:
                version = observed.config_map["metadata"]["resourceVersion"]
                body = {**wanted, "metadata": {**wanted["metadata"], "resourceVersion": version}}
                answer = await self.kube.replace(core_path(namespace, "configmaps", name), body)
        except ApiError as exc:
            # 409: someone wrote it meanwhile, the next event shows it; a namespace being
            # deleted takes the session too, the next event shows that.
            if exc.status != 409 and not _namespace_terminating(exc):
                raise
            self._doubt(observed)
            return False
        self.cache.wrote("configmaps", answer)
        return True

    async def _claim(self, observed: Observed, step: Plan) -> None:
        namespace = observed.session["metadata"]["namespace"]
        claims = core_path(namespace, "persistentvolumeclaims")
        try:
            if step.delete_config_map:
                name = children.config_map_name(observed.session["metadata"]["name"])
                await self.kube.delete(core_path(namespace, "configmaps", name))
            if step.create_claim is not None:
                self.cache.wrote(
                    "persistentvolumeclaims", await self.kube.create(claims, step.create_claim)
                )
            if step.patch_claim is not None:
                name = children.claim_name(observed.session["metadata"]["name"])
                self.cache.wrote(
                    "persistentvolumeclaims",
                    await self.kube.merge_patch(f"{claims}/{name}", step.patch_claim),
                )
        except ApiError as exc:
            # Made, changed or deleted meanwhile, or the namespace is going: the next event
            # shows it.
            if exc.status not in (404, 409) and not _namespace_terminating(exc):
                raise
            self._doubt(observed)

    async def _create_pod(self, observed: Observed, step: Plan) -> None:
        assert step.create_pod is not None
        namespace = observed.session["metadata"]["namespace"]
        try:
            self.cache.wrote(
                "pods", await self.kube.create(core_path(namespace, "pods"), step.create_pod)
            )
            log.info("%s/%s: created", namespace, step.create_pod["metadata"]["name"])
        except ApiError as exc:
            if _namespace_terminating(exc):
                return  # the session goes with its namespace: nothing to start
            if exc.status == 409:  # a pod of that name exists after all; wait
                return
            message = f"the API server refused the runner pod: {exc.message}"
            step.outcome = Outcome("Failed", "RunnerPodRejected", message, stalled=True)
            # Retried at every resync: one Event, not one per attempt.
            previous = previous_status(observed.session)
            again = previous is not None and previous.reason == "RunnerPodRejected"
            step.events = [] if again else [("Warning", "RunnerPodRejected", message)]

    # --- recording -------------------------------------------------------------------

    def status(self, observed: Observed, step: Plan) -> Obj:
        """The status that describes `step`."""
        session = observed.session
        meta = session["metadata"]
        previous = previous_status(session)
        outcome = step.outcome
        generation = int(meta.get("generation", 0))
        return SessionStatus(
            phase=outcome.phase,
            reason=outcome.reason,
            message=outcome.message,
            observed_generation=generation,
            runner_pod=step.runner_pod,
            strategy=step.strategy,
            strategy_digest=step.strategy_digest,
            real_money=step.real_money,
            conditions=status.conditions(
                outcome,
                suspended=bool((session.get("spec") or {}).get("suspend")),
                generation=generation,
                previous=previous.conditions if previous is not None else [],
                now=observed.now,
                deployment=step.deployed,
            ),
            summary=step.summary,
            last_reconciled_spec=step.deployed,
            last_stable_spec=step.stable,
        ).dump()

    async def _record(self, observed: Observed, step: Plan, *, precondition: bool = False) -> bool:
        """Write the status if it says something new, and an Event when the phase changes.
        With `precondition`, only onto the session as observed: False when it moved on."""
        session = observed.session
        meta = session["metadata"]
        new = self.status(observed, step)
        old = session.get("status") or {}
        if new != old:
            # A merge patch keeps keys it does not mention: name the dropped ones as null.
            body: Obj = {"status": {**dict.fromkeys(old.keys() - new.keys()), **new}}
            if precondition:
                body["metadata"] = {"resourceVersion": meta["resourceVersion"]}
            try:
                path = session_path(meta["namespace"], meta["name"]) + "/status"
                self.cache.wrote("sessions", await self.kube.merge_patch(path, body))
            except ApiError as exc:
                if exc.status == 409 and precondition:
                    return False
                if exc.status != 404:  # gone meanwhile: nothing left to describe
                    raise
        if precondition:
            for kind, reason, message in step.events:  # told once the status is in
                await self.kube.event(session, kind, reason, message)
        await self._tell(observed, step)
        return True

    async def _tell(self, observed: Observed, step: Plan) -> None:
        """One Event per transition: a new phase, or a new trouble within Degraded/Failed."""
        session = observed.session
        meta = session["metadata"]
        previous = previous_status(session)
        outcome = step.outcome
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

    # --- the runner's figures --------------------------------------------------------

    async def _figures(
        self, session: Obj, previous: SessionStatus | None, pods: list[Obj]
    ) -> Figures:
        """A running runner's /status and its pod's uid: while a new spec is on probation
        at every pass (its stability is judged from them), else every `summary_seconds`."""
        key = (session["metadata"]["namespace"], session["metadata"]["name"])
        up = _runner_up(pods)
        if not up:
            return None, None
        deployed = previous.last_reconciled_spec if previous is not None else None
        probation = deployed is None or deployed.state == "Deployed"
        tried = self._figures_tried.get(key)
        recently = tried is not None and time.monotonic() - tried < self.summary_seconds
        summary = previous.summary if previous is not None else None
        now = datetime.now(UTC)
        due = status.summary_due(summary, now, self.summary_seconds)
        if not probation and (recently or not due):
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


async def _together(*writes: Awaitable[Any]) -> list[Any]:
    """Send `writes` at once. If one fails, the others are cancelled and awaited before
    the failure is raised: no write of a pass outlives it (the next pass of the session
    would otherwise race it, and a stopping operator could not cancel it)."""
    tasks = [asyncio.ensure_future(write) for write in writes]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _stopping(pods: list[Obj]) -> bool:
    return any(p["metadata"].get("deletionTimestamp") for p in pods)


def _runner_up(pods: list[Obj]) -> list[Obj]:
    """The pods whose runner process is up, so its /status can be read."""
    return [
        p
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and (p.get("status") or {}).get("podIP")
        and "running" in ((p["status"].get("containerStatuses") or [{}])[0].get("state") or {})
    ]


def _acts(step: Plan) -> bool:
    """Whether the step changes a child or the finalizer (status and Events aside)."""
    return bool(
        step.delete_pods
        or step.create_pod is not None
        or step.write_config_map is not None
        or step.delete_config_map
        or step.create_claim is not None
        or step.patch_claim is not None
        or step.add_finalizer
        or step.remove_finalizer
    )


def _namespace_terminating(exc: ApiError) -> bool:
    """The API server refuses new objects in a namespace that is being deleted."""
    return exc.status == 403 and "being terminated" in exc.message
