"""The Helm chart helm/kubetrade, rendered and linted by the real helm.

helm is built from its Go module by scripts/build-helm.sh (cached per machine); without Go
these tests fail, saying so, rather than skip. Nothing here needs a cluster: `helm
template` renders what `helm install` would send, and the checks are on those objects.
Installing the chart into a real API server is the e2e suite's job.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from kubetrade.operator.children import (
    CONTAINER,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    RunnerSettings,
    runner_pod,
    strategy_mount,
)

ROOT: Final = Path(__file__).resolve().parents[2]
CHART: Final = ROOT / "helm" / "kubetrade"
CRD_FILE: Final = "livetradingsessions.kubetrade.io.yaml"
EXAMPLES: Final = sorted((CHART / "examples").glob("*.yaml"))
RELEASE: Final = "kt"
NAMESPACE: Final = "kubetrade-system"
FULLNAME: Final = f"{RELEASE}-kubetrade"
DIGEST: Final = "sha256:" + "0123456789abcdef" * 4

Obj = dict[str, Any]


@pytest.fixture(scope="session")
def helm() -> Path:
    """The pinned helm, built on first use (minutes cold, nothing once cached)."""
    build = subprocess.run(
        [str(ROOT / "scripts" / "build-helm.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if build.returncode != 0:
        pytest.fail(
            "scripts/build-helm.sh could not build helm (the chart tests need it; it needs"
            f" Go on PATH or in /usr/local/go/bin):\n{build.stderr[-3000:]}",
            pytrace=False,
        )
    return Path(build.stdout.strip())


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # No kubeconfig and a scratch home: rendering must not depend on, or touch, a cluster.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(ROOT / ".cache" / "helm-home"),
        "KUBECONFIG": os.devnull,
    }
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


def render(helm: Path, *args: str, chart: Path = CHART) -> list[Obj]:
    """The objects `helm template` renders (hooks and tests included), None documents dropped."""
    result = run_helm(helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(objects: Sequence[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: Sequence[Obj], kind: str) -> Obj:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def operator_container(objects: Sequence[Obj]) -> Obj:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return dict(containers[0])


def runner_image_arg(objects: Sequence[Obj]) -> str:
    args: list[str] = operator_container(objects)["args"]
    found = [a.removeprefix("--runner-image=") for a in args if a.startswith("--runner-image=")]
    assert len(found) == 1, args
    return found[0]


def values_file(tmp_path: Path, values: Obj) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


# ------------------------------------------------------------------ helm and the chart


def test_helm_reports_the_pinned_version(helm: Path) -> None:
    script = (ROOT / "scripts" / "build-helm.sh").read_text()
    pinned = re.search(r"^HELM_VERSION=(v3\.\d+\.\d+)$", script, re.MULTILINE)
    assert pinned is not None
    result = run_helm(helm, "version", "--short")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == pinned.group(1)


def test_a_second_build_reuses_the_cached_helm(helm: Path) -> None:
    built = helm.stat()
    again = subprocess.run(
        [str(ROOT / "scripts" / "build-helm.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # The same binary, untouched, and nothing but its path on stdout.
    assert again.stdout == f"{helm}\n"
    assert again.stderr == ""
    assert (helm.stat().st_mtime_ns, helm.stat().st_ino) == (built.st_mtime_ns, built.st_ino)


def test_the_packaged_chart_holds_the_crd_and_renders(helm: Path, tmp_path: Path) -> None:
    result = run_helm(helm, "package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (archive,) = tmp_path.glob("kubetrade-*.tgz")
    assert archive.name == "kubetrade-0.1.0.tgz"
    with tarfile.open(archive) as tar:
        member = tar.extractfile(f"kubetrade/crds/{CRD_FILE}")
        assert member is not None
        assert member.read() == (ROOT / "crds" / CRD_FILE).read_bytes()
    assert one(render(helm, chart=archive), "Deployment")["spec"]["replicas"] == 1


def test_chart_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert (chart["apiVersion"], chart["type"]) == ("v2", "application")
    assert chart["version"] == chart["appVersion"] == version


@pytest.mark.parametrize("example", [None, *EXAMPLES], ids=lambda p: p.name if p else "defaults")
def test_lint_strict_passes(helm: Path, example: Path | None) -> None:
    extra = ["--values", str(example)] if example else []
    result = run_helm(helm, "lint", "--strict", str(CHART), *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("example", [None, *EXAMPLES], ids=lambda p: p.name if p else "defaults")
def test_every_object_has_the_standard_labels(helm: Path, example: Path | None) -> None:
    objects = render(helm, *(["--values", str(example)] if example else []))
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "Service", "Pod"} <= kinds
    for obj in objects:
        labels = obj["metadata"]["labels"]
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert labels["app.kubernetes.io/name"] == "kubetrade", where
        assert labels["app.kubernetes.io/instance"] == RELEASE, where
        assert labels["app.kubernetes.io/version"] == "0.1.0", where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where
        assert labels["helm.sh/chart"] == "kubetrade-0.1.0", where
        component = labels["app.kubernetes.io/component"]
        assert component in {"operator", "runner", "test", "monitoring"}, where
        assert obj["metadata"]["name"].startswith(FULLNAME), where


def test_the_examples_turn_on_what_they_say(helm: Path) -> None:
    monitoring = render(helm, "--values", str(CHART / "examples" / "monitoring.yaml"))
    assert {"ServiceMonitor", "PodMonitor", "NetworkPolicy", "PrometheusRule"} <= {
        o["kind"] for o in monitoring
    }
    namespaced = render(helm, "--values", str(CHART / "examples" / "namespaced.yaml"))
    bindings = session_bindings(namespaced)
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["research", "trading"]
    registry = render(helm, "--values", str(CHART / "examples" / "local-registry.yaml"))
    pod_spec = one(registry, "Deployment")["spec"]["template"]["spec"]
    assert pod_spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert operator_container(registry)["image"] == "localhost:5000/kubetrade/kubetrade:0.1.0"


# ------------------------------------------------------------------ the values schema


@pytest.mark.parametrize(
    ("setting", "where", "key"),
    [
        ("imagee.tag=x", "''", "imagee"),
        ("image.tagg=x", "'/image'", "tagg"),
        ("metrics.serviceMonitor.enabeld=true", "'/metrics/serviceMonitor'", "enabeld"),
        (
            "networkPolicy.monitoring.namespaceSelecter.a=b",
            "'/networkPolicy/monitoring'",
            "namespaceSelecter",
        ),
    ],
)
def test_a_misspelt_key_is_refused_by_name(helm: Path, setting: str, where: str, key: str) -> None:
    for command in (["template", RELEASE], ["lint", "--strict"]):
        result = run_helm(helm, *command, str(CHART), "--set", setting)
        assert result.returncode != 0, command
        output = result.stdout + result.stderr
        assert f"- at {where}: additional properties '{key}' not allowed" in output, output


def test_a_misspelt_key_in_a_list_item_is_refused(helm: Path, tmp_path: Path) -> None:
    values = {
        "watchNamespaces": ["trading"],
        "networkPolicy": {
            "enabled": True,
            "egress": [{"cidrs": ["192.0.2.0/24"], "port": [{"port": 443}]}],
        },
    }
    result = run_helm(helm, "template", RELEASE, str(CHART), "-f", values_file(tmp_path, values))
    assert result.returncode != 0
    assert "- at '/networkPolicy/egress/0': additional properties 'port' not allowed" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("setting", "where"),
    [
        ("metrics.port=http", "/metrics/port"),  # not a number
        ("image.repository=ghcr.io/kubetrade/kubetrade:0.1.0", "/image/repository"),  # a tag
        ("image.digest=0123abcd", "/image/digest"),  # not sha256:<64 hex>
        ("watchNamespaces={Trading}", "/watchNamespaces/0"),  # not a namespace name
        ("watchNamespaces={trading-*}", "/watchNamespaces/0"),  # kopf wants exact names here
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
    ],
)
def test_a_wrong_value_is_refused(helm: Path, setting: str, where: str) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), "--set", setting)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert f"- at '{where}':" in result.stderr, result.stderr


def _schema_objects(node: Any, path: str = "") -> Iterator[tuple[str, Obj]]:
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield path, node
        for name, child in node.items():
            yield from _schema_objects(child, f"{path}/{name}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _schema_objects(child, f"{path}/{index}")


# Objects whose keys are Kubernetes' (or Helm's) to check, not this chart's.
FREE_FORM: Final = {
    "/properties/global",
    "/properties/affinity/properties/nodeAffinity",
    "/properties/affinity/properties/podAffinity",
    "/properties/affinity/properties/podAntiAffinity",
}


def test_the_schema_closes_every_object() -> None:
    # Each object either lists its keys and refuses others, or is a map whose values it types.
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    for path, node in _schema_objects(schema):
        if path in FREE_FORM:
            continue
        extra = node.get("additionalProperties")
        if "properties" in node:
            assert extra is False, f"{path} accepts unknown keys"
        else:
            assert isinstance(extra, dict) and ("type" in extra or "anyOf" in extra), path


# Values documented as a whole rather than key by key.
DOCUMENTED_WHOLE: Final = {"operator.resources", "networkPolicy.monitoring.namespaceSelector"}


def _leaf_keys(values: Obj, prefix: str = "") -> list[str]:
    keys = []
    for name, value in values.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and value and key not in DOCUMENTED_WHOLE:
            keys += _leaf_keys(value, f"{key}.")
        else:
            keys.append(key)
    return keys


def _in_schema(schema: Obj, key: str) -> bool:
    node = schema
    for part in key.split("."):
        if part not in node.get("properties", {}):
            return False
        node = node["properties"][part]
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].removeprefix("#/$defs/")]
    return True


def test_every_value_is_in_the_schema_and_the_readme() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    # The README's values table: one row per value, in values.yaml's order.
    documented = re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE)
    assert documented == _leaf_keys(values)
    assert [key for key in documented if not _in_schema(schema, key)] == []


# ------------------------------------------------------------------ the CRD


def test_the_chart_crd_is_the_repository_crd(helm: Path) -> None:
    chart_crd = CHART / "crds" / CRD_FILE
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [CRD_FILE]
    assert chart_crd.read_bytes() == (ROOT / "crds" / CRD_FILE).read_bytes(), (
        f"helm/kubetrade/crds/ drifted from crds/; copy it: cp crds/{CRD_FILE} helm/kubetrade/crds/"
    )
    # And helm ships it as the chart's CRD, not as a template (it must not be upgraded by
    # `helm upgrade` nor deleted by `helm uninstall`).
    shown = run_helm(helm, "show", "crds", str(CHART))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.rstrip("\n") == chart_crd.read_text().rstrip("\n")
    assert of_kind(render(helm), "CustomResourceDefinition") == []


# ------------------------------------------------------------------ RBAC


RULE_FIELDS: Final = ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs")


def _rules(rules: Sequence[Obj]) -> list[tuple[tuple[str, ...], ...]]:
    """Rules as comparable values: order of rules and of the names in them ignored."""
    for rule in rules:
        assert set(rule) <= set(RULE_FIELDS), rule
    return sorted(tuple(tuple(sorted(rule.get(f) or [])) for f in RULE_FIELDS) for rule in rules)


def _deploy_rbac() -> list[Obj]:
    return [d for d in yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()) if d]


@pytest.mark.parametrize("namespaces", [[], ["trading", "research"]], ids=["cluster", "namespaced"])
def test_rbac_grants_exactly_what_deploy_rbac_grants(helm: Path, namespaces: list[str]) -> None:
    settings = ["--set", "watchNamespaces={" + ",".join(namespaces) + "}"] if namespaces else []
    objects = render(helm, *settings)
    role = one(objects, "ClusterRole")
    assert _rules(role["rules"]) == _rules(one(_deploy_rbac(), "ClusterRole")["rules"])
    # The ClusterRole is the only grant for sessions: no second ClusterRole, and the one
    # Role is the Lease's, in the release's namespace (as deploy/rbac.yaml's).
    assert len(of_kind(objects, "ClusterRole")) == 1
    (lease_role,) = of_kind(objects, "Role")
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert {g for r in lease_role["rules"] for g in r["apiGroups"]} == {"coordination.k8s.io"}
    # Every binding gives that role to the operator's ServiceAccount, and no one else.
    account = one(objects, "ServiceAccount")["metadata"]
    bindings = of_kind(objects, "ClusterRoleBinding") + session_bindings(objects)
    assert bindings
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}
        ]
    deployment = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert deployment["serviceAccountName"] == account["name"]


def test_two_replicas_elect_a_leader_on_one_lease_in_the_release_namespace(helm: Path) -> None:
    objects = render(helm, "--set", "operator.replicas=2")
    deployment = one(objects, "Deployment")["spec"]
    assert deployment["replicas"] == 2
    # A standby stays up through a rolling update; the leader hands the Lease over.
    assert deployment["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    anti = deployment["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == deployment["selector"]["matchLabels"]
    args = operator_container(objects)["args"]
    assert "--leader-elect" in args and "--standalone" in args  # never kopf peering
    assert f"--leader-election-namespace={NAMESPACE}" in args
    assert f"--leader-election-name={FULLNAME}" in args
    assert {"--lease-seconds=15", "--renew-seconds=10", "--retry-seconds=2"} <= set(args)
    # The Lease: in the release's namespace only, the same rules as deploy/rbac.yaml's
    # Role for it (the Lease's name aside: the chart's full name there).
    role = one(objects, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    deployed = one(_deploy_rbac(), "Role")["rules"]
    for rule in deployed:
        if rule.get("resourceNames"):
            rule["resourceNames"] = [FULLNAME]
    assert _rules(role["rules"]) == _rules(deployed)
    assert role["rules"] == [r for r in role["rules"] if r["apiGroups"] == ["coordination.k8s.io"]]
    (binding,) = [b for b in of_kind(objects, "RoleBinding") if b["roleRef"]["kind"] == "Role"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    budget = one(objects, "PodDisruptionBudget")["spec"]
    assert budget == {"minAvailable": 1, "selector": deployment["selector"]}
    # One replica: Recreate and no budget, but a candidate for the same Lease all the
    # same, so a later scale to two never runs an operator beside one that ignores it.
    single = render(helm)
    assert of_kind(single, "PodDisruptionBudget") == []
    assert one(single, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert _rules(one(single, "Role")["rules"]) == _rules(role["rules"])
    single_args = operator_container(single)["args"]
    assert "--leader-elect" in single_args
    assert f"--leader-election-name={FULLNAME}" in single_args


def session_bindings(objects: list[Obj]) -> list[Obj]:
    """The RoleBindings that grant the sessions' ClusterRole in a namespace (the other
    one grants the Lease's Role)."""
    return [b for b in of_kind(objects, "RoleBinding") if b["roleRef"]["kind"] == "ClusterRole"]


