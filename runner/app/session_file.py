"""Loading a LiveTradingSession from a file, a document or command-line flags.

Everything that fails here fails with a SessionError whose text a user can act
on without reading a traceback:

    invalid session examples/sma.yaml:
      spec.trading.confirmLive: provider 'binance-live' trades real money; set ...
      spec.marketData.config.sped: unknown key 'sped'; did you mean 'speed'? ...

Paths are the document's own (camelCase keys, `[i]` for list items). YAML is
read the way the Kubernetes API server reads it (timestamps stay strings), and
duplicate keys are refused instead of silently keeping the last one.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import yaml
from pydantic import ValidationError

from kubetrade.runner.spec import API_VERSION, GROUP, KIND, LiveTradingSession

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a session, at a document path ("" for the document as a whole)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SessionError(Exception):
    """A session that does not load; str() is the multi-line message for the user."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        super().__init__(source, tuple(problems))
        self.source = source
        self.problems = tuple(problems)

    def __str__(self) -> str:
        lines = [f"invalid session {self.source}:"]
        lines.extend(f"  {problem}" for problem in self.problems)
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class LoadedSession:
    """A validated session and the directory its relative paths are relative to."""

    session: LiveTradingSession
    path: Path | None  # the session file; None when built from command-line flags
    base_dir: Path

    def resolve(self, path: str | Path) -> Path:
        """A path as written in the session, made absolute against base_dir."""
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self.base_dir / candidate


def load_session(path: Path | str) -> LoadedSession:
    """Read, parse and validate a session file."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as handle:  # no more than the limit, whatever the file holds
            raw = handle.read(MAX_DOCUMENT_BYTES + 4)
    except OSError as exc:
        problem = Problem("", f"cannot read the file: {exc.strerror or exc}")
        raise SessionError(source, [problem]) from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise SessionError(source, [_too_big(len(raw), "bytes")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = Problem("", f"not UTF-8 text (bad byte at offset {exc.start}); expected YAML")
        raise SessionError(source, [problem]) from None
    session = parse_session(text, source=source)
    absolute = path.absolute()
    return LoadedSession(session=session, path=absolute, base_dir=absolute.parent)


def parse_session(text: str, *, source: str) -> LiveTradingSession:
    """Parse and validate the YAML (or JSON) text of one LiveTradingSession document."""
    document = _load_yaml(text, source=source, what="session")
    if document is None:
        raise SessionError(
            source,
            [
                Problem(
                    "",
                    "the document is empty; expected a LiveTradingSession"
                    f" (apiVersion: {API_VERSION}, kind: {KIND}, metadata, spec)",
                )
            ],
        )
    return validate_document(document, source=source)


def validate_document(document: object, *, source: str) -> LiveTradingSession:
    """Validate an already parsed document (e.g. an object read from the API server)."""
    if not isinstance(document, Mapping):
        raise SessionError(
            source,
            [
                Problem(
                    "",
                    "expected a mapping with apiVersion, kind, metadata and spec at the top"
                    f" level, got {_kind_of(document)}",
                )
            ],
        )
    # A wrong apiVersion or kind means this is some other document: its other
    # differences from a session would only bury the one message that matters.
    problems = _type_problems(document) or _non_finite_problems(document)
    if problems:
        raise SessionError(source, problems)
    try:
        return LiveTradingSession.model_validate(document)
    except ValidationError as exc:
        raise SessionError(source, describe_errors(exc)) from None


def session_from_flags(
    *,
    strategy_wasm: str | Path,
    market_data_provider: str,
    trading_provider: str,
    symbols: str | Sequence[str],
    interval: str = "1m",
    strategy_config: str | Path | None = None,
    market_data_config: str | Path | None = None,
    trading_config: str | Path | None = None,
    name: str = "cli-session",
    confirm_live: bool = False,
    base_dir: Path | None = None,
) -> LoadedSession:
    """Build a session from the command-line flag form, validated like a session file.

    `symbols` is "A,B" or a list; the three config arguments name JSON or YAML
    files holding a mapping. Relative paths, both here and inside those files,
    are relative to `base_dir` (the current directory by default).
    """
    base = (base_dir or Path.cwd()).absolute()
    problems: list[Problem] = []
    configs: dict[str, dict[str, Any]] = {}
    for flag, file in (
        ("--strategy-config", strategy_config),
        ("--market-data-config", market_data_config),
        ("--trading-config", trading_config),
    ):
        if file is None:
            configs[flag] = {}
            continue
        try:
            configs[flag] = _load_config_file(base / file, flag=flag, shown=os.fspath(file))
        except SessionError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SessionError("from command-line flags", problems)

    if isinstance(symbols, str):
        symbols = [part.strip() for part in symbols.split(",") if part.strip()]
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "symbols": list(symbols),
            "interval": interval,
            "strategy": {"path": str(strategy_wasm), "config": configs["--strategy-config"]},
            "marketData": {
                "provider": market_data_provider,
                "config": configs["--market-data-config"],
            },
            "trading": {
                "provider": trading_provider,
                "config": configs["--trading-config"],
                "confirmLive": confirm_live,
            },
        },
    }
    try:
        session = validate_document(document, source="from command-line flags")
    except SessionError as exc:
        raise SessionError(exc.source, [_with_flag(problem) for problem in exc.problems]) from None
    return LoadedSession(session=session, path=None, base_dir=base)


# ------------------------------------------------------------------ error text

_PLAIN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def describe_errors(exc: ValidationError) -> list[Problem]:
    """One Problem per validation error, located by document path."""
    problems: list[Problem] = []
    for error in exc.errors():
        problem = Problem(format_path(error["loc"]), _message(error))
        if problem not in problems:
            problems.append(problem)
    return problems


def format_path(loc: Sequence[str | int]) -> str:
    """A pydantic location as a document path: spec.symbols[1], metadata.labels["a/b"]."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":  # pydantic's marker for "the key itself", not its value
            path += " (key)"
        elif _PLAIN_KEY.fullmatch(part):
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part)}]"
    return path


