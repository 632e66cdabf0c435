"""The objects a session owns, as pure functions of the session: no I/O here.

A session gets three children, owned by it (garbage-collected with it):
- a ConfigMap holding the runner's session file: the user's session with
  `strategy.path` pointing at the mounted strategy file, or `strategy.oci` pinned to the
  digest the operator resolved; no secret ever goes in it, nor the operator's own fields
  (storage, rollback, upgradeMode), so changing those never restarts the runner;
- a PersistentVolumeClaim, the session's volume: the runner's data directory with the
  journal and paper venue (one directory per state, see `state_path`) and its caches
  (compiled modules, pulled strategies); it outlives pods and specs, and the session
  too with `spec.storage.retainOnDelete` (then it carries no owner reference);
- one runner Pod: `kubetrade run` on that file, the user's credential Secrets mounted
  read-only as files, the strategy bytes mounted from the user's ConfigMap key or pulled
  by the runner with the pull Secret mounted as a docker config directory, a hardened
  security context, probes on the runner's /healthz and /readyz.

The pod carries a hash of everything it was built from (`kubetrade.io/runner-hash`,
including the session file's hash, the state directory and the restartNonce): a pod
whose hash differs from the desired one is stopped and replaced, never updated in place.

Paths: the runner resolves a session's relative paths against the session file, so the
session file refers to its strategy as ../strategy/<key>; that resolves the same in a
container and under the test node agent, which moves mounts under a directory of its own.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Final

import yaml

from kubetrade.runner import spec
from kubetrade.runner.credentials import POD_CREDENTIALS_DIR

Obj = dict[str, Any]

FINALIZER: Final = "kubetrade.io/runner"
MANAGED_BY: Final = "kubetrade-operator"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_SESSION: Final = "kubetrade.io/session"
ANNOTATION_HASH: Final = "kubetrade.io/runner-hash"
ANNOTATION_CONFIG_HASH: Final = "kubetrade.io/config-hash"
ANNOTATION_RESTART_NONCE: Final = "kubetrade.io/restart-nonce"

CONTAINER: Final = "runner"
SESSION_FILE_KEY: Final = "session.yaml"
SESSION_DIR: Final = "/etc/kubetrade/session"
STRATEGY_DIR: Final = "/etc/kubetrade/strategy"
REGISTRY_DIR: Final = "/etc/kubetrade/registry"  # the pull Secret: .dockerconfigjson
DOCKER_CONFIG_KEY: Final = ".dockerconfigjson"
CREDENTIALS_DIR: Final = str(POD_CREDENTIALS_DIR)  # the runner refuses to read data there
# The session's volume: journal, paper venue and caches outlive containers, pods and specs.
DATA_DIR: Final = "/var/lib/kubetrade"
FIRST_STATE: Final = "state"  # the journal's directory until a stateless upgrade
# Fields of the spec that only the operator reads: not in the runner's session file.
OPERATOR_FIELDS: Final = ("storage", "rollback", "upgradeMode")


class UnsupportedSession(Exception):
    """The session is valid but this operator cannot run it; `reason` is one CamelCase word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    """What the operator decides about every runner pod (flags of `kubetrade operator`)."""

    image: str
    image_pull_policy: str = "IfNotPresent"
    default_requests: Mapping[str, str] = field(
        default_factory=lambda: {"cpu": "100m", "memory": "256Mi"}
    )
    default_limits: Mapping[str, str] = field(default_factory=lambda: {"memory": "1Gi"})
    user_id: int = 65532  # any non-root id works; the image need not declare one
    scratch_dir: str = "/tmp"  # the writable emptyDir (TMPDIR) on a read-only root
    termination_grace_seconds: int = 30  # the runner finishes the bar in hand, then exits


# What a stopping runner needs besides its bar's strategy call: the journal's last
# commit, the venue's goodbye, the HTTP server's close.
STOP_MARGIN_SECONDS: Final = 15
CALL_TIMEOUT_DEFAULT_SECONDS: Final = 5.0  # spec.engine.strategyCallTimeoutSeconds


