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
from kubetrade.operator.status import Outcome, SessionStatus

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
                outcome, suspended=suspended, generation=seen, previous=[], now=NOW
            ),
        ).dump()
    return obj


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
}  # fmt: skip


def test_argo_cd_reads_each_phase_of_a_session(luahealth: Path) -> None:
    objects = [case[0] for case in CASES.values()]
    verdicts = _verdicts([str(luahealth), str(HEALTH_LUA)], objects)
    got = {name: verdict[0] for name, verdict in zip(CASES, verdicts, strict=True)}
    assert got == {name: case[1] for name, case in CASES.items()}
    messages = dict(zip(CASES, (v[1] for v in verdicts), strict=True))
    assert messages["crash looping"] == "CrashLoopBackOff"  # the Stalled condition's reason
    assert "generation 4" in messages["an older generation seen"]


def test_flux_kstatus_reads_each_phase_of_a_session(kstatus: Path) -> None:
    objects = [case[0] for case in CASES.values()]
    verdicts = _verdicts([str(kstatus)], objects)
    got = {name: verdict[0] for name, verdict in zip(CASES, verdicts, strict=True)}
    assert got == {name: case[2] for name, case in CASES.items()}


def test_a_rolled_back_session_is_degraded_in_argo_cd(luahealth: Path) -> None:
    obj = session(RUNNING)
    obj["status"]["conditions"].append(
        {"type": "RolledBack", "status": "True", "reason": "NotStable",
         "message": "strategy sha256:ab.. trapped on every bar; running sha256:cd.."}
    )  # fmt: skip
    [(health, message)] = _verdicts([str(luahealth), str(HEALTH_LUA)], [obj])
    assert health == "Degraded" and "trapped on every bar" in message
