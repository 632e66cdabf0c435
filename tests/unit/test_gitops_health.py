"""GitOps tools read a session's health right: Argo CD's Lua check and Flux's kstatus.

The statuses are the operator's own (operator/status.py builds them for each outcome),
the Lua check runs in gopher-lua, the VM Argo CD embeds (tools/luahealth), and kstatus is
sigs.k8s.io/cli-utils' (tools/kstatus), the library Flux and kpt call. Both tools are
built from the Go module proxy by scripts/build-tool.sh and cached per machine.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT

from kubetrade.operator import status
from kubetrade.operator.status import DeployedSpec, Outcome, SessionStatus

HEALTH_LUA = ROOT / "helm" / "kubetrade" / "docs" / "argocd-health.lua"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

Obj = dict[str, Any]


def _tool(name: str) -> Path:
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-tool.sh"), name],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if built.returncode != 0:
        pytest.fail(f"cannot build tools/{name} (needs Go):\n{built.stderr}", pytrace=False)
    return Path(built.stdout.strip())


@pytest.fixture(scope="module")
def luahealth() -> Path:
    return _tool("luahealth")


@pytest.fixture(scope="module")
def kstatus() -> Path:
    return _tool("kstatus")


def _verdicts(command: list[str], objects: list[Obj]) -> list[tuple[str, str]]:
    result = subprocess.run(
        command, input=json.dumps(objects), capture_output=True, text=True, timeout=60, check=True
    )
    return [(item["status"], item["message"]) for item in json.loads(result.stdout)]


def session(
    outcome: Outcome | None,
    *,
    generation: int = 3,
    observed: int | None = None,
    suspended: bool = False,
    deployment: DeployedSpec | None = None,
) -> Obj:
    """A LiveTradingSession as the API server would return it, its status the operator's."""
    obj: Obj = {
        "apiVersion": "kubetrade.io/v1alpha1",
        "kind": "LiveTradingSession",
        "metadata": {"name": "s", "namespace": "trading", "generation": generation},
        "spec": {"suspend": suspended},
    }
    if outcome is not None:
        seen = generation if observed is None else observed
        obj["status"] = SessionStatus(
            phase=outcome.phase,
            reason=outcome.reason,
            message=outcome.message,
            observed_generation=seen,
            conditions=status.conditions(
                outcome,
                suspended=suspended,
                generation=seen,
                previous=[],
                now=NOW,
                deployment=deployment,
            ),
            last_reconciled_spec=deployment,
        ).dump()
    return obj


def deployed(state: str, reason: str = "", message: str = "") -> DeployedSpec:
    """status.lastReconciledSpec of generation 3, in `state`."""
    return DeployedSpec.model_validate({
        "generation": 3, "spec": "{}", "strategyDigest": "sha256:" + "2" * 64,
        "configHash": "c0ffee", "image": "kubetrade:test", "stateDir": "state",
        "deployedAt": "2026-01-02T03:00:00Z", "state": state, "reason": reason,
        "message": message,
    })  # fmt: skip


ROLLED_BACK = (
    "generation 3 (sha256:22..) is not stable: 12 strategy errors in its first 12 bars;"
    " running the last stable spec, generation 2 (sha256:11..), again"
)