def grace_seconds(spec: Obj, settings: RunnerSettings) -> int:
    """The runner pod's termination grace period. On SIGTERM the runner finishes the bar in
    hand, whose strategy call may run until spec.engine.strategyCallTimeoutSeconds (up to
    an hour); a grace period shorter than that would SIGKILL a runner that was stopping as
    asked. The journal loses nothing to a SIGKILL, but the bar would be run again."""
    engine = spec.get("engine") or {}
    timeout = float(engine.get("strategyCallTimeoutSeconds", CALL_TIMEOUT_DEFAULT_SECONDS))
    return max(settings.termination_grace_seconds, math.ceil(timeout) + STOP_MARGIN_SECONDS)


def runner_pod_name(session: str) -> str:
    # One fixed name per session: the API server itself then refuses a second runner pod
    # while the first still exists, even while it is terminating.
    return f"{session}-runner"


def config_map_name(session: str) -> str:
    return f"{session}-runner-config"


def claim_name(session: str) -> str:
    return f"{session}-data"


def state_path(state_dir: str) -> str:
    """Where a state directory (status.lastReconciledSpec.stateDir) is in the runner."""
    return f"{DATA_DIR}/{state_dir}"


def labels(session: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kubetrade",
        "app.kubernetes.io/component": "runner",
        "app.kubernetes.io/instance": session,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_SESSION: session,
    }


def is_runner_of(pod: Obj, session: str) -> bool:
    """Whether a pod carries the labels of `session`'s runner pods (what a list by those
    labels returns)."""
    found = pod["metadata"].get("labels") or {}
    return found.get(LABEL_SESSION) == session and found.get(LABEL_MANAGED_BY) == MANAGED_BY


