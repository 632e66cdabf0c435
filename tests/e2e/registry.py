"""A real OCI registry for the e2e tests: Debian's docker-registry with htpasswd auth.

`start_registry(directory)` writes a config (filesystem storage, basic auth from a
bcrypt htpasswd file made by apache2-utils' htpasswd) into `directory`, starts
`docker-registry serve` on 127.0.0.1 at a free port and waits until it answers /v2/
with 401 to an anonymous client and 200 to its user. `Registry.push(image, repository)`
pushes a local image there with podman (`--tls-verify=false`: the registry speaks plain
HTTP on loopback, as a node told it is insecure pulls from it) and returns the pushed
reference pinned by digest. The `registry` fixture is one such registry for the test
session; scripts/install-container-tools.sh installs what it needs.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .image import ROOT, podman

INSTALL_SCRIPT = ROOT / "scripts" / "install-container-tools.sh"
USER = "kubetrade-e2e"


class RegistryError(Exception):
    """The registry could not be set up or started; the message says why."""


@dataclass
class Registry:
    """A running registry: `host` is 127.0.0.1:<port>; `user`/`password` may push and pull."""

    host: str
    user: str
    password: str
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def log_path(self) -> Path:
        return self.directory / "registry.log"

    def docker_config(self) -> str:
        """A .dockerconfigjson for this registry (what `kubectl create secret
        docker-registry` writes)."""
        auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        entry = {"username": self.user, "password": self.password, "auth": auth}
        return json.dumps({"auths": {self.host: entry}})

    def push(self, image: str, repository: str, tag: str = "e2e") -> str:
        """Push a local image as <host>/<repository>:<tag>; the reference by digest."""
        digest_file = self.directory / f"digest-{secrets.token_hex(4)}"
        done = podman(
            "push",
            "--tls-verify=false",
            f"--creds={self.user}:{self.password}",
            f"--digestfile={digest_file}",
            image,
            f"{self.host}/{repository}:{tag}",
            timeout=900,
        )
        if done.returncode != 0:
            raise RegistryError(f"podman push {image} failed:\n{done.stderr[-4000:]}")
        return f"{self.host}/{repository}@{digest_file.read_text().strip()}"

    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps blob `digest` (filesystem storage): tests change it."""
        hexdigest = digest.removeprefix("sha256:")
        blobs = self.directory / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
        return blobs / hexdigest[:2] / hexdigest / "data"

    def status(self, path: str, *, authenticated: bool = True) -> int:
        """The HTTP status of GET <path> on the registry (e.g. /v2/)."""
        request = urllib.request.Request(f"http://{self.host}{path}")
        if authenticated:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _die_with_parent() -> None:
    # prctl(PR_SET_PDEATHSIG, SIGTERM): the registry must not outlive a killed pytest.
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tools() -> tuple[str, str]:
    """docker-registry and htpasswd, installed if missing; RegistryError if they cannot be."""
    done = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RegistryError(f"{INSTALL_SCRIPT.name} failed:\n{done.stderr[-4000:]}")
    found = shutil.which("docker-registry"), shutil.which("htpasswd")
    if found[0] is None or found[1] is None:
        raise RegistryError(
            "docker-registry and htpasswd (Debian's docker-registry and apache2-utils) are not"
            f" on PATH although {INSTALL_SCRIPT.name} ran"
        )
    return found[0], found[1]


def start_registry(directory: Path, *, timeout: float = 30) -> Registry:
    """Start a registry with its storage, config and log in `directory`."""
    server, htpasswd = _tools()
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    # -B: bcrypt, the only hash the registry accepts; -i: the password from stdin, so it is
    # never in a process listing.
    users = subprocess.run(
        [htpasswd, "-B", "-i", "-n", USER], input=password, capture_output=True, text=True
    )
    if users.returncode != 0:
        raise RegistryError(f"htpasswd failed: {users.stderr.strip()}")
    (directory / "htpasswd").write_text(users.stdout)
    last = ""
    # A free port is found by binding and releasing it; another process may take it in
    # between, so a registry that cannot listen is started again on another.
    for _ in range(5):
        host = f"127.0.0.1:{_free_port()}"
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(directory / "data")},
                "delete": {"enabled": True},
            },
            "http": {"addr": host, "secret": secrets.token_hex(16)},
            "auth": {"htpasswd": {"realm": "kubetrade-e2e", "path": str(directory / "htpasswd")}},
        }
        config_path = directory / "config.yml"
        config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        with (directory / "registry.log").open("ab") as log:
            process = subprocess.Popen(
                [server, "serve", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        registry = Registry(host, USER, password, directory, process)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if registry.status("/v2/", authenticated=False) == 401:
                    if registry.status("/v2/") == 200:
                        return registry
                    registry.stop()
                    raise RegistryError(f"it refuses its own user; its log:\n{_log(registry)}")
            time.sleep(0.1)
        last = _log(registry)
        registry.stop()
    raise RegistryError(f"docker-registry did not start; its log:\n{last}")


def _log(registry: Registry) -> str:
    with contextlib.suppress(OSError):
        return registry.log_path.read_text(errors="replace")[-4000:]
    return ""


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    """A registry on 127.0.0.1 with basic auth, for the whole test session."""
    directory = Path(tempfile.mkdtemp(prefix="kubetrade-registry-"))
    try:
        started = start_registry(directory)
    except RegistryError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        # Never a skip: a machine that cannot run these tests must say so loudly.
        pytest.fail(f"cannot start the test registry: {exc}", pytrace=False)
    try:
        yield started
    finally:
        started.stop()
        shutil.rmtree(directory, ignore_errors=True)