def test_all_namespaces_by_default(helm: Path) -> None:
    objects = render(helm)
    assert len(of_kind(objects, "ClusterRoleBinding")) == 1
    assert session_bindings(objects) == []
    args = operator_container(objects)["args"]
    assert "--all-namespaces" in args
    assert "-n" not in args


def test_watch_namespaces_bind_each_namespace_and_nothing_cluster_wide(helm: Path) -> None:
    objects = render(helm, "--set", "watchNamespaces={trading,research}")
    assert of_kind(objects, "ClusterRoleBinding") == []
    bindings = session_bindings(objects)
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["research", "trading"]
    args = operator_container(objects)["args"]
    assert "--all-namespaces" not in args
    assert args[:4] == ["-n", "trading", "-n", "research"]


def test_no_rbac_and_an_existing_service_account(helm: Path) -> None:
    objects = render(
        helm, "--set", "rbac.create=false,serviceAccount.create=false,serviceAccount.name=ops"
    )
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "RoleBinding"}
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    # Without create, the name is required: a silent "default" account would lack the rights.
    result = run_helm(helm, "template", RELEASE, str(CHART), "--set", "serviceAccount.create=false")
    assert result.returncode != 0
    assert "serviceAccount.name" in result.stderr


# ------------------------------------------------------------------ the operator Deployment


