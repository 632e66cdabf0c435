"""Issue 16's proof: a real Prometheus scrapes real runners and the real operator, answers
every dashboard query, and fires and resolves the stall alert.

What runs, all on 127.0.0.1:
- Debian's prometheus (scripts/install-test-tools.sh), its own configuration and storage
  in a temporary directory, scraping every second and evaluating the chart's alert rules
  (rendered by helm, with a short grace and `for` so the test need not wait minutes);
- `kubetrade run` on a paced replay (4 bars a second) with a state directory and a daily
  loss limit that halts it, so rejections and a risk halt show; its data has an 80-minute
  hole (20 s at that pace): the runner stays up and serving but gets no bar, as with a
  venue that goes quiet, and the stall alert must fire, then resolve when bars resume;
- `kubetrade run` on live market data from the local Binance venue (tests/servers), 1 s
  bars in real time, for the stream-health series a replay has not;
- the operator (the e2e `operator` fixture, against the real kube-apiserver) serving one
  suspended session.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT, SMA_WASM, T0

from kubetrade.operator import dashboards

from .cluster import Cluster, wait_until
from .operator_process import Operator

pytestmark = pytest.mark.e2e

Obj = dict[str, Any]
KUBETRADE = Path(sys.executable).parent / "kubetrade"
ENV = {**os.environ, "PYTHONSAFEPATH": "1"}
SPEED = 240  # 1m bars at 4 a second
BEFORE_HOLE, HOLE_MINUTES, AFTER_HOLE = 100, 80, 400
STALLED = "KubetradeStreamStalled"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(command: list[str], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=ENV, **kw
        )


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _bars_with_a_hole(path: Path) -> Path:
    """1m bars of a seeded wave (the SMA strategy crosses often), with a hole in time."""
    lines = ["time,symbol,open,high,low,close,volume"]
    after = BEFORE_HOLE + HOLE_MINUTES
    minutes = [*range(BEFORE_HOLE), *range(after, after + AFTER_HOLE)]
    for minute in minutes:
        close = 60_000 * (1 + 0.01 * math.sin(minute / 7) + 0.004 * math.sin(minute * 1.3))
        lines.append(f"{T0 + minute * 60_000},BTCUSDT,{close},{close},{close},{close},1")
    path.write_text("\n".join(lines) + "\n")
    return path


def _session(path: Path, name: str, namespace: str, market_data: str, interval: str) -> Path:
    path.write_text(
        f"""
apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  symbols: [BTCUSDT]
  interval: {interval}
  strategy: {{path: {SMA_WASM}, config: {{fastPeriod: 3, slowPeriod: 8, quantity: 0.05}}}}
  marketData: {market_data}
  trading: {{provider: paper, config: {{initialCash: 10000, feeBps: 10}}}}
  risk: {{maxDailyLoss: 1}}
"""
    )
    return path


class Prometheus:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as reply:
            body = json.loads(reply.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[Obj]:
        data = self.api("query", query=expr)
        result: list[Obj] = data["result"]
        return result

    def alerts(self, name: str) -> list[Obj]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]


def _rules(directory: Path) -> Path:
    """The chart's PrometheusRule, rendered by helm, with a stall noticed in seconds."""
    build = subprocess.run(
        [str(ROOT / "scripts" / "build-helm.sh")], capture_output=True, text=True, timeout=1800,
        check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    rendered = subprocess.run(
        [
            build.stdout.strip(), "template", "kt", str(ROOT / "helm" / "kubetrade"),
            "--set", "alerts.enabled=true,alerts.streamStalled.graceSeconds=2",
            "--set", "alerts.streamStalled.for=1s",
        ],
        capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(ROOT / ".cache" / "helm-home"),
             "KUBECONFIG": os.devnull},
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    (rule,) = [
        d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] == "PrometheusRule"
    ]
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


@pytest.fixture
def binance_venue(tmp_path: Path) -> Iterator[Obj]:
    """The local Binance market (tests/servers) in a process of its own: 1 s bars, live."""
    log = tmp_path / "binance.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "servers.binance_market", "--interval", "1s", "--period", "1",
         "--history", "50"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log.open("ab"),
        env={**ENV, "PYTHONPATH": str(ROOT / "tests")},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        urls: Obj = json.loads(process.stdout.readline())
        yield urls
    finally:
        _stop(process)


