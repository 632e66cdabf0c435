"""What to do next for one session: a pure function of what the API server said.

`plan` reads a session, its runner pods, its ConfigMap and claim, what reconcile learned
of its strategy's tag and from its runner, and the time, and returns one step towards the
desired state plus the status that describes it. No I/O and no clock of its own, so every
rule below is tested without a cluster (tests/unit/test_operator_plan.py).

Which spec runs is rollout.py's: the newest generation, taken up once with its tag
resolved, or after a rollback the last stable one; the children are built from that
record, never from the tag again.

Never two runner pods: a pod is created only when the observation shows none for the
session (terminating ones included); a pod built from another spec is deleted first and
its successor waits until it is gone; the pod's fixed name makes the API server refuse a
second one anyway. The runner's ConfigMap is rewritten only while no out-of-date pod
runs, so an old runner that restarts never reads the new session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import ValidationError

from kubetrade.operator import children, rollout, status
from kubetrade.operator.children import ANNOTATION_HASH, ANNOTATION_RESTART_NONCE, FINALIZER
from kubetrade.operator.claim import claim_step
from kubetrade.operator.rollout import Resolution
from kubetrade.operator.status import DeployedSpec, Outcome, RunnerSummary, SessionStatus
from kubetrade.runner.app.session_file import SessionError, validate_document
from kubetrade.runner.spec import API_VERSION, KIND, LiveTradingSession

Obj = dict[str, Any]
Event = tuple[str, str, str]  # type (Normal/Warning), reason, message

_STOP_REASONS: Final = {
    "SessionDeleted": "the session is being deleted",
    "Suspended": "spec.suspend is true",
    "RestartRequested": "spec.restartNonce changed",
    "SpecChanged": "the session's spec changed",
    "RunnerPodFailed": "the pod ended and will be replaced",
    "InvalidSpec": "the session's spec is invalid",
    "StrategySourceUnsupported": "the strategy source is not supported",
    "DuplicateRunner": "more than one runner pod exists for this session",
    "RunnerPodDeleted": "it was deleted; a new one replaces it once it has stopped",
    "PreviousSession": "it belongs to an earlier session of the same name",
    "RollingBack": "the last stable spec runs again",
}


@dataclass(frozen=True, slots=True)
class Observed:
    """What the API server said, read at the start of one reconciliation, and what
    reconcile learned besides: the strategy's tag resolved, the runner's figures, the time."""

    session: Obj
    pods: list[Obj]  # the session's runner pods
    config_map: Obj | None
    name_taken: bool = False  # a pod this session does not own has the runner pod's name
    claim: Obj | None = None
    resolution: Resolution | None = None  # the OCI tag of a spec being taken up
    figures: Obj | None = None  # a runner's /status, read in this pass
    figures_from: str | None = None  # the uid of that runner's pod
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(slots=True)
class Plan:
    """The one step towards the desired state, and what the status will say."""

    outcome: Outcome
    delete_pods: list[tuple[Obj, str]] = field(default_factory=list)  # (pod, stop reason)
    create_pod: Obj | None = None
    write_config_map: Obj | None = None
    delete_config_map: bool = False
    create_claim: Obj | None = None
    patch_claim: Obj | None = None
    finished: bool = False  # the session is being deleted and nothing of it remains
    runner_pod: str | None = None
    strategy: str | None = None
    strategy_digest: str | None = None
    real_money: bool = False  # a route of the session reaches a live venue (confirmed)
    summary: RunnerSummary | None = None
    deployed: DeployedSpec | None = None  # status.lastReconciledSpec
    stable: DeployedSpec | None = None  # status.lastStableSpec
    events: list[Event] = field(default_factory=list)


def previous_status(session: Obj) -> SessionStatus | None:
    try:
        return SessionStatus.model_validate(session.get("status") or {})
    except ValidationError:
        return None  # no status yet, or one written by someone else: start afresh


def owned_by(obj: Obj, session: Obj) -> bool:
    uid = session["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def _is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _validated(session: Obj) -> tuple[LiveTradingSession | None, str | None]:
    """The runner's own validation of the spec (what CEL cannot say): the session as the
    runner reads it, or the problems that stop it."""
    meta = session["metadata"]
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace")},
        "spec": session.get("spec") or {},
    }
    try:
        parsed = validate_document(document, source=f"{meta.get('namespace')}/{meta['name']}")
    except SessionError as exc:
        return None, "; ".join(str(problem) for problem in exc.problems)
    return parsed, None


def _stop_all(observed: Observed, reason: str, plan: Plan) -> None:
    if observed.pods:
        plan.runner_pod = observed.pods[0]["metadata"]["name"]
    plan.delete_pods = [(p, reason) for p in observed.pods if not _is_terminating(p)]
    for pod, why in plan.delete_pods:
        name = pod["metadata"]["name"]
        plan.events.append(
            ("Normal", "StoppingRunner", f"stopping runner pod {name}: {_STOP_REASONS[why]}")
        )


def _stop_reason(
    pod: Obj, desired: children.Desired, session: Obj, *, rolled_back: bool
) -> str | None:
    """Why this live pod must go, or None if it is the desired one."""
    if not owned_by(pod, session):
        return "PreviousSession"
    finished = status.runner_state(pod, was_up=False)
    if finished.finished and finished.phase != "Completed":
        return "RunnerPodFailed"
    if desired.pod is None:
        return "Suspended"
    annotations = pod["metadata"].get("annotations") or {}
    if _pod_hash(pod) == desired.pod_hash:
        return None  # running, or completed: a completed session stays so
    if rolled_back:
        return "RollingBack"
    nonce = str(desired.pod["metadata"]["annotations"].get(ANNOTATION_RESTART_NONCE, ""))
    return (
        "RestartRequested" if annotations.get(ANNOTATION_RESTART_NONCE) != nonce else "SpecChanged"
    )


def _pod_hash(pod: Obj) -> str | None:
    found = (pod["metadata"].get("annotations") or {}).get(ANNOTATION_HASH)
    return str(found) if found is not None else None


def _config_map_current(observed: Obj | None, desired: Obj) -> bool:
    if observed is None:
        return False
    meta = observed["metadata"]
    return bool(
        observed.get("data") == desired["data"]
        and meta.get("labels") == desired["metadata"]["labels"]
        and meta.get("ownerReferences") == desired["metadata"]["ownerReferences"]
    )


def _figures(observed: Observed, pod: Obj | None) -> RunnerSummary | None:
    """The runner figures read in this pass, if they are `pod`'s."""
    if observed.figures is None or pod is None:
        return None
    if observed.figures_from != pod["metadata"].get("uid"):
        return None
    return status.summary_from_runner(observed.figures, observed.now)


