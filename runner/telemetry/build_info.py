"""`kubetrade_build_info`: which kubetrade, strategy ABI and image a process runs.

An info metric (value 1, the facts in labels), so a dashboard can show the versions in
a fleet and a query can join them onto other series. The image is the one the operator
started the runner pod with ($KUBETRADE_IMAGE); a local run has none.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from functools import cache
from importlib import metadata

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kubetrade.runner.strategy.abi import API_VERSION

IMAGE_ENV = "KUBETRADE_IMAGE"


@cache
def version() -> str:
    try:
        return metadata.version("kubetrade")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def build_labels(component: str) -> dict[str, str]:
    return {
        "version": version(),
        "abi": str(API_VERSION),
        "image": os.environ.get(IMAGE_ENV, ""),
        "python": platform.python_version(),
        "component": component,
    }


class BuildCollector(Collector):
    """The info metric; `labels` (a session's) are added to the build's own."""

    def __init__(self, component: str, labels: dict[str, str] | None = None) -> None:
        self._labels = {**(labels or {}), **build_labels(component)}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "kubetrade_build_info",
            "kubetrade's version, the strategy ABI version and the image (always 1)",
            labels=list(self._labels),
        )
        family.add_metric(list(self._labels.values()), 1.0)
        yield family
