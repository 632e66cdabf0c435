"""Rollouts in `plan` (pure): tags resolved once, the session's claim, last-state and
stateless upgrades, stability, and rollback to the last stable spec.

Each test drives a session through several passes: `Passes.step` plans from what the
API server would hold (the session with the status the previous pass wrote, its pods, its
ConfigMap and claim), and `Passes.settle` plays what the API server and the node would do
with the plan (pods created, deleted and run) so the next pass sees it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from test_children import SETTINGS, session

from kubetrade.operator import status
from kubetrade.operator.children import ANNOTATION_HASH, FINALIZER, desired_children
from kubetrade.operator.plan import Observed, Plan, plan
from kubetrade.operator.rollout import Resolution
from kubetrade.operator.status import Condition, SessionStatus

Obj = dict[str, Any]
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TAG = "registry.example/strategies/sma:v1"
DIGEST_1 = "sha256:" + "1" * 64
DIGEST_2 = "sha256:" + "2" * 64


def oci_session(reference: str = TAG, **spec: Any) -> Obj:
    body = session(
        strategy={
            "oci": {"reference": reference, "pullSecretRef": {"name": "regcred"}},
            "config": {"fastPeriod": 5},
        },
        **spec,
    )
    body["metadata"]["finalizers"] = [FINALIZER]
    return body


def resolved(digest: str, reference: str = TAG) -> Resolution:
    return Resolution(reference=f"{reference}@{digest}", digest=digest)


@dataclass
class Passes:
    """A session, its children and its status, across reconciliations."""

    body: Obj
    now: datetime = T0
    pods: list[Obj] = field(default_factory=list)
    config_map: Obj | None = None
    claim: Obj | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    last: Plan | None = None
    uid: int = 0

    def step(self, *, resolution: Resolution | None = None, figures: Obj | None = None) -> Plan:
        observed = Observed(
            session=self.body,
            pods=copy.deepcopy(self.pods),
            config_map=self.config_map,
            claim=self.claim,
            resolution=resolution,
            figures=figures,
            figures_from=self.pods[0]["metadata"]["uid"] if figures and self.pods else None,
            now=self.now,
        )
        result = plan(observed, SETTINGS)
        self.events += result.events
        self.body = copy.deepcopy(self.body)
        self.body["status"] = SessionStatus(
            phase=result.outcome.phase,
            reason=result.outcome.reason,
            message=result.outcome.message,
            observed_generation=self.body["metadata"]["generation"],
            strategy=result.strategy,
            strategy_digest=result.strategy_digest,
            conditions=status.conditions(
                result.outcome,
                suspended=False,
                generation=self.body["metadata"]["generation"],
                previous=[],
                now=self.now,
                deployment=result.deployed,
            ),
            summary=result.summary,
            last_reconciled_spec=result.deployed,
            last_stable_spec=result.stable,
        ).dump()
        self.last = result
        return result

    def settle(self, *, ready: bool = True, waiting: str | None = None) -> None:
        """What the API server and the node do with the last plan: deleted pods go,
        a created pod runs (ready, or waiting with a reason), the ConfigMap and claim
        are written."""
        result = self.last
        assert result is not None
        gone = {p["metadata"]["uid"] for p, _ in result.delete_pods}
        self.pods = [p for p in self.pods if p["metadata"]["uid"] not in gone]
        if result.write_config_map is not None:
            self.config_map = result.write_config_map
        if result.create_claim is not None:
            self.claim = {**result.create_claim, "status": {"phase": "Bound"}}
            self.claim["metadata"] = {**self.claim["metadata"], "resourceVersion": "1"}
        if result.create_pod is not None:
            self.uid += 1
            pod = copy.deepcopy(result.create_pod)
            pod["metadata"]["uid"] = f"pod-{self.uid}"
            state: Obj = {"running": {"startedAt": "2026-01-01T12:00:00Z"}}
            if waiting:
                state = {"waiting": {"reason": waiting, "message": "back-off"}}
            pod["status"] = {
                "phase": "Running",
                "podIP": "10.0.0.9",
                "containerStatuses": [
                    {"name": "runner", "ready": ready and not waiting, "restartCount": 0,
                     "state": state}
                ],
            }  # fmt: skip
            self.pods.append(pod)

    def edit(self, **spec: Any) -> None:
        self.body = copy.deepcopy(self.body)
        for key, value in spec.items():
            if key == "config":
                self.body["spec"]["strategy"]["config"] = value
            elif key == "reference":
                self.body["spec"]["strategy"]["oci"]["reference"] = value
            else:
                self.body["spec"][key] = value
        self.body["metadata"]["generation"] += 1

    @property
    def status(self) -> SessionStatus:
        return SessionStatus.model_validate(self.body["status"])

    def condition(self, kind: str) -> Condition:
        return next(c for c in self.status.conditions if c.type == kind)

    def session_file(self) -> Obj:
        assert self.config_map is not None
        document: Obj = yaml.safe_load(self.config_map["data"]["session.yaml"])
        return document

    def args(self) -> list[str]:
        (pod,) = self.pods
        args: list[str] = pod["spec"]["containers"][0]["args"]
        return args

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


def started(digest: str = DIGEST_1, **spec: Any) -> Passes:
    """A session whose tag resolved to `digest`, its runner up and stable."""
    passes = Passes(oci_session(**spec))
    passes.step(resolution=resolved(digest))
    passes.settle()
    passes.now += timedelta(seconds=5)
    passes.step(figures={"bars": 3, "strategy_errors": 0})
    assert passes.status.last_stable_spec is not None
    return passes


# --- the strategy's tag, resolved once ---------------------------------------------------


def test_a_tag_is_resolved_once_and_the_runner_loads_exactly_that_digest() -> None:
    passes = Passes(oci_session())
    first = passes.step(resolution=resolved(DIGEST_1))
    pinned = f"{TAG}@{DIGEST_1}"
    assert first.create_claim is not None and first.create_pod is not None
    passes.settle()
    assert passes.session_file()["spec"]["strategy"]["oci"] == {"reference": pinned}
    deployed = passes.status.last_reconciled_spec
    assert deployed is not None
    assert (deployed.generation, deployed.strategy_digest) == (1, DIGEST_1)
    assert (deployed.strategy_reference, deployed.state) == (pinned, "Deployed")
    assert json.loads(deployed.spec)["strategy"]["oci"]["reference"] == pinned
    assert passes.status.strategy_digest == DIGEST_1
    assert passes.status.strategy == pinned
    assert "StrategyResolved" in passes.reasons()
    # Later passes read the record, not the tag: a moved tag changes nothing.
    again = passes.step(resolution=resolved(DIGEST_2))
    assert (again.create_pod, again.delete_pods, again.write_config_map) == (None, [], None)
    assert passes.status.strategy_digest == DIGEST_1


def test_a_tag_that_cannot_be_resolved_says_why_and_keeps_what_runs() -> None:
    passes = Passes(oci_session())
    cases = [
        (Resolution(reason="StrategyNotFound", message="v1 not found"), "Failed", True),
        (Resolution(reason="RegistryUnreachable", message="down", retrying=True), "Pending", False),
    ]  # fmt: skip
    for resolution, phase, stalled in cases:
        result = passes.step(resolution=resolution)
        assert (result.create_pod, result.create_claim) == (None, None)
        assert (result.outcome.phase, result.outcome.reason) == (phase, resolution.reason)
        assert result.outcome.stalled is stalled
        assert passes.status.last_reconciled_spec is None
    # A new spec whose tag fails while an older one runs: the older one goes on running.
    passes = started()
    passes.edit(reference="registry.example/strategies/sma:v2")
    result = passes.step(resolution=Resolution(reason="StrategyNotFound", message="v2 missing"))
    assert result.delete_pods == [] and result.create_pod is None
    assert (result.outcome.phase, result.outcome.reason) == ("Degraded", "StrategyNotFound")
    assert "generation 1's spec runs meanwhile" in result.outcome.message
    assert passes.condition("Stalled").status == "True"
    assert passes.status.last_reconciled_spec is not None
    assert passes.status.last_reconciled_spec.generation == 1


# --- upgrades --------------------------------------------------------------------------------


def test_a_last_state_upgrade_keeps_the_journal_directory() -> None:
    passes = started()
    first_pod = passes.pods[0]["metadata"]["uid"]
    passes.edit(config={"fastPeriod": 3})
    result = passes.step(resolution=resolved(DIGEST_1))
    assert [(p["metadata"]["uid"], why) for p, why in result.delete_pods] == [
        (first_pod, "SpecChanged")
    ]
    passes.settle()
    result = passes.step()
    assert result.create_pod is not None and result.create_claim is None
    passes.settle()
    assert passes.args()[passes.args().index("--state-dir") + 1] == "/var/lib/kubetrade/state"
    deployed = passes.status.last_reconciled_spec
    assert deployed is not None and deployed.state_dir == "state" and deployed.generation == 2


def test_a_stateless_upgrade_starts_a_new_journal_and_keeps_the_old_one() -> None:
    passes = started(upgradeMode="stateless")
    passes.edit(config={"fastPeriod": 3})
    passes.step(resolution=resolved(DIGEST_1))
    passes.settle()
    passes.step()
    passes.settle()
    state_dir = f"state-2-{passes.body['metadata']['uid'][:8]}"
    assert (
        passes.args()[passes.args().index("--state-dir") + 1] == f"/var/lib/kubetrade/{state_dir}"
    )
    assert "StatelessUpgrade" in passes.reasons()
    # A change the runner does not see (the rollout's own settings) restarts nothing.
    before = passes.pods[0]["metadata"]["annotations"][ANNOTATION_HASH]
    passes.edit(rollback={"enabled": True, "stableBars": 5, "readinessTimeoutSeconds": 60})
    result = passes.step(resolution=resolved(DIGEST_1))
    assert result.delete_pods == [] and result.create_pod is None
    assert passes.pods[0]["metadata"]["annotations"][ANNOTATION_HASH] == before
    deployed = passes.status.last_reconciled_spec
    assert deployed is not None and deployed.state_dir == state_dir


# --- stability and rollback ------------------------------------------------------------------


def test_a_new_spec_is_on_probation_until_its_bars_pass_without_strategy_errors() -> None:
    passes = Passes(oci_session())
    passes.step(resolution=resolved(DIGEST_1))
    passes.settle()
    passes.step(figures={"bars": 1, "strategy_errors": 0})
    assert passes.status.phase == "Running"
    reconciling = passes.condition("Reconciling")
    assert (reconciling.status, reconciling.reason) == ("True", "AwaitingStability")
    assert "1 of 3 bars" in reconciling.message
    assert passes.condition("Ready").status == "True"
    passes.step(figures={"bars": 3, "strategy_errors": 0})
    stable = passes.status.last_stable_spec
    assert stable is not None and stable.strategy_digest == DIGEST_1 and stable.state == "Stable"
    assert passes.condition("Reconciling").status == "False"
    assert (passes.condition("RolledBack").status, passes.condition("RolledBack").reason) == (
        "False", "Stable"
    )  # fmt: skip
    assert "SpecStable" in passes.reasons()


def test_figures_decide_at_every_pass_but_the_summary_moves_every_90_seconds() -> None:
    # A spec on probation is judged from figures read at every pass; etcd gets them every
    # 90 s (Observed.summary_seconds), so a thousand sessions cost under a write a minute each.
    passes = Passes(oci_session())
    passes.step(resolution=resolved(DIGEST_1))
    passes.settle()
    passes.step(figures={"bars": 1, "strategy_errors": 0})
    recorded = passes.status.summary
    assert recorded is not None and recorded.bars == 1
    passes.now += timedelta(seconds=20)
    passes.step(figures={"bars": 2, "strategy_errors": 0})
    assert passes.status.summary == recorded
    passes.now += timedelta(seconds=69)
    passes.step(figures={"bars": 2, "strategy_errors": 0})
    assert passes.status.summary == recorded  # 89 s: not yet
    passes.now += timedelta(seconds=1)
    passes.step(figures={"bars": 2, "strategy_errors": 0})
    assert passes.status.summary is not None and passes.status.summary.bars == 2
    passes.now += timedelta(seconds=5)
    passes.step(figures={"bars": 3, "strategy_errors": 0})  # stable on figures not yet written
    assert passes.status.last_stable_spec is not None
    assert passes.status.summary.bars == 2


def test_a_version_that_trips_on_its_bars_is_rolled_back_to_the_last_stable_digest() -> None:
    passes = started(DIGEST_1)
    stable_pod = passes.pods[0]["metadata"]["uid"]
    passes.edit(reference="registry.example/strategies/sma:v2")
    passes.step(resolution=resolved(DIGEST_2, "registry.example/strategies/sma:v2"))
    passes.settle()
    passes.step()
    passes.settle()
    assert passes.session_file()["spec"]["strategy"]["oci"]["reference"].endswith(DIGEST_2)
    # Its runner traps on every bar.
    passes.now += timedelta(seconds=5)
    result = passes.step(figures={"bars": 2, "strategy_errors": 2})
    assert [why for _, why in result.delete_pods] == ["RollingBack"]
    assert result.create_pod is None  # never two runners: the stable one waits
    deployed = passes.status.last_reconciled_spec
    assert deployed is not None
    assert (deployed.state, deployed.reason) == ("RolledBack", "StrategyErrors")
    assert "RollingBack" in passes.reasons()
    rolled = passes.condition("RolledBack")
    assert (rolled.status, rolled.reason) == ("True", "StrategyErrors")
    assert "2 strategy errors" in rolled.message and DIGEST_1 in rolled.message
    assert passes.condition("Stalled").status == "True"
    assert passes.condition("Reconciling").status == "False"
    passes.settle()
    passes.step()
    passes.settle()
    # The last stable spec runs again as it ran: its digest, its journal directory.
    assert passes.session_file()["spec"]["strategy"]["oci"]["reference"].endswith(DIGEST_1)
    assert passes.pods[0]["metadata"]["uid"] != stable_pod
    passes.step()
    assert passes.status.phase == "RolledBack"
    assert passes.status.strategy_digest == DIGEST_1
    assert passes.condition("Ready").status == "False"
    assert passes.condition("RunnerReady").status == "True"
    # The user's spec is left as written.
    assert passes.body["spec"]["strategy"]["oci"]["reference"].endswith(":v2")
    # Changing the spec rolls forward again.
    passes.edit(reference="registry.example/strategies/sma:v3")
    passes.step(resolution=resolved(DIGEST_1, "registry.example/strategies/sma:v3"))
    assert passes.condition("RolledBack").status == "False"


def test_not_stable_in_time_or_crash_looping_is_rolled_back_too() -> None:
    for trouble in ("late", "crash"):
        passes = started(DIGEST_1)
        passes.edit(reference="registry.example/strategies/sma:v2")
        passes.step(resolution=resolved(DIGEST_2, "registry.example/strategies/sma:v2"))
        passes.settle()
        passes.step()
        if trouble == "late":
            passes.settle(ready=False)
            # readinessTimeoutSeconds (300) plus three 1m bars.
            passes.now += timedelta(seconds=300 + 180 + 1)
            passes.step(figures={"bars": 0, "strategy_errors": 0})
            expected = "NotStableInTime"
        else:
            passes.settle(waiting="CrashLoopBackOff")
            passes.step()
            expected = "CrashLoopBackOff"
        deployed = passes.status.last_reconciled_spec
        assert deployed is not None and (deployed.state, deployed.reason) == (
            "RolledBack",
            expected,
        )


def test_without_rollback_or_a_stable_spec_an_unstable_one_stays_and_says_so() -> None:
    # No stable spec yet: the first one traps.
    passes = Passes(oci_session())
    passes.step(resolution=resolved(DIGEST_1))
    passes.settle()
    result = passes.step(figures={"bars": 1, "strategy_errors": 1})
    assert result.delete_pods == []
    deployed = passes.status.last_reconciled_spec
    assert deployed is not None and deployed.state == "NotStable"
    assert "no stable spec to roll back to" in deployed.message
    assert (passes.status.phase, passes.condition("Stalled").status) == ("Degraded", "True")
    # Rollback off.
    passes = started(DIGEST_1)
    passes.edit(
        reference="registry.example/strategies/sma:v2",
        rollback={"enabled": False, "stableBars": 3, "readinessTimeoutSeconds": 300},
    )
    passes.step(resolution=resolved(DIGEST_2, "registry.example/strategies/sma:v2"))
    passes.settle()
    passes.step()
    passes.settle()
    result = passes.step(figures={"bars": 1, "strategy_errors": 1})
    assert result.delete_pods == []
    assert "rollback is off" in passes.condition("Stalled").reason + passes.status.message


# --- the claim -------------------------------------------------------------------------------


def test_the_claim_is_made_adopted_or_released_as_retain_on_delete_says() -> None:
    body = oci_session(f"{TAG}@{DIGEST_1}")
    wanted = desired_children(body, SETTINGS).claim
    found = copy.deepcopy(wanted)
    found["metadata"]["resourceVersion"] = "3"

    def claim_plan(spec_body: Obj, claim: Obj | None) -> Plan:
        observed = Observed(session=spec_body, pods=[], config_map=None, claim=claim, now=T0)
        return plan(observed, SETTINGS)

    assert claim_plan(body, None).create_claim == wanted
    assert claim_plan(body, found).patch_claim is None
    # A claim left by a retained session: taken up.
    orphan = copy.deepcopy(found)
    del orphan["metadata"]["ownerReferences"]
    adopt = claim_plan(body, orphan)
    assert adopt.patch_claim is not None
    assert adopt.patch_claim["metadata"]["ownerReferences"] == wanted["metadata"]["ownerReferences"]
    assert adopt.patch_claim["metadata"]["resourceVersion"] == "3"
    # retainOnDelete: the session lets go of it.
    retained = oci_session(f"{TAG}@{DIGEST_1}", storage={"size": "1Gi", "retainOnDelete": True})
    release = claim_plan(retained, found)
    assert release.patch_claim is not None
    assert release.patch_claim["metadata"]["ownerReferences"] is None
    # An earlier session's claim is waited for; someone else's blocks the runner.
    earlier = copy.deepcopy(found)
    earlier["metadata"]["ownerReferences"][0]["uid"] = "uid-of-a-deleted-session"
    waiting = claim_plan(body, earlier)
    assert waiting.create_pod is None and waiting.outcome.reason == "ClaimOfPreviousSession"
    foreign = copy.deepcopy(earlier)
    foreign["metadata"]["ownerReferences"][0]["kind"] = "StatefulSet"
    taken = claim_plan(body, foreign)
    assert (taken.outcome.reason, taken.outcome.stalled) == ("ClaimNameTaken", True)
    going = copy.deepcopy(found)
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert claim_plan(body, going).outcome.reason == "ClaimTerminating"
    # A runner that waits for its claim says so.
    unbound = copy.deepcopy(found)
    unbound["status"] = {"phase": "Pending"}
    waiting_pod = copy.deepcopy(desired_children(body, SETTINGS).pod)
    assert waiting_pod is not None
    waiting_pod["metadata"]["uid"] = "pod-1"
    waiting_pod["status"] = {"phase": "Pending"}
    observed = Observed(session=body, pods=[waiting_pod], config_map=None, claim=unbound, now=T0)
    outcome = plan(observed, SETTINGS).outcome
    assert outcome.reason == "RunnerUnscheduled"
    assert "its claim sma-data is Pending" in outcome.message
