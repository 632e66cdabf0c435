"""The LiveTradingSession CustomResourceDefinition, generated from the runner's spec.

`kubetrade crd` prints it; crds/livetradingsessions.kubetrade.io.yaml is that output,
committed, and a unit test fails when the two drift apart.

The pydantic models in kubetrade.runner.spec are the single source of truth. Their JSON
schema is turned into a *structural* OpenAPI v3 schema, the only kind the API server
accepts for defaulting and pruning:
- `$ref`s are inlined, `anyOf: [X, null]` becomes X with `nullable: true`;
- draft 2020-12 numeric `exclusiveMinimum: 0` becomes OpenAPI's `minimum: 0` +
  `exclusiveMinimum: true`;
- int-or-string quantities take controller-gen's form;
- an optional object whose model has a default factory gets `default: {}`, so the API
  server fills in its nested defaults and `kubectl get -o yaml` shows the effective spec;
- `config` objects stay free-form (`x-kubernetes-preserve-unknown-fields`), declaring only
  the few keys that a CEL rule must read (CEL cannot see undeclared keys).
Anything else (a union, `oneOf`, ...) stops the generator: a new construct in the spec
needs a decision here, not a silently wrong CRD.

The cross-field rules of the spec (spec.CROSS_FIELD_RULES) are mirrored as CEL
`x-kubernetes-validations` on the object each rule reads, so the API server refuses what
`kubetrade run` refuses, with the same advice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml
from pydantic import BaseModel

from kubetrade.operator.status import SessionStatus
from kubetrade.runner import spec

Obj = dict[str, Any]

PLURAL: Final = "livetradingsessions"
SINGULAR: Final = "livetradingsession"
SHORT_NAME: Final = "lts"
CATEGORY: Final = "trading"
CRD_NAME: Final = f"{PLURAL}.{spec.GROUP}"

_DROPPED_KEYS: Final = frozenset({"title", "$schema", "$defs"})


class SchemaError(Exception):
    """The spec's JSON schema holds a construct this generator does not translate."""


# ---------------------------------------------------------------- CEL mirrors


@dataclass(frozen=True, slots=True)
class CelRule:
    """One x-kubernetes-validations entry, placed on the object at `scope`."""

    name: str  # the spec.Rule it mirrors, or a rule of its own
    scope: str  # YAML path of the object it sits on, e.g. spec.trading
    rule: str
    message_expression: str | None = None
    message: str | None = None
    field_path: str | None = None
    reason: str = "FieldValueInvalid"
    replaces: tuple[str, ...] = ()  # keywords of the scope's schema this rule says better

    def render(self) -> Obj:
        entry: Obj = {"rule": self.rule}
        if self.message_expression:
            entry["messageExpression"] = self.message_expression
        if self.message:
            entry["message"] = self.message
        if self.field_path:
            entry["fieldPath"] = self.field_path
        entry["reason"] = self.reason
        return entry


def _default(model: type[BaseModel], field: str) -> Any:
    return model.model_fields[field].default


_INITIAL_BACKOFF: Final = float(_default(spec.BinanceMarketDataConfig, "initial_backoff"))
_MAX_BACKOFF: Final = float(_default(spec.BinanceMarketDataConfig, "max_backoff"))


def _cel_string(text: str) -> str:
    """A CEL string literal (raw, single-quoted) holding `text`."""
    if "'" in text:
        raise SchemaError(f"cannot quote {text!r} as a raw CEL string")
    return f"r'{text}'"


# The routes to real money (spec.TradingSpec.is_live, spec.venues), as CEL over `self`
# = spec.trading. CEL sees only declared config keys: restUrl and port are; a URL inside
# ccxt's free-form options is not, and is refused by the runner's own check, which the
# operator runs before it creates a pod.
_LIVE_PROVIDER: Final = "self.provider in ['binance-live', 'ibkr-live']"
_OFF_SANDBOX: Final = (
    "(self.provider == 'ccxt' && has(self.config) && has(self.config.sandbox)"
    " && !self.config.sandbox)"
)


