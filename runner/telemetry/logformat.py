"""How the runner and the operator log: `--log-format console` (the default, for people)
or `json` (one object a line, for a cluster's log store; the image's default).

A JSON line carries the time, level, logger and message, and the context that makes a
line findable: the session, its namespace, the runner's epoch, the bar being processed
(`bar_time`) and, where a line is about an order, its `order_id`. A caller adds fields
with `extra={...}`; `bind` sets the session-wide ones once.

Whatever the format, every line passes the redactor first: the credentials this process
loaded (runner/credentials.py registers each value it reads) and anything shaped like a
credential (`api_key=...`, `"secret": "..."`, a bearer token, a request signature) come
out as `***`. A log line never carries a secret, even one quoted in an exception.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final, TextIO

FORMATS: Final = ("console", "json")
FORMAT_ENV: Final = "KUBETRADE_LOG_FORMAT"
CONSOLE_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# key=value, key: value, "key": "value" for keys that name credentials.
_KEYED: Final = re.compile(
    r"""(?ix)
    (["']?(?:api[_-]?key|api[_-]?secret|secret|password|passphrase|token|signature|
          private[_-]?key|access[_-]?key)["']?\s*[:=]\s*["']?)
    ([^"'\s,;&}]+)
    """
)
_BEARER: Final = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_MIN_SECRET: Final = 4  # shorter values would blank out ordinary words


class Redactor:
    """Removes known secrets and credential-shaped values from text."""

    def __init__(self) -> None:
        self._secrets: list[str] = []

    def add(self, values: Iterable[str]) -> None:
        known = {*self._secrets, *(v for v in values if len(v) >= _MIN_SECRET)}
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted(known, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, "***")
        value = _KEYED.sub(r"\1***", value)
        return _BEARER.sub(r"\1***", value)


REDACTOR: Final = Redactor()


def register_secrets(values: Iterable[str]) -> None:
    """Never log these (credential values as they are loaded)."""
    REDACTOR.add(values)


class _Context:
    """The fields every JSON line of this process carries (set by `bind`)."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.bar_time: Callable[[], int] | None = None  # the bar in hand, ms; 0: none


CONTEXT: Final = _Context()


def bind(*, bar_time: Callable[[], int] | None = None, **fields: Any) -> None:
    """Fields for every line from now on (empty values are left out)."""
    CONTEXT.fields.update({k: v for k, v in fields.items() if v not in (None, "")})
    if bar_time is not None:
        CONTEXT.bar_time = bar_time


def iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


# Attributes every LogRecord has: anything else on a record came from `extra`.
_RECORD_KEYS: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": iso(record.created * 1000),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": REDACTOR.text(record.getMessage()),
            **CONTEXT.fields,
        }
        if CONTEXT.bar_time is not None:
            with_bar = CONTEXT.bar_time()
            if with_bar:
                line["bar_time"] = iso(with_bar)
        for key, value in record.__dict__.items():
            if key not in _RECORD_KEYS and not key.startswith("_"):
                line[key] = clean(value)
        if record.exc_info:
            line["error"] = REDACTOR.text(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class RedactingFormatter(logging.Formatter):
    """The console format, unchanged but for secrets."""

    def format(self, record: logging.LogRecord) -> str:
        return REDACTOR.text(super().format(record))


def clean(value: Any) -> Any:
    """A field's value, JSON-able and redacted."""
    if isinstance(value, str):
        return REDACTOR.text(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):  # e.g. kopf's k8s_ref: the object a line is about
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return REDACTOR.text(str(value))


def default_format() -> str:
    """$KUBETRADE_LOG_FORMAT (the image sets json), else console."""
    value = os.environ.get(FORMAT_ENV, "console")
    return value if value in FORMATS else "console"


def configure(level: str = "warning", fmt: str = "console", stream: TextIO | None = None) -> None:
    """Replace the root logger's handlers with one writing `fmt` to `stream` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else RedactingFormatter(CONSOLE_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def reformat(fmt: str) -> None:
    """Give the handlers someone else set up (kopf's) our JSON, or redaction in their own
    console format."""
    for handler in logging.getLogger().handlers:
        if fmt == "json":
            handler.setFormatter(JsonFormatter())
        else:
            console = handler.formatter or logging.Formatter()
            handler.setFormatter(_Redacting(console))


class _Redacting(logging.Formatter):
    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return REDACTOR.text(self._inner.format(record))