def test_the_deployment_runs_one_hardened_operator(helm: Path) -> None:
    deployment = one(render(helm), "Deployment")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = operator_container(render(helm))
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (65532, 65532)
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security.get("privileged", False) is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "add" not in security["capabilities"]
    # A writable /tmp on the read-only root, from an emptyDir.
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[tmp[0]["name"]]
    assert container["command"] == ["kubetrade", "operator", "--"]
    assert "--standalone" in container["args"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("port", [8080, 9000])
def test_probes_and_service_reach_the_liveness_endpoint(helm: Path, port: int) -> None:
    objects = render(helm, "--set", f"metrics.port={port}")
    container = operator_container(objects)
    assert f"--liveness=http://0.0.0.0:{port}/healthz" in container["args"]
    assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
    service = one(objects, "Service")
    assert service["metadata"]["name"] == f"{FULLNAME}-metrics"
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}
    ]
    # The Service selects the operator pod.
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_pod_labels_add_to_the_selector_labels_never_replace_them(helm: Path) -> None:
    objects = render(
        helm, "--set", "podLabels.team=quant,podLabels.app\\.kubernetes\\.io/component=other"
    )
    deployment = one(objects, "Deployment")["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    assert labels["team"] == "quant"
    assert deployment["selector"]["matchLabels"].items() <= labels.items()


def test_scheduling_values_reach_the_pod(helm: Path, tmp_path: Path) -> None:
    values = {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "trading", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}},
        "priorityClassName": "trading-critical",
        "podAnnotations": {"example.com/owner": "desk"},
        "imagePullSecrets": [{"name": "regcred"}],
        "operator": {"extraArgs": ["--verbose", "--resync-seconds=30"]},
    }
    objects = render(helm, "-f", values_file(tmp_path, values))
    template = one(objects, "Deployment")["spec"]["template"]
    pod = template["spec"]
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert pod["priorityClassName"] == "trading-critical"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert template["metadata"]["annotations"] == {"example.com/owner": "desk"}
    assert operator_container(objects)["args"][-2:] == ["--verbose", "--resync-seconds=30"]


