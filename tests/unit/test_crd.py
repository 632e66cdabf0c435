"""The CRD: the committed YAML is `kubetrade crd`'s output, structural, with CEL mirrors.

Whether the API server accepts the CRD and enforces its rules is proven against a real
kube-apiserver in tests/e2e/test_operator.py; here the generated document itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from kubetrade.operator.crd import CEL_RULES, CRD_NAME, crd, openapi_schema, render_crd
from kubetrade.runner.spec import CROSS_FIELD_RULES

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "crds" / f"{CRD_NAME}.yaml"
KUBETRADE = Path(sys.executable).parent / "kubetrade"

Obj = dict[str, Any]


def test_the_committed_crd_is_what_kubetrade_crd_prints() -> None:
    printed = subprocess.run(
        [str(KUBETRADE), "crd"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert printed == render_crd()
    assert COMMITTED.read_text() == printed, (
        "crds/ drifted from the spec; regenerate with: PYTHONSAFEPATH=1 .venv/bin/kubetrade crd"
        f" > crds/{CRD_NAME}.yaml"
    )


def _nodes(node: Obj, path: str = "") -> list[tuple[str, Obj]]:
    """Every schema node under `node`, with its path."""
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += _nodes(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += _nodes(node[key], f"{path}[{key}]")
    return found


def test_the_schema_is_structural() -> None:
    # The rules of https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/
    # custom-resource-definitions/#specifying-a-structural-schema that a generator can break.
    for path, node in _nodes(openapi_schema()):
        where = path or "<root>"
        assert "$ref" not in node and "$defs" not in node, where
        assert not {"oneOf", "allOf", "not", "const"} & node.keys(), where
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], where
            continue
        assert "anyOf" not in node, where
        free_form = node.get("x-kubernetes-preserve-unknown-fields") is True
        assert "type" in node or free_form, f"{where} has no type"
        assert not ("properties" in node and "additionalProperties" in node), where
        assert node.get("additionalProperties") is not False, where
        assert "default" not in node or node["default"] is not None, where
        if isinstance(node.get("exclusiveMinimum"), bool):
            assert "minimum" in node, where


def test_crd_names_status_and_printer_columns() -> None:
    document = crd()
    names = document["spec"]["names"]
    assert (names["kind"], names["plural"]) == ("LiveTradingSession", "livetradingsessions")
    assert names["shortNames"] == ["lts"]
    assert names["categories"] == ["trading"]
    (version,) = document["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Symbols"] == ".spec.symbols"
    assert columns["Strategy"] == ".status.strategy"
    assert columns["Trading"] == ".spec.trading.provider"
    assert columns["Digest"] == ".status.strategyDigest"
    assert columns["Rollout"] == ".status.lastReconciledSpec.state"
    assert columns["Age"] == ".metadata.creationTimestamp"


def test_defaults_and_free_form_configs() -> None:
    spec = openapi_schema()["properties"]["spec"]
    props = spec["properties"]
    assert props["interval"]["default"] == "1m"
    assert props["metricsPort"]["default"] == 9102
    # Optional objects default to {} so their nested defaults apply.
    assert props["engine"]["default"] == {}
    assert props["engine"]["properties"]["marketDataCacheSize"]["default"] == 1000
    assert props["risk"]["default"] == {}
    # The operator's own fields, defaulted by the API server too (a quantity keeps its own).
    assert props["upgradeMode"]["default"] == "last-state"
    assert props["storage"]["default"] == {} and props["rollback"]["default"] == {}
    assert props["storage"]["properties"]["size"]["default"] == "1Gi"
    assert props["rollback"]["properties"]["stableBars"]["default"] == 3
    # Nullable instead of anyOf-null, and no default: absent means null.
    assert props["resources"]["nullable"] is True
    assert "default" not in props["resources"]
    for part in ("strategy", "marketData", "trading"):
        config = props[part]["properties"]["config"]
        assert config["type"] == "object"
        assert config["x-kubernetes-preserve-unknown-fields"] is True
        assert config["default"] == {}
    assert set(spec["required"]) == {"symbols", "strategy", "marketData", "trading"}
    quantity = props["resources"]["properties"]["requests"]["additionalProperties"]
    assert quantity["x-kubernetes-int-or-string"] is True
    assert "pattern" in quantity


def _rules_at(scope: str) -> list[Obj]:
    node = openapi_schema()
    for part in filter(None, scope.split(".")):
        node = node["properties"][part]
    rules: list[Obj] = node.get("x-kubernetes-validations", [])
    return rules


def test_every_cross_field_rule_of_the_spec_has_a_cel_mirror_on_its_scope() -> None:
    mirrored = {cel.name: cel for cel in CEL_RULES}
    for rule in CROSS_FIELD_RULES:
        assert rule.name in mirrored, f"spec rule {rule.name} has no CEL mirror in operator/crd.py"
        cel = mirrored[rule.name]
        assert cel.scope == rule.scope
        assert cel.render() in _rules_at(rule.scope)


def test_the_required_cel_rules_are_present() -> None:
    strategy = _rules_at("spec.strategy")
    assert any(
        "has(self.configMapRef)" in r["rule"] and "size() == 1" in r["rule"] for r in strategy
    )
    trading = " ".join(r["rule"] for r in _rules_at("spec.trading"))
    for needle in ("binance-live", "ibkr-live", "ccxt", "self.config.sandbox", "confirmLive"):
        assert needle in trading
    (symbols,) = _rules_at("spec.symbols")
    assert symbols["rule"] == "self.size() > 0"
    # The keys the CEL rules read are declared inside the free-form configs (CEL cannot
    # see undeclared keys), the configs stay free-form.
    spec = openapi_schema()["properties"]["spec"]["properties"]
    assert spec["trading"]["properties"]["config"]["properties"]["sandbox"] == {"type": "boolean"}


def test_the_committed_file_is_one_yaml_document() -> None:
    (document,) = list(yaml.safe_load_all(COMMITTED.read_text()))
    assert document["metadata"]["name"] == CRD_NAME
