"""A small asyncio Kubernetes API client over aiohttp, enough for the node agent and tests.

It reads a kubeconfig (client certificate, bearer token, embedded or file CA), speaks JSON,
raises `ApiError` with the server's Status message, and turns list+watch into one stream of
events that survives dropped connections and expired resource versions. It stays small on
purpose: the project does not depend on the `kubernetes` package, and the harness must not
hide what it sends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

log = logging.getLogger("kubeclient")

WATCH_SECONDS = 240  # how long one watch request lasts before it is renewed

Obj = dict[str, Any]


class ApiError(Exception):
    """A non-2xx answer; `status` is the HTTP code, `reason` the Status reason (e.g. NotFound)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a kubeconfig's current context says about the server and the user."""

    server: str
    ca_pem: bytes | None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    token: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self.ca_pem is not None:
            ctx.load_verify_locations(cadata=self.ca_pem.decode())
        if self.cert_pem is not None and self.key_pem is not None:
            # load_cert_chain takes only file names; the files live for this call alone,
            # in a private directory.
            with tempfile.TemporaryDirectory(prefix="kubeclient-") as tmp:
                cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
                cert.write_bytes(self.cert_pem)
                key.touch(mode=0o600)
                key.write_bytes(self.key_pem)
                ctx.load_cert_chain(cert, key)
        return ctx


def _data_or_file(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    if f"{key}-data" in entry:
        return base64.b64decode(entry[f"{key}-data"])
    if key in entry:
        return Path(base, str(entry[key])).read_bytes()
    return None


def load_credentials(path: Path | str) -> Credentials:
    """Read the current context of a kubeconfig file."""
    path = Path(path)
    config = yaml.safe_load(path.read_text())
    context_name = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    base = path.parent
    token = user.get("token")
    if token is None and "tokenFile" in user:
        token = (base / user["tokenFile"]).read_text().strip()
    return Credentials(
        server=cluster["server"].rstrip("/"),
        ca_pem=_data_or_file(cluster, "certificate-authority", base),
        cert_pem=_data_or_file(user, "client-certificate", base),
        key_pem=_data_or_file(user, "client-key", base),
        token=token,
    )


class KubeClient:
    """One aiohttp session to one API server as one user. Use as an async context manager."""

    def __init__(self, credentials: Credentials, *, user_agent: str = "kubetrade-e2e") -> None:
        self.credentials = credentials
        self._ssl = credentials.ssl_context()
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if credentials.token:
            self._headers["Authorization"] = f"Bearer {credentials.token}"
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl), headers=self._headers
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("KubeClient used outside `async with`")
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        request_timeout: float = 30,
    ) -> Obj:
        """Send one request and return the decoded JSON answer; raise ApiError otherwise."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.session.request(
            method,
            self.credentials.server + path,
            data=data,
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=request_timeout),
        ) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise _api_error(resp.status, text)
            result: Obj = json.loads(text) if text else {}
            return result

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Obj:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: Obj) -> Obj:
        return await self.request("PATCH", path, body=body, content_type=_MERGE_PATCH)

    async def delete(self, path: str, body: Obj | None = None) -> Obj:
        return await self.request("DELETE", path, body=body)

    async def watch(
        self, path: str, *, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[tuple[str, Obj]]:
        """List, then watch `path` (a collection) for ever, as ("ADDED"|"MODIFIED"|"DELETED", obj).

        The initial list comes as ADDED events followed by one ("SYNCED", {}) marker. After a
        dropped connection the watch resumes from the last resource version; when that has
        expired (410 Gone) it lists again, and objects that vanished meanwhile come as DELETED.
        """
        known: dict[str, Obj] = {}
        while True:
            listing = await self._list_patiently(path, params)
            version = listing["metadata"]["resourceVersion"]
            current = {item["metadata"]["uid"]: item for item in listing.get("items", [])}
            for uid, item in known.items():
                if uid not in current:
                    yield "DELETED", item
            for item in current.values():
                yield "ADDED", item
            known = current
            yield "SYNCED", {}
            try:
                async for kind, obj in self._watch_from(path, params, version):
                    uid = obj.get("metadata", {}).get("uid", "")
                    if kind == "DELETED":
                        known.pop(uid, None)
                    else:
                        known[uid] = obj
                    yield kind, obj
            except _Expired:
                log.info("watch of %s expired; listing again", path)
            except ApiError as exc:
                if exc.status < 429:
                    raise
                log.info("watch of %s failed (%s); listing again", path, exc)
                await asyncio.sleep(1)

    async def _list_patiently(self, path: str, params: Mapping[str, str] | None) -> Obj:
        """List, retrying what a restarting or busy server answers; raise anything else."""
        delay = 0.2
        while True:
            try:
                return await self.get(path, params)
            except ApiError as exc:
                if exc.status < 429 or exc.status == 501:
                    raise
                error: Exception = exc
            except (TimeoutError, aiohttp.ClientError) as exc:
                error = exc
            log.info("listing %s failed (%s); retrying in %.1f s", path, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _watch_from(
        self, path: str, params: Mapping[str, str] | None, version: str
    ) -> AsyncIterator[tuple[str, Obj]]:
        while True:
            query = {
                **(params or {}),
                "watch": "true",
                "resourceVersion": version,
                "allowWatchBookmarks": "true",
                # The server ends each watch after this long; we reconnect from `version`.
                "timeoutSeconds": str(WATCH_SECONDS),
            }
            try:
                async with self.session.get(
                    self.credentials.server + path,
                    params=query,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
                ) as resp:
                    if resp.status == 410:
                        raise _Expired
                    if resp.status >= 300:
                        raise _api_error(resp.status, await resp.text())
                    async for line in _lines(resp.content):
                        event = json.loads(line)
                        kind, obj = event["type"], event["object"]
                        if kind == "ERROR":
                            if obj.get("code") == 410:
                                raise _Expired
                            raise ApiError(obj.get("code", 500), obj.get("reason", ""), str(obj))
                        version = obj["metadata"]["resourceVersion"]
                        if kind != "BOOKMARK":
                            yield kind, obj
            except (TimeoutError, aiohttp.ClientError) as exc:
                # A dropped connection is routine (server restart, idle timeout): resume.
                log.info("watch of %s interrupted (%s); resuming", path, exc)
                await asyncio.sleep(0.5)


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Newline-separated events of any size (aiohttp's own line reader caps them at 128 KiB)."""
    buffer = b""
    async for chunk in stream.iter_any():
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            if line.strip():
                yield line


class _Expired(Exception):
    pass


_MERGE_PATCH = "application/merge-patch+json"


def _api_error(status: int, text: str) -> ApiError:
    with contextlib.suppress(ValueError):
        body = json.loads(text)
        if isinstance(body, dict):
            return ApiError(status, str(body.get("reason", "")), str(body.get("message", text)))
    return ApiError(status, "", text.strip())