# ------------------------------------------------------------------ images


@pytest.mark.parametrize(
    ("settings", "operator_image", "runner_image"),
    [
        ([], "ghcr.io/kubetrade/kubetrade:0.1.0", "ghcr.io/kubetrade/kubetrade:0.1.0"),
        (
            ["image.repository=localhost:5000/kt", "image.tag=dev"],
            "localhost:5000/kt:dev",
            "localhost:5000/kt:dev",
        ),
        # A digest wins over the tag: what runs is exactly the named bytes.
        (
            ["image.repository=localhost:5000/kt", "image.tag=dev", f"image.digest={DIGEST}"],
            f"localhost:5000/kt@{DIGEST}",
            f"localhost:5000/kt@{DIGEST}",
        ),
        (
            ["image.tag=dev", "runner.image.repository=example.com/runner"],
            "ghcr.io/kubetrade/kubetrade:dev",
            "example.com/runner:0.1.0",
        ),
        (
            ["runner.image.repository=example.com/runner", f"runner.image.digest={DIGEST}"],
            "ghcr.io/kubetrade/kubetrade:0.1.0",
            f"example.com/runner@{DIGEST}",
        ),
    ],
    ids=["defaults", "tag", "digest", "runner-repository", "runner-digest"],
)
def test_the_runner_image_follows_the_image_values(
    helm: Path, settings: list[str], operator_image: str, runner_image: str
) -> None:
    objects = render(helm, *[arg for s in settings for arg in ("--set", s)])
    assert operator_container(objects)["image"] == operator_image
    assert runner_image_arg(objects) == runner_image
    test_pod = one(objects, "Pod")
    assert test_pod["spec"]["containers"][0]["image"] == operator_image


