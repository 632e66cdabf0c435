"""The base of every object in the session document, and the cross-field rule type."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails, InitErrorDetails

from kubetrade.runner.spec.fields import fail, problem, relocated

if TYPE_CHECKING:
    from collections.abc import Callable

_M = TypeVar("_M")


@dataclass(frozen=True, slots=True)
class Rule(Generic[_M]):
    """A rule relating fields of one object of the document."""

    name: str  # stable id, e.g. for the CEL mirror and for tests
    scope: str  # YAML path of the object the rule reads
    field: str  # where a violation is reported, relative to scope
    check: Callable[[_M], str | None]  # the problem and its fix, or None when the rule holds


class Model(BaseModel):
    """Base of every object in the document: camelCase keys, unknown keys refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,  # a document that loads here must load in the API server
        serialize_by_alias=True,
        extra="forbid",
        allow_inf_nan=False,  # no .inf or .nan: JSON cannot carry them, and no limit is infinite
    )

    rules: ClassVar[tuple[Rule[Any], ...]] = ()

    @model_validator(mode="wrap")
    @classmethod
    def _name_unknown_keys(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # Pydantic only says "Extra inputs are not permitted"; someone with a typo needs
        # the key, the likely intended one, and the keys that are allowed.
        try:
            return handler(data)
        except ValidationError as exc:
            errors = exc.errors()
            if not any(_is_unknown_key(error) for error in errors):
                raise
            problems = [
                cls._unknown_key(error) if _is_unknown_key(error) else relocated(error)
                for error in errors
            ]
            raise fail(cls.__name__, problems) from None

    @classmethod
    def _unknown_key(cls, error: ErrorDetails) -> InitErrorDetails:
        key = str(error["loc"][0])
        allowed = [field.alias or name for name, field in cls.model_fields.items()]
        guess = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {guess[0]!r}? " if guess else ""
        # The key, not its value, goes in the error: the value may be a secret.
        return problem(
            error["loc"],
            "unknown_key",
            f"unknown key {key!r}; {hint}allowed keys: {', '.join(allowed)}",
            key,
        )

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        problems = [
            problem((rule.field,) if rule.field else (), rule.name, message, self)
            for rule in self.rules
            if (message := rule.check(self)) is not None
        ]
        if problems:
            raise fail(type(self).__name__, problems)
        return self


def _is_unknown_key(error: ErrorDetails) -> bool:
    # Only this object's own keys: nested objects have already renamed theirs.
    return error["type"] == "extra_forbidden" and len(error["loc"]) == 1
