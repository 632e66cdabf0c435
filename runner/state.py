"""Moved: a session's state and its rules live in `kubetrade.runner.session` now.

The names stay importable from here until the layout change that groups the
runner's modules by role (issue 17, item 6) updates the modules that use them.
"""

from kubetrade.runner.session.core import HostCallError, StrategyCache, client_order_id
from kubetrade.runner.session.core import Session as SessionState

__all__ = ["HostCallError", "SessionState", "StrategyCache", "client_order_id"]