# ------------------------------------------------------------------ monitoring and network


def test_monitors_and_network_policy_are_off_by_default(helm: Path) -> None:
    kinds = {o["kind"] for o in render(helm)}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "NetworkPolicy"}


def _a_runner_pod() -> Obj:
    """A runner pod as the operator builds it."""
    session: Obj = {
        "metadata": {"name": "s", "namespace": "trading", "uid": "u"},
        "spec": {"strategy": {"path": "/strategy.wasm"}},
    }
    return runner_pod(session, RunnerSettings(image="i"), strategy_mount(session["spec"]), "h")


def _runner_pod_labels() -> dict[str, str]:
    return dict(_a_runner_pod()["metadata"]["labels"])


def _runner_port_names() -> list[str]:
    (container,) = [c for c in _a_runner_pod()["spec"]["containers"] if c["name"] == CONTAINER]
    return [p["name"] for p in container["ports"]]


def test_the_monitors_scrape_the_operator_and_the_runner_pods(helm: Path) -> None:
    objects = render(
        helm,
        "--set",
        "metrics.serviceMonitor.enabled=true,metrics.podMonitor.enabled=true",
        "--set",
        "metrics.podMonitor.labels.release=prom,watchNamespaces={trading}",
    )
    service_monitor = one(objects, "ServiceMonitor")
    assert service_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = one(objects, "Service")
    selector = service_monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in service_monitor["spec"]["endpoints"]] == ["metrics"]

    pod_monitor = one(objects, "PodMonitor")
    assert pod_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert pod_monitor["metadata"]["labels"]["release"] == "prom"
    # It selects exactly the pods the operator builds, on the port they name.
    selector = pod_monitor["spec"]["selector"]["matchLabels"]
    assert selector == {LABEL_MANAGED_BY: MANAGED_BY}
    assert selector.items() <= _runner_pod_labels().items()
    endpoints = pod_monitor["spec"]["podMetricsEndpoints"]
    assert [e["port"] for e in endpoints] == ["metrics"]
    # The runners' own session and namespace labels win over the target's.
    assert [e["honorLabels"] for e in endpoints] == [True]
    assert "metrics" in _runner_port_names()
    assert pod_monitor["spec"]["namespaceSelector"] == {"matchNames": ["trading"]}
    # Serving every namespace, it looks in every namespace.
    everywhere = render(helm, "--set", "metrics.podMonitor.enabled=true")
    assert one(everywhere, "PodMonitor")["spec"]["namespaceSelector"] == {"any": True}


