"""The engine-version policy: which argo-trading SDK builds load (see strategy/version.py)."""

from __future__ import annotations

import logging

import pytest
from test_strategy_host import RecordingApi, guest

from kubetrade.runner.strategy import StrategyLoadError, WasmStrategy
from kubetrade.runner.strategy.version import SUPPORTED_MAJOR, check_engine_version


def versioned(text: str, *, error: bool = False) -> bytes:
    kind = "err" if error else "ret"
    return guest(
        data={"version": text.encode()},
        extra=f'(func (export "trading_strategy_engine_version") (result i64) {{{kind}:version}})',
    )


@pytest.mark.parametrize("fast", [False, True], ids=["stock", "fast"])
@pytest.mark.parametrize(
    "text", ["v1.24.0", "1.2.0", "v1.0.0-rc.1+build.5", "main", "argo-sdk 1.4.2"]
)
def test_argo_trading_1x_and_development_builds_load(
    text: str, fast: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kubetrade.strategy"):
        strategy = WasmStrategy(versioned(text), RecordingApi(), session="s", fast=fast)
    assert strategy.engine_version == text
    assert any(
        r.levelno == logging.INFO and "[s] strategy engine version: built against" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize("fast", [False, True], ids=["stock", "fast"])
@pytest.mark.parametrize("text", ["v2.0.0", "0.9.1", "v10.1.0"])
def test_another_major_release_is_refused(text: str, fast: bool) -> None:
    with pytest.raises(StrategyLoadError) as info:
        WasmStrategy(versioned(text), RecordingApi(), fast=fast)
    message = str(info.value)
    assert f"built against argo-trading {text}" in message
    assert f"argo-trading {SUPPORTED_MAJOR}.x (plugin ABI version 1)" in message
    assert f"rebuild it with an argo-trading {SUPPORTED_MAJOR}.x SDK" in message


def test_a_version_without_a_number_loads_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="kubetrade.strategy"):
        strategy = WasmStrategy(versioned("nightly"), RecordingApi())
    assert strategy.engine_version == "nightly"
    (record,) = [r for r in caplog.records if "engine version" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "has no version number; accepted on the ABI checks" in record.getMessage()


def test_no_export_or_an_error_means_no_version(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="kubetrade.strategy"):
        assert WasmStrategy(guest(), RecordingApi()).engine_version == ""
        failing = WasmStrategy(versioned("no version here", error=True), RecordingApi())
    assert failing.engine_version == ""
    messages = [r.getMessage() for r in caplog.records]
    assert any("trading_strategy_engine_version failed: no version here" in m for m in messages)
    assert any("does not report an engine version" in m for m in messages)


def test_the_policy_on_its_own() -> None:
    assert check_engine_version("v1.24.0").major == 1
    assert check_engine_version(" v1.3 ").accepted
    assert check_engine_version("").major is None
    assert check_engine_version("main").accepted
    assert not check_engine_version("v2.0.0").accepted
    assert check_engine_version("v2.0.0").major == 2
    assert check_engine_version("release 1.2.3 (v3.0.0 engine)").major == 1  # the first number
