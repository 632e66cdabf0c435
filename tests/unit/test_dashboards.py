"""The Grafana dashboards: generated from kubetrade.operator.dashboards, shipped by the
chart as ConfigMaps Grafana's sidecar picks up. (tests/e2e/test_observability.py runs
every panel's query against a real Prometheus scraping real sessions.)"""

from __future__ import annotations

import json
from pathlib import Path

from test_helm_chart import CHART, FULLNAME, NAMESPACE, of_kind, render
from test_helm_chart import helm as helm  # the fixture: the pinned helm, built once

from kubetrade.operator import dashboards


def test_the_chart_holds_what_the_source_generates() -> None:
    # After changing operator/dashboards.py:
    #   python -m kubetrade.operator.dashboards --out helm/kubetrade/dashboards
    shipped = {p.name: p.read_text() for p in (CHART / "dashboards").glob("*.json")}
    assert shipped == dashboards.rendered()


def test_the_dashboards_are_sound_grafana_models() -> None:
    models = [dashboards.render(d) for d in dashboards.DASHBOARDS]
    assert sorted(m["uid"] for m in models) == ["kubetrade-fleet", "kubetrade-session"]
    for model in models:
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)), model["uid"]
        variables = {v["name"] for v in model["templating"]["list"]}
        assert {"datasource", "namespace", "session"} <= variables
        for panel in model["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["expr"] and target["datasource"]["uid"] == "${datasource}"
    titles = {p["title"] for m in models for p in m["panels"]}
    for wanted in ("Sessions by phase", "Equity per session", "Equity", "Drawdown",
                   "Orders and fills", "Tick to order", "Stream health"):  # fmt: skip
        assert wanted in titles


def test_the_chart_ships_them_as_labelled_config_maps(helm: Path) -> None:
    maps = [
        m
        for m in of_kind(render(helm), "ConfigMap")
        if m["metadata"]["labels"].get("grafana_dashboard")
    ]
    assert sorted(m["metadata"]["name"] for m in maps) == [
        f"{FULLNAME}-fleet",
        f"{FULLNAME}-session",
    ]
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["namespace"] == NAMESPACE
        ((name, text),) = config_map["data"].items()
        assert json.loads(text) == json.loads((CHART / "dashboards" / name).read_text())


def test_their_label_namespace_and_switch_come_from_the_values(helm: Path) -> None:
    objects = render(
        helm, "--set", "dashboards.label=dashboards,dashboards.labelValue=kubetrade",
        "--set", "dashboards.namespace=monitoring,dashboards.annotations.grafana_folder=kt",
    )  # fmt: skip
    maps = [m for m in of_kind(objects, "ConfigMap") if "dashboards" in m["metadata"]["labels"]]
    assert len(maps) == 2
    for config_map in maps:
        assert config_map["metadata"]["labels"]["dashboards"] == "kubetrade"
        assert config_map["metadata"]["namespace"] == "monitoring"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "kt"}
    off = render(helm, "--set", "dashboards.enabled=false")
    assert not [
        m for m in of_kind(off, "ConfigMap") if "grafana_dashboard" in m["metadata"]["labels"]
    ]


def test_every_query_is_listed_for_the_prometheus_test() -> None:
    listed = list(dashboards.queries())
    assert len(listed) == sum(len(p.queries) for d in dashboards.DASHBOARDS for p in d.panels)
    assert all(uid.startswith("kubetrade-") and expr for uid, _, expr in listed)
    assert Path(dashboards.__file__).name == "dashboards.py"
