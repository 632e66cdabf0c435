"""What a ccxt failure means for us, how long to wait before trying again, and redaction.

Every exception the client library raises is turned here into an outcome,
because each calls for a different action:
- `RateLimited`, `ClockSkew`: refused before processing; send again after a pause;
- `Transient`: a timeout, a 5xx, a dropped connection: the request may be
  repeated, but for an order its fate is unknown, so the caller looks the order
  up by client order id before sending it again;
- `Refused` (`AuthFailed`, `InsufficientFunds`, `Duplicate`): the venue said no;
  the same request gets the same answer;
- `NotFound`: the venue has no such order.
Messages are redacted on the way: no key, secret or signature leaves this module,
and the original exception (whose text holds the signed URL) is never chained.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import ccxt.async_support as ccxt

_SIGNATURE = re.compile(r"(signature=)[^&\s'\"]+", re.IGNORECASE)
_BODY = re.compile(r"\{.*\}", re.DOTALL)
_MAX_MESSAGE = 300


class Redactor:
    """Removes the credentials, and any request signature, from text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, "***")
        return _SIGNATURE.sub(r"\1***", value)


class VenueError(Exception):
    """A classified failure; `code`/`detail` are the venue's own where it sent them."""

    def __init__(self, detail: str, code: str = "", retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.retry_after = retry_after  # seconds, from a Retry-After header

    def __str__(self) -> str:
        return f"{self.detail} (code {self.code})" if self.code else self.detail


class Transient(VenueError):
    """Worth repeating after a pause; for an order, its fate is unknown."""


class RateLimited(Transient):
    """Refused unprocessed for going too fast (HTTP 429/418): safe to send again later."""


class ClockSkew(Transient):
    """Refused unprocessed: the timestamp fell outside recvWindow (Binance -1021)."""


class Refused(VenueError):
    """The venue said no; repeating the request gets the same answer."""


class AuthFailed(Refused):
    """The key, the signature or the key's permissions were refused."""


class InsufficientFunds(Refused):
    pass


class Duplicate(Refused):
    """The venue already has an open order with this client order id."""


class NotFound(VenueError):
    """The venue has no such order."""


def _error_body(text: str) -> tuple[str, str] | None:
    """(code, msg) of a venue's JSON error body found in `text`."""
    match = _BODY.search(text)
    if match is None:
        return None
    try:
        body: Any = json.loads(match.group(0))
    except ValueError:
        return None
    if isinstance(body, dict) and "msg" in body:
        return str(body.get("code", "")), str(body["msg"])[:_MAX_MESSAGE]
    return None


def venue_message(exc: BaseException, redactor: Redactor, last_body: str = "") -> tuple[str, str]:
    """(code, message) from a ccxt error: the venue's own where it sent them.

    ccxt puts the body in the message, except for errors it recognizes by their
    text alone; then `last_body`, the last response received, supplies the code,
    if its message is the one in the error (else it belongs to another request).
    """
    text = redactor.text(str(exc))
    found = _error_body(text)
    if found is not None:
        return found
    last = _error_body(redactor.text(last_body)) if last_body else None
    if last is not None and last[1] and last[1] in text:
        return last
    # No body: ccxt's own text, e.g. "binance GET http://host/api/v3/order?..." on a
    # timeout. Drop the URL's query; it says nothing useful and is long.
    text = re.sub(r"\?\S*", "", text)
    return "", f"{type(exc).__name__}: {text}"[:_MAX_MESSAGE]


def classify(
    exc: BaseException,
    redactor: Redactor,
    *,
    retry_after: float | None = None,
    last_body: str = "",
) -> VenueError:
    """The outcome a ccxt exception stands for. Never keeps the original (it holds URLs)."""
    code, message = venue_message(exc, redactor, last_body)
    if isinstance(exc, ccxt.OrderNotFound) or code in ("-2011", "-2013"):
        return NotFound(message, code)
    if isinstance(exc, ccxt.AuthenticationError) or code in ("-1022", "-2014", "-2015"):
        return AuthFailed(message, code)
    if isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientFunds(message, code)
    if "duplicate order" in message.lower() or isinstance(exc, ccxt.DuplicateOrderId):
        return Duplicate(message, code)
    # These two are refused before processing, so even an order may simply be sent again.
    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        return RateLimited(message, code, retry_after)
    if isinstance(exc, ccxt.InvalidNonce) or code == "-1021":
        return ClockSkew(message, code)
    # The rest of NetworkError (timeouts, 5xx, dropped connections) and OperationFailed
    # ("unknown error, execution status unknown": -1000, -1006, -1007) leave an order's
    # fate unknown.
    if isinstance(exc, ccxt.OperationFailed):
        return Transient(message, code)
    return Refused(message, code)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Pauses between attempts: exponential, capped, or the venue's Retry-After."""

    attempts: int = 5
    initial_s: float = 0.25
    factor: float = 2.0
    max_s: float = 5.0

    def delay(self, attempt: int, error: VenueError | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if error is not None and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.max_s * 4)
        return float(min(self.initial_s * self.factor ** (attempt - 1), self.max_s))

    async def sleep(self, attempt: int, error: VenueError | None = None) -> None:
        await asyncio.sleep(self.delay(attempt, error))


def retry_after_seconds(headers: object) -> float | None:
    """The Retry-After header of the last response, in seconds, if it had one."""
    if not isinstance(headers, dict):
        return None
    for name, value in headers.items():
        if str(name).lower() == "retry-after":
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None
