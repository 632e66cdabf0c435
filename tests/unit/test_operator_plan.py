"""One reconciliation step (`reconcile.plan`, pure) and the status it records."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from test_children import SETTINGS, session

from kubetrade.operator import status
from kubetrade.operator.children import FINALIZER, desired_children
from kubetrade.operator.plan import Observed, Plan, plan
from kubetrade.operator.status import Condition, Outcome

Obj = dict[str, Any]


def ours(body: Obj) -> Obj:
    """The session once kopf has added the operator's finalizer."""
    body["metadata"]["finalizers"] = [FINALIZER]
    return body


def pod(body: Obj, *, uid: str = "pod-1", **status_: Any) -> Obj:
    built = desired_children(body, SETTINGS).pod
    assert built is not None
    built = copy.deepcopy(built)
    built["metadata"]["uid"] = uid
    built["spec"]["nodeName"] = "node-1"
    built["status"] = status_
    return built


def running(body: Obj, *, ready: bool = True, restarts: int = 0, uid: str = "pod-1") -> Obj:
    container = {
        "name": "runner",
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
    }
    return pod(body, uid=uid, phase="Running", podIP="10.0.0.7", containerStatuses=[container])


def config_map(body: Obj) -> Obj:
    return desired_children(body, SETTINGS).config_map


def claim(body: Obj) -> Obj:
    made = copy.deepcopy(desired_children(body, SETTINGS).claim)
    made["metadata"]["resourceVersion"] = "7"
    return made


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def step(body: Obj, pods: list[Obj], cm: Obj | None = None) -> Plan:
    return plan(Observed(session=body, pods=pods, config_map=cm, now=NOW), SETTINGS)


def deleted(p: Obj) -> Obj:
    p = copy.deepcopy(p)
    p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return p


def test_the_first_step_adds_the_finalizer_and_only_a_deletion_removes_it() -> None:
    # The reconciler adds it before any child (reconcile._act): a deleted session then
    # waits for its runner to stop.
    first = step(session(), [])
    assert first.add_finalizer and first.create_pod is not None
    assert not step(ours(session()), []).add_finalizer
    going = deleted(ours(session()))
    assert not step(going, [running(going)]).remove_finalizer  # its runner still runs
    done = step(going, [])
    assert done.finished and done.remove_finalizer and not done.add_finalizer
    # Someone else's finalizer is not ours to remove.
    theirs = deleted(session())
    theirs["metadata"]["finalizers"] = ["example.com/other"]
    assert not step(theirs, []).remove_finalizer


def test_a_new_session_gets_its_config_map_and_one_pod() -> None:
    body = ours(session())
    result = step(body, [])
    assert result.write_config_map == config_map(body)
    assert result.create_pod == desired_children(body, SETTINGS).pod
    assert result.outcome.phase == "Pending"
    assert ("Normal", "CreatingRunner", "creating runner pod sma-runner") in result.events


def test_a_ready_up_to_date_pod_is_left_alone_and_its_figures_read() -> None:
    body = ours(session())
    current = running(body)
    figures = {"bars": 1, "orders": 2, "strategy_errors": 0}
    observed = Observed(
        session=body, pods=[current], config_map=config_map(body), claim=claim(body),
        figures=figures, figures_from="pod-1", now=NOW,
    )  # fmt: skip
    result = plan(observed, SETTINGS)
    assert (result.create_pod, result.delete_pods, result.write_config_map) == (None, [], None)
    assert (result.create_claim, result.patch_claim) == (None, None)
    assert result.outcome.phase == "Running"
    assert result.summary is not None and (result.summary.bars, result.summary.orders) == (1, 2)
    not_ready = step(body, [running(body, ready=False)], config_map(body))
    assert not_ready.outcome.phase == "Starting"


def test_a_spec_change_stops_the_old_pod_first_and_keeps_the_old_session_file() -> None:
    old = ours(session())
    old_pod, old_cm = running(old), config_map(old)
    new = copy.deepcopy(old)
    new["spec"]["strategy"]["config"]["fastPeriod"] = 3
    result = step(new, [old_pod], old_cm)
    assert [(p["metadata"]["uid"], why) for p, why in result.delete_pods] == [
        ("pod-1", "SpecChanged")
    ]
    assert result.create_pod is None  # never two runners: the successor waits
    assert result.write_config_map is None  # the old runner may restart: keep its file
    assert result.outcome.phase == "Stopping"
    # While it terminates: still no successor.
    waiting = step(new, [deleted(old_pod)], old_cm)
    assert (waiting.create_pod, waiting.delete_pods) == (None, [])
    assert waiting.outcome.reason == "SpecChanged"
    # Gone: the new session file, then the new pod.
    after = step(new, [], old_cm)
    assert after.write_config_map == config_map(new)
    assert after.create_pod == desired_children(new, SETTINGS).pod