# A paper provider's restUrl leads off its testnet and test hosts (spec.venues: the
# same regular expression in both places).
_PAPER_URL_LEAVES: Final = (
    "(self.provider in ['binance-paper', 'ccxt'] && has(self.config)"
    " && has(self.config.restUrl) && !(has(self.config.sandbox) && !self.config.sandbox)"
    " && !self.config.restUrl.matches(self.provider == 'binance-paper'"
    f" ? {_cel_string(spec.url_pattern('binance-paper'))}"
    f" : {_cel_string(spec.url_pattern('ccxt'))}))"
)
_IBKR_LIVE_PORT: Final = (
    "(self.provider == 'ibkr-paper' && has(self.config) && has(self.config.port)"
    f" && self.config.port in {sorted(spec.IBKR_LIVE_PORTS)!r})"
)


def _live_message() -> str:
    """The rule's message: a choice among fixed texts, by conditions the rule has settled.

    Fixed texts, not concatenations: CEL's cost estimate charges a concatenation for
    the longest string the schema allows, and the message runs only when the rule failed.
    """
    play = " is for play money, but spec.trading.config."
    confirm = ", which can be a live venue trading real money; set spec.trading.confirmLive:"
    paper_url = (
        "restUrl reaches a host that is not its testnet (point it at the venue's testnet or a"
        " loopback, localhost, *.localhost or *.test host)" + confirm + " true if you mean it"
    )
    live = " trades real money; set spec.trading.confirmLive: true to confirm"
    choices = [
        (
            f"self.provider == '{provider}' && has(self.config) && has(self.config.restUrl)"
            " && !(has(self.config.sandbox) && !self.config.sandbox)",
            f"provider '{provider}'{play}{paper_url}",
        )
        for provider in ("binance-paper", "ccxt")
    ]
    choices.append(
        (
            "self.provider == 'ibkr-paper'",
            f"provider 'ibkr-paper'{play}port is a live port (use the paper port (7497 for TWS,"
            f" 4002 for IB Gateway)){confirm} true if you mean it",
        )
    )
    choices.append(("self.provider == 'ccxt'", f"provider 'ccxt' with config.sandbox: false{live}"))
    choices.append(("self.provider == 'binance-live'", f"provider 'binance-live'{live}"))
    text = f"'provider \\'ibkr-live\\'{live}'"
    for condition, message in reversed(choices):
        text = f"{condition} ? {_cel_quote(message)} : {text}"
    return text


def _cel_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_LIVE_MESSAGE: Final = _live_message()

