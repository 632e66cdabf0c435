"""The chart's alerts, unit-tested by the real `promtool test rules` (Debian's prometheus
package, installed by scripts/install-test-tools.sh).

The rules are taken from the PrometheusRule exactly as `helm template` renders it, so
what is tested is what a cluster gets; alert_rules_test.yaml holds a firing and a quiet
case for every alert.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Final

import pytest
import yaml
from test_helm_chart import helm as helm  # the fixture: the pinned helm, built once
from test_helm_chart import of_kind, one, render

CASES: Final = Path(__file__).with_name("alert_rules_test.yaml")
ALERTS: Final = {
    "KubetradeStreamStalled",
    "KubetradeStrategyErrors",
    "KubetradeRiskHalt",
    "KubetradeDrawdown",
    "KubetradeRunnerNotReady",
    "KubetradeReconcileErrors",
}


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: run scripts/install-test-tools.sh"
    return found


def rules_file(helm: Path, directory: Path, *values: str) -> Path:
    rule = one(render(helm, "--set", "alerts.enabled=true", *values), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def test_every_alert_fires_and_stays_quiet_as_the_cases_say(helm: Path, tmp_path: Path) -> None:
    rules = rules_file(helm, tmp_path)
    check = subprocess.run(
        [promtool(), "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    names = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    assert names == ALERTS
    # Each alert has a case where it fires and one where it must not.
    cases = yaml.safe_load(CASES.read_text())["tests"]
    checks = [c for case in cases for c in case["alert_rule_test"]]
    for name in ALERTS:
        mine = [c for c in checks if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name} never fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name} is never quiet"
    shutil.copy(CASES, tmp_path / CASES.name)
    result = subprocess.run(
        [promtool(), "test", "rules", CASES.name],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_and_durations_come_from_the_values(helm: Path, tmp_path: Path) -> None:
    rules = yaml.safe_load(
        rules_file(
            helm, tmp_path, "--set-json", "alerts.drawdown.ratio=0.25",
            "--set", "alerts.streamStalled.for=7s,alerts.streamStalled.graceSeconds=3",
            "--set", "alerts.riskHalt.severity=page",
        ).read_text()
    )  # fmt: skip
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert by_name["KubetradeDrawdown"]["expr"].strip() == "kubetrade_drawdown_ratio > 0.25"
    assert by_name["KubetradeStreamStalled"]["for"] == "7s"
    assert by_name["KubetradeStreamStalled"]["expr"].rstrip().endswith("+ 3")
    assert by_name["KubetradeRiskHalt"]["labels"]["severity"] == "page"


def test_alerts_are_off_by_default(helm: Path) -> None:
    # A PrometheusRule needs the prometheus-operator CRDs, which a cluster may not have.
    assert of_kind(render(helm), "PrometheusRule") == []


@pytest.mark.parametrize("setting", ["alerts.drawdown.ratio=2", "alerts.riskHalt.for=soon"])
def test_a_wrong_alert_value_is_refused(helm: Path, setting: str) -> None:
    from test_helm_chart import CHART, RELEASE, run_helm

    result = run_helm(helm, "template", RELEASE, str(CHART), "--set", setting)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
