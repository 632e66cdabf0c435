"""Shared fixtures: build sessions and engines from a YAML spec body."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from kubetrade.runner.app.assemble import RunOptions, build_engine
from kubetrade.runner.app.session_file import LoadedSession, load_session
from kubetrade.runner.engine import Engine

SessionFactory = Callable[..., LoadedSession]


@pytest.fixture
def make_session(tmp_path: Path) -> SessionFactory:
    """Write a session file into tmp_path from a YAML body under `spec:` and load it."""

    def make(spec: str, *, name: str = "test-session") -> LoadedSession:
        text = (
            "apiVersion: kubetrade.io/v1alpha1\nkind: LiveTradingSession\n"
            f"metadata:\n  name: {name}\nspec:\n" + textwrap.indent(textwrap.dedent(spec), "  ")
        )
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        return load_session(path)

    return make


@pytest.fixture
def make_engine(make_session: SessionFactory) -> Callable[..., Engine]:
    def make(spec: str, *, max_bars: int | None = None, name: str = "test-session") -> Engine:
        return build_engine(make_session(spec, name=name), RunOptions(max_bars=max_bars))

    return make
