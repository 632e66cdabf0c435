"""Credentials for providers, from files or the environment, never from the session.

In Kubernetes the operator mounts the Secret named by a provider's
`credentialsSecretRef` as a directory of files, one file per key, and points
the runner at it. Locally the same keys come from a directory given with
`--credentials-dir` (or KUBETRADE_CREDENTIALS_DIR) or from environment
variables KUBETRADE_<PROVIDER>_<KEY>, e.g. KUBETRADE_BINANCE_API_KEY.

A Credentials value never shows its contents in repr, str or logs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kubetrade.runner.telemetry.logformat import register_secrets

# Where the operator mounts a session's credential Secrets in the runner pod.
POD_CREDENTIALS_DIR: Final = Path("/etc/kubetrade/credentials")
# Where Kubernetes and container runtimes mount secrets by default (the ServiceAccount
# token among them).
SYSTEM_SECRET_DIRS: Final = (Path("/var/run/secrets"), Path("/run/secrets"))


class CredentialsError(Exception):
    """A required credential is missing; the message names where it was looked for."""


class CredentialPathError(Exception):
    """A file a session reads as data lies where credentials are kept."""


def credential_directories(credentials_dir: Path | None = None) -> list[Path]:
    """Every directory whose files are secrets: never to be read as data."""
    dirs = [POD_CREDENTIALS_DIR, *SYSTEM_SECRET_DIRS]
    for extra in (credentials_dir, os.environ.get("KUBETRADE_CREDENTIALS_DIR")):
        if extra:
            dirs.append(Path(extra))
    return dirs


def refuse_credential_path(path: Path, *, field: str, credentials_dir: Path | None) -> None:
    """Raise CredentialPathError if `path` is (or leads, through links, into) a credentials
    directory.

    A data file's errors quote bits of it; a credential read as data would be quoted
    into logs, the pod's termination message and the session's status. The check
    compares real paths, so neither a symlink nor `..` gets around it.
    """
    real = Path(os.path.realpath(path))
    for directory in credential_directories(credentials_dir):
        for root in {directory.absolute(), Path(os.path.realpath(directory))}:
            if real == root or real.is_relative_to(root) or path.absolute().is_relative_to(root):
                raise CredentialPathError(
                    f"{field}: {path} is in the credentials directory {directory.absolute()};"
                    " credentials are never read as data: point it at a data file elsewhere"
                )


@dataclass(frozen=True)
class Credentials:
    provider: str
    _values: Mapping[str, str] = field(repr=False)

    def get(self, key: str) -> str | None:
        return self._values.get(key)

    def require(self, key: str) -> str:
        value = self._values.get(key)
        if not value:
            env = env_name(self.provider, key)
            raise CredentialsError(
                f"provider {self.provider!r} needs credential {key!r}: put it in the Secret "
                f"named by credentialsSecretRef (key {key!r}), in a file {key!r} in the "
                f"credentials directory, or in the environment variable {env}"
            )
        return value

    def __str__(self) -> str:
        return f"Credentials({self.provider}: {', '.join(sorted(self._values)) or 'none'})"


def env_name(provider: str, key: str) -> str:
    clean = "".join(c if c.isalnum() else "_" for c in f"{provider}_{key}")
    return f"KUBETRADE_{clean.upper()}"


def load_credentials(
    provider: str,
    *,
    directory: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credentials:
    """Every key for `provider`: files in `directory` first, then the environment."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    prefix = env_name(provider, "")
    for name, value in environ.items():
        if name.startswith(prefix) and value:
            values[name[len(prefix) :].lower()] = value
    if directory is not None and directory.is_dir():
        for path in sorted(directory.iterdir()):
            # Kubernetes projects Secret keys as symlinks next to ..data entries.
            if path.name.startswith(".") or not path.is_file():
                continue
            values[path.name] = path.read_text().strip()
    register_secrets(values.values())  # no log line may carry one, whatever its format
    return Credentials(provider, values)
