"""The kubetrade container image for tests: build it once, run podman as the scripts do.

`build_image()` runs scripts/build-image.sh (which installs podman and builds the Debian
base where needed, and builds nothing when an image of the same inputs exists) once per
test process and returns the image reference; a failed build raises `ImageBuildError`
with the build's output. `podman(...)` runs podman with the project's settings
(scripts/containers/env.sh: its containers.conf, runc, overlay storage).
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build-image.sh"
ENV_SCRIPT = ROOT / "scripts" / "containers" / "env.sh"
BUILD_TIMEOUT_S = 1800.0  # a cold build (base, dependencies) takes ~2-3 minutes


class ImageBuildError(Exception):
    """scripts/build-image.sh failed; the message holds its output."""


@functools.cache
def podman_env() -> Mapping[str, str]:
    """The environment podman runs with: env.sh sourced, so the settings live in one place."""
    script = '. "$1" && printf "%s\\0%s" "$CONTAINERS_CONF" "$STORAGE_DRIVER"'
    printed = subprocess.run(
        ["bash", "-c", script, "-", str(ENV_SCRIPT)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    conf, driver = printed.split("\0")
    return {**os.environ, "CONTAINERS_CONF": conf, "STORAGE_DRIVER": driver}


@functools.cache
def build_image() -> str:
    """The image reference scripts/build-image.sh prints, built once per process."""
    try:
        done = subprocess.run(
            [str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        # Captured output comes as bytes on a timeout, text=True or not.
        output = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise ImageBuildError(
            f"scripts/build-image.sh took over {BUILD_TIMEOUT_S:.0f} s:\n{output[-8000:]}"
        ) from exc
    reference = done.stdout.strip()
    if done.returncode != 0 or not reference:
        raise ImageBuildError(
            f"scripts/build-image.sh failed (exit {done.returncode}):\n{done.stderr[-8000:]}"
        )
    return reference


def podman(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Run podman with the project's settings; never raises on a non-zero exit."""
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, env=podman_env()
    )