def _resolution_trouble(resolution: Resolution | None, reference: str | None) -> Outcome:
    if resolution is None or not resolution.failed:
        return Outcome("Pending", "ResolvingStrategy", f"resolving {reference} to a digest")
    # A registry that may come back is retried at every resync without a person: not
    # stalled. A tag that names nothing, or a login refused, waits for someone.
    return Outcome(
        "Pending" if resolution.retrying else "Failed",
        resolution.reason,
        resolution.message,
        stalled=not resolution.retrying,
    )


def _children(
    session: Obj, record: DeployedSpec, settings: children.RunnerSettings
) -> children.Desired:
    spec: Obj = json.loads(record.spec)
    return children.desired_children(
        {**session, "spec": spec}, settings, state_dir=record.state_dir, image=record.image
    )


def plan(observed: Observed, settings: children.RunnerSettings) -> Plan:
    """Decide the next step for one session. Pure: no I/O, no clock (`observed.now`)."""
    session = observed.session
    meta = session["metadata"]
    previous = previous_status(session)
    pods = observed.pods
    live = [p for p in pods if not _is_terminating(p)]
    now = observed.now
    kept = Plan(Outcome("Pending", "", ""))
    if previous is not None:
        kept.deployed, kept.stable = previous.last_reconciled_spec, previous.last_stable_spec
        kept.summary = previous.summary
    if observed.figures is not None:
        kept.summary = status.summary_from_runner(observed.figures, now)

    def with_records(result: Plan) -> Plan:
        result.deployed, result.stable, result.summary = kept.deployed, kept.stable, kept.summary
        return result

    if meta.get("deletionTimestamp"):
        result = with_records(
            Plan(
                Outcome("Stopping", "SessionDeleted", "stopping the runner before the session goes")
            )
        )
        _stop_all(observed, "SessionDeleted", result)
        if not pods:
            result.delete_config_map = observed.config_map is not None
            result.finished = True
            result.outcome = Outcome(
                "Stopping", "SessionDeleted", "runner stopped; the session goes"
            )
        return result

    _, problems = _validated(session)
    if problems:
        message = f"invalid session: {problems}"
        result = with_records(
            Plan(Outcome("Failed", "InvalidSpec", message, stalled=True, spec_valid=False))
        )
        _stop_all(observed, "InvalidSpec", result)
        if pods:
            result.outcome = Outcome("Stopping", "InvalidSpec", message, spec_valid=False)
        return result

    # Which spec runs: the newest generation once taken up, else what ran before it.
    deployed, stable = kept.deployed, kept.stable
    events: list[Event] = []
    trouble: Outcome | None = None
    if rollout.takes_up(session, previous, settings.image):
        reference = rollout.oci_reference(session["spec"])
        resolution = observed.resolution
        if rollout.needs_resolution(session, previous, settings.image) and (
            resolution is None or resolution.failed
        ):
            trouble = _resolution_trouble(resolution, reference)
        else:
            fixed = rollout.pinned(session, previous, resolution)
            try:
                probe = children.desired_children(fixed, settings)
            except children.UnsupportedSession as exc:
                result = with_records(
                    Plan(Outcome("Failed", exc.reason, exc.message, stalled=True))
                )
                _stop_all(observed, exc.reason, result)
                if pods:
                    result.outcome = Outcome("Stopping", exc.reason, exc.message)
                return result
            deployed, more = rollout.take_up(
                fixed, probe, current=rollout.running(previous), image=settings.image, now=now
            )
            events += more
            if resolution is not None and resolution.reference is not None:
                events.append(
                    (
                        "Normal",
                        "StrategyResolved",
                        f"{reference} is {resolution.digest}: generation"
                        f" {deployed.generation} runs exactly that",
                    )
                )
    if deployed is None:  # nothing taken up yet: the first spec's tag did not resolve
        assert trouble is not None
        return with_records(Plan(trouble, events=events))

    desired = _children(session, deployed, settings)
    # A new spec on probation: judged by its own runner, from what it did in this pass.
    if deployed.state == "Deployed" and desired.pod is not None:
        own = [p for p in live if _pod_hash(p) == desired.pod_hash]
        was_up = previous is not None and previous.phase in ("Running", "Degraded")
        runner = status.runner_state(own[0], was_up=was_up) if own else None
        verdict = rollout.judge(
            deployed, runner=runner, figures=_figures(observed, own[0] if own else None), now=now
        )
        if verdict is not None:
            deployed, stable, more = rollout.conclude(deployed, stable, verdict)
            events += more
    rolled_back = deployed.state == "RolledBack" and stable is not None
    record = stable if rolled_back and stable is not None else deployed
    if record is not deployed:
        desired = _children(session, record, settings)
    running_spec: Obj = json.loads(record.spec)
    parsed, _ = _validated({**session, "spec": running_spec})

    result = Plan(
        Outcome("Pending", "", ""),
        strategy=desired.strategy,
        strategy_digest=record.strategy_digest,
        real_money=parsed is not None and parsed.spec.is_live,
        summary=kept.summary,
        deployed=deployed,
        stable=stable,
        events=events,
    )
    result.outcome = _step(observed, settings, desired, result, rolled_back=rolled_back)
    result.outcome = _explain(result.outcome, deployed, trouble, kept.summary)
    return result


