"""Which spec runs, and whether it proved itself: deployments, stability and rollback.

Pure functions of the session, its previous status and what was observed, as the Flink
operator models a rollout:

- `take_up`: each new spec generation is taken up once, as a `DeployedSpec`
  (status.lastReconciledSpec): the spec with its strategy's tag resolved to a digest
  (`Resolution`, done by reconcile.py), the runner's config hash and image, the journal's
  directory on the session's volume and when it was taken up. From then on the operator
  builds the runner from that record, never from the tag again, so a moved tag changes
  nothing until the spec does. `upgradeMode: last-state` keeps the journal's directory
  (the new runner resumes it); `stateless` gives a changed runner a new one and keeps
  the old one for `kubetrade report`.
- `judge`: a deployed spec is stable when its runner is ready and has processed
  `rollback.stableBars` bars without a strategy error, within readinessTimeoutSeconds
  plus that many bar intervals; it is not when it has a strategy error first, when its
  runner crash-loops or fails, or when the time is up.
- `conclude`: a stable spec becomes status.lastStableSpec; an unstable one is rolled back
  to lastStableSpec (when `rollback.enabled` and there is a different one): the last
  stable spec runs again as it ran (its spec, image and journal directory) while the
  user's spec stays as written, until the spec changes again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from kubetrade.operator.children import FIRST_STATE, Desired
from kubetrade.operator.status import (
    DeployedSpec,
    DeploymentState,
    RunnerState,
    RunnerSummary,
    SessionStatus,
    parse_timestamp,
    timestamp,
)
from kubetrade.runner.domain import interval_ms
from kubetrade.runner.spec import OCI_PINNED, RollbackSpec

Obj = dict[str, Any]
Event = tuple[str, str, str]

_ROLLBACK_DEFAULTS: Final = RollbackSpec()


@dataclass(frozen=True, slots=True)
class Resolution:
    """What reconcile learned of the newest spec's OCI strategy: its tag's digest, or why
    not (`reason` set; `retrying`: the registry may answer later, so not stalled)."""

    reference: str | None = None  # pinned: registry/repository[:tag]@sha256:...
    digest: str | None = None
    reason: str = ""
    message: str = ""
    retrying: bool = False

    @property
    def failed(self) -> bool:
        return bool(self.reason)


def oci_reference(spec: Obj) -> str | None:
    """The spec's OCI strategy reference, if it names one."""
    oci = (spec.get("strategy") or {}).get("oci") or {}
    reference = oci.get("reference")
    return str(reference) if reference else None


def is_pinned(reference: str) -> bool:
    return re.search(OCI_PINNED, reference) is not None


def generation_of(session: Obj) -> int:
    return int(session["metadata"].get("generation", 0))


def takes_up(session: Obj, previous: SessionStatus | None, image: str) -> bool:
    """Whether this pass takes up a new deployment: a new generation, or a new runner image
    for a spec that is not rolled back (the image is part of what proved stable)."""
    deployed = previous.last_reconciled_spec if previous is not None else None
    if deployed is None or deployed.generation != generation_of(session):
        return True
    return deployed.image != image and deployed.state != "RolledBack"


def needs_resolution(session: Obj, previous: SessionStatus | None, image: str) -> bool:
    """Whether reconcile must ask a registry before planning: a deployment is taken up and
    its strategy is an OCI tag (a pinned reference needs no registry)."""
    reference = oci_reference(session.get("spec") or {})
    if reference is None or is_pinned(reference):
        return False
    deployed = previous.last_reconciled_spec if previous is not None else None
    if deployed is not None and deployed.generation == generation_of(session):
        return False  # a new image for the same spec: the tag was resolved already
    return takes_up(session, previous, image)


