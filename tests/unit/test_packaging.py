"""Every package of the source tree is in the distribution.

pyproject.toml lists the packages by hand (runner/ and operator/ are mapped under
kubetrade.*); a package left off works in the editable install the tests use and is
missing from the wheel the image installs.
"""

from __future__ import annotations

import tomllib

from helpers import ROOT


def _source_packages() -> set[str]:
    found = set()
    for top, name in (("runner", "kubetrade.runner"), ("operator", "kubetrade.operator")):
        for init in (ROOT / top).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / top)
            found.add(".".join([name, *relative.parts]) if relative.parts else name)
    return found


def test_every_source_package_is_in_the_distribution() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    assert _source_packages() - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - _source_packages() == set(), "these are listed but do not exist"


def test_the_check_sees_the_packages() -> None:
    assert {"kubetrade.runner", "kubetrade.runner.oci", "kubetrade.operator"} <= _source_packages()
