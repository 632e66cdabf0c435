"""SIGTERM or Ctrl-C at any moment of the bar loop is a clean stop after the bar in hand.

A Python signal handler runs between any two bytecodes of the main thread, which is the
bar loop's: also just after the wait for the next bar returned one, before the loop has
moved on. The stop must then still be a flag and nothing else (a cancel of the running
bar task lands on its next await: a venue call, a journal commit, the shutdown), or the
runner ends with CancelledError and exit 1 instead of finishing the bar and exiting 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_cli import session_file  # the CLI tests' replay session: the sample CSV, SMA

from kubetrade.runner.app import cli
from kubetrade.runner.app.assemble import RunOptions, build_engine
from kubetrade.runner.app.session_file import load_session
from kubetrade.runner.domain import Bar
from kubetrade.runner.marketdata.replay import ReplayProvider

SIGNALLED_BAR = 40


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("journaled", [False, True], ids=["no-state-dir", "state-dir"])
def test_a_signal_the_moment_a_bar_arrives_stops_cleanly_after_that_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int, journaled: bool
) -> None:
    replay = ReplayProvider.stream

    async def signalling(self: ReplayProvider) -> AsyncIterator[Bar]:
        count = 0
        async for bar in replay(self):
            count += 1
            if count == SIGNALLED_BAR:
                # The handler runs at the next bytecode: inside the wait for this bar.
                os.kill(os.getpid(), signum)
            yield bar

    monkeypatch.setattr(ReplayProvider, "stream", signalling)
    state_dir = tmp_path / "state" if journaled else None
    engine = build_engine(load_session(session_file(tmp_path)), RunOptions(state_dir=state_dir))
    before = signal.getsignal(signum)
    summary, error = asyncio.run(cli._drive(engine, lambda event: None, None))
    assert error is None
    assert summary.bars == SIGNALLED_BAR  # the bar in hand finished, no other began
    assert signal.getsignal(signum) is before  # the caller's handler is back