def test_a_new_restart_nonce_restarts_the_runner() -> None:
    body = ours(session())
    result = step(ours(session(restartNonce="2")), [running(body)], config_map(body))
    assert [why for _, why in result.delete_pods] == ["RestartRequested"]


def test_suspend_stops_the_runner_and_keeps_the_session() -> None:
    body = ours(session())
    suspended = ours(session(suspend=True))
    result = step(suspended, [running(body)], config_map(body))
    assert [why for _, why in result.delete_pods] == ["Suspended"]
    after = step(suspended, [], config_map(body))
    assert after.create_pod is None and not after.finished
    assert after.outcome.phase == "Suspended"


def test_a_pod_deleted_by_someone_else_is_replaced_once_gone() -> None:
    body = ours(session())
    body["status"] = {"phase": "Running", "observedGeneration": 1}
    gone = step(body, [deleted(running(body))], config_map(body))
    assert gone.create_pod is None
    assert gone.outcome.reason == "RunnerPodDeleted"
    body["status"] = {"phase": "Running", "observedGeneration": 1}
    replaced = step(body, [], config_map(body))
    assert replaced.create_pod is not None
    assert any(reason == "RunnerPodMissing" for _, reason, _ in replaced.events)


def test_a_runner_left_by_an_earlier_session_of_the_same_name_is_stopped() -> None:
    body = ours(session())
    leftover = running(body)
    leftover["metadata"]["ownerReferences"][0]["uid"] = "uid-of-a-deleted-session"
    result = step(body, [leftover], config_map(body))
    assert [why for _, why in result.delete_pods] == ["PreviousSession"]
    assert result.create_pod is None


def test_two_runner_pods_are_both_stopped() -> None:
    body = ours(session())
    stray = running(body, uid="pod-2")
    stray["metadata"]["name"] = "sma-runner-old"
    result = step(body, [running(body), stray], config_map(body))
    assert sorted(p["metadata"]["uid"] for p, _ in result.delete_pods) == ["pod-1", "pod-2"]
    assert result.create_pod is None


def test_a_pod_of_the_runner_name_that_the_session_does_not_own_blocks_it() -> None:
    body = ours(session())
    observed = Observed(session=body, pods=[], config_map=config_map(body), name_taken=True)
    result = plan(observed, SETTINGS)
    assert result.create_pod is None
    assert (result.outcome.phase, result.outcome.reason) == ("Failed", "RunnerPodNameTaken")
    assert result.outcome.stalled


def test_a_crash_looping_runner_degrades_the_session_with_its_reason() -> None:
    body = ours(session())
    crashing = pod(
        body,
        phase="Running",
        containerStatuses=[
            {
                "name": "runner",
                "ready": False,
                "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
                "lastState": {
                    "terminated": {
                        "exitCode": 2,
                        "reason": "Error",
                        "message": "starting\nsma.wasm.xz is not a WebAssembly module\n",
                    }
                },
            }
        ],
    )
    result = step(body, [crashing], config_map(body))
    assert result.outcome.phase == "Degraded"
    assert result.outcome.stalled
    assert result.outcome.reason == "CrashLoopBackOff"
    assert "exit code 2" in result.outcome.message
    assert "is not a WebAssembly module" in result.outcome.message
    assert (result.create_pod, result.delete_pods) == (None, [])  # the kubelet retries


def test_a_runner_that_just_exited_is_reported_with_its_exit() -> None:
    body = ours(session())
    exited = pod(
        body,
        phase="Running",
        containerStatuses=[
            {
                "name": "runner",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": "boom\n"}},
            }
        ],
    )
    result = step(body, [exited], config_map(body))
    assert (result.outcome.phase, result.outcome.reason) == ("Degraded", "RunnerExited")
    assert result.outcome.message == "runner exit code 1 (Error): boom"


