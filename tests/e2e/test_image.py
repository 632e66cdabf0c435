"""The container image as users run it: podman, the image's own user, a read-only root.

The image is built from the Containerfile by scripts/build-image.sh (once per test run,
nothing when it exists already). Each container runs with a read-only root filesystem
and a tmpfs on /tmp only, as the operator's runner pods have (readOnlyRootFilesystem and
an emptyDir on /tmp), so a run that succeeds wrote nothing anywhere else.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from .image import ROOT, ImageBuildError, build_image, podman

pytestmark = pytest.mark.e2e

USER_ID = 65532
# Writable: /tmp, and nothing else (podman would otherwise add tmpfs on /var/tmp and /run).
READ_ONLY = ["--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,size=256m"]


@pytest.fixture(scope="session")
def image() -> str:
    try:
        return build_image()
    except ImageBuildError as exc:
        # Never a skip: a machine that cannot build the image must say so loudly.
        pytest.fail(str(exc), pytrace=False)


def test_the_bundled_demo_runs_read_only_as_the_image_user(image: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # the container's user, not root, writes the summary here
    # No --user: the image itself must name its non-root user. No network: the demo
    # replays a file with the paper broker.
    done = podman(
        "run", "--rm", *READ_ONLY, "--network", "none", "--volume", f"{out}:/out:rw",
        image, "run", "examples/session.yaml", "--quiet", "--summary-json", "/out/summary.json",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary_file = out / "summary.json"
    # Rootful podman maps ids one to one: the file's owner is the process's user.
    assert summary_file.stat().st_uid == USER_ID
    summary = json.loads(summary_file.read_text())
    assert summary["bars"] > 0
    assert summary["orders"] > 0
    assert summary["fills"] > 0
    assert summary["strategy_errors"] == 0


def test_the_image_runs_as_a_non_root_user(image: str) -> None:
    done = podman("run", "--rm", *READ_ONLY, "--network", "none", "--entrypoint", "id", image)
    assert done.returncode == 0, done.stderr
    assert re.match(rf"uid={USER_ID}\b.* gid={USER_ID}\b", done.stdout), done.stdout


def test_the_operator_command_is_in_the_image(image: str) -> None:
    done = podman("run", "--rm", *READ_ONLY, "--network", "none", image, "operator", "--help")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--runner-image" in done.stdout


def test_the_image_is_labelled(image: str) -> None:
    done = podman("image", "inspect", "--format", "{{json .Labels}}", image)
    assert done.returncode == 0, done.stderr
    labels = json.loads(done.stdout)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    prefix = "org.opencontainers.image."
    assert labels[prefix + "title"] == "kubetrade"
    assert labels[prefix + "version"] == project["version"]
    assert labels[prefix + "licenses"] == project["license"]
    assert labels[prefix + "source"].startswith("https://")
    # The commit the image was built from; "-dirty" when the files differed from it.
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", labels[prefix + "revision"])
