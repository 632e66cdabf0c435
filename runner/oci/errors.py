"""The one error of the OCI package."""

from __future__ import annotations

from typing import Final, Literal

ErrorKind = Literal["invalid", "not-found", "unauthorized", "unreachable"]

NOT_FOUND: Final = "not-found"
UNAUTHORIZED: Final = "unauthorized"
UNREACHABLE: Final = "unreachable"


class OciError(Exception):
    """A reference, a registry or an artifact that cannot be used; the text says why and
    what to do, and never holds a credential.

    `kind` says what a caller that retries (the operator, at every resync) needs to know:
    the registry could not be reached (try again), it refused the login, the reference
    names nothing there, or anything else (a bad reference or artifact, a changed blob).
    """

    def __init__(self, message: str, *, kind: ErrorKind = "invalid") -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
