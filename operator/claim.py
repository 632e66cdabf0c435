"""The session's volume claim: made once, adopted or released, never edited otherwise.

Pure, like plan.py: from the claim the API server holds (or None) and the one the session
wants, the step to take. The claim is made from spec.storage once; its size and class are
then the claim's own (CEL keeps them fixed in the spec). What can change is whether the
session owns it: `retainOnDelete: false` makes the session its owner (the garbage
collector deletes the claim after the session), `true` drops that owner reference so the
claim, and the journal on it, outlives the session; a new session of the same name takes
up a claim that has no owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubetrade.operator.children import owner_reference
from kubetrade.operator.status import Outcome
from kubetrade.runner.spec import KIND

Obj = dict[str, Any]
Event = tuple[str, str, str]


@dataclass(slots=True)
class ClaimStep:
    create: Obj | None = None
    patch: Obj | None = None  # a merge patch of the claim's metadata
    events: list[Event] = field(default_factory=list)
    wait: Outcome | None = None  # no runner pod may start yet, and why


def _owned_by(obj: Obj, session: Obj) -> bool:
    uid = session["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def claim_step(found: Obj | None, wanted: Obj, session: Obj) -> ClaimStep:
    """What to do about the session's claim."""
    name = wanted["metadata"]["name"]
    if found is None:
        return ClaimStep(
            create=wanted,
            events=[("Normal", "CreatingClaim", f"creating claim {name} for the session's state")],
        )
    meta = found["metadata"]
    if meta.get("deletionTimestamp"):
        message = f"claim {name} is being deleted; a new one is made once it is gone"
        return ClaimStep(wait=Outcome("Pending", "ClaimTerminating", message))
    owners: list[Obj] = meta.get("ownerReferences") or []
    ours = _owned_by(found, session)
    controllers = [o for o in owners if o.get("controller")]
    if controllers and not ours:
        owner = controllers[0]
        if owner.get("kind") == KIND and owner.get("name") == session["metadata"]["name"]:
            # The garbage collector is deleting an earlier session's claim: wait for it.
            message = f"claim {name} belongs to an earlier session of this name; waiting for it"
            return ClaimStep(wait=Outcome("Pending", "ClaimOfPreviousSession", message))
        message = f"a claim named {name} exists and is not this session's; delete or rename it"
        return ClaimStep(wait=Outcome("Failed", "ClaimNameTaken", message, stalled=True))
    version = {"resourceVersion": meta.get("resourceVersion")}
    want_owner = "ownerReferences" in wanted["metadata"]
    if want_owner and not ours:
        refs = [*owners, owner_reference(session)]
        note = f"taking up claim {name}: it goes with the session (retainOnDelete: false)"
        return ClaimStep(
            patch={"metadata": {"ownerReferences": refs, **version}},
            events=[("Normal", "AdoptingClaim", note)],
        )
    if not want_owner and ours:
        uid = session["metadata"]["uid"]
        refs = [o for o in owners if o.get("uid") != uid]
        note = f"claim {name} stays when the session is deleted (retainOnDelete: true)"
        return ClaimStep(
            patch={"metadata": {"ownerReferences": refs or None, **version}},
            events=[("Normal", "ReleasingClaim", note)],
        )
    return ClaimStep()