def test_the_network_policy_limits_runner_pods(helm: Path, tmp_path: Path) -> None:
    venue = {
        "name": "venue",
        "cidrs": ["192.0.2.0/24"],
        "ports": [{"port": 443, "protocol": "TCP"}],
    }
    values = {
        "watchNamespaces": ["trading", "research"],
        "networkPolicy": {"enabled": True, "egress": [venue]},
    }
    objects = render(helm, "-f", values_file(tmp_path, values))
    policies = of_kind(objects, "NetworkPolicy")
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["research", "trading"]
    operator_pod = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for policy in policies:
        spec = policy["spec"]
        assert spec["podSelector"]["matchLabels"].items() <= _runner_pod_labels().items()
        assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
        dns, allowed = spec["egress"]
        assert "to" not in dns  # DNS to any resolver by default
        assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [
            (53, "TCP"),
            (53, "UDP"),
        ]
        assert allowed == {"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": venue["ports"]}
        from_operator, from_monitoring = spec["ingress"]
        for rule in (from_operator, from_monitoring):
            assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
        (peer,) = from_operator["from"]
        assert peer["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}
        }
        assert peer["podSelector"]["matchLabels"].items() <= operator_pod.items()
        (peer,) = from_monitoring["from"]
        assert peer == {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
        }


