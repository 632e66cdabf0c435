"""`kubetrade report --html`: the page a person opens, drawn by a real browser.

A real SMA session runs with a state directory; the report's page is rendered by
Debian's Chromium, headless (scripts/install-test-tools.sh installs it), and the
screenshot must show the charts (their colours, not a blank page). The figures on the
page must be the ones `kubetrade report --json` prints, value for value.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import ROOT, SAMPLE_CSV, SMA_WASM
from png import read_png

KUBETRADE = Path(sys.executable).parent / "kubetrade"
ENV = {**os.environ, "PYTHONSAFEPATH": "1"}
EQUITY_BLUE = (9, 105, 218)
DRAWDOWN_RED = (207, 34, 46)
BUY_GREEN = (26, 127, 55)


def kubetrade(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBETRADE), *map(str, args)], capture_output=True, text=True, env=ENV, timeout=120,
        check=False,
    )  # fmt: skip


class Figures(HTMLParser):
    """The page's figures: data-figure name -> (data-value, the text shown)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, tuple[str, str]] = {}
        self._open: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if "data-figure" in values:
            self._open = (str(values["data-figure"]), str(values["data-value"]))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            name, value = self._open
            self.found[name] = (value, data)
            self._open = None


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report-html")
    session = tmp / "session.yaml"
    session.write_text(
        f"""
apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata: {{name: html-report}}
spec:
  symbols: [BTCUSDT]
  interval: 1m
  strategy: {{path: {SMA_WASM}, config: {{fastPeriod: 5, slowPeriod: 20, quantity: 0.05}}}}
  marketData: {{provider: replay, config: {{path: {SAMPLE_CSV}}}}}
  trading: {{provider: paper, config: {{initialCash: 10000, feeBps: 10}}}}
"""
    )
    state = tmp / "state"
    result = kubetrade(
        "run", "--no-http", "--quiet", "--max-bars", "1500", "--state-dir", state, session
    )
    assert result.returncode == 0, result.stderr
    return state


def test_the_page_carries_the_report_figures(state_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    result = kubetrade("report", state_dir, "--html", page)
    assert result.returncode == 0, result.stderr
    figures = json.loads(kubetrade("report", "--json", state_dir).stdout)
    parser = Figures()
    text = page.read_text()
    parser.feed(text)
    assert set(parser.found) == set(figures) - {"session", "first_bar", "last_bar"}
    for name, (value, shown) in parser.found.items():
        assert json.loads(value) == figures[name], name  # the exact value, repr round-trip
        assert shown.strip(), name
    assert parser.found["fills"][1] == str(figures["fills"])
    assert parser.found["realized_pnl"][1] == f"{figures['realized_pnl']:+,.2f}"
    # One self-contained file: nothing to fetch, no script.
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org", "")
    assert "https://" not in text
    assert text.count("<tr><td>") == figures["fills"]  # one row per trade
    assert figures["session"] in text and figures["first_bar"] in text


def test_chromium_draws_the_page(
    state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: run scripts/install-test-tools.sh"
    page = tmp_path / "report.html"
    assert kubetrade("report", state_dir, "--html", page).returncode == 0
    shot = ROOT / ".cache" / "test-artifacts" / "report-html.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    browser = subprocess.run(
        [
            chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
            "--window-size=1100,1300", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shot.is_file(), browser.stderr[-2000:]
    with capsys.disabled():
        print(f"\nkubetrade report --html screenshot: {shot}", file=sys.stderr)
    image = read_png(shot)
    assert (image.width, image.height) == (1100, 1300)
    # Not blank: most of the page is white, but text, tables and charts draw in many colours.
    assert len(image.colours()) > 200
    assert image.share((255, 255, 255), within=0) < 0.9
    # The equity line, the drawdown area and the buy markers are there to be seen.
    assert image.share(EQUITY_BLUE, within=30) > 0.0005
    assert image.share(DRAWDOWN_RED, within=30) > 0.0005
    assert image.share(BUY_GREEN, within=30) > 0.0002
