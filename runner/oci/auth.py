"""Registry credentials and the token dance.

Credentials come from a docker config file: the one docker and podman write
(`$DOCKER_CONFIG/config.json`, `~/.docker/config.json`, `$REGISTRY_AUTH_FILE`), or a
Kubernetes pull Secret's `.dockerconfigjson`, which has the same shape. A registry
that answers 401 says in WWW-Authenticate how to authenticate: Basic (e.g. the
distribution registry with htpasswd) or Bearer, a token fetched from its realm with
the credentials (Docker Hub, GHCR, most hosted registries). Credential helpers
(`credHelpers`, `credsStore`) are not run: give the credentials in the file.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kubetrade.runner.oci.errors import OciError

_CHALLENGE_PARAM: Final = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Login:
    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


@dataclass(frozen=True)
class RegistryAuth:
    """Logins by registry host (host[:port]); never shown in a repr."""

    logins: dict[str, Login] = field(default_factory=dict, repr=False)

    def login_for(self, registry: str) -> Login | None:
        return self.logins.get(registry)


def _host_of(key: str) -> str:
    # Config keys may be URLs ("https://index.docker.io/v1/") or bare hosts.
    host = re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def parse_docker_config(text: str, *, source: str) -> RegistryAuth:
    """The logins of a docker config file's `auths` (errors name the file, never a value)."""
    try:
        document: Any = json.loads(text)
    except ValueError:
        raise OciError(f"{source}: not a docker config file (invalid JSON)") from None
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        raise OciError(f"{source}: a docker config file needs an 'auths' object")
    logins = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        username, password = entry.get("username"), entry.get("password")
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                username, _, password = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                raise OciError(
                    f"{source}: the 'auth' of {key!r} is not base64 user:password"
                ) from None
        if isinstance(username, str) and isinstance(password, str) and username:
            logins[_host_of(str(key))] = Login(username, password)
    return RegistryAuth(logins)


def load_docker_config(path: Path | None = None) -> RegistryAuth:
    """Logins from `path`, else from where docker and podman keep them (none if absent)."""
    candidates = [path] if path is not None else []
    if path is None:
        if os.environ.get("REGISTRY_AUTH_FILE"):
            candidates.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
        docker_config = os.environ.get("DOCKER_CONFIG")
        candidates.append(
            Path(docker_config) / "config.json"
            if docker_config
            else Path.home() / ".docker" / "config.json"
        )
    for candidate in candidates:
        if candidate.is_dir():
            # A mounted pull Secret is a directory holding .dockerconfigjson.
            candidate = candidate / ".dockerconfigjson"
        try:
            text = candidate.read_text(encoding="utf-8")
        except FileNotFoundError:
            if path is not None:
                raise OciError(f"registry credentials: no such file {candidate}") from None
            continue
        except OSError as exc:
            raise OciError(
                f"registry credentials: cannot read {candidate}: {exc.strerror}"
            ) from None
        return parse_docker_config(text, source=str(candidate))
    return RegistryAuth()


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # basic or bearer
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    return Challenge(scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest)))
