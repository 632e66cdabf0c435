"""What a strategy's failures raise: a failed call, or a module that cannot be used."""

from __future__ import annotations


class StrategyError(Exception):
    """The strategy returned an error string or trapped during one call."""

    def __init__(
        self,
        message: str,
        *,
        call: str,
        trapped: bool,
        host_function: str | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.call = call  # the export that failed, e.g. "trading_strategy_process_data"
        self.trapped = trapped  # False: the strategy returned an error string
        self.host_function = host_function  # set when a host function's failure caused the trap
        self.timed_out = timed_out  # stopped at the call deadline (a trap too)


class StrategyLoadError(Exception):
    """The module cannot be used: invalid, wrong ABI version, missing exports, or its
    start (``_initialize``) trapped. The message says what is wrong and how to fix it."""
