"""`kubetrade run` as a user runs it: a real process, real files, real signals, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import ROOT, SAMPLE_CSV, SMA_WASM

KUBETRADE = Path(sys.executable).parent / "kubetrade"
SUMMARY_KEYS = {
    "bars",
    "orders",
    "fills",
    "rejected",
    "realized_pnl",
    "unrealized_pnl",
    "equity",
    "strategy_errors",
    "duration_s",
}


def run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBETRADE), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
        cwd=ROOT,
        check=False,
    )


def session_file(tmp_path: Path, *, speed: float = 0, extra: str = "") -> Path:
    path = tmp_path / "session.yaml"
    path.write_text(
        f"""
apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata: {{name: cli-test}}
spec:
  symbols: [BTCUSDT]
  interval: 1m
  strategy:
    path: {SMA_WASM}
    config: {{fastPeriod: 5, slowPeriod: 20, quantity: 0.05}}
  marketData:
    provider: replay
    config: {{path: {SAMPLE_CSV}, speed: {speed}}}
  trading:
    provider: paper
{extra}
"""
    )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_example_session_writes_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = run("run", "--no-http", "--summary-json", out, ROOT / "examples" / "session.yaml")
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert set(summary) == SUMMARY_KEYS
    assert summary["orders"] > 0 and summary["fills"] > 0
    assert summary["bars"] == 4980  # 5000 rows less the 20 warm-up bars
    assert "summary" in result.stdout and "placed" in result.stdout


def test_max_bars_stops_early(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = run(
        "run", "--no-http", "--max-bars", "250", "--summary-json", out, session_file(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["bars"] == 250


def test_flag_form_runs_the_same_session(tmp_path: Path) -> None:
    (tmp_path / "strategy.json").write_text('{"fastPeriod": 5, "slowPeriod": 20, "quantity": 0.05}')
    (tmp_path / "md.yaml").write_text(f"path: {SAMPLE_CSV}\n")
    flags_out, file_out = tmp_path / "flags.json", tmp_path / "file.json"
    result = run(
        "run", "--no-http", "--summary-json", flags_out,
        "--strategy-wasm", SMA_WASM, "--strategy-config", tmp_path / "strategy.json",
        "--market-data-provider", "replay", "--market-data-config", tmp_path / "md.yaml",
        "--trading-provider", "paper", "--symbols", "BTCUSDT", "--interval", "1m",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        run("run", "--no-http", "--summary-json", file_out, session_file(tmp_path)).returncode == 0
    )
    flags, file = json.loads(flags_out.read_text()), json.loads(file_out.read_text())
    for key in ("bars", "orders", "fills", "realized_pnl", "equity"):
        assert flags[key] == file[key], key


def test_malformed_session_is_refused_with_the_field_and_fix(tmp_path: Path) -> None:
    path = session_file(tmp_path, extra="    config: {initialCash: -5}\n")
    path.write_text(path.read_text().replace("interval: 1m", "interval: 7x"))
    result = run("run", "--no-http", path)
    assert result.returncode == 2
    assert "spec.trading.config.initialCash" in result.stderr
    assert "spec.interval" in result.stderr
    assert "Traceback" not in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: kubetrade.io/v1alpha1\nkind: [\n")
    result = run("run", "--no-http", broken)
    assert result.returncode == 2 and "line" in result.stderr and "Traceback" not in result.stderr


def test_missing_strategy_file_is_a_clear_error(tmp_path: Path) -> None:
    path = session_file(tmp_path)
    path.write_text(path.read_text().replace(str(SMA_WASM), str(tmp_path / "nope.wasm")))
    result = run("run", "--no-http", path)
    assert result.returncode == 2
    assert "spec.strategy.path" in result.stderr and "nope.wasm" in result.stderr


def test_schema_prints_the_session_json_schema() -> None:
    result = run("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    spec = schema["$defs"]["SessionSpec"]["properties"]
    assert {"symbols", "interval", "strategy", "marketData", "trading", "risk", "engine"} <= set(
        spec
    )
    assert "confirmLive" in schema["$defs"]["TradingSpec"]["properties"]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_sigterm_finishes_the_bar_and_exits_zero_while_serving_http(tmp_path: Path) -> None:
    # 3600 minutes of data a second: the 5000-bar file would take ~80 s.
    port = free_port()
    out = tmp_path / "out.json"
    proc = subprocess.Popen(
        [str(KUBETRADE), "run", "--http-port", str(port), "--summary-json", str(out),
         str(session_file(tmp_path, speed=3_600))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            try:
                code, body = _get(f"http://127.0.0.1:{port}/status")
                if code == 200 and json.loads(body)["bars"] >= 5:
                    status = json.loads(body)
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert status is not None, "the runner never reported bars on /status"
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        assert _get(f"http://127.0.0.1:{port}/readyz")[0] == 200
        code, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200
        assert 'kubetrade_bars_total{session="cli-test",symbol="BTCUSDT"}' in metrics
        assert "kubetrade_last_bar_time_seconds" in metrics
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    summary = json.loads(out.read_text())
    assert 5 <= summary["bars"] < 4980  # stopped early, after whole bars
    assert "summary" in stdout


@pytest.mark.parametrize("signum", [signal.SIGINT])
def test_ctrl_c_is_a_clean_stop_too(tmp_path: Path, signum: int) -> None:
    out = tmp_path / "out.json"
    proc = subprocess.Popen(
        [str(KUBETRADE), "run", "--no-http", "--summary-json", str(out),
         str(session_file(tmp_path, speed=600))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until the session is under way
        if "session started" in line:
            break
    time.sleep(1)
    proc.send_signal(signum)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert 0 < json.loads(out.read_text())["bars"] < 4980


@pytest.mark.parametrize("provider", ["binance-live", "ibkr-live"])
def test_live_provider_without_confirmation_does_not_start(tmp_path: Path, provider: str) -> None:
    path = session_file(tmp_path)
    path.write_text(path.read_text().replace("provider: paper", f"provider: {provider}"))
    result = run("run", "--no-http", path)
    assert result.returncode == 2
    assert "spec.trading.confirmLive" in result.stderr and "real money" in result.stderr
    assert "placed" not in result.stdout
