"""The watches' cache: children by session, as their labels say."""

from __future__ import annotations

import copy
from typing import Any

from test_children import SETTINGS, session

from kubetrade.operator.cache import Cache
from kubetrade.operator.children import LABEL_SESSION, desired_children

Obj = dict[str, Any]


def runner_pod(uid: str = "pod-1") -> Obj:
    built = desired_children(session(), SETTINGS).pod
    assert built is not None
    pod = copy.deepcopy(built)
    pod["metadata"]["uid"] = uid
    pod["metadata"]["managedFields"] = [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]
    return pod


def test_children_are_kept_by_their_session_without_managed_fields() -> None:
    cache = Cache()
    key = cache.session_event(None, session())
    assert key == ("trading", "sma")
    pod = runner_pod()
    assert cache.pod_event("ADDED", pod) == key
    config_map = desired_children(session(), SETTINGS).config_map
    assert cache.config_map_event(None, config_map) == key
    pods, maps, claims = cache.children(key)
    assert [p["metadata"]["uid"] for p in pods] == ["pod-1"]
    assert "managedFields" not in pods[0]["metadata"]
    # Of its spec, what planning reads: the node and the runner's ports.
    ports = [{"name": "metrics", "containerPort": 9102, "protocol": "TCP"}]
    assert pods[0]["spec"] == {"nodeName": None, "containers": [{"name": "runner", "ports": ports}]}
    assert list(maps) == ["sma-runner-config"] and claims == {}
    assert cache.pod_event("DELETED", pod) == key
    assert cache.children(key)[0] == []
    cache.session_event("DELETED", session())
    assert cache.session(key) is None


def test_a_pod_whose_session_label_is_edited_away_leaves_and_its_session_is_told() -> None:
    cache = Cache()
    pod = runner_pod()
    key = cache.pod_event("ADDED", pod)
    edited = copy.deepcopy(pod)
    del edited["metadata"]["labels"][LABEL_SESSION]
    assert cache.pod_event("MODIFIED", edited) == key
    assert cache.children(("trading", "sma"))[0] == []
    assert cache.pod_event("DELETED", edited) is None  # nothing left to tell


def test_the_echo_of_the_operators_own_write_asks_for_no_pass() -> None:
    cache = Cache()
    body = session()
    key = cache.session_event(None, body)
    assert key is not None
    # The operator wrote the finalizer, then the status: resourceVersions 101 and 102.
    for version in ("101", "102"):
        cache.wrote("sessions", {"kind": "PartialObjectMetadata", "metadata": {
            "name": "sma", "namespace": "trading", "resourceVersion": version}})  # fmt: skip
    for version, news in (("101", False), ("102", False), ("103", True)):
        seen = copy.deepcopy(body)
        seen["metadata"]["resourceVersion"] = version
        assert (cache.session_event("MODIFIED", seen) == key) is news, version
        kept = cache.session(key)  # kept all the same
        assert kept is not None and kept["metadata"]["resourceVersion"] == version
    # Someone else's write between two of ours is news; ours after it still is not.
    cache.wrote("pods", {"metadata": {"name": "sma-runner", "namespace": "trading",
                                      "resourceVersion": "200"}})  # fmt: skip
    pod = runner_pod()
    pod["metadata"]["resourceVersion"] = "199"
    assert cache.pod_event("MODIFIED", pod) == key
    pod["metadata"]["resourceVersion"] = "200"
    assert cache.pod_event("MODIFIED", pod) is None
    assert cache.pod_event("DELETED", pod) == key  # a deletion is always news


def test_kubectls_last_applied_copy_is_not_kept_and_each_reader_gets_its_own_objects() -> None:
    cache = Cache()
    body = session()
    body["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": '{"spec": {}}',
        "team": "research",
    }
    key = cache.session_event("ADDED", body)
    assert key is not None
    kept = cache.session(key)
    assert kept is not None and kept["metadata"]["annotations"] == {"team": "research"}
    assert kept["spec"] == body["spec"]
    kept["spec"]["suspend"] = True  # a pass's own copy: the cache is not changed by it
    again = cache.session(key)
    assert again is not None and again["spec"] == body["spec"]
    cache.pod_event("ADDED", runner_pod())
    first, second = cache.children(key)[0], cache.children(key)[0]
    assert first == second and first[0] is not second[0]
