"""The objects a session owns, from the pure builders in kubetrade.operator.children."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetrade.operator import children
from kubetrade.operator.children import (
    ANNOTATION_HASH,
    CREDENTIALS_DIR,
    RunnerSettings,
    UnsupportedSession,
    desired_children,
)
from kubetrade.runner.app.assemble import strategy_path
from kubetrade.runner.app.session_file import load_session, validate_document

Obj = dict[str, Any]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "k8s" / "session.yaml"
SETTINGS = RunnerSettings(image="registry.example/kubetrade@sha256:" + "ab" * 32)


def session(**spec: Any) -> Obj:
    """A LiveTradingSession as the API server returns it (defaults applied)."""
    body: Obj = {
        "apiVersion": "kubetrade.io/v1alpha1",
        "kind": "LiveTradingSession",
        "metadata": {
            "name": "sma",
            "namespace": "trading",
            "uid": "0b6f3c52-7c1e-4a39-9d0b-3d2f0c6a1e11",
            "generation": 1,
            "resourceVersion": "100",
        },
        "spec": {
            "symbols": ["BTCUSDT"],
            "interval": "1m",
            "strategy": {
                "configMapRef": {"name": "sma-strategy", "key": "sma.wasm.xz"},
                "config": {"fastPeriod": 5, "slowPeriod": 20},
            },
            "marketData": {"provider": "synthetic", "config": {"seed": 7}},
            "trading": {"provider": "paper", "config": {}, "confirmLive": False},
            "risk": {"allowShort": False},
            "engine": {"marketDataCacheSize": 1000, "warmupBars": 0},
            "suspend": False,
            "restartNonce": "",
            "metricsPort": 9102,
        },
    }
    body["spec"].update(spec)
    return body


def pod_of(body: Obj, settings: RunnerSettings = SETTINGS) -> Obj:
    pod = desired_children(body, settings).pod
    assert pod is not None
    return pod


def container(pod: Obj) -> Obj:
    (only,) = pod["spec"]["containers"]
    found: Obj = only
    return found


def test_the_runner_pod_is_hardened() -> None:
    pod = pod_of(session())
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    context = container(pod)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # With a read-only root, every writable place is a volume.
    writable = {m["mountPath"] for m in container(pod)["volumeMounts"] if not m.get("readOnly")}
    assert writable == {children.DATA_DIR, "/tmp"}
    assert spec["restartPolicy"] == "OnFailure"  # exit 0 means the data ended: Completed


def test_probes_and_the_named_metrics_port() -> None:
    pod = pod_of(session(metricsPort=9300))
    runner = container(pod)
    assert runner["ports"] == [{"name": "metrics", "containerPort": 9300, "protocol": "TCP"}]
    assert runner["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert runner["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert runner["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    args = runner["args"]
    assert args[args.index("--http-port") + 1] == "9300"


def test_the_command_runs_the_mounted_session_with_a_state_dir() -> None:
    pod = pod_of(session())
    runner = container(pod)
    assert runner["image"] == SETTINGS.image
    assert runner["command"] == ["kubetrade"]
    args = runner["args"]
    assert args[:2] == ["run", "/etc/kubetrade/session/session.yaml"]
    assert args[args.index("--state-dir") + 1].startswith(children.DATA_DIR)
    assert "--credentials-dir" not in args  # no Secret named, nothing mounted
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["session"]["configMap"]["name"] == "sma-runner-config"
    assert volumes["strategy"]["configMap"] == {
        "name": "sma-strategy",
        "items": [{"key": "sma.wasm.xz", "path": "sma.wasm.xz"}],
    }
    assert "credentials" not in volumes
    mounts = {m["name"]: m for m in runner["volumeMounts"]}
    assert mounts["session"]["readOnly"] and mounts["strategy"]["readOnly"]


def test_credential_secrets_are_mounted_read_only_by_name_only() -> None:
    body = session()
    body["spec"]["marketData"]["credentialsSecretRef"] = {"name": "polygon-keys"}
    body["spec"]["trading"]["credentialsSecretRef"] = {"name": "binance-keys"}
    children_ = desired_children(body, SETTINGS)
    assert children_.pod is not None
    runner = container(children_.pod)
    args = runner["args"]
    assert args[args.index("--credentials-dir") + 1] == CREDENTIALS_DIR
    (mount,) = [m for m in runner["volumeMounts"] if m["name"] == "credentials"]
    assert mount == {"name": "credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True}
    (volume,) = [v for v in children_.pod["spec"]["volumes"] if v["name"] == "credentials"]
    sources = volume["projected"]["sources"]
    assert sources == [{"secret": {"name": "polygon-keys"}}, {"secret": {"name": "binance-keys"}}]
    assert volume["projected"]["defaultMode"] == 0o440
    # Secrets reach the runner as files only: never as env, never copied anywhere.
    text = json.dumps([children_.pod, children_.config_map])
    assert "secretKeyRef" not in text and "envFrom" not in text
    assert all("valueFrom" not in env for env in runner["env"])


def test_the_config_map_holds_a_valid_session_whose_strategy_resolves(tmp_path: Path) -> None:
    body = session()
    config_map = desired_children(body, SETTINGS).config_map
    assert config_map["metadata"]["name"] == "sma-runner-config"
    text = config_map["data"]["session.yaml"]
    document = yaml.safe_load(text)
    loaded = validate_document(document, source="configmap")
    assert loaded.metadata.name == "sma"
    assert loaded.spec.strategy.path == "../strategy/sma.wasm.xz"
    assert loaded.spec.strategy.config_map_ref is None
    assert loaded.spec.strategy.config == {"fastPeriod": 5, "slowPeriod": 20}
    # Laid out as the pod mounts it, the runner finds the strategy next to the session.
    (tmp_path / "session").mkdir()
    (tmp_path / "strategy").mkdir()
    (tmp_path / "session" / "session.yaml").write_text(text)
    (tmp_path / "strategy" / "sma.wasm.xz").write_bytes(b"\xfd7zXZ\x00")
    resolved = strategy_path(load_session(tmp_path / "session" / "session.yaml"))
    assert resolved.resolve() == (tmp_path / "strategy" / "sma.wasm.xz").resolve()


def test_resources_come_from_the_session_or_the_operator() -> None:
    defaults = container(pod_of(session()))["resources"]
    assert defaults == {
        "requests": dict(SETTINGS.default_requests),
        "limits": dict(SETTINGS.default_limits),
    }
    wanted = {"requests": {"cpu": 1, "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
    resources = container(pod_of(session(resources=wanted)))["resources"]
    assert resources == {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}


def test_children_are_owned_by_the_session_and_labelled() -> None:
    body = session()
    desired = desired_children(body, SETTINGS)
    assert desired.pod is not None
    for child in (desired.pod, desired.config_map):
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner["uid"] == body["metadata"]["uid"]
        assert owner["kind"] == "LiveTradingSession" and owner["controller"] is True
        assert child["metadata"]["labels"][children.LABEL_SESSION] == "sma"
        assert child["metadata"]["namespace"] == "trading"
    assert desired.pod["metadata"]["name"] == "sma-runner"
    assert desired.strategy == "sma-strategy/sma.wasm.xz"


def test_the_pod_hash_follows_the_spec_the_config_and_the_restart_nonce() -> None:
    base = session()
    first = pod_of(base)["metadata"]["annotations"][ANNOTATION_HASH]
    again = copy.deepcopy(base)
    again["metadata"]["resourceVersion"] = "999"
    again["status"] = {"phase": "Running"}
    assert pod_of(again)["metadata"]["annotations"][ANNOTATION_HASH] == first
    changed = copy.deepcopy(base)
    changed["spec"]["strategy"]["config"]["fastPeriod"] = 3  # only the session file changes
    assert pod_of(changed)["metadata"]["annotations"][ANNOTATION_HASH] != first
    restarted = session(restartNonce="1")
    assert pod_of(restarted)["metadata"]["annotations"][ANNOTATION_HASH] != first
    other_image = RunnerSettings(image="registry.example/kubetrade:other")
    assert pod_of(base, other_image)["metadata"]["annotations"][ANNOTATION_HASH] != first


def test_a_suspended_session_keeps_its_config_map_and_has_no_pod() -> None:
    desired = desired_children(session(suspend=True), SETTINGS)
    assert desired.pod is None
    assert desired.config_map["data"]["session.yaml"]


def test_strategy_sources_the_operator_cannot_mount_are_refused_with_a_reason() -> None:
    with pytest.raises(UnsupportedSession, match="configMapRef") as refused:
        desired_children(session(strategy={"path": "../sma.wasm", "config": {}}), SETTINGS)
    assert refused.value.reason == "StrategySourceUnsupported"
    # An absolute path names a file inside the runner image: nothing to mount.
    pod = pod_of(session(strategy={"path": "/opt/strategies/sma.wasm", "config": {}}))
    assert "strategy" not in {v["name"] for v in pod["spec"]["volumes"]}


def test_the_kubernetes_example_is_a_session_the_operator_can_run() -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    validate_document(document, source=str(EXAMPLE))
    meta = {**document["metadata"], "namespace": "default", "uid": "example-uid"}
    desired = desired_children({**document, "metadata": meta}, SETTINGS)
    assert desired.pod is not None
    assert container(desired.pod)["resources"]["limits"] == {"memory": "1Gi"}


PINNED = "registry.example/strategies/sma:v1@sha256:" + "ab" * 32


def test_an_oci_strategy_is_pulled_by_the_runner_pinned_with_the_pull_secret_mounted() -> None:
    oci = {"oci": {"reference": PINNED, "pullSecretRef": {"name": "regcred"}}, "config": {}}
    desired = desired_children(session(strategy=oci), SETTINGS)
    document = yaml.safe_load(desired.config_map["data"]["session.yaml"])
    # The runner loads exactly the digest; the Secret's name is the pod's business.
    assert document["spec"]["strategy"] == {"oci": {"reference": PINNED}, "config": {}}
    assert desired.strategy == PINNED
    assert desired.pod is not None
    runner = container(desired.pod)
    args = runner["args"]
    assert args[args.index("--registry-config") + 1] == children.REGISTRY_DIR
    (volume,) = [v for v in desired.pod["spec"]["volumes"] if v["name"] == "registry"]
    assert volume["secret"] == {
        "secretName": "regcred",
        "items": [{"key": ".dockerconfigjson", "path": ".dockerconfigjson"}],
        "defaultMode": 0o440,
    }
    mounts = {m["name"]: m for m in runner["volumeMounts"]}
    assert mounts["registry"] == {
        "name": "registry", "mountPath": children.REGISTRY_DIR, "readOnly": True
    }  # fmt: skip
    assert "strategy" not in mounts
    # Without a pull Secret the runner pulls anonymously: nothing mounted, no flag.
    anonymous = pod_of(session(strategy={"oci": {"reference": PINNED}, "config": {}}))
    assert "--registry-config" not in container(anonymous)["args"]
    # A tag is resolved by the operator first; building children from one is a bug.
    with pytest.raises(ValueError, match="resolve the tag"):
        desired_children(
            session(strategy={"oci": {"reference": "registry.example/s:v1"}, "config": {}}),
            SETTINGS,
        )


def test_the_session_volume_is_a_claim_owned_by_the_session_unless_retained() -> None:
    desired = desired_children(session(), SETTINGS)
    claim = desired.claim
    assert claim["metadata"]["name"] == "sma-data"
    assert claim["metadata"]["ownerReferences"][0]["uid"] == session()["metadata"]["uid"]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}
    }  # fmt: skip
    assert desired.pod is not None
    volumes = {v["name"]: v for v in desired.pod["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": "sma-data"}}
    runner = container(desired.pod)
    args = runner["args"]
    assert args[args.index("--state-dir") + 1] == f"{children.DATA_DIR}/state"
    cache = next(e["value"] for e in runner["env"] if e["name"] == "KUBETRADE_CACHE")
    assert cache.startswith(children.DATA_DIR)  # compiled modules and pulls on the volume
    storage = {"size": "5Gi", "storageClassName": "fast", "retainOnDelete": True}
    kept = desired_children(session(storage=storage), SETTINGS).claim
    assert "ownerReferences" not in kept["metadata"]
    assert kept["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert kept["spec"]["storageClassName"] == "fast"


def test_the_state_dir_and_image_come_from_the_deployment_and_change_the_pod() -> None:
    body = session()
    first = pod_of(body)
    later = desired_children(body, SETTINGS, state_dir="state-3-0b6f3c52").pod
    assert later is not None
    args = container(later)["args"]
    assert args[args.index("--state-dir") + 1] == f"{children.DATA_DIR}/state-3-0b6f3c52"
    assert (
        later["metadata"]["annotations"][ANNOTATION_HASH]
        != (first["metadata"]["annotations"][ANNOTATION_HASH])
    )
    older = desired_children(body, SETTINGS, image="registry.example/kubetrade:old").pod
    assert older is not None and container(older)["image"] == "registry.example/kubetrade:old"


def test_the_operators_own_fields_stay_out_of_the_runners_session_file() -> None:
    base = desired_children(session(), SETTINGS)
    tuned = desired_children(
        session(
            rollback={"enabled": False, "stableBars": 9, "readinessTimeoutSeconds": 60},
            storage={"size": "2Gi", "storageClassName": None, "retainOnDelete": True},
            upgradeMode="stateless",
        ),
        SETTINGS,
    )
    # Tuning the rollout or the volume never restarts the runner.
    assert tuned.config_map == base.config_map
    assert tuned.config_hash == base.config_hash
    assert tuned.pod_hash == base.pod_hash
    document = yaml.safe_load(base.config_map["data"]["session.yaml"])
    assert not {"rollback", "storage", "upgradeMode"} & document["spec"].keys()


def test_the_grace_period_lets_a_stopping_runner_finish_its_longest_strategy_call() -> None:
    # SIGTERM lets the bar in hand finish; its strategy call may run until the session's
    # call timeout, so a shorter grace period would SIGKILL a runner that was stopping.
    assert pod_of(session())["spec"]["terminationGracePeriodSeconds"] == 30
    engine = {"marketDataCacheSize": 1000, "warmupBars": 0, "strategyCallTimeoutSeconds": 120.5}
    slow = pod_of(session(engine=engine))
    assert slow["spec"]["terminationGracePeriodSeconds"] == 121 + children.STOP_MARGIN_SECONDS
