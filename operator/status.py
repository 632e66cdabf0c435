"""A session's status: what the operator saw, for people and for kstatus-aware tools.

`SessionStatus` is the schema of `.status` (the CRD's status schema is generated from it).
The phase is one word for `kubectl get lts`; the conditions follow kstatus: `Ready` (the
session is as its spec asks: Running, Suspended or Completed), and the abnormal-true
`Reconciling` (also while a new spec is on probation, until it is stable) and `Stalled`
(also once a spec was rolled back: nothing improves until the spec changes), plus domain
conditions (`SpecValid`, `RunnerReady`, `Suspended`, `RolledBack`). Every condition
carries the generation it describes, and its `lastTransitionTime` moves only when its
status flips, so watchers can tell a change from a refresh.

`lastReconciledSpec` and `lastStableSpec` (`DeployedSpec`) are the rollout's records:
the newest spec as the operator runs it (tag resolved to a digest, config hash, image,
journal directory) and the newest one that proved stable (operator/rollout.py).

`runner_state` reads a runner pod the way a person reads `kubectl describe pod`: is it
scheduled, running, ready, crash-looping, and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kubetrade.runner.domain import format_ms

Obj = dict[str, Any]
Phase = Literal[
    "Pending",
    "Starting",
    "Running",
    "Suspended",
    "Degraded",
    "Completed",
    "Failed",
    "Stopping",
    "RolledBack",
]
# A deployed spec: taken up and awaiting stability, stable, rolled back from, or not stable
# with nothing to roll back to (or rollback off).
DeploymentState = Literal["Deployed", "Stable", "RolledBack", "NotStable"]
ConditionStatus = Literal["True", "False", "Unknown"]

# Phases in which the session is as its spec asks and nothing is under way.
_SETTLED: Final = frozenset({"Running", "Suspended", "Completed"})
# High-rate figures belong in Prometheus, not etcd: a running session's status is written
# every 90 s (`kubetrade operator --summary-seconds`): at a thousand sessions two thirds of
# a write per session a minute, inside the one write per session a minute the API server
# should take from the operator in steady state (every 60 s measured 1.0-1.03: the odd
# transition on top of the figures went over).
SUMMARY_INTERVAL_SECONDS: Final = 90.0

# Waiting reasons after which a container will not start without someone changing something.
_STUCK_WAITING: Final = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, validate_by_name=True, extra="ignore"
    )


class Condition(_Model):
    """One kstatus-style condition."""

    type: str = Field(description="Ready, Reconciling, Stalled, SpecValid, RunnerReady, ...")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word saying why.")
    message: str = Field(default="", description="What a person needs to know.")
    observed_generation: int = Field(
        default=0, description="The metadata.generation this condition describes."
    )
    last_transition_time: str = Field(description="When status last changed, RFC 3339.")


class RunnerSummary(_Model):
    """The runner's figures, copied from its /status every 90 s (--summary-seconds)."""

    bars: int = Field(default=0, description="Closed bars processed.")
    last_bar_time: str | None = Field(default=None, description="Open time of the last bar.")
    orders: int = Field(default=0, description="Orders placed.")
    fills: int = Field(default=0, description="Fills received.")
    rejected: int = Field(default=0, description="Orders rejected or failed.")
    equity: float | None = Field(default=None, description="Cash plus positions at market.")
    realized_pnl: float = Field(default=0.0, description="Realized profit and loss.")
    unrealized_pnl: float = Field(default=0.0, description="Unrealized profit and loss.")
    strategy_errors: int = Field(default=0, description="Strategy calls that failed.")
    market_data_live: bool = Field(default=False, description="Whether the stream is live.")
    updated_at: str = Field(description="When these figures were read, RFC 3339.")


class DeployedSpec(_Model):
    """A spec as the operator runs it: what a rollback returns to (Flink's model)."""

    generation: int = Field(description="The metadata.generation of the spec.")
    spec: str = Field(
        description="The spec as JSON, its strategy's tag resolved to a digest: exactly what"
        " runs, whatever the tag names later."
    )
    strategy_reference: str | None = Field(
        default=None, description="The OCI strategy, pinned: registry/repository[:tag]@digest."
    )
    strategy_digest: str | None = Field(
        default=None, description="The OCI strategy's manifest digest."
    )
    config_hash: str = Field(description="Hash of the runner's session file.")
    image: str = Field(description="The runner image.")
    state_dir: str = Field(
        description="The journal's directory on the session's volume (a stateless upgrade"
        " starts a new one)."
    )
    deployed_at: str = Field(description="When the operator took this spec up, RFC 3339.")
    state: DeploymentState = Field(
        default="Deployed",
        description="Deployed (awaiting stability), Stable, RolledBack (the last stable spec"
        " runs instead) or NotStable (not stable in time, nothing to roll back to).",
    )
    reason: str = Field(default="", description="Why it is in that state.")
    message: str = Field(default="", description="The state, explained.")


