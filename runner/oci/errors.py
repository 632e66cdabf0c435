"""The one error of the OCI package."""

from __future__ import annotations


class OciError(Exception):
    """A reference, a registry or an artifact that cannot be used; the text says why and
    what to do, and never holds a credential."""
