"""`--log-format json`: one JSON object a line, with the session's context as fields;
secrets never in a line, whatever the format; the console format unchanged."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SAMPLE_CSV, SMA_WASM

from kubetrade.runner.credentials import load_credentials
from kubetrade.runner.telemetry import logformat

KUBETRADE = Path(sys.executable).parent / "kubetrade"
SECRET = "s3cr3t-7f3a9c-marker"


def session_file(tmp_path: Path) -> Path:
    path = tmp_path / "session.yaml"
    path.write_text(
        f"""
apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata: {{name: json-logs, namespace: trading}}
spec:
  symbols: [BTCUSDT]
  interval: 1m
  strategy: {{path: {SMA_WASM}, config: {{fastPeriod: 5, slowPeriod: 20, quantity: 0.05}}}}
  marketData: {{provider: replay, config: {{path: {SAMPLE_CSV}}}}}
  trading: {{provider: paper, config: {{initialCash: 10000}}}}
"""
    )
    return path


def test_a_run_logs_json_lines_with_its_context(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONSAFEPATH": "1", "KUBETRADE_LOG_FORMAT": "json"}
    result = subprocess.run(
        [str(KUBETRADE), "--log-level", "info", "run", "--no-http", "--max-bars", "400",
         "--state-dir", str(tmp_path / "state"), str(session_file(tmp_path))],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (result.stdout + result.stderr).splitlines() if line]
    assert lines and all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    for line in lines:
        assert (line["session"], line["namespace"]) == ("json-logs", "trading"), line
    events = [line for line in lines if line["logger"] == "kubetrade.events"]
    assert events and all(line["epoch"] == 1 for line in events)
    assert events[0]["message"] == "session started" and events[0]["symbols"] == ["BTCUSDT"]
    placed = [line for line in lines if line["message"] == "order placed"]
    filled = [line for line in lines if line["message"] == "order filled"]
    assert placed and filled
    first = placed[0]
    assert first["order_id"].startswith("kt") and first["order_id"].endswith("-1-1")
    assert first["bar_time"].startswith("2024-") and first["side"] in ("BUY", "SELL")
    assert filled[0]["order_id"] == first["order_id"]
    stopped = [line for line in lines if line["message"] == "session stopped"]
    assert len(stopped) == 1 and stopped[0]["summary"]["bars"] == 400
    assert not [line for line in lines if line["message"] == "bar"]  # no line per bar


def test_the_console_format_is_the_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBETRADE_LOG_FORMAT"}
    result = subprocess.run(
        [str(KUBETRADE), "run", "--no-http", "--max-bars", "300", str(session_file(tmp_path))],
        capture_output=True, text=True, env={**env, "PYTHONSAFEPATH": "1"}, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "session started: strategy" in result.stdout
    assert "placed   BUY" in result.stdout
    assert not result.stdout.lstrip().startswith("{")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_line_carries_a_secret(
    fmt: str, tmp_path: Path, captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A credential loaded as the runner loads them is redacted wherever it turns up...
    (tmp_path / "api_secret").write_text(SECRET + "\n")
    monkeypatch.setenv("KUBETRADE_BINANCE_PAPER_API_KEY", "key-0a1b2c3d4e")
    load_credentials("binance-paper", directory=tmp_path)
    logformat.configure("info", fmt, captured)
    log = logging.getLogger("kubetrade.test")
    log.warning("venue said: bad signature for %s", SECRET)
    log.info("request", extra={"order_id": "kt1-1-1", "url": f"https://x/?q=1&key={SECRET}"})
    try:
        raise RuntimeError(f"refused key-0a1b2c3d4e / {SECRET}")
    except RuntimeError:
        log.exception("submit failed")
    # ... and so is anything shaped like a credential, loaded or not.
    log.error('config {"apiKey": "AKIAEXAMPLE123", "secret": "abc123xyz"} token=tok-9f8e7d')
    log.error("Authorization: Bearer eyJhbGciOi.payload.sig")
    text = captured.getvalue()
    for leaked in (SECRET, "key-0a1b2c3d4e", "AKIAEXAMPLE123", "abc123xyz", "tok-9f8e7d",
                   "eyJhbGciOi"):  # fmt: skip
        assert leaked not in text, (leaked, text)
    assert text.count("***") >= 6
    if fmt == "json":
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert lines[1]["order_id"] == "kt1-1-1"
        assert "RuntimeError" in lines[2]["error"]
    else:
        assert " WARNING kubetrade.test: venue said: bad signature for ***" in text
