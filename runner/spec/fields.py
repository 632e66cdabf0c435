"""Single-field formats of the session document, and the errors every check raises.

Each format is checked by a function with a message saying how to fix it; the same
pattern goes into the schema so the API server refuses what we refuse.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    JsonValue,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from kubetrade.runner.domain import EARLIEST_TIME_MS, LATEST_TIME_MS, datetime_to_ms

if TYPE_CHECKING:
    from collections.abc import Callable

# Every check raises a ValidationError located at the offending key, so a user
# reads `spec.trading.confirmLive: ...` rather than the path of the object that
# happened to run the check.


def problem(loc: tuple[str | int, ...], kind: str, message: str, value: object) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=value)


def relocated(error: ErrorDetails) -> InitErrorDetails:
    """The same error, rebuilt so that it can be raised again with others."""
    loc = error["loc"]
    if "url" in error:  # pydantic documents its own error types; ours have no url
        # Keep pydantic's own type so formatters can still tell its errors from ours.
        detail = InitErrorDetails(type=error["type"], loc=loc, input=error["input"])
        if "ctx" in error:
            detail["ctx"] = error["ctx"]
        return detail
    return problem(loc, error["type"], error["msg"], error["input"])


def fail(title: str, problems: list[InitErrorDetails]) -> ValidationError:
    return ValidationError.from_exception_data(title, problems)


# Each format is checked by a function with a message saying how to fix it; the
# same pattern goes into the schema so the API server refuses what we refuse.

_DNS_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_SUBDOMAIN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_SYMBOL: Final = r"^[A-Za-z0-9._:/-]{1,32}$"
_CONFIG_MAP_KEY: Final = r"^[-._a-zA-Z0-9]+$"
# An image reference as docker writes it: [registry/]repository[:tag][@sha256:digest].
_OCI_REFERENCE: Final = (
    r"^([a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?/)?[a-z0-9]+([._-]+[a-z0-9]+)*"
    r"(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(@sha256:[a-f0-9]{64})?$"
)
OCI_PINNED: Final = r"@sha256:[a-f0-9]{64}$"
_CCXT_EXCHANGE: Final = r"^[a-z][a-z0-9_]*$"
# The serialized form of a Kubernetes resource.Quantity (as controller-gen emits it).
_QUANTITY: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _check_dns_label(value: str) -> str:
    if len(value) > 63 or not re.fullmatch(_DNS_LABEL, value):
        raise PydanticCustomError(
            "dns_label",
            f"{value!r} is not a valid name: use at most 63 lowercase letters, digits and '-',"
            " starting and ending with a letter or digit (e.g. 'sma-demo')",
        )
    return value


def _check_dns_subdomain(value: str) -> str:
    if len(value) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, value):
        raise PydanticCustomError(
            "dns_subdomain",
            f"{value!r} is not a valid Kubernetes object name: use lowercase letters, digits,"
            " '-' and '.', starting and ending with a letter or digit",
        )
    return value


def _check_symbol(value: str) -> str:
    if not re.fullmatch(_SYMBOL, value):
        raise PydanticCustomError(
            "symbol",
            f"{value!r} is not a valid symbol: use 1 to 32 characters from A-Z a-z 0-9 . _ : / -",
        )
    return value


def _check_config_map_key(value: str) -> str:
    if len(value) > 253 or not re.fullmatch(_CONFIG_MAP_KEY, value):
        raise PydanticCustomError(
            "config_map_key",
            f"{value!r} is not a valid ConfigMap key: use letters, digits, '-', '_' and '.'",
        )
    return value


def _check_oci_reference(value: str) -> str:
    if len(value) <= 512 and re.fullmatch(_OCI_REFERENCE, value):
        return value
    if "@" in value and not re.search(OCI_PINNED, value):
        raise PydanticCustomError(
            "oci_bad_digest",
            f"{value!r} has a malformed digest; write <registry>/<repository>@sha256:<64"
            " lowercase hex digits>",
        )
    raise PydanticCustomError(
        "oci_reference",
        f"{value!r} is not an OCI reference: write <registry>/<repository>:<tag> or"
        " <registry>/<repository>@sha256:<digest> (lowercase repository, e.g."
        " ghcr.io/acme/strategies/sma:v3)",
    )


def _int_quantity_to_str(value: object) -> object:
    # Kubernetes quantities are int-or-string: `cpu: 1` is as valid as `cpu: "1"`.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        raise PydanticCustomError(
            "quantity_float",
            f'{value!r} must be written as a string or an integer, e.g. "500m" or "0.5"',
        )
    return value


def _check_quantity(value: str) -> str:
    if not re.fullmatch(_QUANTITY, value):
        raise PydanticCustomError(
            "quantity",
            f"{value!r} is not a Kubernetes quantity: use a number with an optional suffix,"
            " e.g. 500m, 2, 256Mi, 1Gi",
        )
    return value


def _check_url(*schemes: str) -> Callable[[str | None], str | None]:
    def check(value: str | None) -> str | None:
        if value is not None and not value.startswith(tuple(f"{s}://" for s in schemes)):
            wanted = " or ".join(f"{s}://" for s in schemes)
            raise PydanticCustomError("url_wrong_scheme", f"{value!r} must start with {wanted}")
        return value

    return check


# 512 characters: longer than any venue's base URL, and a bound CEL can cost.
WebSocketUrl = Annotated[str | None, Field(max_length=512), AfterValidator(_check_url("ws", "wss"))]
HttpUrl = Annotated[str | None, Field(max_length=512), AfterValidator(_check_url("http", "https"))]


def _check_bar_time(value: datetime) -> datetime:
    ms = datetime_to_ms(value)
    if not EARLIEST_TIME_MS <= ms < LATEST_TIME_MS:
        raise PydanticCustomError(
            "bar_time_range", "must be between 1900-01-01 and 2200-01-01 (UTC)"
        )
    return value


# A bar time: RFC 3339 with a zone, within the span every part of kubetrade can handle.
BarTime = Annotated[AwareDatetime, AfterValidator(_check_bar_time)]


def _check_ccxt_exchange(value: str) -> str:
    if not re.fullmatch(_CCXT_EXCHANGE, value):
        raise PydanticCustomError(
            "ccxt_exchange",
            f"{value!r} is not a ccxt exchange id: ids are lowercase, e.g. binance, kraken, okx",
        )
    return value


CcxtExchangeId = Annotated[
    str,
    AfterValidator(_check_ccxt_exchange),
    WithJsonSchema({"type": "string", "pattern": _CCXT_EXCHANGE}),
]


DnsLabel = Annotated[
    str,
    AfterValidator(_check_dns_label),
    WithJsonSchema({"type": "string", "pattern": _DNS_LABEL, "maxLength": 63}),
]
DnsSubdomain = Annotated[
    str,
    AfterValidator(_check_dns_subdomain),
    WithJsonSchema({"type": "string", "pattern": _DNS_SUBDOMAIN, "maxLength": 253}),
]
Symbol = Annotated[
    str,
    AfterValidator(_check_symbol),
    WithJsonSchema({"type": "string", "pattern": _SYMBOL, "maxLength": 32}),
]
ConfigMapKey = Annotated[
    str,
    AfterValidator(_check_config_map_key),
    WithJsonSchema({"type": "string", "pattern": _CONFIG_MAP_KEY, "maxLength": 253}),
]
OciReference = Annotated[
    str,
    AfterValidator(_check_oci_reference),
    WithJsonSchema({"type": "string", "pattern": _OCI_REFERENCE, "maxLength": 512}),
]
Quantity = Annotated[
    str,
    BeforeValidator(_int_quantity_to_str),
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string", "pattern": _QUANTITY}],
            "x-kubernetes-int-or-string": True,
        }
    ),
]


def _none_to_empty(value: object) -> object:
    # `config:` with nothing after it is YAML for null; the API server drops such nulls
    # and applies the default, so do the same here.
    return {} if value is None else value


# Any JSON object. The CRD keeps it as is; its content is checked elsewhere, if at all.
FreeForm = Annotated[
    dict[str, JsonValue],
    BeforeValidator(_none_to_empty),
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


def format_from_extension(path: str) -> Literal["csv", "parquet"] | None:
    lowered = path.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".parquet", ".pq")):
        return "parquet"
    return None
