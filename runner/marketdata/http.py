"""JSON over HTTP for the venues' REST APIs, with failures sorted into retry or give up.

Network errors, timeouts, rate limits (429, 418) and server errors (5xx) are
TransientError: the caller pauses and tries again, never sooner than the
venue's Retry-After header asks. Any other refusal is a
RejectedRequest carrying the status and the venue's JSON body, for the venue
adapter to turn into a MarketDataError that names the cause (an unknown symbol,
a bad key). Messages name the request by its path only: query strings and
headers, where keys may travel, never reach an exception or a log.
"""

from __future__ import annotations

import email.utils
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

from kubetrade.runner.marketdata.reconnect import TransientError

__all__ = ["RejectedRequest", "get_json", "retry_after_seconds"]

_RETRY_STATUSES = frozenset({408, 418, 425, 429})


class RejectedRequest(Exception):
    """The venue refused a request for a reason retrying will not fix (a 4xx answer)."""

    def __init__(self, status: int, body: Any, path: str) -> None:
        super().__init__(f"HTTP {status} from {path}")
        self.status = status
        self.body = body
        self.path = path


async def get_json(
    session: aiohttp.ClientSession,
    url: str,
    *,
    params: Mapping[str, str | int] | None = None,
    headers: Mapping[str, str] | None = None,
    venue: str,
) -> Any:
    """GET `url` and return its JSON body; raise TransientError or RejectedRequest."""
    path = URL(url).path
    try:
        async with session.get(url, params=params, headers=headers) as response:
            text = await response.text()
            status = response.status
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        # str(exc) of aiohttp errors can include the full URL; keep only the kind.
        raise TransientError(f"{venue} REST {path}: {type(exc).__name__}") from None
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
        if 200 <= status < 300:
            raise TransientError(f"{venue} REST {path}: answer is not JSON") from None
    if 200 <= status < 300:
        return body
    if status in _RETRY_STATUSES or status >= 500:
        wait = f" (Retry-After {retry_after:g}s)" if retry_after is not None else ""
        raise TransientError(f"{venue} REST {path}: HTTP {status}{wait}", retry_after=retry_after)
    raise RejectedRequest(status, body, path)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delay-seconds or an HTTP date; None if absent
    or unreadable (then the usual backoff applies)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