# `has()` guards every optional field: CEL errors on reading an absent one.
CEL_RULES: Final[tuple[CelRule, ...]] = (
    CelRule(
        name=spec.ONE_STRATEGY_SOURCE.name,
        scope=spec.ONE_STRATEGY_SOURCE.scope,
        rule="[has(self.path), has(self.configMapRef), has(self.oci)].filter(set, set).size() == 1",
        message="set exactly one of spec.strategy.path (local runs), configMapRef or oci"
        " (in Kubernetes) to say where the strategy's .wasm comes from",
    ),
    CelRule(
        name=spec.LIVE_TRADING_CONFIRMED.name,
        scope=spec.LIVE_TRADING_CONFIRMED.scope,
        rule=f"!({_LIVE_PROVIDER} || {_OFF_SANDBOX} || {_PAPER_URL_LEAVES} || {_IBKR_LIVE_PORT})"
        " || (has(self.confirmLive) && self.confirmLive)",
        message_expression=_LIVE_MESSAGE,
        field_path=".confirmLive",
        reason="FieldValueForbidden",
    ),
    CelRule(
        name=spec.LIVE_STRATEGY_PINNED.name,
        scope=spec.LIVE_STRATEGY_PINNED.scope,
        rule="!(has(self.trading.confirmLive) && self.trading.confirmLive)"
        " || !has(self.strategy.oci)"
        f" || self.strategy.oci.reference.matches({_cel_string(spec.OCI_PINNED)})",
        message="a session that can trade real money (spec.trading.confirmLive: true) runs"
        " exactly the strategy it was tested with: pin spec.strategy.oci.reference by digest,"
        " <repository>@sha256:<digest> (`kubetrade strategy push` prints it)",
        field_path=".strategy.oci.reference",
    ),
    CelRule(
        name=spec.WARMUP_WITHIN_CACHE.name,
        scope=spec.WARMUP_WITHIN_CACHE.scope,
        rule="!has(self.warmupBars) || !has(self.marketDataCacheSize)"
        " || self.warmupBars <= self.marketDataCacheSize",
        message="warmupBars exceeds marketDataCacheSize, so the cache cannot hold the warm-up"
        " window; lower spec.engine.warmupBars or raise spec.engine.marketDataCacheSize",
        field_path=".warmupBars",
    ),
    CelRule(
        name=spec.REPLAY_FORMAT_KNOWN.name,
        scope=spec.REPLAY_FORMAT_KNOWN.scope,
        rule="!has(self.path) || (has(self.format) && self.format != 'auto')"
        " || ['.csv', '.parquet', '.pq'].exists(ext, self.path.lowerAscii().endsWith(ext))",
        message_expression='"cannot tell the format of \'" + self.path + "\' from its'
        ' extension (.csv, .parquet or .pq); set format: csv or format: parquet"',
        field_path=".format",
    ),
    CelRule(
        name=spec.BACKOFF_ORDERED.name,
        scope=spec.BACKOFF_ORDERED.scope,
        rule=f"(has(self.maxBackoff) ? self.maxBackoff : {_MAX_BACKOFF!r})"
        f" >= (has(self.initialBackoff) ? self.initialBackoff : {_INITIAL_BACKOFF!r})",
        message="maxBackoff is below initialBackoff; raise maxBackoff or lower initialBackoff",
        field_path=".maxBackoff",
    ),
    CelRule(
        name="symbols-not-empty",
        scope="spec.symbols",
        rule="self.size() > 0",
        message="list at least one symbol to trade, e.g. symbols: [BTCUSDT]",
        reason="FieldValueRequired",
        replaces=("minItems",),
    ),
    CelRule(
        # A claim's class cannot change and its size only grows where its class allows: the
        # operator makes the claim from these once and never edits them.
        name="storage-fixed",
        scope="spec.storage",
        rule="(has(self.size) ? string(self.size) : '') == (has(oldSelf.size)"
        " ? string(oldSelf.size) : '') && (has(self.storageClassName) ? self.storageClassName"
        " : '') == (has(oldSelf.storageClassName) ? oldSelf.storageClassName : '')",
        message="spec.storage.size and storageClassName are fixed once the session's claim"
        " (<session>-data) is made; to grow the volume, resize the claim itself (where its"
        " StorageClass allows expansion)",
        reason="FieldValueForbidden",
    ),
    CelRule(
        name="name-is-dns-label",
        scope="",
        rule="self.metadata.name.size() <= 63"
        " && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
        message="metadata.name: a session name is a DNS label, at most 63 lowercase letters,"
        " digits and '-' (it names the runner pod and its labels)",
    ),
)

# Keys of free-form `config` objects that a CEL rule reads: declared so CEL can see them.
_DECLARED_CONFIG_KEYS: Final[Mapping[str, Obj]] = {
    "spec.trading.config": {
        "sandbox": {"type": "boolean"},
        "restUrl": {"type": "string", "maxLength": 512},
        "port": {"type": "integer"},
    },
    "spec.marketData.config": {
        "path": {"type": "string"},
        "format": {"type": "string"},
        "initialBackoff": {"type": "number"},
        "maxBackoff": {"type": "number"},
    },
}

# ------------------------------------------------------- JSON schema -> structural


def _nullable_member(node: Obj) -> Obj | None:
    """X for `anyOf: [X, {type: null}]`, else None."""
    members = node.get("anyOf")
    if not isinstance(members, list) or {"type": "null"} not in members or len(members) != 2:
        return None
    other: Obj = next(m for m in members if m != {"type": "null"})
    return other