def _step(
    observed: Observed,
    settings: children.RunnerSettings,
    desired: children.Desired,
    result: Plan,
    *,
    rolled_back: bool,
) -> Outcome:
    """Move the children towards `desired`: stop, write, create; the outcome."""
    session = observed.session
    meta = session["metadata"]
    previous = previous_status(session)
    pods = observed.pods
    live = [p for p in pods if not _is_terminating(p)]
    if FINALIZER not in (meta.get("finalizers") or []):
        # Without our finalizer a deleted session would not wait for its runner to stop.
        return Outcome("Pending", "AwaitingFinalizer", f"waiting for finalizer {FINALIZER}")

    reasons = [(p, _stop_reason(p, desired, session, rolled_back=rolled_back)) for p in pods]
    stale = [(p, why) for p, why in reasons if why and not _is_terminating(p)]
    if len(pods) > 1:  # only by hand or by an older operator: restore the invariant first
        stale = [(p, "DuplicateRunner") for p in live]
    for pod, why in stale:
        result.delete_pods.append((pod, why))
        name = pod["metadata"]["name"]
        result.events.append(
            ("Normal", "StoppingRunner", f"stopping runner pod {name}: {_STOP_REASONS[why]}")
        )
    # A terminating pod that is still the desired one was deleted by someone else.
    going = [(p, why or "RunnerPodDeleted") for p, why in reasons if _is_terminating(p)] + stale
    if going:
        pod, why = going[0]
        result.runner_pod = pod["metadata"]["name"]
        text = f"waiting for runner pod {result.runner_pod} to stop ({_STOP_REASONS[why]})"
        return Outcome("Stopping", why, text)

    if not _config_map_current(observed.config_map, desired.config_map):
        result.write_config_map = desired.config_map
    claim = claim_step(observed.claim, desired.claim, session)
    result.create_claim, result.patch_claim = claim.create, claim.patch
    result.events += claim.events
    if desired.pod is None:
        return Outcome(
            "Suspended", "Suspended", "runner stopped; set spec.suspend: false to resume"
        )
    pod_name = desired.pod["metadata"]["name"]
    result.runner_pod = pod_name
    if not live and observed.name_taken:
        message = f"a pod named {pod_name} exists and is not this session's; delete or rename it"
        return Outcome("Failed", "RunnerPodNameTaken", message, stalled=True)
    if not live and claim.wait is not None:
        return claim.wait
    if not live:
        result.create_pod = desired.pod
        result.events.append(("Normal", "CreatingRunner", f"creating runner pod {pod_name}"))
        if previous is not None and previous.phase in ("Starting", "Running", "Degraded"):
            result.events.append(
                ("Warning", "RunnerPodMissing", f"runner pod {pod_name} disappeared; replacing it")
            )
        return Outcome("Pending", "CreatingRunner", f"creating runner pod {pod_name}")

    was_up = previous is not None and previous.phase in ("Running", "Degraded", "RolledBack")
    state = status.runner_state(live[0], was_up=was_up)
    message = state.message
    bound = (observed.claim or {}).get("status", {}).get("phase")
    if state.phase == "Pending" and observed.claim is not None and bound != "Bound":
        # A pod waits for its claim: say so, the likeliest cause is the cluster's storage.
        name = observed.claim["metadata"]["name"]
        message += (
            f"; its claim {name} is {bound or 'Pending'} (without a default StorageClass,"
            " name one in spec.storage.storageClassName)"
        )
    return Outcome(
        state.phase,
        state.reason,
        message,
        stalled=state.stalled,
        runner_ready=state.ready,
        runner_reason=state.reason,
    )


