"""Which argo-trading engine versions kubetrade runs: the compatibility policy.

argo-trading's SDK (since 1.x) exports ``trading_strategy_engine_version``: the
release of argo-trading the strategy was built against, e.g. ``"v1.24.0"``, or
``"main"`` for a development build. Older SDKs and kubetrade's own SDK do not
export it.

argo-trading's own engine refuses a strategy whose major *or minor* version
differs from the engine's, because it ships engine and SDK together. kubetrade
is not an argo-trading release: it implements the plugin ABI, and checks that
ABI structurally when it loads a module:

* ``trading_strategy_api_version`` must be ``abi.API_VERSION`` (1);
* every host function the strategy imports must be one kubetrade implements,
  with the ABI's signature (a function added in a later minor release is
  refused by name, at load time, instead of failing mid-session);
* messages are protobuf, so fields added within a major version are ignored
  by whichever side does not know them.

So the engine version only has to rule out what those checks cannot see: an
argo-trading major release is allowed to change the meaning of the ABI
without changing its shape. The policy:

* no export, an empty string, or ``main``: accepted (logged);
* a version whose major is ``SUPPORTED_MAJOR`` (any 1.x.y, with or without a
  ``v``, pre-release or build suffix): accepted and logged;
* another major: refused with a StrategyLoadError saying what to rebuild;
* text with no version number in it: accepted with a warning, since the ABI
  checks above have already passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

#: The argo-trading major release whose strategies this host runs (plugin ABI version 1).
SUPPORTED_MAJOR: Final = 1
DEVELOPMENT: Final = "main"

_VERSION: Final = re.compile(r"(?<![\d.])v?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, slots=True)
class EngineVersion:
    text: str  # as the strategy reported it
    major: int | None  # None: no version number (absent, empty, "main", or free text)
    accepted: bool
    reason: str  # one line for the log or the load error
    unclear: bool = False  # accepted although it names no version: worth a warning


def check_engine_version(text: str) -> EngineVersion:
    """Apply the policy to what ``trading_strategy_engine_version`` returned."""
    stripped = text.strip()
    if not stripped:
        return EngineVersion(text, None, True, "the strategy does not report an engine version")
    if stripped == DEVELOPMENT:
        return EngineVersion(
            text, None, True, "built against an argo-trading development build ('main')"
        )
    match = _VERSION.search(stripped)
    if match is None:
        return EngineVersion(
            text,
            None,
            True,
            f"engine version {stripped!r} has no version number; accepted on the ABI checks",
            unclear=True,
        )
    major = int(match.group(1))
    if major != SUPPORTED_MAJOR:
        return EngineVersion(
            text,
            major,
            False,
            f"the strategy was built against argo-trading {stripped}, but this runner runs "
            f"strategies built against argo-trading {SUPPORTED_MAJOR}.x (plugin ABI version 1); "
            f"rebuild it with an argo-trading {SUPPORTED_MAJOR}.x SDK",
        )
    return EngineVersion(text, major, True, f"built against argo-trading {stripped}")
