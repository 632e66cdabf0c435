"""A session's OCI strategy tag, resolved to the digest it names now: the operator's one
registry call, made once per spec generation (rollout.needs_resolution says when).

The registry's login comes from the pull Secret the session names
(spec.strategy.oci.pullSecretRef, a kubernetes.io/dockerconfigjson Secret in the session's
namespace), read with `get` and kept in memory for this one request: it never reaches a
log, an Event, the status or a ConfigMap. Every way this can fail is a `Resolution` with a
reason and a message, never an exception: the reconciler records it and tries again at
the next resync, until the spec or the registry changes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any, Final

import aiohttp

from kubetrade.operator.children import DOCKER_CONFIG_KEY
from kubetrade.operator.kube import ApiError, Kube, core_path
from kubetrade.operator.rollout import Resolution, oci_reference
from kubetrade.runner.oci import OciError, Reference, RegistryAuth, resolve_digest
from kubetrade.runner.oci.auth import parse_docker_config
from kubetrade.runner.oci.errors import NOT_FOUND, UNAUTHORIZED, UNREACHABLE

Obj = dict[str, Any]

RESOLVE_TIMEOUT_SECONDS: Final = 20.0  # a registry that hangs holds up only this session
_REASONS: Final = {
    NOT_FOUND: "StrategyNotFound",
    UNAUTHORIZED: "RegistryLoginRefused",
    UNREACHABLE: "RegistryUnreachable",
}


async def _login(kube: Kube, namespace: str, name: str) -> RegistryAuth | Resolution:
    """The logins in pull Secret `name`, or the Resolution that says why there are none."""
    where = f"spec.strategy.oci.pullSecretRef: Secret {namespace}/{name}"
    try:
        secret = await kube.get(core_path(namespace, "secrets", name))
    except ApiError as exc:
        return Resolution(
            reason="PullSecretUnreadable",
            message=f"{where} cannot be read ({exc.status} {exc.reason}); the operator needs"
            " get on secrets in this namespace",
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        message = f"{where} cannot be read: {type(exc).__name__}"
        return Resolution(reason="PullSecretUnreadable", message=message, retrying=True)
    if secret is None:
        return Resolution(reason="PullSecretNotFound", message=f"{where} does not exist")
    encoded = (secret.get("data") or {}).get(DOCKER_CONFIG_KEY)
    if not isinstance(encoded, str):
        return Resolution(
            reason="PullSecretInvalid",
            message=f"{where} has no {DOCKER_CONFIG_KEY} key; make it with `kubectl create"
            " secret docker-registry`",
        )
    try:
        text = base64.b64decode(encoded, validate=True).decode()
        return parse_docker_config(text, source=where)
    except (binascii.Error, UnicodeDecodeError):
        return Resolution(
            reason="PullSecretInvalid", message=f"{where}: {DOCKER_CONFIG_KEY} is not text"
        )
    except OciError as exc:  # names the Secret and the key, never a value
        return Resolution(reason="PullSecretInvalid", message=str(exc))


async def resolve_strategy(kube: Kube, session: Obj) -> Resolution:
    """The session's OCI tag pinned to the digest it names now, or why it cannot be."""
    spec = session["spec"]
    namespace = session["metadata"]["namespace"]
    text = oci_reference(spec)
    if text is None:
        raise ValueError("resolve_strategy needs a session with spec.strategy.oci")
    try:
        reference = Reference.parse(text)
    except OciError as exc:
        return Resolution(reason="InvalidStrategyReference", message=str(exc))
    auth = RegistryAuth()
    secret = ((spec["strategy"]["oci"] or {}).get("pullSecretRef") or {}).get("name")
    if secret:
        login = await _login(kube, namespace, str(secret))
        if isinstance(login, Resolution):
            return login
        auth = login
    try:
        digest = await asyncio.wait_for(
            resolve_digest(reference, auth=auth), RESOLVE_TIMEOUT_SECONDS
        )
    except OciError as exc:
        return Resolution(
            reason=_REASONS.get(exc.kind, "StrategyNotResolved"),
            message=f"spec.strategy.oci: {exc}",
            retrying=exc.kind == UNREACHABLE,
        )
    except TimeoutError:
        return Resolution(
            reason="RegistryUnreachable",
            message=f"spec.strategy.oci: {reference}: the registry did not answer within"
            f" {RESOLVE_TIMEOUT_SECONDS:.0f} s",
            retrying=True,
        )
    pinned = Reference(reference.registry, reference.repository, reference.tag, digest)
    return Resolution(reference=str(pinned), digest=digest)
