"""A credential is never printed by an error, whatever path a session gives.

A planted secret sits in a credentials directory (the `--credentials-dir`, or
KUBETRADE_CREDENTIALS_DIR) and in a stray file outside it; every route by which a
session could make kubetrade read it as data is tried with `kubetrade run`, and
every output channel (stdout, stderr, the summary file) is searched for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, SAMPLE_CSV, SMA_WASM

KUBETRADE = Path(sys.executable).parent / "kubetrade"
SECRET = "kt5ecretPlanted" + "Xq7Lm2Rt9Vb4" * 4  # a 63-character token, as API keys are
SHORT_SECRET = "hunter2"  # shorter than any excerpt limit: only the directory check saves it


@pytest.fixture
def creds(tmp_path: Path) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / "api_key").write_text(SECRET + "\n")
    (directory / "api_secret").write_text(f"{SHORT_SECRET}\n{SECRET}\n")
    return directory


def _session(tmp_path: Path, *, data: str | Path, strategy: str | Path = SMA_WASM) -> Path:
    path = tmp_path / "session.yaml"
    doc = {
        "apiVersion": "kubetrade.io/v1alpha1",
        "kind": "LiveTradingSession",
        "metadata": {"name": "secret-paths"},
        "spec": {
            "symbols": ["BTCUSDT"],
            "strategy": {"path": str(strategy)},
            "marketData": {"provider": "replay", "config": {"path": str(data), "format": "csv"}},
            "trading": {"provider": "paper"},
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(tmp_path: Path, *args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run kubetrade; everything it wrote, on every channel, as one text."""
    summary = tmp_path / "summary.json"
    result = subprocess.run(
        [str(KUBETRADE), "--log-level", "debug", *map(str, args), "--summary-json", str(summary)]
        if args and args[0] == "run"
        else [str(KUBETRADE), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONSAFEPATH": "1", **(env or {})},
        cwd=ROOT,
        check=False,
    )
    written = result.stdout + result.stderr
    if summary.exists():
        written += summary.read_text()
    return result.returncode, written


Route = Callable[[Path, Path], tuple[int, str]]


def _replay_path_into_the_credentials(tmp_path: Path, creds: Path) -> tuple[int, str]:
    session = _session(tmp_path, data=creds / "api_key")
    return _run(tmp_path, "run", "--no-http", "--credentials-dir", creds, session)


def _replay_path_through_the_environment(tmp_path: Path, creds: Path) -> tuple[int, str]:
    session = _session(tmp_path, data=creds / "api_secret")
    env = {"KUBETRADE_CREDENTIALS_DIR": str(creds)}
    return _run(tmp_path, "run", "--no-http", session, env=env)


def _replay_path_by_a_symlink(tmp_path: Path, creds: Path) -> tuple[int, str]:
    link = tmp_path / "bars.csv"
    link.symlink_to(creds / "api_key")
    session = _session(tmp_path, data=link)
    return _run(tmp_path, "run", "--no-http", "--credentials-dir", creds, session)


def _replay_path_with_dot_dot(tmp_path: Path, creds: Path) -> tuple[int, str]:
    session = _session(tmp_path, data="data/../credentials/api_secret")
    (tmp_path / "data").mkdir()
    return _run(tmp_path, "run", "--no-http", "--credentials-dir", creds, session)


def _strategy_path_into_the_credentials(tmp_path: Path, creds: Path) -> tuple[int, str]:
    session = _session(tmp_path, data=SAMPLE_CSV, strategy=creds / "api_key")
    return _run(tmp_path, "run", "--no-http", "--credentials-dir", creds, session)


def _session_file_in_the_credentials(tmp_path: Path, creds: Path) -> tuple[int, str]:
    return _run(tmp_path, "run", "--no-http", "--credentials-dir", creds, creds / "api_key")


def _config_flag_in_the_credentials(tmp_path: Path, creds: Path) -> tuple[int, str]:
    flags = [
        "run", "--no-http", "--credentials-dir", str(creds), "--strategy-wasm", str(SMA_WASM),
        "--market-data-provider", "replay", "--market-data-config", str(creds / "api_secret"),
        "--trading-provider", "paper", "--symbols", "BTCUSDT",
    ]  # fmt: skip
    return _run(tmp_path, *flags)


ROUTES: dict[str, Route] = {
    "replay path into the credentials dir": _replay_path_into_the_credentials,
    "replay path into KUBETRADE_CREDENTIALS_DIR": _replay_path_through_the_environment,
    "replay path by a symlink": _replay_path_by_a_symlink,
    "replay path with ..": _replay_path_with_dot_dot,
    "strategy path into the credentials dir": _strategy_path_into_the_credentials,
    "session file in the credentials dir": _session_file_in_the_credentials,
    "config flag file in the credentials dir": _config_flag_in_the_credentials,
}


@pytest.mark.parametrize("route", ROUTES.values(), ids=ROUTES.keys())
def test_a_credentials_directory_is_never_read_as_data(
    tmp_path: Path, creds: Path, route: Route
) -> None:
    code, written = route(tmp_path, creds)
    assert code == 2, written
    assert "credentials directory" in written and "never read as data" in written
    assert SECRET not in written and SHORT_SECRET not in written
    assert "Traceback" not in written


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (f"{SECRET}\n", "the header"),
        (f"time,open,high,low,close,volume\n{SECRET},1,1,1,1,1\n", "a time cell"),
        (f"time,open,high,low,close,volume\n2024-01-01T00:00:00Z,{SECRET},1,1,1,1\n", "a price"),
        (
            f"time,symbol,open,high,low,close,volume\n2024-01-01T00:00:00Z,{SECRET},1,1,1,1,1\n",
            "a symbol",
        ),
        (f"time,open,{SECRET},low,close,volume\n", "a column name"),
    ],
    ids=["header", "time", "price", "symbol", "column name"],
)
def test_a_data_file_error_quotes_no_long_value(tmp_path: Path, content: str, where: str) -> None:
    # A key copied into a file that is not in any credentials directory: its errors
    # still name the line and column, and describe a long value by its length alone.
    data = tmp_path / "bars.csv"
    data.write_text(content)
    code, written = _run(tmp_path, "run", "--no-http", _session(tmp_path, data=data))
    assert code == 2, written
    assert SECRET not in written and SECRET[:21] not in written, where
    assert "-character value" in written or "missing column" in written
    assert "Traceback" not in written


def test_a_short_bad_value_is_still_quoted_to_help_fix_it(tmp_path: Path) -> None:
    data = tmp_path / "bars.csv"
    data.write_text("time,open,high,low,close,volume\n2024-01-01T00:00:00Z,abc,1,1,1,1\n")
    code, written = _run(tmp_path, "run", "--no-http", _session(tmp_path, data=data))
    assert code == 2
    assert "line 2, column 'open': 'abc' is not a number" in written


def test_control_characters_in_a_bad_value_never_reach_the_terminal(tmp_path: Path) -> None:
    data = tmp_path / "bars.csv"
    data.write_text("time,open,high,low,close,volume\n2024-01-01T00:00:00Z,\x1b[2J,1,1,1,1\n")
    code, written = _run(tmp_path, "run", "--no-http", _session(tmp_path, data=data))
    assert code == 2
    assert "\x1b" not in written and "'?[2J' is not a number" in written