def _structural(node: Obj, defs: Mapping[str, Obj], path: str) -> Obj:
    if "$ref" in node:
        target = defs[node["$ref"].removeprefix("#/$defs/")]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _structural({**target, **rest}, defs, path)
    member = _nullable_member(node)
    if member is not None:
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        merged = _structural({**member, **rest}, defs, path)
        return {**merged, "nullable": True}
    if node.get("x-kubernetes-int-or-string"):
        patterns = [m["pattern"] for m in node.get("anyOf", []) if "pattern" in m]
        out: Obj = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
        if patterns:
            out["pattern"] = patterns[0]
        # A quantity with a default (spec.storage.size) keeps it, and its description.
        kept = {k: node[k] for k in ("description", "default") if node.get(k) is not None}
        return {**out, "x-kubernetes-int-or-string": True, **kept}
    unsupported = {"anyOf", "oneOf", "allOf", "not", "const", "$ref"} & node.keys()
    if unsupported:
        raise SchemaError(f"{path or '<root>'}: no structural form for {sorted(unsupported)}")
    out = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or (key == "default" and value is None):
            continue
        if key == "additionalProperties" and value is False:
            continue  # the API server prunes (and kubectl's strict validation refuses) unknown keys
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out[key.replace("exclusiveM", "m")] = value
            out[key] = True
        elif key == "properties":
            out[key] = {
                name: _structural(child, defs, f"{path}.{name}".lstrip("."))
                for name, child in value.items()
            }
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value, defs, f"{path}[]")
        else:
            out[key] = value
    _default_optional_objects(out)
    if path in _DECLARED_CONFIG_KEYS:
        out["properties"] = dict(_DECLARED_CONFIG_KEYS[path])
    return out


def _default_optional_objects(node: Obj) -> None:
    # An optional object property without a default comes from a default_factory: give it
    # `{}` so the API server applies the defaults nested inside it.
    required = set(node.get("required", ()))
    for name, child in node.get("properties", {}).items():
        is_object = child.get("type") == "object" and not child.get("nullable")
        if name not in required and is_object and "default" not in child:
            child["default"] = {}


def _attach_rules(root: Obj) -> None:
    for cel in CEL_RULES:
        node = root
        for part in filter(None, cel.scope.split(".")):
            node = node["properties"][part]
        for keyword in cel.replaces:
            node.pop(keyword, None)
        node.setdefault("x-kubernetes-validations", []).append(cel.render())


def _model_schema(model: type[BaseModel]) -> tuple[Obj, Obj]:
    schema = model.model_json_schema(by_alias=True, schema_generator=spec.DocumentSchema)
    return schema, schema.get("$defs", {})


def openapi_schema() -> Obj:
    """The structural openAPIV3Schema of the CRD's one version."""
    document, defs = _model_schema(spec.LiveTradingSession)
    status, status_defs = _model_schema(SessionStatus)
    root: Obj = {
        "type": "object",
        "description": document.get("description", ""),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _structural(document["properties"]["spec"], defs, "spec"),
            "status": _structural(status, status_defs, "status"),
        },
    }
    _attach_rules(root)
    return root


PRINTER_COLUMNS: Final[tuple[Obj, ...]] = (
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Symbols", "type": "string", "jsonPath": ".spec.symbols"},
    {"name": "Strategy", "type": "string", "jsonPath": ".status.strategy"},
    {"name": "Trading", "type": "string", "jsonPath": ".spec.trading.provider"},
    {"name": "Real-Money", "type": "boolean", "jsonPath": ".status.realMoney"},
    {"name": "Digest", "type": "string", "jsonPath": ".status.strategyDigest", "priority": 1},
    {
        "name": "Rollout",
        "type": "string",
        "jsonPath": ".status.lastReconciledSpec.state",
        "priority": 1,
    },
    {"name": "Bars", "type": "integer", "jsonPath": ".status.summary.bars", "priority": 1},
    {"name": "Equity", "type": "number", "jsonPath": ".status.summary.equity", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)


def crd() -> Obj:
    """The CustomResourceDefinition as an object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": spec.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": spec.KIND,
                "listKind": f"{spec.KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": [SHORT_NAME],
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": spec.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(PRINTER_COLUMNS),
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


_HEADER: Final = (
    "# Generated by `kubetrade crd` from runner/spec/ and operator/; do not edit.\n"
    "# Regenerate: PYTHONSAFEPATH=1 .venv/bin/kubetrade crd"
    " > crds/livetradingsessions.kubetrade.io.yaml\n"
)


def render_crd() -> str:
    """The CRD as YAML text, exactly as committed in crds/."""
    body = yaml.safe_dump(crd(), sort_keys=False, width=1_000_000, allow_unicode=True)
    return _HEADER + body
