"""The few Kubernetes API calls the operator makes, over one aiohttp session.

kopf watches and calls our handlers; the reconciler then reads and writes objects itself
through `Kube`, with plain JSON dicts: what it sends is what a reader of this file sees.
Credentials come from the `kubernetes` package's loaders (kubeconfig or the pod's
ServiceAccount), so exec plugins and token rotation work; kopf is given the very same
identity, so the operator acts as one user.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import kopf
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from kubetrade.operator.children import LABEL_SESSION, MANAGED_BY
from kubetrade.operator.crd import PLURAL
from kubetrade.runner.spec import GROUP, VERSION

log = logging.getLogger("kubetrade.operator.kube")

Obj = dict[str, Any]

MERGE_PATCH: Final = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer; `status` is the HTTP code, `reason` the Status reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Connection:
    """Where the API server is and who we are to it."""

    server: str
    ca_path: str | None
    cert_path: str | None
    key_path: str | None
    verify: bool
    bearer: Callable[[], str | None]  # asked before each request: tokens rotate

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_path)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_path and self.key_path:
            context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def kopf_info(self) -> kopf.ConnectionInfo:
        """The same identity, for kopf's own watches and patches."""
        header = self.bearer() or ""
        scheme, _, token = header.rpartition(" ")
        return kopf.ConnectionInfo(
            server=self.server,
            ca_path=self.ca_path,
            insecure=not self.verify,
            scheme=scheme or None,
            token=token or None,
            certificate_path=self.cert_path,
            private_key_path=self.key_path,
        )


def load_connection(kubeconfig: Path | None) -> Connection:
    """From `kubeconfig`, or else the pod's ServiceAccount, or else $KUBECONFIG/~/.kube."""
    config = k8s_client.Configuration()
    # The loaders are untyped; they fill `config` in place.
    load_kube_config: Callable[..., None] = k8s_config.load_kube_config
    load_incluster_config: Callable[..., None] = k8s_config.load_incluster_config
    if kubeconfig is not None:
        load_kube_config(config_file=str(kubeconfig), client_configuration=config)
    else:
        try:
            load_incluster_config(client_configuration=config)
        except k8s_config.ConfigException:
            load_kube_config(client_configuration=config)

    def bearer() -> str | None:
        value = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
            "authorization"
        )
        return str(value) if value else None

    return Connection(
        server=str(config.host).rstrip("/"),
        ca_path=config.ssl_ca_cert,
        cert_path=config.cert_file,
        key_path=config.key_file,
        verify=bool(config.verify_ssl),
        bearer=bearer,
    )


def session_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base


def core_path(namespace: str, kind: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{namespace}/{kind}"
    return f"{base}/{name}" if name else base


class Kube:
    """An API client for one identity. Use as an async context manager."""

    def __init__(self, connection: Connection, *, user_agent: str = MANAGED_BY) -> None:
        self.connection = connection
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Kube:
        connector = aiohttp.TCPConnector(ssl=self.connection.ssl_context())
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self._user_agent, "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=30),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        if self._session is None:
            raise RuntimeError("Kube used outside `async with`")
        headers = {}
        bearer = self.connection.bearer()
        if bearer:
            headers["Authorization"] = bearer
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = content_type
        async with self._session.request(
            method, self.connection.server + path, data=data, params=params, headers=headers
        ) as response:
            text = await response.text()
            if response.status >= 300:
                raise _api_error(response.status, text)
            result: Obj = json.loads(text) if text else {}
            return result

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Obj | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path, params=params)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body=body)

    async def replace(self, path: str, body: Obj) -> Obj:
        return await self.request("PUT", path, body=body)

    async def merge_patch(self, path: str, body: Obj) -> Obj:
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def delete(self, path: str, body: Obj | None = None) -> bool:
        """Delete; False when it was already gone."""
        try:
            await self.request("DELETE", path, body=body)
        except ApiError as exc:
            if exc.status in (404, 409):  # gone, or a uid precondition says: another object
                return False
            raise
        return True

    # --- what the reconciler reads ---------------------------------------------------

    async def session(self, namespace: str, name: str) -> Obj | None:
        return await self.get(session_path(namespace, name))

    async def runner_pods(self, namespace: str, session: str) -> list[Obj]:
        """Every runner pod of the session, terminating ones included (a quorum read)."""
        selector = f"{LABEL_SESSION}={session},app.kubernetes.io/managed-by={MANAGED_BY}"
        listing = await self.get(core_path(namespace, "pods"), {"labelSelector": selector})
        items: list[Obj] = (listing or {}).get("items") or []
        return items

    async def event(self, involved: Obj, kind: str, reason: str, message: str) -> None:
        """Record a Kubernetes Event about `involved`; a failure is logged, never raised."""
        meta = involved["metadata"]
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": involved.get("kind", "LiveTradingSession"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": MANAGED_BY},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.create(core_path(meta["namespace"], "events"), body)
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "event %s for %s/%s not recorded: %s", reason, meta["namespace"], meta["name"], exc
            )

    async def runner_status(self, pod_ip: str, port: int) -> Obj | None:
        """The runner's /status JSON, or None if it does not answer in time."""
        if self._session is None:
            raise RuntimeError("Kube used outside `async with`")
        url = f"http://{pod_ip}:{port}/status"
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as response:
                if response.status == 200:
                    payload: Obj = await response.json()
                    return payload
        return None


def _api_error(status: int, text: str) -> ApiError:
    with contextlib.suppress(ValueError):
        body = json.loads(text)
        if isinstance(body, dict):
            return ApiError(status, str(body.get("reason", "")), str(body.get("message", text)))
    return ApiError(status, "", text.strip())
