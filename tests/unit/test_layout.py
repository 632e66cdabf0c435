"""The runner's folders follow the data path, and the application shell stays on top.

runner/app/ (the command, the console, the server, the report) may import anything;
nothing else in the runner imports it, so the engine and the session can be embedded
without the shell (runner/__init__.py has the map).
"""

from __future__ import annotations

import ast

from helpers import ROOT

RUNNER = ROOT / "runner"
APP = RUNNER / "app"


def imports_of_the_shell(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found += [n for n in names if f"{n}.".startswith("kubetrade.runner.app.")]
    return found


def test_only_the_shell_imports_the_shell() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted(RUNNER.rglob("*.py"))
        if APP not in path.parents
        for name in imports_of_the_shell(path.read_text())
    ]
    assert found == []


def test_the_check_sees_an_import_of_the_shell() -> None:
    source = "import kubetrade.runner.app.cli\nfrom kubetrade.runner.app.report import Report\n"
    assert imports_of_the_shell(source) == [
        "kubetrade.runner.app.cli",
        "kubetrade.runner.app.report.Report",
    ]
    assert imports_of_the_shell("from kubetrade.runner import app") == ["kubetrade.runner.app"]
    assert imports_of_the_shell("from kubetrade.runner import appendix") == []
