"""The few Kubernetes API calls the operator makes, over one aiohttp session.

kopf watches and calls our handlers; the reconciler then reads and writes objects itself
through `Kube`, with plain JSON dicts: what it sends is what a reader of this file sees.
Credentials come from `login` (kubeconfig or the pod's ServiceAccount); kopf is given the
very same identity, so the operator acts as one user. A request the API server refuses
with 401 is sent once more with the credentials read again, if they can change. Every
write asks the fence first (fence.py): a leader-election candidate that does not hold the
lease, or no longer, sends none.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp

from kubetrade.operator.children import LABEL_SESSION, MANAGED_BY
from kubetrade.operator.crd import PLURAL
from kubetrade.operator.events import EventSink
from kubetrade.operator.fence import Fence, Fenced
from kubetrade.operator.login import Login
from kubetrade.runner.spec import GROUP, VERSION

log = logging.getLogger("kubetrade.operator.kube")

Obj = dict[str, Any]

MERGE_PATCH: Final = "application/merge-patch+json"
# The API server's answer to a write, as its metadata alone: what a writer needs of it (a
# resourceVersion) at a fraction of the bytes to encode, send and parse.
REQUEST_SECONDS: Final = 30.0  # the longest any request may take
METADATA_ONLY: Final = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


class ApiError(Exception):
    """A non-2xx answer; `status` is the HTTP code, `reason` the Status reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def session_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base


def core_path(namespace: str, kind: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{namespace}/{kind}"
    return f"{base}/{name}" if name else base


class Kube:
    """An API client for one identity. Use as an async context manager."""

    def __init__(
        self, login: Login, *, user_agent: str = MANAGED_BY, fence: Fence | None = None
    ) -> None:
        self.login = login
        self.fence = fence or Fence()  # open: a standalone operator always writes
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._runners: aiohttp.ClientSession | None = None  # runners' /status, plain HTTP
        self._server = ""
        self._events = EventSink(self._post_event)

    async def __aenter__(self) -> Kube:
        info = self.login.info()
        self._server = info.server
        # CA, client certificate and insecure-skip-tls-verify, as kopf reads them.
        connector = aiohttp.TCPConnector(ssl=info.as_ssl_context())
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self._user_agent, "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=REQUEST_SECONDS),
        )
        # A runner is read every few minutes, or every bar while a new spec is on
        # probation: a connection kept alive for the next read is rarely there still, and
        # at a thousand runners some five hundred idle sockets (over a thousand during a
        # fleet-wide rollout) were kept open with their transports and buffers. Each read
        # gets a connection of its own, closed with the answer.
        self._runners = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            headers={"User-Agent": self._user_agent, "Accept": "application/json"},
        )
        self._events.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.flush_events()
        for session in (self._session, self._runners):
            if session is not None:
                await session.close()
        self._session = self._runners = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        fenced: bool = True,
        metadata_only: bool = False,
    ) -> Obj:
        """One request; `fenced=False` only for the leader lease itself; `metadata_only`:
        the answer is a PartialObjectMetadata."""
        if self._session is None:
            raise RuntimeError("Kube used outside `async with`")
        data = None if body is None else json.dumps(body)
        for refresh in (False, True):
            headers = self.login.info(refresh=refresh).as_http_headers()
            if data is not None:
                headers["Content-Type"] = content_type
            if metadata_only:
                headers["Accept"] = METADATA_ONLY
            timeout = None
            if fenced and method != "GET":
                self.fence.check()  # the last thing before the request leaves
                # No longer than the fence is open: a leader's write still on its way
                # when the fence closes is given up (fence.py).
                left = self.fence.seconds_left()
                if left < REQUEST_SECONDS:
                    timeout = aiohttp.ClientTimeout(total=left)
            async with self._session.request(
                method,
                self._server + path,
                data=data,
                params=params,
                headers=headers,
                timeout=timeout,
            ) as response:
                text = await response.text()
                if response.status == 401 and not refresh and self.login.renewable:
                    continue  # a rotated token: read it again and retry once
                if response.status >= 300:
                    raise _api_error(response.status, text)
                result: Obj = json.loads(text) if text else {}
                return result
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Obj | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path, params=params)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    # Writes answer with the object's metadata only: the operator reads back nothing else.

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body=body, metadata_only=True)

    async def replace(self, path: str, body: Obj) -> Obj:
        return await self.request("PUT", path, body=body, metadata_only=True)

    async def merge_patch(self, path: str, body: Obj) -> Obj:
        return await self.request(
            "PATCH", path, body=body, content_type=MERGE_PATCH, metadata_only=True
        )

    async def delete(self, path: str, body: Obj | None = None) -> Obj | None:
        """Delete; the API server's answer (the object's metadata, or a Status), or None
        when it was already gone."""
        try:
            return await self.request("DELETE", path, body=body, metadata_only=True)
        except ApiError as exc:
            if exc.status in (404, 409):  # gone, or a uid precondition says: another object
                return None
            raise

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
        """Queue a Kubernetes Event about `involved` (events.py posts it off the pass's
        path); a failure to post it is logged, never raised."""
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
        self._events.put(core_path(meta["namespace"], "events"), body)

    async def flush_events(self) -> None:
        """Post the queued Events (a few seconds at most) and stop posting: a leader does
        this before it releases the Lease, so its Events are among its last writes."""
        await self._events.close()

    async def _post_event(self, path: str, body: Obj) -> None:
        try:
            await self.create(path, body)
        except Fenced:
            # A leader that lost the Lease posts nothing more, not even Events; its
            # successor tells what happens next.
            self._events.dropped += 1
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            involved = body["involvedObject"]
            log.warning(
                "event %s for %s/%s not recorded: %s",
                body["reason"],
                involved["namespace"],
                involved["name"],
                exc,
            )

    async def runner_status(self, pod_ip: str, port: int) -> Obj | None:
        """The runner's /status JSON, or None if it does not answer in time."""
        if self._runners is None:
            raise RuntimeError("Kube used outside `async with`")
        url = f"http://{pod_ip}:{port}/status"
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with self._runners.get(url, timeout=aiohttp.ClientTimeout(total=3)) as response:
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
