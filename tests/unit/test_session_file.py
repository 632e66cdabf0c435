"""Loading sessions from files and flags, and the messages users see when that fails."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from pydantic import ValidationError

from kubetrade.runner.app.session_file import (
    LoadedSession,
    Problem,
    SessionError,
    describe_errors,
    format_path,
    load_session,
    parse_session,
    session_from_flags,
    validate_document,
)
from kubetrade.runner.spec import LiveTradingSession, ReplayConfig

DIGEST = "sha256:" + "ab" * 32

EXAMPLE = """\
apiVersion: kubetrade.io/v1alpha1
kind: LiveTradingSession
metadata:
  name: sma-demo
  namespace: default
spec:
  symbols: [BTCUSDT]
  interval: 1m
  strategy:
    path: ../strategies/examples/sma/sma.wasm
    config: {fastPeriod: 5}
  marketData:
    provider: replay
    config: {path: data/btcusdt-1m.csv, speed: 0}
  trading:
    provider: paper
    config: {initialCash: 10000}
"""


def error_text(text: str, source: str = "s.yaml") -> str:
    with pytest.raises(SessionError) as caught:
        parse_session(text, source=source)
    return str(caught.value)


def error_lines(text: str) -> list[str]:
    """The problem lines of the message, checked for its shape and unindented."""
    first, *rest = error_text(text).splitlines()
    assert first == "invalid session s.yaml:"
    assert rest
    assert all(line.startswith("  ") and not line.startswith("   ") for line in rest)
    return [line[2:] for line in rest]


def edited(old: str, new: str) -> str:
    assert old in EXAMPLE
    return EXAMPLE.replace(old, new)


# -------------------------------------------------------------------- loading


def test_load_session_reads_a_file_and_knows_its_directory(tmp_path: Path) -> None:
    (tmp_path / "sessions").mkdir()
    file = tmp_path / "sessions" / "sma.yaml"
    file.write_text(EXAMPLE)
    loaded = load_session(file)
    assert isinstance(loaded.session, LiveTradingSession)
    assert loaded.path == file
    assert loaded.base_dir == tmp_path / "sessions"
    strategy_path = loaded.session.spec.strategy.path
    assert strategy_path is not None
    assert loaded.resolve(strategy_path) == (
        tmp_path / "sessions" / "../strategies/examples/sma/sma.wasm"
    )
    replay = loaded.session.spec.market_data.parsed()
    assert isinstance(replay, ReplayConfig)
    assert loaded.resolve(replay.path) == tmp_path / "sessions" / "data" / "btcusdt-1m.csv"


def test_resolve_leaves_absolute_paths_alone(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text(EXAMPLE)
    loaded = load_session(file)
    assert loaded.resolve("/srv/data/bars.csv") == Path("/srv/data/bars.csv")
    assert loaded.resolve(Path("x/y.wasm")) == tmp_path / "x" / "y.wasm"


def test_load_session_accepts_a_relative_path_and_str(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "s.yaml").write_text(EXAMPLE)
    monkeypatch.chdir(tmp_path)
    loaded = load_session("s.yaml")
    assert loaded.path == tmp_path / "s.yaml"
    assert loaded.base_dir == tmp_path


def test_missing_file_is_a_session_error(tmp_path: Path) -> None:
    with pytest.raises(SessionError) as caught:
        load_session(tmp_path / "absent.yaml")
    assert str(caught.value) == (
        f"invalid session {tmp_path / 'absent.yaml'}:\n"
        "  cannot read the file: No such file or directory"
    )


def test_directory_is_a_session_error(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="cannot read the file"):
        load_session(tmp_path)


def test_binary_file_is_a_session_error(tmp_path: Path) -> None:
    file = tmp_path / "s.wasm"
    file.write_bytes(b"\x00asm\xff\xfe")
    with pytest.raises(SessionError, match="not UTF-8 text"):
        load_session(file)


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_bytes(b"\xef\xbb\xbf" + EXAMPLE.encode())
    assert load_session(file).session.metadata.name == "sma-demo"


def test_json_text_loads_too() -> None:
    document = {
        "apiVersion": "kubetrade.io/v1alpha1",
        "kind": "LiveTradingSession",
        "metadata": {"name": "j"},
        "spec": {
            "symbols": ["X"],
            "strategy": {"configMapRef": {"name": "j-wasm"}},
            "marketData": {"provider": "synthetic"},
            "trading": {"provider": "paper"},
        },
    }
    session = parse_session(json.dumps(document), source="j.json")
    assert session.spec.strategy.config_map_ref is not None


def test_kubectl_get_output_loads() -> None:
    text = EXAMPLE.replace(
        "  namespace: default\n",
        "  namespace: default\n"
        "  uid: 5d3c1d9e-7a4f-4f8e-9d0e-3a0a3f1f2b1c\n"
        "  resourceVersion: '12345'\n"
        "  generation: 2\n"
        "  creationTimestamp: 2024-05-01T10:00:00Z\n"
        "  managedFields:\n"
        "  - manager: kubectl-client-side-apply\n"
        "    operation: Update\n",
    )
    text += "status:\n  phase: Running\n  observedGeneration: 2\n"
    session = parse_session(text, source="kubectl")
    assert session.model_dump(mode="json")["metadata"]["creationTimestamp"] == (
        "2024-05-01T10:00:00Z"
    )


def test_yaml_timestamps_stay_strings_so_the_strategy_config_stays_json() -> None:
    text = edited(
        "config: {fastPeriod: 5}", "config: {since: 2024-01-01, at: 2024-01-01T00:00:00Z}"
    )
    config = parse_session(text, source="s.yaml").spec.strategy.config
    assert config == {"since": "2024-01-01", "at": "2024-01-01T00:00:00Z"}
    json.dumps(config)


# ------------------------------------------------------------ malformed input


def test_yaml_syntax_error_reports_line_and_column() -> None:
    text = edited("  interval: 1m\n", "  interval: 1m: 5m\n")
    assert error_lines(text) == ["line 8, column 15: mapping values are not allowed here"]


def test_unclosed_flow_sequence_reports_where_it_started() -> None:
    text = edited("  symbols: [BTCUSDT]\n", "  symbols: [BTCUSDT\n")
    (line,) = error_lines(text)
    assert line.startswith("line 8, column ")
    assert "at line 7)" in line


def test_tab_indentation_reports_the_line() -> None:
    (line,) = error_lines(EXAMPLE.replace("  interval: 1m", "\tinterval: 1m"))
    assert line.startswith("line 8, column 1: ")


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    text = EXAMPLE + "  trading:\n    provider: binance-live\n"
    assert error_lines(text) == [
        "line 18, column 3: duplicate key 'trading' (first at line 15); keep one"
    ]


def test_merge_keys_are_not_duplicates() -> None:
    text = edited(
        "  trading:\n    provider: paper\n    config: {initialCash: 10000}\n",
        "  trading:\n    <<: {provider: paper}\n    config: {initialCash: 10000}\n",
    )
    assert parse_session(text, source="s.yaml").spec.trading.provider == "paper"


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"])
def test_empty_document(text: str) -> None:
    assert error_lines(text) == [
        "the document is empty; expected a LiveTradingSession"
        " (apiVersion: kubetrade.io/v1alpha1, kind: LiveTradingSession, metadata, spec)"
    ]


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "a list"), ("just words\n", "a string"), ("42\n", "a number")],
)
def test_top_level_must_be_a_mapping(text: str, kind: str) -> None:
    assert error_lines(text) == [
        f"expected a mapping with apiVersion, kind, metadata and spec at the top level, got {kind}"
    ]


def test_several_documents_are_refused() -> None:
    assert error_lines(EXAMPLE + "---\n" + EXAMPLE) == [
        "found 2 YAML documents; a session file holds exactly one"
    ]


def test_other_kubernetes_objects_get_only_the_type_problems() -> None:
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 2}\n"
    assert error_lines(text) == [
        "apiVersion: expected kubetrade.io/v1alpha1, got 'apps/v1';"
        " set apiVersion: kubetrade.io/v1alpha1",
        "kind: expected LiveTradingSession, got 'Deployment';"
        " this document is not a kubetrade session",
    ]


def test_other_version_of_our_api_is_named_as_such() -> None:
    text = edited("kubetrade.io/v1alpha1", "kubetrade.io/v1beta1")
    assert error_lines(text) == [
        "apiVersion: expected kubetrade.io/v1alpha1, got 'kubetrade.io/v1beta1';"
        " this kubetrade reads kubetrade.io/v1alpha1 only"
    ]


def test_kind_with_the_wrong_case() -> None:
    text = edited("kind: LiveTradingSession", "kind: livetradingsession")
    assert error_lines(text) == [
        "kind: expected LiveTradingSession, got 'livetradingsession';"
        " kind is case-sensitive: set kind: LiveTradingSession"
    ]


def test_missing_api_version_and_kind() -> None:
    text = "\n".join(EXAMPLE.splitlines()[2:]) + "\n"
    assert error_lines(text) == [
        "apiVersion: is required but missing; set apiVersion: kubetrade.io/v1alpha1",
        "kind: is required but missing; set kind: LiveTradingSession",
    ]


# ---------------------------------------------------------- validation errors


def test_live_trading_without_confirmation() -> None:
    text = edited("provider: paper\n    config: {initialCash: 10000}", "provider: binance-live")
    assert error_lines(text) == [
        "spec.trading.confirmLive: provider 'binance-live' trades real money;"
        " set spec.trading.confirmLive: true to confirm"
    ]
    confirmed = text + "    confirmLive: true\n"
    assert parse_session(confirmed, source="s.yaml").spec.is_live


def test_typo_in_provider_config_lists_the_allowed_keys() -> None:
    text = edited("speed: 0}", "sped: 0}")
    assert error_lines(text) == [
        "spec.marketData.config.sped: unknown key 'sped'; did you mean 'speed'?"
        " allowed keys: path, format, speed, loop"
    ]


def test_credentials_in_config_are_refused_without_echoing_them() -> None:
    text = edited("{initialCash: 10000}", "{initialCash: 10000, apiKey: sk-live-DO-NOT-LEAK}")
    text = text.replace("provider: paper", "provider: binance-paper")
    text = text.replace("initialCash: 10000, ", "")
    message = error_text(text)
    assert "DO-NOT-LEAK" not in message
    (line,) = message.splitlines()[1:]
    assert line.startswith("  spec.trading.config.apiKey: 'apiKey' looks like a credential")
    assert "Kubernetes Secret named by spec.trading.credentialsSecretRef" in line


def test_every_problem_gets_its_own_line_with_its_path() -> None:
    text = edited("symbols: [BTCUSDT]", "symbols: [BTCUSDT, bad symbol]")
    text = text.replace("interval: 1m", "interval: 2m")
    text = text.replace("speed: 0}", "speed: fast}")
    text += "  engine: {warmupBars: 5000}\n  risk: {maxOrdersPerMinute: 0}\n"
    assert error_lines(text) == [
        "spec.symbols[1]: 'bad symbol' is not a valid symbol:"
        " use 1 to 32 characters from A-Z a-z 0-9 . _ : / -",
        "spec.interval: Input should be '1s', '1m', '3m', '5m', '15m', '30m', '1h', '2h', '4h',"
        " '6h', '8h', '12h', '1d' or '1w' (got '2m')",
        "spec.marketData.config.speed: Input should be a valid number, unable to parse string"
        " as a number (got 'fast')",
        "spec.risk.maxOrdersPerMinute: Input should be greater than 0 (got 0)",
        "spec.engine.warmupBars: warmupBars (5000) exceeds marketDataCacheSize (1000), so the"
        " cache cannot hold the warm-up window; lower spec.engine.warmupBars or raise"
        " spec.engine.marketDataCacheSize",
    ]


def test_missing_and_empty_fields_read_plainly() -> None:
    text = edited("  symbols: [BTCUSDT]\n", "  symbols: []\n")
    text = text.replace("    provider: replay\n", "")
    assert error_lines(text) == [
        "spec.symbols: must not be empty",
        "spec.marketData.provider: is required but missing",
    ]


def test_wrong_type_of_section() -> None:
    text = EXAMPLE + "  risk: [1, 2]\n"
    (line,) = error_lines(text)
    assert line.startswith("spec.risk: Input should be a valid dictionary or instance of RiskSpec")


def test_strategy_source_problem_is_on_the_strategy() -> None:
    text = edited(
        "    path: ../strategies/examples/sma/sma.wasm\n",
        f"    path: sma.wasm\n    oci: {{reference: 'r.example/sma@{DIGEST}'}}\n",
    )
    assert error_lines(text) == [
        "spec.strategy: set exactly one of path, configMapRef or oci; found path and oci"
    ]


def test_validate_document_refuses_a_non_mapping() -> None:
    with pytest.raises(SessionError, match="got a list"):
        validate_document([1], source="api")


def test_session_error_is_structured_and_picklable() -> None:
    with pytest.raises(SessionError) as caught:
        parse_session(edited("interval: 1m", "interval: 7m"), source="s.yaml")
    error = caught.value
    assert error.source == "s.yaml"
    assert [problem.path for problem in error.problems] == ["spec.interval"]
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error)


def test_problem_without_a_path_is_just_its_message() -> None:
    assert str(Problem("", "empty")) == "empty"
    assert str(Problem("spec.x", "bad")) == "spec.x: bad"


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("spec", "symbols", 1), "spec.symbols[1]"),
        (
            ("metadata", "labels", "app.kubernetes.io/name"),
            'metadata.labels["app.kubernetes.io/name"]',
        ),
        (
            ("spec", "resources", "limits", "nvidia.com/gpu"),
            'spec.resources.limits["nvidia.com/gpu"]',
        ),
        (("metadata", "labels", "x", "[key]"), "metadata.labels.x (key)"),
        (("apiVersion",), "apiVersion"),
        ((), ""),
    ],
)
def test_format_path(loc: tuple[str | int, ...], path: str) -> None:
    assert format_path(loc) == path


def test_describe_errors_drops_repeats() -> None:
    try:
        LiveTradingSession.model_validate({"apiVersion": "x"})
    except ValidationError as exc:
        problems = describe_errors(exc)
    assert len(problems) == len(set(problems))
    assert Problem("metadata", "is required but missing") in problems


# ---------------------------------------------------------------------- flags


def test_session_from_flags(tmp_path: Path) -> None:
    (tmp_path / "strategy.json").write_text('{"fastPeriod": 3}')
    (tmp_path / "md.yaml").write_text("path: bars.parquet\nspeed: 10\n")
    loaded = session_from_flags(
        strategy_wasm="sma.wasm",
        strategy_config="strategy.json",
        market_data_provider="replay",
        market_data_config="md.yaml",
        trading_provider="paper",
        symbols="BTCUSDT, ETHUSDT,",
        base_dir=tmp_path,
    )
    assert isinstance(loaded, LoadedSession)
    assert loaded.path is None
    assert loaded.base_dir == tmp_path
    session = loaded.session
    assert session.metadata.name == "cli-session"
    assert session.spec.interval == "1m"
    assert session.spec.symbols == ["BTCUSDT", "ETHUSDT"]
    assert session.spec.strategy.config == {"fastPeriod": 3}
    assert loaded.resolve("sma.wasm") == tmp_path / "sma.wasm"
    replay = session.spec.market_data.parsed()
    assert isinstance(replay, ReplayConfig)
    assert (replay.resolved_format, replay.speed) == ("parquet", 10.0)
    assert session.spec.trading.config == {}


def test_session_from_flags_defaults_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = session_from_flags(
        strategy_wasm="s.wasm",
        market_data_provider="synthetic",
        trading_provider="paper",
        symbols=["AAPL"],
        interval="1d",
        name="my-run",
    )
    assert loaded.base_dir == tmp_path
    assert loaded.session.metadata.name == "my-run"
    assert loaded.session.spec.interval_ms == 86_400_000


def test_session_from_flags_confirm_live(tmp_path: Path) -> None:
    def build(*, confirm_live: bool) -> LoadedSession:
        return session_from_flags(
            strategy_wasm="s.wasm",
            market_data_provider="synthetic",
            trading_provider="ibkr-live",
            symbols="AAPL",
            confirm_live=confirm_live,
            base_dir=tmp_path,
        )

    with pytest.raises(SessionError) as caught:
        build(confirm_live=False)
    assert str(caught.value) == (
        "invalid session from command-line flags:\n"
        "  spec.trading.confirmLive (from --confirm-live): provider 'ibkr-live' trades real"
        " money; set spec.trading.confirmLive: true to confirm"
    )
    assert build(confirm_live=True).session.spec.is_live


def test_session_from_flags_names_the_flag_behind_each_problem(tmp_path: Path) -> None:
    (tmp_path / "md.json").write_text('{"path": "bars.csv", "speeed": 1}')
    with pytest.raises(SessionError) as caught:
        session_from_flags(
            strategy_wasm="s.wasm",
            market_data_provider="replay",
            market_data_config="md.json",
            trading_provider="papper",
            symbols="A,A",
            interval="2m",
            name="Bad Name",
            base_dir=tmp_path,
        )
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid session from command-line flags:"
    paths = [line.split(":")[0].strip() for line in lines[1:]]
    assert paths == [
        "metadata.name (from --name)",
        "spec.symbols[1] (from --symbols)",
        "spec.interval (from --interval)",
        "spec.marketData.config.speeed (from --market-data-config)",
        "spec.trading.provider (from --trading-provider)",
    ]


def test_session_from_flags_with_no_symbols(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match=r"spec.symbols \(from --symbols\): must not be empty"):
        session_from_flags(
            strategy_wasm="s.wasm",
            market_data_provider="synthetic",
            trading_provider="paper",
            symbols=" , ",
            base_dir=tmp_path,
        )


def test_session_from_flags_reports_unreadable_config_files(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(SessionError) as caught:
        session_from_flags(
            strategy_wasm="s.wasm",
            strategy_config="absent.json",
            market_data_provider="replay",
            market_data_config="bad.yaml",
            trading_provider="paper",
            trading_config="list.json",
            symbols="A",
            base_dir=tmp_path,
        )
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid session from command-line flags:"
    assert (
        lines[1]
        == "  --strategy-config absent.json: cannot read the file: No such file or directory"
    )
    assert lines[2].startswith("  --market-data-config bad.yaml: line 2, column 1: ")
    assert lines[3] == "  --trading-config list.json: expected a JSON or YAML mapping, got a list"


def test_session_from_flags_empty_config_file_is_an_empty_config(tmp_path: Path) -> None:
    (tmp_path / "paper.yaml").write_text("# defaults\n")
    loaded = session_from_flags(
        strategy_wasm="s.wasm",
        market_data_provider="synthetic",
        trading_provider="paper",
        trading_config="paper.yaml",
        symbols="A",
        base_dir=tmp_path,
    )
    assert loaded.session.spec.trading.config == {}