class SessionStatus(_Model):
    """What the operator last saw of a LiveTradingSession."""

    phase: Phase = Field(
        description="Pending, Starting, Running, Suspended, Degraded, Completed (its market"
        " data ended), Failed or Stopping."
    )
    reason: str = Field(default="", description="Why the session is in this phase.")
    message: str = Field(default="", description="The phase, explained.")
    observed_generation: int = Field(
        default=0, description="The metadata.generation this status describes."
    )
    runner_pod: str | None = Field(default=None, description="Name of the runner pod.")
    strategy: str | None = Field(default=None, description="Where the strategy comes from.")
    strategy_digest: str | None = Field(
        default=None, description="The manifest digest of the OCI strategy the runner runs."
    )
    real_money: bool = Field(
        default=False,
        description="True when the session can trade real money: a live provider, or a paper"
        " provider pointed at a live venue, confirmed by spec.trading.confirmLive.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="kstatus conditions: Ready, Reconciling, Stalled and domain conditions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    summary: RunnerSummary | None = Field(default=None, description="The runner's figures.")
    last_reconciled_spec: DeployedSpec | None = Field(
        default=None, description="The newest spec the operator took up."
    )
    last_stable_spec: DeployedSpec | None = Field(
        default=None,
        description="The newest spec whose runner became stable: ready, its first bars"
        " processed without a strategy error, in time.",
    )

    def dump(self) -> Obj:
        """The JSON form written to the API server."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def timestamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# ------------------------------------------------------------------- conditions


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one reconciliation concluded: the phase and why."""

    phase: Phase
    reason: str
    message: str
    stalled: bool = False  # nothing will improve until someone changes something
    spec_valid: bool = True
    runner_ready: bool = False
    runner_reason: str = "NoRunner"
    # A new spec's runner is up and on probation: how far it is towards stable. The rollout
    # is still under way (Reconciling) until it is stable or rolled back.
    awaiting_stability: str = ""


def conditions(
    outcome: Outcome,
    *,
    suspended: bool,
    generation: int,
    previous: Sequence[Condition],
    now: datetime,
    deployment: DeployedSpec | None = None,
) -> list[Condition]:
    """The conditions for `outcome`, keeping each unchanged condition's transition time.
    `deployment` (status.lastReconciledSpec) says whether the session was rolled back."""
    busy = outcome.phase in ("Pending", "Starting", "Stopping") and not outcome.stalled
    reconciling = (outcome.reason, outcome.message) if busy else ("Reconciled", "")
    if outcome.awaiting_stability and not outcome.stalled:
        busy, reconciling = True, ("AwaitingStability", outcome.awaiting_stability)
    rolled_back = deployment is not None and deployment.state == "RolledBack"
    wanted: list[tuple[str, bool, str, str]] = [
        # Ready: the session is as its spec asks (kstatus reads it so: Flux and kpt wait
        # for it): a ready runner, a runner stopped by spec.suspend, or a session whose
        # market data ended. The phase still tells the three apart.
        ("Ready", outcome.phase in _SETTLED, outcome.reason, outcome.message),
        ("Reconciling", busy, *reconciling),
        ("Stalled", outcome.stalled, outcome.reason if outcome.stalled else "NotStalled", ""),
        (
            "SpecValid",
            outcome.spec_valid,
            "Valid" if outcome.spec_valid else outcome.reason,
            "" if outcome.spec_valid else outcome.message,
        ),
        ("RunnerReady", outcome.runner_ready, outcome.runner_reason, ""),
        ("Suspended", suspended, "SuspendRequested" if suspended else "NotSuspended", ""),
        # The Argo CD health check (helm/kubetrade/docs) reads this one as Degraded.
        (
            "RolledBack",
            rolled_back,
            _rollback_reason(deployment),
            deployment.message if rolled_back and deployment is not None else "",
        ),
    ]
    before = {c.type: c for c in previous}
    result = []
    for kind, true, reason, message in wanted:
        status: ConditionStatus = "True" if true else "False"
        old = before.get(kind)
        when = timestamp(now) if old is None or old.status != status else old.last_transition_time
        result.append(
            Condition(
                type=kind,
                status=status,
                reason=reason,
                message=message,
                observed_generation=generation,
                last_transition_time=when,
            )
        )
    return result


def _rollback_reason(deployment: DeployedSpec | None) -> str:
    """Rolled back: why (NotStableInTime, StrategyErrors, ...); otherwise the state of the
    newest spec (Deployed, Stable, NotStable)."""
    if deployment is None:
        return "NoSpecYet"
    if deployment.state == "RolledBack":
        return deployment.reason or "RolledBack"
    return deployment.state


# ---------------------------------------------------------------- runner figures


def summary_due(
    previous: RunnerSummary | None, now: datetime, seconds: float = SUMMARY_INTERVAL_SECONDS
) -> bool:
    """Whether the runner's figures may be recorded again (at most every `seconds`)."""
    if previous is None:
        return True
    updated = parse_timestamp(previous.updated_at)
    return updated is None or (now - updated).total_seconds() >= seconds


def _money(value: float) -> float:
    # Float noise (9999.992999999999) is not a figure anyone wants to read in kubectl.
    return round(float(value), 8)


def summary_from_runner(payload: Mapping[str, Any], now: datetime) -> RunnerSummary:
    """The runner's /status JSON as a status summary."""
    last = payload.get("last_bar_time")
    equity = payload.get("equity")
    return RunnerSummary(
        bars=int(payload.get("bars") or 0),
        last_bar_time=format_ms(int(last)) if isinstance(last, int | float) else None,
        orders=int(payload.get("orders") or 0),
        fills=int(payload.get("fills") or 0),
        rejected=int(payload.get("rejected") or 0),
        equity=_money(equity) if isinstance(equity, int | float) else None,
        realized_pnl=_money(payload.get("realized_pnl") or 0.0),
        unrealized_pnl=_money(payload.get("unrealized_pnl") or 0.0),
        strategy_errors=int(payload.get("strategy_errors") or 0),
        market_data_live=bool(payload.get("ready")),
        updated_at=timestamp(now),
    )


# ------------------------------------------------------------------ the runner pod


@dataclass(frozen=True, slots=True)
class RunnerState:
    """A runner pod, read for the session's status."""

    phase: Phase
    reason: str
    message: str
    ready: bool = False
    stalled: bool = False
    running: bool = False  # the process is up, so its /status can be read
    finished: bool = False  # the pod is terminal (Succeeded/Failed) and will never run again


def _container(pod: Obj) -> Obj:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    found: Obj = statuses[0]
    return found


def _last_exit(container: Obj) -> str:
    """`exit code 2 (Error): <last line of its output>`, from the last termination."""
    terminated = (container.get("lastState") or {}).get("terminated") or (
        container.get("state") or {}
    ).get("terminated")
    if not terminated:
        return ""
    text = f"exit code {terminated.get('exitCode')} ({terminated.get('reason', 'Error')})"
    lines = [line for line in str(terminated.get("message", "")).splitlines() if line.strip()]
    return f"{text}: {lines[-1].strip()}" if lines else text


def runner_state(pod: Obj, *, was_up: bool) -> RunnerState:
    """Read a runner pod. `was_up`: the session was Running or Degraded before."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    phase = status.get("phase", "Pending")
    container = _container(pod)
    restarts = int(container.get("restartCount") or 0)
    state = container.get("state") or {}
    if pod["metadata"].get("deletionTimestamp"):
        return RunnerState("Stopping", "RunnerStopping", f"runner pod {name} is stopping")
    if phase == "Succeeded":
        # Exit 0 without a stop request: the market data ended (a replay, a finite
        # synthetic run). The session is done until its spec or restartNonce changes.
        return RunnerState(
            "Completed",
            "RunnerCompleted",
            f"runner pod {name} finished: its market data ended",
            finished=True,
        )
    if phase == "Failed":
        why = status.get("reason") or _last_exit(container) or phase
        return RunnerState(
            "Failed", "RunnerPodFailed", f"runner pod {name} ended: {why}", finished=True
        )
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in _STUCK_WAITING:
        reason = str(waiting["reason"])
        detail = _last_exit(container) or str(waiting.get("message", ""))
        message = f"runner pod {name}: {reason}"
        if reason == "CrashLoopBackOff":
            message = f"runner crash-looping ({restarts} restarts), last {detail}"
        elif detail:
            message += f": {detail}"
        return RunnerState("Degraded", reason, message, stalled=True)
    if "running" in state:
        ready = bool(container.get("ready"))
        if ready:
            return RunnerState(
                "Running", "RunnerReady", f"runner pod {name} is ready", ready=True, running=True
            )
        if restarts > 0 or was_up:
            last = _last_exit(container)
            message = f"runner pod {name} is not ready"
            message += f" ({restarts} restarts, last {last})" if restarts and last else ""
            return RunnerState("Degraded", "RunnerNotReady", message, running=True)
        return RunnerState(
            "Starting", "RunnerStarting", f"runner pod {name} is starting", running=True
        )
    if "terminated" in state:  # exited, about to be restarted by the kubelet
        return RunnerState("Degraded", "RunnerExited", f"runner {_last_exit(container)}")
    if not pod.get("spec", {}).get("nodeName"):
        return RunnerState("Pending", "RunnerUnscheduled", f"runner pod {name} awaits a node")
    detail = str(waiting.get("message") or waiting.get("reason") or "creating its container")
    return RunnerState("Pending", "RunnerCreating", f"runner pod {name}: {detail}")