def test_an_invalid_spec_fails_the_session_and_stops_its_runner() -> None:
    valid = ours(session())
    body = ours(session())
    body["spec"]["trading"]["config"] = {"apiKey": "AKIA-NOT-A-REAL-KEY"}
    result = step(body, [running(valid)], config_map(valid))
    assert [why for _, why in result.delete_pods] == ["InvalidSpec"]
    after = step(body, [], config_map(valid))
    assert after.create_pod is None
    assert (after.outcome.phase, after.outcome.reason) == ("Failed", "InvalidSpec")
    assert after.outcome.stalled and not after.outcome.spec_valid
    assert "apiKey" in after.outcome.message
    assert "AKIA-NOT-A-REAL-KEY" not in after.outcome.message  # never echo a credential


def test_deletion_stops_the_runner_then_lets_the_session_go() -> None:
    body = ours(session())
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    result = step(body, [running(body)], config_map(body))
    assert [why for _, why in result.delete_pods] == ["SessionDeleted"]
    assert not result.finished
    assert result.outcome.phase == "Stopping"
    stopping = step(body, [deleted(running(body))], config_map(body))
    assert not stopping.finished and stopping.delete_pods == []
    done = step(body, [], config_map(body))
    assert done.finished and done.delete_config_map


def test_conditions_move_their_transition_time_only_on_a_flip() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    up = Outcome("Running", "RunnerReady", "ready", runner_ready=True, runner_reason="RunnerReady")
    first = status.conditions(up, suspended=False, generation=1, previous=[], now=t0)
    later = status.conditions(
        up, suspended=False, generation=2, previous=first, now=t0 + timedelta(minutes=5)
    )
    assert [c.last_transition_time for c in later] == [c.last_transition_time for c in first]
    assert {c.observed_generation for c in later} == {2}
    down = Outcome("Degraded", "CrashLoopBackOff", "crashing", stalled=True)
    flipped = status.conditions(
        down, suspended=False, generation=2, previous=later, now=t0 + timedelta(minutes=9)
    )
    by_type: dict[str, Condition] = {c.type: c for c in flipped}
    assert by_type["Ready"].status == "False"
    assert by_type["Ready"].last_transition_time == "2026-01-01T00:09:00Z"
    assert by_type["Stalled"].status == "True"
    assert by_type["Suspended"].last_transition_time == "2026-01-01T00:00:00Z"  # unchanged
    kinds = {c.type for c in flipped}
    assert {"Ready", "Reconciling", "Stalled", "SpecValid", "RunnerReady", "Suspended"} <= kinds


def test_the_runner_figures_become_a_summary_at_most_every_90_seconds() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    payload = {
        "bars": 42,
        "orders": 3,
        "fills": 2,
        "equity": 10012.5,
        "realized_pnl": 7.5,
        "unrealized_pnl": 5.0,
        "last_bar_time": 1_704_067_200_000,
        "ready": True,
    }
    summary = status.summary_from_runner(payload, t0)
    assert (summary.bars, summary.orders, summary.fills) == (42, 3, 2)
    assert summary.last_bar_time == "2024-01-01T00:00:00Z"
    assert summary.market_data_live
    assert not status.summary_due(summary, t0 + timedelta(seconds=89))
    assert status.summary_due(summary, t0 + timedelta(seconds=90))
    assert status.summary_due(summary, t0 + timedelta(seconds=15), 15)  # --summary-seconds
    assert status.summary_due(None, t0)


def test_a_runner_whose_data_ended_completes_the_session_until_its_spec_changes() -> None:
    body = ours(session())
    done = pod(
        body,
        phase="Succeeded",
        containerStatuses=[{"name": "runner", "state": {"terminated": {"exitCode": 0}}}],
    )
    result = step(body, [done], config_map(body))
    assert (result.create_pod, result.delete_pods) == (None, [])  # not restarted, not replaced
    assert (result.outcome.phase, result.outcome.reason) == ("Completed", "RunnerCompleted")
    assert not result.outcome.stalled
    # A new restartNonce starts it again: the finished pod goes, then a new one comes.
    body["spec"]["restartNonce"] = "again"
    result = step(body, [done], config_map(body))
    assert [why for _, why in result.delete_pods] == ["RestartRequested"]
    assert step(body, [], config_map(body)).create_pod is not None


def test_a_runner_pod_that_failed_is_replaced() -> None:
    body = ours(session())
    failed = pod(body, phase="Failed", reason="Evicted")
    result = step(body, [failed], config_map(body))
    assert [why for _, why in result.delete_pods] == ["RunnerPodFailed"]
