"""What to do next for one session: a pure function of what the API server said.

`plan` reads a session, its runner pods and its ConfigMap, and returns one step towards
the desired state plus the status that describes it. No I/O and no clock, so every rule
below is tested without a cluster (tests/unit/test_operator_plan.py).

Never two runner pods: a pod is created only when the observation shows none for the
session (terminating ones included); a pod built from another spec is deleted first and
its successor waits until it is gone; the pod's fixed name makes the API server refuse a
second one anyway. The runner's ConfigMap is rewritten only while no out-of-date pod
runs, so an old runner that restarts never reads the new session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from kubetrade.operator import children, status
from kubetrade.operator.children import ANNOTATION_HASH, ANNOTATION_RESTART_NONCE, FINALIZER
from kubetrade.operator.status import Outcome, SessionStatus
from kubetrade.runner.session_file import SessionError, validate_document
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
}


@dataclass(frozen=True, slots=True)
class Observed:
    """What the API server said, read at the start of one reconciliation."""

    session: Obj
    pods: list[Obj]  # the session's runner pods
    config_map: Obj | None
    name_taken: bool = False  # a pod this session does not own has the runner pod's name


@dataclass(slots=True)
class Plan:
    """The one step towards the desired state, and what the status will say."""

    outcome: Outcome
    delete_pods: list[tuple[Obj, str]] = field(default_factory=list)  # (pod, stop reason)
    create_pod: Obj | None = None
    write_config_map: Obj | None = None
    delete_config_map: bool = False
    finished: bool = False  # the session is being deleted and nothing of it remains
    runner_pod: str | None = None
    strategy: str | None = None
    real_money: bool = False  # a route of the session reaches a live venue (confirmed)
    figures_from: Obj | None = None  # the running pod whose /status may be read
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


def _stop_reason(pod: Obj, desired: children.Desired, session: Obj) -> str | None:
    """Why this live pod must go, or None if it is the desired one."""
    if not owned_by(pod, session):
        return "PreviousSession"
    finished = status.runner_state(pod, was_up=False)
    if finished.finished and finished.phase != "Completed":
        return "RunnerPodFailed"
    if desired.pod is None:
        return "Suspended"
    annotations = pod["metadata"].get("annotations") or {}
    if annotations.get(ANNOTATION_HASH) == desired.pod_hash:
        return None  # running, or completed: a completed session stays so
    nonce = str(session["spec"].get("restartNonce", ""))
    return (
        "RestartRequested" if annotations.get(ANNOTATION_RESTART_NONCE) != nonce else "SpecChanged"
    )


def _config_map_current(observed: Obj | None, desired: Obj) -> bool:
    if observed is None:
        return False
    meta = observed["metadata"]
    return bool(
        observed.get("data") == desired["data"]
        and meta.get("labels") == desired["metadata"]["labels"]
        and meta.get("ownerReferences") == desired["metadata"]["ownerReferences"]
    )


def plan(observed: Observed, settings: children.RunnerSettings) -> Plan:
    """Decide the next step for one session. Pure: no I/O, no clock."""
    session = observed.session
    meta = session["metadata"]
    previous = previous_status(session)
    pods = observed.pods
    live = [p for p in pods if not _is_terminating(p)]

    if meta.get("deletionTimestamp"):
        result = Plan(
            Outcome("Stopping", "SessionDeleted", "stopping the runner before the session goes")
        )
        _stop_all(observed, "SessionDeleted", result)
        if not pods:
            result.delete_config_map = observed.config_map is not None
            result.finished = True
            result.outcome = Outcome(
                "Stopping", "SessionDeleted", "runner stopped; the session goes"
            )
        return result

    parsed, problems = _validated(session)
    try:
        desired = None if problems else children.desired_children(session, settings)
        reason, message = ("InvalidSpec", f"invalid session: {problems}") if problems else ("", "")
    except children.UnsupportedSession as exc:
        desired, reason, message = None, exc.reason, exc.message
    if desired is None:
        result = Plan(
            Outcome("Failed", reason, message, stalled=True, spec_valid=reason != "InvalidSpec")
        )
        _stop_all(observed, reason, result)
        if pods:
            result.outcome = Outcome(
                "Stopping", reason, message, spec_valid=reason != "InvalidSpec"
            )
        return result

    result = Plan(
        Outcome("Pending", "", ""),
        strategy=desired.strategy,
        real_money=parsed is not None and parsed.spec.is_live,
    )
    if FINALIZER not in (meta.get("finalizers") or []):
        # Without our finalizer a deleted session would not wait for its runner to stop.
        result.outcome = Outcome(
            "Pending", "AwaitingFinalizer", f"waiting for finalizer {FINALIZER}"
        )
        return result

    reasons = [(p, _stop_reason(p, desired, session)) for p in pods]
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
        result.outcome = Outcome("Stopping", why, text)
        return result

    if not _config_map_current(observed.config_map, desired.config_map):
        result.write_config_map = desired.config_map
    if desired.pod is None:
        result.outcome = Outcome(
            "Suspended", "Suspended", "runner stopped; set spec.suspend: false to resume"
        )
        return result
    pod_name = desired.pod["metadata"]["name"]
    result.runner_pod = pod_name
    if not live and observed.name_taken:
        message = f"a pod named {pod_name} exists and is not this session's; delete or rename it"
        result.outcome = Outcome("Failed", "RunnerPodNameTaken", message, stalled=True)
        return result
    if not live:
        result.create_pod = desired.pod
        result.events.append(("Normal", "CreatingRunner", f"creating runner pod {pod_name}"))
        if previous is not None and previous.phase in ("Starting", "Running", "Degraded"):
            result.events.append(
                ("Warning", "RunnerPodMissing", f"runner pod {pod_name} disappeared; replacing it")
            )
        result.outcome = Outcome("Pending", "CreatingRunner", f"creating runner pod {pod_name}")
        return result

    was_up = previous is not None and previous.phase in ("Running", "Degraded")
    state = status.runner_state(live[0], was_up=was_up)
    result.outcome = Outcome(
        state.phase,
        state.reason,
        state.message,
        stalled=state.stalled,
        runner_ready=state.ready,
        runner_reason=state.reason,
    )
    if state.running:
        result.figures_from = live[0]
    return result
