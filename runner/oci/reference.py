"""Image references: [registry/]repository[:tag][@sha256:digest], as docker and the OCI
distribution spec write them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from kubetrade.runner.oci.errors import OciError

DEFAULT_REGISTRY: Final = "docker.io"
# Docker Hub's API lives on another host than its name.
_API_HOSTS: Final = {"docker.io": "registry-1.docker.io"}
_COMPONENT: Final = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY: Final = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Reference:
    registry: str  # host[:port]
    repository: str
    tag: str | None
    digest: str | None  # sha256:<64 hex>

    @classmethod
    def parse(cls, text: str) -> Reference:
        rest, digest = text, None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            if not _DIGEST.fullmatch(digest):
                raise OciError(f"{text!r}: a digest is sha256: and 64 lowercase hex digits")
        tag = None
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not _TAG.fullmatch(tag):
                raise OciError(f"{text!r}: {tag!r} is not a valid tag")
        first, _, remainder = rest.partition("/")
        # The first component names a registry if it looks like a host (a dot, a port,
        # or localhost); otherwise the reference is Docker Hub's.
        if remainder and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, remainder
        else:
            registry, repository = DEFAULT_REGISTRY, rest
            if "/" not in repository:
                repository = f"library/{repository}"
        if not _REPOSITORY.fullmatch(repository):
            raise OciError(
                f"{text!r}: {repository!r} is not a repository name (lowercase letters,"
                " digits and separators)"
            )
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, repository, tag, digest)

    @property
    def api_host(self) -> str:
        return _API_HOSTS.get(self.registry, self.registry)

    @property
    def pinned(self) -> bool:
        return self.digest is not None

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def manifest_ref(self) -> str:
        """What goes after /manifests/: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"