def pinned(session: Obj, previous: SessionStatus | None, resolution: Resolution | None) -> Obj:
    """The session with its strategy's reference pinned: by the resolution of a tag, by the
    record of this generation (a new image), or as written (a digest, or no OCI)."""
    spec = json.loads(json.dumps(session["spec"]))
    reference = oci_reference(spec)
    if reference is None or is_pinned(reference):
        return {**session, "spec": spec}
    deployed = previous.last_reconciled_spec if previous is not None else None
    if deployed is not None and deployed.generation == generation_of(session):
        recorded: Obj = json.loads(deployed.spec)
        return {**session, "spec": recorded}
    if resolution is None or resolution.reference is None:
        raise ValueError("an OCI tag must be resolved before it is taken up")
    spec["strategy"]["oci"]["reference"] = resolution.reference
    return {**session, "spec": spec}


def running(previous: SessionStatus | None) -> DeployedSpec | None:
    """The record whose spec runs: the last stable one after a rollback, else the newest."""
    if previous is None or previous.last_reconciled_spec is None:
        return None
    deployed = previous.last_reconciled_spec
    if deployed.state == "RolledBack" and previous.last_stable_spec is not None:
        return previous.last_stable_spec
    return deployed


def take_up(
    session: Obj,
    desired: Desired,
    *,
    current: DeployedSpec | None,
    image: str,
    now: datetime,
) -> tuple[DeployedSpec, list[Event]]:
    """The record of a new deployment of `session` (pinned), and the Events that say so.
    `current`: the record that runs now, whose journal directory a last-state upgrade
    keeps and a stateless one leaves for a new directory."""
    spec = session["spec"]
    meta = session["metadata"]
    generation = generation_of(session)
    reference = oci_reference(spec)
    digest = reference.rsplit("@", 1)[1] if reference else None
    state_dir = current.state_dir if current is not None else FIRST_STATE
    events: list[Event] = []
    changed = current is not None and (
        current.config_hash != desired.config_hash or current.image != image
    )
    if changed and spec.get("upgradeMode") == "stateless" and current is not None:
        # A fresh journal and account in a directory of its own; the old journal stays.
        state_dir = f"state-{generation}-{str(meta.get('uid', ''))[:8]}"
        events.append(
            (
                "Normal",
                "StatelessUpgrade",
                f"generation {generation} starts a fresh journal and account in {state_dir};"
                f" the previous one stays in {current.state_dir} (kubetrade report reads it)",
            )
        )
    record = DeployedSpec(
        generation=generation,
        # In the API server's key order: the runner's session file reads the same.
        spec=json.dumps(spec, separators=(",", ":")),
        strategy_reference=reference,
        strategy_digest=digest,
        config_hash=desired.config_hash,
        image=image,
        state_dir=state_dir,
        deployed_at=timestamp(now),
    )
    return record, events


@dataclass(frozen=True, slots=True)
class Verdict:
    stable: bool
    reason: str
    message: str


def _rollback(spec: Obj) -> RollbackSpec:
    try:
        return RollbackSpec.model_validate(spec.get("rollback") or {})
    except ValueError:
        return _ROLLBACK_DEFAULTS


def deadline(deployed: DeployedSpec) -> datetime | None:
    """When `deployed` must be stable: readinessTimeoutSeconds to get ready, then stableBars
    bar intervals for its bars (a live market sends them no faster)."""
    spec: Obj = json.loads(deployed.spec)
    rollback = _rollback(spec)
    started = parse_timestamp(deployed.deployed_at)
    if started is None:
        return None
    try:
        bars_ms = rollback.stable_bars * interval_ms(str(spec.get("interval") or "1m"))
    except ValueError:
        bars_ms = 0
    return started + timedelta(seconds=rollback.readiness_timeout_seconds, milliseconds=bars_ms)


def bar_seconds(deployed: DeployedSpec) -> float:
    """The bar interval of a deployed spec: a runner on probation makes progress no faster."""
    spec: Obj = json.loads(deployed.spec)
    try:
        return interval_ms(str(spec.get("interval") or "1m")) / 1000
    except ValueError:
        return 60.0