def test_prometheus_answers_every_dashboard_query_and_sees_a_stall(
    cluster: Cluster,
    operator: Operator,
    namespace: str,
    binance_venue: Obj,
    tmp_path: Path,
) -> None:
    # The operator serves one session (suspended: no runner pod needed for its phase).
    cluster.apply(
        f"""
apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata: {{name: parked, namespace: {namespace}}}
spec:
  suspend: true
  symbols: [BTCUSDT]
  interval: 1m
  strategy: {{configMapRef: {{name: absent, key: sma.wasm}}}}
  marketData: {{provider: synthetic}}
  trading: {{provider: paper}}
"""
    )
    replay = _session(
        tmp_path / "replay.yaml", "replayed", "trading",
        f"{{provider: replay, config: {{path: {_bars_with_a_hole(tmp_path / 'bars.csv')}, "
        f"speed: {SPEED}}}}}", "1m",
    )  # fmt: skip
    live = _session(
        tmp_path / "live.yaml", "live", "trading",
        "{provider: binance, config: "
        + json.dumps({"wsUrl": binance_venue["ws_url"], "restUrl": binance_venue["rest_url"],
                      "initialBackoff": 0.05, "maxBackoff": 0.5})
        + "}", "1s",
    )  # fmt: skip
    ports = {"replayed": _free_port(), "live": _free_port()}
    runners = [
        _start(
            [
                str(KUBETRADE),
                "run",
                "--quiet",
                "--http-port",
                str(ports[name]),
                "--state-dir",
                str(tmp_path / f"state-{name}"),
                str(path),
            ],
            tmp_path / f"{name}.log",
        )
        for name, path in (("replayed", replay), ("live", live))
    ]
    prom_port = _free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(_rules(tmp_path))],
        "scrape_configs": [
            {
                "job_name": "kubetrade-runners",
                "honor_labels": True,  # as the chart's PodMonitor: the runners' labels win
                "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports.values()]}],
            },
            {
                "job_name": "kubetrade-operator",
                "static_configs": [{"targets": [f"127.0.0.1:{operator.port}"]}],
            },
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom_log = tmp_path / "prometheus.log"
    process = _start(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
         "--log.level=warn"],
        prom_log,
    )  # fmt: skip
    prometheus = Prometheus(f"http://127.0.0.1:{prom_port}", process, prom_log)
    started = time.monotonic()
    try:
        _check(prometheus, cluster, namespace, runners, tmp_path)
    finally:
        _stop(process)
        for runner in runners:
            _stop(runner)
    print(f"\nobservability e2e: {time.monotonic() - started:.1f} s", file=sys.stderr)


def _ready(prometheus: Prometheus) -> bool:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2) as reply,
    ):
        return bool(reply.status == 200)
    return False


def _check(
    prometheus: Prometheus,
    cluster: Cluster,
    namespace: str,
    runners: list[subprocess.Popen[bytes]],
    tmp: Path,
) -> None:
    def logs() -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(tmp.glob("*.log"))
        )

    def alive() -> None:
        for runner in runners:
            assert runner.poll() is None, f"a runner exited ({runner.returncode})\n{logs()}"
        assert prometheus.process.poll() is None, f"prometheus exited\n{logs()}"

    try:
        wait_until("prometheus ready", lambda: _ready(prometheus), timeout=60, every=0.3)

        # Every target scraped: both runners and the operator.
        def all_up() -> bool:
            alive()
            return len(prometheus.query("up == 1")) == 3

        wait_until("three targets up", all_up, timeout=60, every=0.5)
        # The operator has reconciled the suspended session.
        wait_until(
            "the operator's phase count",
            lambda: prometheus.query('kubetrade_operator_sessions{phase="Suspended"} == 1'),
            timeout=60,
            every=0.5,
        )

        # Every query of every panel returns at least one series ($__rate_interval as
        # Grafana gives it for a 1 s scrape, the variables at "All").
        def empty() -> list[str]:
            alive()
            missing = []
            for uid, title, expr in dashboards.queries():
                concrete = (
                    expr.replace("$__rate_interval", "1m")
                    .replace("$namespace", ".*")
                    .replace("$session", ".*")
                )
                if not prometheus.query(concrete):
                    missing.append(f"{uid} / {title}: {concrete}")
            return missing

        last: list[list[str]] = [[]]

        def all_answer() -> bool:
            last[0] = empty()
            return not last[0]

        try:
            wait_until("every dashboard query answered", all_answer, timeout=90, every=1)
        except TimeoutError:
            raise AssertionError("queries without data:\n" + "\n".join(last[0])) from None
        # The runners' series carry their session and namespace, the build its version.
        build = prometheus.query('kubetrade_build_info{component="runner"}')
        assert {(b["metric"]["namespace"], b["metric"]["session"]) for b in build} == {
            ("trading", "replayed"),
            ("trading", "live"),
        }
        assert prometheus.query('kubetrade_risk_halted{session="replayed"} == 1')

        # The replay's hole: the stall alert fires for that session, then resolves.
        def stalled(state: str) -> bool:
            alive()
            return any(
                a["labels"].get("session") == "replayed" and a["state"] == state
                for a in prometheus.alerts(STALLED)
            )

        wait_until(f"{STALLED} firing", lambda: stalled("firing"), timeout=90, every=0.5)
        wait_until(
            f"{STALLED} resolved",
            lambda: not stalled("firing") and not stalled("pending"),
            timeout=60,
            every=0.5,
        )
        # Bars flow again after the hole.
        assert prometheus.query(
            'time() - kubetrade_last_bar_processed_timestamp_seconds{session="replayed"} < 5'
        )
    except (AssertionError, TimeoutError) as exc:
        raise AssertionError(f"{exc}\n{logs()}") from None