RUNNING = Outcome("Running", "RunnerReady", "runner s-runner is ready", runner_ready=True)
CASES: dict[str, tuple[Obj, str, str]] = {
    # name: (object, Argo CD health, kstatus)
    # kstatus reads an object with no status at all as Current (it has nothing to go by);
    # the operator writes a status with Reconciling True at its first pass.
    "no status yet": (session(None), "Progressing", "Current"),
    "first seen": (
        session(Outcome("Pending", "AwaitingFinalizer", "waiting for finalizer")),
        "Progressing",
        "InProgress",
    ),
    "an older generation seen": (
        session(RUNNING, generation=4, observed=3),
        "Progressing",
        "InProgress",
    ),
    "starting": (
        session(Outcome("Starting", "RunnerStarting", "runner pod s-runner is starting")),
        "Progressing",
        "InProgress",
    ),
    "running and ready": (session(RUNNING), "Healthy", "Current"),
    "stopping for a new spec": (
        session(Outcome("Stopping", "SpecChanged", "stopping runner s-runner: spec changed")),
        "Progressing",
        "InProgress",
    ),
    "crash looping": (
        session(Outcome("Degraded", "CrashLoopBackOff", "runner exits 1", stalled=True)),
        "Degraded",
        "Failed",
    ),
    "invalid spec": (
        session(
            Outcome("Failed", "InvalidSpec", "invalid: ...", stalled=True, spec_valid=False)
        ),
        "Degraded",
        "Failed",
    ),
    "suspended": (
        session(Outcome("Suspended", "SuspendRequested", "suspended"), suspended=True),
        "Suspended",
        "Current",
    ),
    "completed": (
        session(Outcome("Completed", "MarketDataEnded", "the market data ended")),
        "Healthy",
        "Current",
    ),
    # A new spec's runner is up but not yet proven stable: the rollout is still under way.
    "on probation": (
        session(
            Outcome("Running", "RunnerReady", "runner s-runner is ready", runner_ready=True,
                    awaiting_stability="generation 3 on probation: 1 of 3 bars processed"),
            deployment=deployed("Deployed"),
        ),
        "Progressing",
        "InProgress",
    ),
    "stable": (session(RUNNING, deployment=deployed("Stable", "Stable")), "Healthy", "Current"),
    # Rolled back: the last stable spec runs, not the one in Git; nothing improves until
    # the spec changes, so kstatus reads it as Failed (Stalled) and Flux's health check
    # fails the Kustomization, as Argo CD shows Degraded.
    "rolled back": (
        session(
            Outcome("RolledBack", "StrategyErrors", ROLLED_BACK, stalled=True, runner_ready=True),
            deployment=deployed("RolledBack", "StrategyErrors", ROLLED_BACK),
        ),
        "Degraded",
        "Failed",
    ),
    "not stable, nothing to roll back to": (
        session(
            Outcome("Degraded", "StrategyErrors", "not stable; no stable spec", stalled=True),
            deployment=deployed("NotStable", "StrategyErrors", "not stable; no stable spec"),
        ),
        "Degraded",
        "Failed",
    ),
    # A tag that names nothing waits for someone; a registry that is down is retried.
    "no such tag": (
        session(Outcome("Failed", "StrategyNotFound", "v2 not found", stalled=True)),
        "Degraded",
        "Failed",
    ),
    "registry unreachable": (
        session(Outcome("Pending", "RegistryUnreachable", "cannot reach the registry")),
        "Progressing",
        "InProgress",
    ),
}  # fmt: skip


def test_argo_cd_reads_each_phase_of_a_session(luahealth: Path) -> None:
    objects = [case[0] for case in CASES.values()]
    verdicts = _verdicts([str(luahealth), str(HEALTH_LUA)], objects)
    got = {name: verdict[0] for name, verdict in zip(CASES, verdicts, strict=True)}
    assert got == {name: case[1] for name, case in CASES.items()}
    messages = dict(zip(CASES, (v[1] for v in verdicts), strict=True))
    assert messages["crash looping"] == "CrashLoopBackOff"  # the Stalled condition's reason
    assert "generation 4" in messages["an older generation seen"]
    assert messages["rolled back"] == f"Rolled back to the last stable spec: {ROLLED_BACK}"
    assert "1 of 3 bars" in messages["on probation"]


def test_flux_kstatus_reads_each_phase_of_a_session(kstatus: Path) -> None:
    objects = [case[0] for case in CASES.values()]
    verdicts = _verdicts([str(kstatus)], objects)
    got = {name: verdict[0] for name, verdict in zip(CASES, verdicts, strict=True)}
    assert got == {name: case[2] for name, case in CASES.items()}
