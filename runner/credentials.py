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


class CredentialsError(Exception):
    """A required credential is missing; the message names where it was looked for."""


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
    return Credentials(provider, values)