def _explain(
    outcome: Outcome,
    deployed: DeployedSpec,
    trouble: Outcome | None,
    summary: RunnerSummary | None,
) -> Outcome:
    """The outcome of the children, told in the light of the rollout."""
    if trouble is not None:
        # The newest spec cannot be taken up yet; the spec taken up before runs meanwhile.
        message = f"{trouble.message}; generation {deployed.generation}'s spec runs meanwhile"
        return Outcome(
            "Degraded" if trouble.stalled else trouble.phase,
            trouble.reason,
            message,
            stalled=trouble.stalled,
            runner_ready=outcome.runner_ready,
            runner_reason=outcome.runner_reason,
        )
    if deployed.state in ("RolledBack", "NotStable"):
        # Nothing improves until the spec changes: stalled, whatever the runner does.
        phase = outcome.phase
        if phase == "Running":
            phase = "RolledBack" if deployed.state == "RolledBack" else "Degraded"
        reason, message = outcome.reason, outcome.message
        if phase in ("RolledBack", "Degraded", "Completed") and not outcome.stalled:
            reason, message = deployed.reason, deployed.message
        return Outcome(
            phase,
            reason,
            message,
            stalled=True,
            runner_ready=outcome.runner_ready,
            runner_reason=outcome.runner_reason,
        )
    if deployed.state == "Deployed" and outcome.phase == "Running" and not outcome.stalled:
        return Outcome(
            outcome.phase,
            outcome.reason,
            outcome.message,
            runner_ready=outcome.runner_ready,
            runner_reason=outcome.runner_reason,
            awaiting_stability=rollout.progress(deployed, summary),
        )
    return outcome
