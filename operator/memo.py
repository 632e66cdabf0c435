"""What a pass builds from a session's spec alone, kept for the session's next pass.

A running session is planned again at every event and every due time, from the same spec:
its validation (the runner's pydantic models) and its children (the YAML session file,
the pod and the claim: ~5 ms together, mostly YAML) come out the same each time. The last
result per session is kept, compactly (the children as JSON text, the validation as its
verdict), so a thousand sessions cost a few megabytes, and each caller gets objects of its
own. The memo is dropped whole should it outgrow the sessions by far (names come and go).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from kubetrade.operator import children
from kubetrade.operator.status import DeployedSpec
from kubetrade.runner.app.session_file import SessionError, validate_document
from kubetrade.runner.spec import API_VERSION, KIND

Obj = dict[str, Any]

_SIZE: Final = 20_000


@dataclass(frozen=True, slots=True)
class Validity:
    """The runner's verdict on a spec: its problems, or whether it can trade real money."""

    problems: str | None
    real_money: bool = False


_validity: dict[tuple[str, str], tuple[str, Validity]] = {}
_children: dict[tuple[str, str, str], tuple[tuple[str, ...], str, str, str]] = {}


def validity(session: Obj) -> Validity:
    """The runner's own validation of the spec (what CEL cannot say)."""
    meta = session["metadata"]
    key = (meta["name"], str(meta.get("namespace")))
    spec = json.dumps(session.get("spec"), sort_keys=True)
    found = _validity.get(key)
    if found is not None and found[0] == spec:
        return found[1]
    if len(_validity) >= _SIZE:
        _validity.clear()
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace")},
        "spec": session.get("spec") or {},
    }
    try:
        parsed = validate_document(document, source=f"{meta.get('namespace')}/{meta['name']}")
        verdict = Validity(None, real_money=parsed.spec.is_live)
    except SessionError as exc:
        verdict = Validity("; ".join(str(problem) for problem in exc.problems))
    _validity[key] = (spec, verdict)
    return verdict


def desired(
    session: Obj, record: DeployedSpec, settings: children.RunnerSettings, *, slot: str
) -> children.Desired:
    """The children of `record`'s spec. `slot`: after a rollback the newest record and the
    running one are both planned from, each pass: one entry for each."""
    meta = session["metadata"]
    key = (meta["name"], meta["namespace"], slot)
    inputs = (meta["uid"], record.spec, record.state_dir, record.image, repr(settings))
    found = _children.get(key)
    if found is not None and found[0] == inputs:
        _, objects, strategy, config_hash = found
        config_map, pod, claim = json.loads(objects)
        return children.Desired(config_map, pod, strategy, claim, config_hash)
    if len(_children) >= _SIZE:
        _children.clear()
    spec: Obj = json.loads(record.spec)
    built = children.desired_children(
        {**session, "spec": spec}, settings, state_dir=record.state_dir, image=record.image
    )
    objects = json.dumps([built.config_map, built.pod, built.claim])
    _children[key] = (inputs, objects, built.strategy, built.config_hash)
    return built
