"""The OCI distribution protocol, the part an artifact needs: blobs and manifests.

One `Registry` talks to one registry host over one aiohttp session. Requests that
meet a 401 are answered once with what the challenge asks (Basic, or a Bearer token
from the realm); the answer is kept for the session's later requests. Every blob and
manifest read is checked against its digest before anyone sees it.

Plain HTTP is used only for loopback and *.localhost registries (as docker allows
them by default); everything else is HTTPS with the system's trust store.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode, urljoin

import aiohttp

from kubetrade.runner.oci.auth import RegistryAuth, parse_challenge
from kubetrade.runner.oci.errors import NOT_FOUND, UNAUTHORIZED, UNREACHABLE, ErrorKind, OciError
from kubetrade.runner.oci.reference import Reference

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
MAX_BLOB_BYTES: Final = 256 * 1024 * 1024  # far above any strategy; bounds memory
_LOOPBACK: Final = re.compile(r"^(localhost|[^:]*\.localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$")


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return data

    @classmethod
    def from_json(cls, data: object, *, where: str) -> Descriptor:
        if not isinstance(data, dict):
            raise OciError(f"{where}: not a descriptor")
        media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
        if not (isinstance(media_type, str) and isinstance(digest, str) and isinstance(size, int)):
            raise OciError(f"{where}: a descriptor needs mediaType, digest and size")
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest) or size < 0:
            raise OciError(f"{where}: unsupported digest or bad size ({digest!r}, {size})")
        annotations = data.get("annotations")
        return cls(media_type, digest, size, annotations if isinstance(annotations, dict) else None)


async def _read_bounded(response: aiohttp.ClientResponse, limit: int, *, where: str) -> bytes:
    """The whole body, refusing more than `limit` bytes (a registry can send anything)."""
    chunks = []
    size = 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise OciError(f"{where}: the registry sent more than {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """A client of one registry host, for one repository's blobs and manifests."""

    def __init__(
        self, reference: Reference, *, auth: RegistryAuth | None = None, timeout_s: float = 60
    ) -> None:
        self.reference = reference
        scheme = "http" if _LOOPBACK.match(reference.api_host) else "https"
        self._base = f"{scheme}://{reference.api_host}/v2/{reference.repository}/"
        self._login = (auth or RegistryAuth()).login_for(reference.registry)
        self._authorization: str | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Registry:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            connector=aiohttp.TCPConnector(ssl=ssl.create_default_context()),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    # -- requests ------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | None = None,
        limit: int = MAX_MANIFEST_BYTES,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request (answering one 401 challenge); status, headers and a bounded body."""
        session = self._session
        if session is None:
            raise RuntimeError("use Registry as an async context manager")
        for attempt in (1, 2):
            sent = dict(headers or {})
            if self._authorization is not None:
                sent["Authorization"] = self._authorization
            try:
                async with session.request(method, url, headers=sent, data=data) as response:
                    if response.status == 401 and attempt == 1:
                        challenge = response.headers.get("WWW-Authenticate", "")
                        await self._answer(challenge)
                        continue
                    body = await _read_bounded(response, limit, where=str(self.reference))
                    return response.status, response.headers, body
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise OciError(
                    f"{self.reference}: cannot reach the registry {self.reference.registry}:"
                    f" {type(exc).__name__}: {exc}",
                    kind=UNREACHABLE,
                ) from None
        raise AssertionError("unreachable")

    async def _answer(self, header: str) -> None:
        challenge = parse_challenge(header)
        login = self._login
        if challenge.scheme == "basic":
            if login is None:
                raise self._unauthorized()
            self._authorization = login.basic()
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise OciError(
                f"{self.reference}: the registry asks for {header!r}, which is not supported"
            )
        query = {k: v for k, v in challenge.params.items() if k in ("service", "scope")}
        if "scope" not in query:
            query["scope"] = f"repository:{self.reference.repository}:pull,push"
        url = challenge.params["realm"] + "?" + urlencode(query)
        headers = {"Authorization": login.basic()} if login is not None else {}
        session = self._session
        if session is None:
            raise RuntimeError("use Registry as an async context manager")
        try:
            async with session.get(url, headers=headers) as response:
                if response.status in (401, 403):
                    raise self._unauthorized()
                if response.status != 200:
                    raise OciError(
                        f"{self.reference}: the token service answered {response.status}"
                    )
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OciError(
                f"{self.reference}: cannot get a token: {type(exc).__name__}", kind=UNREACHABLE
            ) from None
        token = (
            answer.get("token") or answer.get("access_token") if isinstance(answer, dict) else None
        )
        if not isinstance(token, str):
            raise OciError(f"{self.reference}: the token service gave no token")
        self._authorization = f"Bearer {token}"

    def _unauthorized(self) -> OciError:
        have = "the credentials given were refused" if self._login else "no credentials were given"
        return OciError(
            f"{self.reference}: the registry {self.reference.registry} needs a login and"
            f" {have}; log in (docker/podman login writes the config file kubetrade reads),"
            " or name a pull Secret (spec.strategy.oci.pullSecretRef)",
            kind=UNAUTHORIZED,
        )

    def _status_error(self, what: str, status: int, body: bytes) -> OciError:
        if status in (401, 403):
            return self._unauthorized()
        if status == 404:
            return OciError(f"{self.reference}: {what} not found in the registry", kind=NOT_FOUND)
        code = ""
        try:
            errors = json.loads(body).get("errors") or []
            code = ": " + ", ".join(str(e.get("code")) for e in errors if isinstance(e, dict))
        except (ValueError, AttributeError):
            pass
        # A server error (5xx) is the registry's trouble, and may pass: like no answer.
        kind: ErrorKind = UNREACHABLE if status >= 500 else "invalid"
        return OciError(
            f"{self.reference}: the registry refused to {what} ({status}{code})", kind=kind
        )

    # -- manifests -----------------------------------------------------------------------

    async def resolve(self) -> str:
        """The digest the reference's tag (or digest) names now."""
        digest, _, _ = await self.manifest()
        return digest

    async def manifest(self) -> tuple[str, dict[str, Any], bytes]:
        """The manifest the reference names (digest, document, raw bytes), checked
        against the pinned digest if any."""
        url = self._base + "manifests/" + self.reference.manifest_ref
        status, _, body = await self._request(
            "GET", url, headers={"Accept": f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"}
        )
        if status != 200:
            raise self._status_error("read the manifest", status, body)
        digest = sha256_digest(body)
        if self.reference.digest is not None and digest != self.reference.digest:
            raise OciError(
                f"{self.reference}: the manifest read has digest {digest}, not the one pinned;"
                " refusing it"
            )
        try:
            document = json.loads(body)
        except ValueError:
            raise OciError(f"{self.reference}: the manifest is not JSON") from None
        if not isinstance(document, dict):
            raise OciError(f"{self.reference}: the manifest is not a JSON object")
        return digest, document, body

    async def put_manifest(self, manifest: bytes, *, tag: str) -> str:
        url = self._base + "manifests/" + tag
        status, _, body = await self._request(
            "PUT", url, headers={"Content-Type": OCI_MANIFEST}, data=manifest
        )
        if status not in (200, 201):
            raise self._status_error("store the manifest", status, body)
        return sha256_digest(manifest)

    # -- blobs ---------------------------------------------------------------------------

    async def blob(self, descriptor: Descriptor) -> bytes:
        """The blob's bytes, checked against its descriptor's digest and size."""
        if descriptor.size > MAX_BLOB_BYTES:
            raise OciError(f"{self.reference}: a {descriptor.size:,}-byte blob is too large")
        url = self._base + "blobs/" + descriptor.digest
        status, _, body = await self._request("GET", url, limit=MAX_BLOB_BYTES)
        if status != 200:
            raise self._status_error(f"read blob {descriptor.digest}", status, body)
        digest = sha256_digest(body)
        if digest != descriptor.digest or len(body) != descriptor.size:
            raise OciError(
                f"{self.reference}: blob {descriptor.digest} read back with digest {digest}"
                f" and {len(body):,} bytes (expected {descriptor.size:,}): it was changed;"
                " refusing it"
            )
        return body

    async def put_blob(self, data: bytes) -> str:
        """Store `data` unless the registry has it already; its digest."""
        digest = sha256_digest(data)
        status, _, _ = await self._request("HEAD", self._base + "blobs/" + digest)
        if status == 200:
            return digest
        status, headers, body = await self._request("POST", self._base + "blobs/uploads/")
        location = headers.get("Location")
        if status != 202 or not location:
            raise self._status_error("start an upload", status, body)
        upload = urljoin(self._base, location)
        separator = "&" if "?" in upload else "?"
        status, _, body = await self._request(
            "PUT",
            f"{upload}{separator}digest={digest}",
            headers={"Content-Type": "application/octet-stream"},
            data=data,
        )
        if status not in (201, 204):
            raise self._status_error(f"store blob {digest}", status, body)
        return digest