def _message(error: ErrorDetails) -> str:
    if "url" not in error:  # only pydantic's own error types link to its documentation
        return error["msg"]  # ours: already says what is wrong and how to fix it
    if error["type"] == "missing":
        return "is required but missing"
    if error["type"] == "too_short" and error.get("ctx", {}).get("min_length") == 1:
        return "must not be empty"
    if error["type"] == "bool_type":
        # Booleans are strict, as in the API server: "false", "no" or 0 never mean false
        # silently, and nothing but an unquoted true confirms real money.
        return f"must be true or false, unquoted (got {_show(error['input'])})"
    message = error["msg"].removeprefix("Value error, ")
    value = error["input"]
    if value is None or isinstance(value, str | int | float | bool):
        message += f" (got {_show(value)})"
    return message


def _show(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _non_finite_problems(document: object) -> list[Problem]:
    """Every .inf or .nan anywhere in the document, free-form configs included, and any
    nesting beyond MAX_DEPTH (a document from the API server was never parsed here).

    Iterative, so no document can exhaust the interpreter's stack.
    """
    problems = []
    stack: list[tuple[object, tuple[str | int, ...]]] = [(document, ())]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            shown = ".nan" if math.isnan(value) else "-.inf" if value < 0 else ".inf"
            problems.append(Problem(format_path(loc), f"must be a finite number, not {shown}"))
        elif isinstance(value, Mapping | list):
            if len(loc) >= MAX_DEPTH:
                return [Problem(format_path(loc), f"nested deeper than {MAX_DEPTH} levels")]
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            for key, item in items:
                stack.append((item, (*loc, key if isinstance(key, int) else str(key))))
    return sorted(problems, key=lambda problem: problem.path)


def _kind_of(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def _type_problems(document: Mapping[Any, Any]) -> list[Problem]:
    problems = []
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if api_version is None:
        problems.append(
            Problem("apiVersion", f"is required but missing; set apiVersion: {API_VERSION}")
        )
    elif api_version != API_VERSION:
        if isinstance(api_version, str) and api_version.startswith(f"{GROUP}/"):
            hint = f"this kubetrade reads {API_VERSION} only"
        else:
            hint = f"set apiVersion: {API_VERSION}"
        problems.append(
            Problem("apiVersion", f"expected {API_VERSION}, got {_show(api_version)}; {hint}")
        )
    if kind is None:
        problems.append(Problem("kind", f"is required but missing; set kind: {KIND}"))
    elif kind != KIND:
        if isinstance(kind, str) and kind.lower() == KIND.lower():
            hint = f"kind is case-sensitive: set kind: {KIND}"
        else:
            hint = "this document is not a kubetrade session"
        problems.append(Problem("kind", f"expected {KIND}, got {_show(kind)}; {hint}"))
    return problems


# Flag form: which flag a document path came from, longest prefix first.
_FLAGS: Final = (
    ("spec.strategy.config", "--strategy-config"),
    ("spec.strategy.path", "--strategy-wasm"),
    ("spec.marketData.config", "--market-data-config"),
    ("spec.marketData.provider", "--market-data-provider"),
    ("spec.trading.config", "--trading-config"),
    ("spec.trading.provider", "--trading-provider"),
    ("spec.trading.confirmLive", "--confirm-live"),
    ("spec.symbols", "--symbols"),
    ("spec.interval", "--interval"),
    ("metadata.name", "--name"),
)


def _with_flag(problem: Problem) -> Problem:
    for prefix, flag in _FLAGS:
        rest = problem.path.removeprefix(prefix)
        if rest != problem.path and (not rest or rest[0] in ".[ "):
            return Problem(f"{problem.path} (from {flag})", problem.message)
    return problem


# ------------------------------------------------------------------------ YAML


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading YAML the way the Kubernetes API server does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        # A duplicate key is almost always a mistake (two `config:` blocks, say), and
        # PyYAML would silently keep the last one.
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # PyYAML reports unhashable keys itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {seen[key]}); keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


# Timestamps stay strings, as they do in Kubernetes: a strategy's config must stay JSON.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


# Bounds on a document, checked on the parser's events before anything is built: a
# session comes from whoever may create sessions, and a small YAML file can describe an
# enormous or endlessly deep object. 1.5 MiB is the API server's own request limit.
MAX_DOCUMENT_BYTES: Final = 1_572_864
MAX_DEPTH: Final = 64  # nesting of mappings and lists
MAX_NODES: Final = 100_000  # scalars, mappings and lists together
MAX_NUMBER_DIGITS: Final = 40  # an integer or float literal; longer ones are strings in error
_NUMBER: Final = re.compile(r"[-+]?(\.?[0-9][0-9_]*)([.eE][-+0-9_.eE]*)?")


def _too_big(size: int, unit: str) -> Problem:
    shown = f"{size:,}" if size <= MAX_DOCUMENT_BYTES + 3 else f"over {MAX_DOCUMENT_BYTES:,}"
    return Problem(
        "",
        f"the document is {shown} {unit}; at most {MAX_DOCUMENT_BYTES:,} (1.5 MiB, the API"
        " server's limit) are read: move bulky data out of the session",
    )


def _bounds_problem(text: str) -> Problem | None:
    """Why `text` is too big, deep or tricky to build as a document, or None."""
    if len(text) > MAX_DOCUMENT_BYTES:
        return _too_big(len(text), "characters")
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_Loader):
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.AliasEvent):
            # An alias is a reference: a few of them nest into billions of nodes.
            return Problem(
                "",
                f"line {line}: YAML aliases (*{event.anchor}) are not accepted in a session;"
                " write the value out where it is used",
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            nodes += 1
            if depth > MAX_DEPTH:
                return Problem("", f"line {line}: nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.ScalarEvent):
            nodes += 1
            value = event.value
            if event.style is None and len(value) > MAX_NUMBER_DIGITS and _NUMBER.fullmatch(value):
                return Problem(
                    "",
                    f"line {line}: a number of {len(value)} characters; numbers have at most"
                    f" {MAX_NUMBER_DIGITS} (quote it if it is text)",
                )
        if nodes > MAX_NODES:
            return Problem("", f"more than {MAX_NODES:,} values; a session is far smaller")
    return None


def _load_yaml(text: str, *, source: str, what: str) -> object:
    """The one document in `text` (None if there is none), or a SessionError."""
    try:
        problem = _bounds_problem(text)
        if problem is not None:
            raise SessionError(source, [problem])
        documents = [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]
    except yaml.YAMLError as exc:
        raise SessionError(source, [_yaml_problem(exc)]) from None
    if len(documents) > 1:
        raise SessionError(
            source,
            [
                Problem(
                    "",
                    f"found {len(documents)} YAML documents; a {what} file holds exactly one",
                )
            ],
        )
    return documents[0] if documents else None


def _yaml_problem(exc: yaml.YAMLError) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        message = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem or 'invalid YAML'}"
        if exc.context:
            message += f" ({exc.context}"
            if exc.context_mark is not None and exc.context_mark.line != mark.line:
                message += f" at line {exc.context_mark.line + 1}"
            message += ")"
        return Problem("", message)
    return Problem("", f"invalid YAML: {exc}")


def _load_config_file(path: Path, *, flag: str, shown: str) -> dict[str, Any]:
    where = f"{flag} {shown}"
    try:
        with path.open("rb") as handle:  # no more than the limit, whatever the file holds
            raw = handle.read(MAX_DOCUMENT_BYTES + 4)
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise SessionError(where, [Problem(where, str(_too_big(len(raw), "bytes")))])
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SessionError(where, [Problem(where, f"cannot read the file: {reason}")]) from None
    try:
        document = _load_yaml(text, source=where, what="config")
    except SessionError as exc:
        raise SessionError(where, [Problem(where, str(p)) for p in exc.problems]) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise SessionError(
            where, [Problem(where, f"expected a JSON or YAML mapping, got {_kind_of(document)}")]
        )
    return document