def owner_reference(session: Obj) -> Obj:
    meta = session["metadata"]
    return {
        "apiVersion": spec.API_VERSION,
        "kind": spec.KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _child_meta(session: Obj, name: str) -> Obj:
    return {
        "name": name,
        "namespace": session["metadata"]["namespace"],
        "labels": labels(session["metadata"]["name"]),
        "ownerReferences": [owner_reference(session)],
    }


def digest(value: object) -> str:
    """A short stable hash of a JSON-able value."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------- the strategy


@dataclass(frozen=True, slots=True)
class StrategyMount:
    """Where the runner finds the strategy: a path for the session file and maybe a volume,
    or an OCI reference pinned by digest that the runner pulls (with a pull Secret)."""

    session_path: str | None
    volume: Obj | None
    description: str  # for status.strategy and `kubectl get lts`
    oci: str | None = None  # pinned: registry/repository[:tag]@sha256:...
    pull_secret: str | None = None


def strategy_mount(session_spec: Obj) -> StrategyMount:
    """The strategy's volume and path; UnsupportedSession for a source this operator lacks.
    An OCI reference must be pinned already (the operator resolves tags before this)."""
    strategy = session_spec.get("strategy") or {}
    ref = strategy.get("configMapRef")
    if ref:
        key = ref.get("key") or "strategy.wasm"
        volume = {
            "name": "strategy",
            "configMap": {"name": ref["name"], "items": [{"key": key, "path": key}]},
        }
        return StrategyMount(f"../strategy/{key}", volume, f"{ref['name']}/{key}")
    oci = strategy.get("oci")
    if oci:
        reference = str(oci["reference"])
        if not re.search(spec.OCI_PINNED, reference):
            raise ValueError(f"{reference}: resolve the tag before building the children")
        secret = (oci.get("pullSecretRef") or {}).get("name")
        registry: Obj | None = None
        if secret:
            # Only the docker config key, as a file the runner's --registry-config reads.
            items = [{"key": DOCKER_CONFIG_KEY, "path": DOCKER_CONFIG_KEY}]
            registry = {
                "name": "registry",
                "secret": {"secretName": secret, "items": items, "defaultMode": 0o440},
            }
        return StrategyMount(None, registry, reference, oci=reference, pull_secret=secret)
    path = strategy.get("path")
    if path and PurePosixPath(path).is_absolute():
        # A file inside the runner image: nothing to mount.
        return StrategyMount(path, None, path)
    raise UnsupportedSession(
        "StrategySourceUnsupported",
        f"spec.strategy.path {path!r} is a file on the machine that wrote the session; in"
        " Kubernetes use spec.strategy.configMapRef (or an absolute path inside the runner"
        " image)",
    )


# ----------------------------------------------------------- the session file


def runner_session(session: Obj, strategy: StrategyMount) -> Obj:
    """The session document the runner reads: the user's spec, the strategy made a path."""
    meta = session["metadata"]
    session_spec = {
        k: copy.deepcopy(v) for k, v in session["spec"].items() if k not in OPERATOR_FIELDS
    }
    strategy_spec = session_spec.get("strategy") or {}
    # The runner gets the registry's login from --registry-config, not by the Secret's name.
    source: Obj = {"oci": {"reference": strategy.oci}} if strategy.oci else {}
    session_spec["strategy"] = {
        **(source or {"path": strategy.session_path}),
        "config": strategy_spec.get("config") or {},
    }
    return {
        "apiVersion": spec.API_VERSION,
        "kind": spec.KIND,
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": session_spec,
    }


def session_config_map(session: Obj, strategy: StrategyMount) -> Obj:
    """The ConfigMap with the runner's session file."""
    name = session["metadata"]["name"]
    document = runner_session(session, strategy)
    text = (
        f"# The session of LiveTradingSession {name}, written by {MANAGED_BY}; edits are undone.\n"
        + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _child_meta(session, config_map_name(name)),
        "data": {SESSION_FILE_KEY: text},
    }


# ---------------------------------------------------------------- the runner pod


def _secret_names(session_spec: Obj) -> list[str]:
    names: list[str] = []
    for part in ("marketData", "trading"):
        ref = (session_spec.get(part) or {}).get("credentialsSecretRef") or {}
        if ref.get("name") and ref["name"] not in names:
            names.append(ref["name"])
    return names


def _resources(session_spec: Obj, settings: RunnerSettings) -> Obj:
    wanted = session_spec.get("resources")
    if wanted is None:
        requests, limits = dict(settings.default_requests), dict(settings.default_limits)
    else:
        requests, limits = wanted.get("requests") or {}, wanted.get("limits") or {}
    # Quantities are int-or-string in the session; a pod wants strings.
    resources: Obj = {}
    if requests:
        resources["requests"] = {k: str(v) for k, v in requests.items()}
    if limits:
        resources["limits"] = {k: str(v) for k, v in limits.items()}
    return resources


def _http_probe(path: str, *, period: int, failures: int) -> Obj:
    return {
        "httpGet": {"path": path, "port": "metrics"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def runner_pod(
    session: Obj,
    settings: RunnerSettings,
    strategy: StrategyMount,
    config_hash: str,
    *,
    state_dir: str = FIRST_STATE,
    image: str | None = None,
) -> Obj:
    """The runner Pod, its `kubetrade.io/runner-hash` annotation set. `state_dir`: the
    journal's directory on the session's volume; `image`: the runner image (default: the
    operator's), as a spec that is rolled back to ran with."""
    name = session["metadata"]["name"]
    session_spec = session["spec"]
    port = int(session_spec.get("metricsPort", 9102))
    secrets = _secret_names(session_spec)
    args = ["run", f"{SESSION_DIR}/{SESSION_FILE_KEY}", "--state-dir", state_path(state_dir)]
    args += ["--http-port", str(port)]
    mounts: list[Obj] = [
        {"name": "session", "mountPath": SESSION_DIR, "readOnly": True},
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "tmp", "mountPath": settings.scratch_dir},
    ]
    volumes: list[Obj] = [
        {"name": "session", "configMap": {"name": config_map_name(name)}},
        {"name": "data", "persistentVolumeClaim": {"claimName": claim_name(name)}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    if strategy.volume is not None and strategy.oci is None:
        mounts.append({"name": "strategy", "mountPath": STRATEGY_DIR, "readOnly": True})
        volumes.append(strategy.volume)
    if strategy.volume is not None and strategy.oci is not None:
        args += ["--registry-config", REGISTRY_DIR]
        mounts.append({"name": "registry", "mountPath": REGISTRY_DIR, "readOnly": True})
        volumes.append(strategy.volume)
    if secrets:
        args += ["--credentials-dir", CREDENTIALS_DIR]
        mounts.append({"name": "credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True})
        sources = [{"secret": {"name": secret}} for secret in secrets]
        # 0440 with fsGroup: readable by the runner's group only.
        volumes.append(
            {"name": "credentials", "projected": {"sources": sources, "defaultMode": 0o440}}
        )
    container: Obj = {
        "name": CONTAINER,
        "image": image or settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["kubetrade"],
        "args": args,
        "env": [
            # Compiled modules and pulled strategies, on the volume: a new pod of the same
            # strategy starts without compiling or pulling it again.
            {"name": "KUBETRADE_CACHE", "value": f"{DATA_DIR}/cache"},
            {"name": "TMPDIR", "value": settings.scratch_dir},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            # The runner's kubetrade_build_info says which image it runs.
            {"name": "KUBETRADE_IMAGE", "value": image or settings.image},
        ],
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        # A big strategy takes a while to compile: the startup probe allows two minutes.
        "startupProbe": _http_probe("/healthz", period=2, failures=60),
        "livenessProbe": _http_probe("/healthz", period=10, failures=3),
        "readinessProbe": _http_probe("/readyz", period=5, failures=3),
        "resources": _resources(session_spec, settings),
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # A crash's last lines become the container's termination message, which the
        # session's status quotes.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }
    pod: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **_child_meta(session, runner_pod_name(name)),
            "annotations": {
                ANNOTATION_CONFIG_HASH: config_hash,
                ANNOTATION_RESTART_NONCE: str(session_spec.get("restartNonce", "")),
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(port),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            # A crashed runner is restarted in place; one that exits 0 has finished
            # (its market data ended) and the session shows Completed.
            "restartPolicy": "OnFailure",
            "terminationGracePeriodSeconds": grace_seconds(session_spec, settings),
            "automountServiceAccountToken": False,  # the runner never talks to the API
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": settings.user_id,
                "runAsGroup": settings.user_id,
                "fsGroup": settings.user_id,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": volumes,
        },
    }
    pod["metadata"]["annotations"][ANNOTATION_HASH] = runner_hash(pod)
    return pod


def runner_hash(pod: Obj) -> str:
    """The hash of what a runner pod was built from (its own hash annotation left out)."""
    annotations = {
        k: v for k, v in (pod["metadata"].get("annotations") or {}).items() if k != ANNOTATION_HASH
    }
    return digest(
        {"labels": pod["metadata"].get("labels"), "annotations": annotations, "spec": pod["spec"]}
    )


def session_claim(session: Obj) -> Obj:
    """The session's PersistentVolumeClaim, owned by it unless spec.storage.retainOnDelete."""
    name = session["metadata"]["name"]
    storage = session["spec"].get("storage") or {}
    meta = _child_meta(session, claim_name(name))
    if storage.get("retainOnDelete"):
        del meta["ownerReferences"]  # the garbage collector leaves it when the session goes
    claim: Obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta,
        "spec": {
            # One runner at a time uses it (never two pods at once), on one node.
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": str(storage.get("size") or "1Gi")}},
        },
    }
    if storage.get("storageClassName"):
        claim["spec"]["storageClassName"] = storage["storageClassName"]
    return claim


@dataclass(frozen=True, slots=True)
class Desired:
    """Everything a session should own right now (no pod while suspended)."""

    config_map: Obj
    pod: Obj | None
    strategy: str
    claim: Obj
    config_hash: str

    @property
    def pod_hash(self) -> str | None:
        return (
            None if self.pod is None else str(self.pod["metadata"]["annotations"][ANNOTATION_HASH])
        )


def desired_children(
    session: Obj,
    settings: RunnerSettings,
    *,
    state_dir: str = FIRST_STATE,
    image: str | None = None,
) -> Desired:
    """The desired children of a valid session (its spec's OCI reference pinned);
    UnsupportedSession if it cannot run here."""
    strategy = strategy_mount(session["spec"])
    config_map = session_config_map(session, strategy)
    config_hash = digest(config_map["data"])
    pod = None
    if not session["spec"].get("suspend"):
        pod = runner_pod(session, settings, strategy, config_hash, state_dir=state_dir, image=image)
    return Desired(config_map, pod, strategy.description, session_claim(session), config_hash)
