"""What only some venues and feeds can do is declared on their protocols, with defaults.

The engine calls each capability of a Broker (brackets, refresh_account,
resume_market) and of a MarketDataProvider (health, resume_after) unconditionally;
every adapter subclasses its protocol, so one without the capability gets the default
that suits it instead of an AttributeError in the middle of a restart.
"""

from __future__ import annotations

import asyncio

from kubetrade.runner.brokers.base import Broker
from kubetrade.runner.brokers.ccxt.broker import CcxtBroker
from kubetrade.runner.brokers.ibkr.broker import IbkrBroker
from kubetrade.runner.brokers.paper import PaperBroker
from kubetrade.runner.domain import Bar
from kubetrade.runner.marketdata.base import MarketDataProvider
from kubetrade.runner.marketdata.feed import LiveFeed
from kubetrade.runner.marketdata.replay import ReplayProvider
from kubetrade.runner.marketdata.synthetic import SyntheticProvider

BAR = Bar("BTCUSDT", 60_000, 100.0, 101.0, 99.0, 100.5, 3.0)


def test_every_adapter_subclasses_its_protocol() -> None:
    for broker in (PaperBroker, CcxtBroker, IbkrBroker):
        assert Broker in broker.__mro__, broker
    for provider in (ReplayProvider, SyntheticProvider, LiveFeed):
        assert MarketDataProvider in provider.__mro__, provider


def test_only_the_paper_venue_holds_brackets() -> None:
    assert PaperBroker().supports_brackets
    assert not CcxtBroker.supports_brackets
    assert not IbkrBroker.supports_brackets


def test_a_venue_without_the_capabilities_gets_the_defaults() -> None:
    paper = PaperBroker(initial_cash=500.0)
    # The protocol's own bodies: an account that is always current, a market of its own.
    assert asyncio.run(Broker.refresh_account(paper)) == paper.account()
    assert asyncio.run(Broker.resume_market(paper, [BAR])) == []
    assert paper.last_bar == {}  # the default showed the paper venue nothing


def test_replayed_and_generated_data_have_no_connection() -> None:
    synthetic = SyntheticProvider(symbols=("BTCUSDT",), interval_ms=60_000, start_time_ms=0, bars=1)
    assert synthetic.health is None
    assert MarketDataProvider.health is None
    MarketDataProvider.resume_after(synthetic, {"BTCUSDT": 0})  # the default: nothing to skip