def test_the_network_policy_needs_to_know_where_sessions_run(helm: Path) -> None:
    result = run_helm(helm, "template", RELEASE, str(CHART), "--set", "networkPolicy.enabled=true")
    assert result.returncode != 0
    assert "networkPolicy.namespaces" in result.stderr
    objects = render(helm, "--set", "networkPolicy.enabled=true,networkPolicy.namespaces={desk}")
    assert [p["metadata"]["namespace"] for p in of_kind(objects, "NetworkPolicy")] == ["desk"]
    # Monitoring ingress can be turned off: then only the operator reaches the runners.
    objects = render(
        helm,
        "--set",
        "networkPolicy.enabled=true,networkPolicy.namespaces={desk}",
        "--set",
        "networkPolicy.monitoring.enabled=false",
    )
    assert len(one(objects, "NetworkPolicy")["spec"]["ingress"]) == 1


# ------------------------------------------------------------------ helm test and NOTES


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/healthz" else 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_the_helm_test_pod_checks_the_operator_service(helm: Path) -> None:
    objects = render(helm, "--set", "metrics.port=9000")
    pod = one(objects, "Pod")
    annotations = pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"].split(",")
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False  # needs no API access at all
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["OPERATOR_URL"] == f"http://{FULLNAME}-metrics.{NAMESPACE}.svc:9000/healthz"

    # Its script passes against an endpoint that answers as kopf's does.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        command = container["command"]
        assert command[:2] == ["python3", "-c"]
        url = f"http://127.0.0.1:{server.server_address[1]}/healthz"
        result = subprocess.run(
            [sys.executable, "-c", command[2]],
            env={**os.environ, "OPERATOR_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HTTP 200" in result.stdout


def _notes(helm: Path, tmp_path: Path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it (that needs a cluster; this renders it alike)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "notes-under-test.txt").write_bytes((chart / "templates" / "NOTES.txt").read_bytes())
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ tpl (.Files.Get "notes-under-test.txt") . | toJson }}}\n'
    )
    objects = render(helm, *args, "--show-only", "templates/notes.yaml", chart=chart)
    return str(one(objects, "ConfigMap")["data"]["notes"])


def test_notes_say_what_to_do_next_and_how_to_upgrade_the_crd(helm: Path, tmp_path: Path) -> None:
    notes = _notes(helm, tmp_path)
    assert "kubectl get lts -n default -w" in notes
    assert "kubectl apply -n default -f examples/k8s/session.yaml" in notes
    assert (ROOT / "examples" / "k8s" / "session.yaml").is_file()
    assert f"helm test {RELEASE} -n {NAMESPACE}" in notes
    assert "never" in notes.lower() and "CRD" in notes
    assert "kubectl apply --server-side -f <chart directory>/crds/" in notes
    assert "kubectl apply --server-side -f crds/" in notes
    assert "imagePullSecrets" not in notes
    namespaced = _notes(
        helm, tmp_path / "2", "--set", "watchNamespaces={trading},imagePullSecrets[0].name=reg"
    )
    assert "kubectl get lts -n trading -w" in namespaced
    assert '"imagePullSecrets":[{"name":"reg"}]' in namespaced