def progress(deployed: DeployedSpec, summary: RunnerSummary | None) -> str:
    """How far a deployed spec is towards stable, for the Reconciling condition."""
    wanted = _rollback(json.loads(deployed.spec)).stable_bars
    bars = min(summary.bars, wanted) if summary is not None else 0
    due = deadline(deployed)
    until = f"; rolled back if not stable by {timestamp(due)}" if due is not None else ""
    return (
        f"generation {deployed.generation} on probation: {bars} of {wanted} bars processed"
        f" without a strategy error{until}"
    )


def judge(
    deployed: DeployedSpec,
    *,
    runner: RunnerState | None,
    figures: RunnerSummary | None,
    now: datetime,
) -> Verdict | None:
    """Stable, not stable, or not yet known (None). `runner`: the deployed spec's own pod,
    if it has one; `figures`: read from that pod's runner in this pass."""
    wanted = _rollback(json.loads(deployed.spec)).stable_bars
    if runner is not None:
        errors = figures.strategy_errors if figures is not None else 0
        if runner.phase == "Completed" and errors == 0:
            return Verdict(True, "RunnerCompleted", "its runner finished its market data cleanly")
        if runner.stalled or (runner.finished and runner.phase != "Completed"):
            return Verdict(False, runner.reason, runner.message)
        if figures is not None and runner.running:
            if figures.strategy_errors > 0:
                return Verdict(
                    False,
                    "StrategyErrors",
                    f"{figures.strategy_errors} strategy errors in its first {figures.bars} bars",
                )
            if runner.ready and figures.bars >= wanted:
                return Verdict(
                    True,
                    "Stable",
                    f"its runner is ready and processed {figures.bars} bars without a"
                    " strategy error",
                )
    due = deadline(deployed)
    if due is not None and now > due:
        bars = figures.bars if figures is not None else 0
        return Verdict(
            False,
            "NotStableInTime",
            f"not stable by {timestamp(due)}: {bars} of {wanted} bars processed",
        )
    return None


def _with_state(
    deployed: DeployedSpec, state: DeploymentState, reason: str, message: str
) -> DeployedSpec:
    return deployed.model_copy(update={"state": state, "reason": reason, "message": message})


def _describe(deployed: DeployedSpec) -> str:
    what = deployed.strategy_digest or f"config {deployed.config_hash}"
    return f"generation {deployed.generation} ({what})"


def conclude(
    deployed: DeployedSpec, stable: DeployedSpec | None, verdict: Verdict
) -> tuple[DeployedSpec, DeployedSpec | None, list[Event]]:
    """The records after a verdict on `deployed` (newest, last stable) and the Events."""
    if verdict.stable:
        done = _with_state(deployed, "Stable", verdict.reason, verdict.message)
        note = f"{_describe(deployed)} is stable: {verdict.message}"
        return done, done, [("Normal", "SpecStable", note)]
    why = f"{_describe(deployed)} is not stable: {verdict.message}"
    target = stable
    enabled = _rollback(json.loads(deployed.spec)).enabled
    same = target is not None and (
        target.config_hash,
        target.strategy_digest,
        target.image,
        target.state_dir,
    ) == (deployed.config_hash, deployed.strategy_digest, deployed.image, deployed.state_dir)
    if enabled and target is not None and not same:
        message = (
            f"{why}; running the last stable spec, {_describe(target)}, again; the spec stays"
            " as written: change it to roll forward"
        )
        rolled = _with_state(deployed, "RolledBack", verdict.reason, message)
        note = f"{why}; rolling back to the last stable spec, {_describe(target)}"
        return rolled, stable, [("Warning", "RollingBack", note)]
    if not enabled:
        because = "rollback is off (spec.rollback.enabled: false)"
    elif target is None:
        because = "there is no stable spec to roll back to"
    else:
        because = "the last stable spec is this same runner"
    message = f"{why}; {because}"
    failed = _with_state(deployed, "NotStable", verdict.reason, message)
    return failed, stable, [("Warning", "SpecNotStable", message)]
