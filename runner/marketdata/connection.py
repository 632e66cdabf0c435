"""Opening and closing the venues' websockets, with failures sorted into retry or give up.

`websockets` answers the server's pings by itself (Binance disconnects a client
that leaves a ping unanswered for a minute) and sends its own, so a dead TCP
path is noticed within `ping_interval + ping_timeout`. A server that keeps the
connection alive but stops sending data is caught by the feed's idle watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)
from websockets.protocol import State

from kubetrade.runner.marketdata.base import MarketDataError
from kubetrade.runner.marketdata.http import retry_after_seconds
from kubetrade.runner.marketdata.reconnect import TransientError

__all__ = ["FeedTimeouts", "close_quietly", "open_websocket", "receive_json"]

# A handshake refused with one of these will be refused again: the URL or the key is wrong.
_PERMANENT_HANDSHAKE = frozenset({400, 401, 403, 404, 405, 410})

# websockets logs every frame at DEBUG, and a frame may carry an API key (Polygon's auth
# message). Its logger for our connections never goes below INFO, whatever the root
# level (`kubetrade run --log-level debug` included).
_WIRE_LOG = logging.getLogger("kubetrade.marketdata.wire")
_WIRE_LOG.setLevel(logging.INFO)


@dataclass(frozen=True, slots=True)
class FeedTimeouts:
    """Seconds a feed waits for the network; tests shrink them, users rarely need to."""

    open: float = 10.0  # connect, TLS and websocket handshake, and the venue's greeting
    request: float = 15.0  # one REST request
    ping_interval: float | None = 20.0  # our keepalive pings; None sends none
    ping_timeout: float | None = 20.0  # a ping unanswered this long drops the connection
    close: float = 2.0  # wait this long for the closing handshake, then cut the connection
    idle: float | None = None  # no frame at all for this long means a stalled server
    # Bars wait for a quiet symbol (sequencer.py) and no frame came for this long: ask the
    # venue's clock what has closed, so its quiet minutes are confirmed over REST.
    quiet: float | None = 5.0


async def open_websocket(url: str, *, timeouts: FeedTimeouts, venue: str) -> ClientConnection:
    """An open websocket to `url`; TransientError when worth retrying, else MarketDataError."""
    try:
        return await connect(
            url,
            open_timeout=timeouts.open,
            ping_interval=timeouts.ping_interval,
            ping_timeout=timeouts.ping_timeout,
            close_timeout=timeouts.close,
            max_size=2**22,  # Polygon batches many aggregates into one message
            max_queue=64,
            logger=_WIRE_LOG,
        )
    except InvalidURI as exc:
        raise MarketDataError(
            f"{venue}: the websocket URL {exc.uri!r} is invalid; fix spec.marketData.config.wsUrl"
        ) from None
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in _PERMANENT_HANDSHAKE:
            raise MarketDataError(
                f"{venue}: the websocket server refused the connection with HTTP {status};"
                " check spec.marketData.config.wsUrl and the provider's credentials"
            ) from None
        wait = retry_after_seconds(exc.response.headers.get("Retry-After"))
        raise TransientError(
            f"{venue}: websocket handshake answered HTTP {status}", retry_after=wait
        ) from None
    except (WebSocketException, OSError, TimeoutError) as exc:
        raise TransientError(f"{venue}: cannot connect ({describe(exc)})") from None


async def receive_json(ws: ClientConnection, *, within: float, venue: str) -> Any:
    """The next message as JSON, during a handshake where every message must be readable."""
    try:
        async with asyncio.timeout(within):
            frame = await ws.recv()
    except TimeoutError:
        raise TransientError(f"{venue}: no answer within {within:g}s") from None
    except ConnectionClosed as exc:
        raise TransientError(f"{venue}: connection closed ({describe(exc)})") from None
    try:
        return json.loads(frame)
    except ValueError:
        raise TransientError(f"{venue}: unreadable answer during the handshake") from None


async def close_quietly(ws: ClientConnection) -> None:
    """Close `ws` politely, or cut it when the peer does not answer in time."""
    if ws.state is State.CLOSED:
        return
    with contextlib.suppress(Exception):
        await ws.close()


def describe(exc: BaseException) -> str:
    """A short reason for a connection failure, without URLs or payloads."""
    if isinstance(exc, ConnectionClosed):
        frame = exc.rcvd or exc.sent
        if frame is None:
            return "connection lost without a closing handshake"
        reason = f": {frame.reason[:80]}" if frame.reason else ""
        return f"closed with code {frame.code}{reason}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__
