"""The set-up resolves from the package registries alone: no pin names a local file.

A pin such as `TA-Lib @ file:///tmp/...` works only on the machine where it was made;
CI passed on that machine and a fresh clone failed at once. This guard reads every
file that decides what gets installed and fails, naming the file and line, when one
points at the local filesystem instead of a registry.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[2]

# A path outside the repository: absolute, home-relative, or a file: URL.
_LOCAL_PATH: Final = r"(?:file:|~/|/(?:tmp|root|home|var|opt|mnt|srv|usr/local|work)/)"


def _numbered(path: Path) -> list[tuple[int, str]]:
    return list(enumerate(path.read_text(encoding="utf-8").splitlines(), start=1))


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0]


def local_pins_in_requirements(path: Path) -> list[str]:
    """Lines of a pip requirements/constraints file that install from a local file."""
    found = []
    for number, line in _numbered(path):
        text = _strip_comment(line).strip()
        if not text:
            continue
        # `name @ url` direct references, bare paths and editable/find-links options.
        direct = " @ " in text or text.startswith(("-e", "--editable", "-f", "--find-links"))
        pathlike = text.startswith((".", "/", "~")) or re.search(_LOCAL_PATH, text)
        if direct or pathlike:
            found.append(f"{_name(path)}:{number}: {line.strip()}")
    return found


def local_pins_in_pyproject(path: Path) -> list[str]:
    """Dependency strings in pyproject.toml that name a URL or a path."""
    found = []
    for number, line in _numbered(path):
        text = _strip_comment(line)
        # Dependencies are quoted strings; a direct reference has " @ ".
        for quoted in re.findall(r'"([^"]*)"', text):
            if " @ " in quoted or re.match(_LOCAL_PATH, quoted) or quoted.startswith("file:"):
                found.append(f"{_name(path)}:{number}: {line.strip()}")
    return found


def local_replaces_in_go_mod(path: Path) -> list[str]:
    """`replace` directives of a go.mod whose target is a directory, not a module version."""
    found = []
    in_block = False
    for number, line in _numbered(path):
        text = line.split("//", 1)[0].strip()
        if text.startswith("replace ("):
            in_block = True
            continue
        if in_block and text == ")":
            in_block = False
            continue
        if not (in_block or text.startswith("replace ")):
            continue
        target = text.split("=>", 1)[1].strip() if "=>" in text else ""
        # A module target is "path version"; a local one is a single path.
        if target and (len(target.split()) == 1 or target.startswith((".", "/", "~"))):
            found.append(f"{_name(path)}:{number}: {line.strip()}")
    return found


# An install command followed, on the same line, by a local file or a file: URL.
_INSTALL: Final = re.compile(
    r"(?:pip\s+install|pip3\s+install|go\s+install|go\s+get|apt(?:-get)?\s+install"
    r"|dpkg\s+-i|uv\s+pip\s+install)\b(?P<rest>.*)"
)


def local_installs_in_script(path: Path) -> list[str]:
    """Install commands in a shell script that take a package from a local path."""
    found = []
    for number, line in _numbered(path):
        text = line.split("#", 1)[0] if not line.lstrip().startswith("#!") else ""
        match = _INSTALL.search(text)
        if match is None:
            continue
        rest = match.group("rest")
        if re.search(_LOCAL_PATH, rest) or re.search(r"\.(?:whl|deb|tar\.gz)\b", rest):
            found.append(f"{_name(path)}:{number}: {line.strip()}")
    return found


def _scripts() -> list[Path]:
    return sorted([*ROOT.glob("scripts/*.sh"), *ROOT.glob("strategies/*.sh"), ROOT / ".ci" / "run"])


def test_constraints_resolve_from_the_registry() -> None:
    assert local_pins_in_requirements(ROOT / "constraints.txt") == []


def test_pyproject_names_no_local_package() -> None:
    assert local_pins_in_pyproject(ROOT / "pyproject.toml") == []


@pytest.mark.parametrize(
    "go_mod", sorted([ROOT / "strategies" / "go.mod", *ROOT.glob("tools/*/go.mod")]), ids=str
)
def test_go_modules_replace_nothing_with_a_directory(go_mod: Path) -> None:
    assert local_replaces_in_go_mod(go_mod) == []


def test_scripts_install_nothing_from_a_local_path() -> None:
    problems = [line for script in _scripts() for line in local_installs_in_script(script)]
    assert problems == []


# The guard must catch each kind of local reference; if it stopped seeing them it
# would pass forever. Each case below is one that has happened or easily could.


def test_the_guard_sees_a_file_pin(tmp_path: Path) -> None:
    constraints = ROOT / "constraints.txt"
    text = constraints.read_text(encoding="utf-8")
    bad = tmp_path / "constraints.txt"
    bad.write_text(
        text + "TA-Lib @ file:///tmp/talib/ta_lib-0.8.2-cp311-cp311-linux_x86_64.whl\n",
        encoding="utf-8",
    )
    found = local_pins_in_requirements(bad)
    assert len(found) == 1
    assert found[0].endswith("TA-Lib @ file:///tmp/talib/ta_lib-0.8.2-cp311-cp311-linux_x86_64.whl")
    assert f":{len(text.splitlines()) + 1}:" in found[0]


@pytest.mark.parametrize(
    "line",
    [
        "ta-lib @ https://example.com/ta_lib.whl",
        "/tmp/wheels/x-1.0-py3-none-any.whl",
        "./vendor/x",
        "-e ../x",
        "--find-links /root/wheels",
    ],
)
def test_the_guard_sees_other_local_requirements(tmp_path: Path, line: str) -> None:
    inside = tmp_path / "requirements.txt"
    inside.write_text(f"pydantic==2.11.0\n{line}\n", encoding="utf-8")
    assert [found.split(": ", 1)[1] for found in local_pins_in_requirements(inside)] == [line]


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("replace example.com/x => ../x\n", True),
        ("replace example.com/x => /home/me/x\n", True),
        ("replace (\n\texample.com/x => ./x\n)\n", True),
        ("replace k8s.io/api => k8s.io/api v0.36.3\n", False),
        ("replace (\n\tk8s.io/api => k8s.io/api v0.36.3\n)\n", False),
    ],
)
def test_the_guard_sees_a_local_go_replace(tmp_path: Path, text: str, bad: bool) -> None:
    inside = tmp_path / "go.mod"
    inside.write_text("module example.com/m\n\ngo 1.26\n\n" + text, encoding="utf-8")
    assert bool(local_replaces_in_go_mod(inside)) is bad


@pytest.mark.parametrize(
    ("line", "bad"),
    [
        ('"$VENV/bin/python" -m pip install /tmp/talib/ta_lib.whl', True),
        ("pip install file:///root/x.whl", True),
        ("apt-get install -y ./podman_4.3.1_amd64.deb", True),
        ("dpkg -i /var/cache/apt/archives/x.deb", True),
        ("GOBIN=$d go install ~/src/helm/cmd/helm", True),
        ('"$VENV/bin/python" -m pip install -c "$ROOT/constraints.txt" -e "$target"', False),
        ("apt-get install -y --no-install-recommends podman buildah", False),
        ("go install helm.sh/helm/v3/cmd/helm@v3.19.0", False),
    ],
)
def test_the_guard_sees_a_local_install(tmp_path: Path, line: str, bad: bool) -> None:
    inside = tmp_path / "script.sh"
    inside.write_text(f"#!/usr/bin/env bash\n{line}\n", encoding="utf-8")
    assert bool(local_installs_in_script(inside)) is bad
