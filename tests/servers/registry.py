"""A real OCI registry on loopback: Debian's docker-registry (the CNCF distribution
registry), with htpasswd (bcrypt) authentication, in a temporary directory.

    with OciRegistry.start(tmp_path) as registry:
        registry.url, registry.host, registry.username, registry.password

It is the registry the tests push strategy artifacts (and images) to. The binary comes
from scripts/install-container-tools.sh (packages docker-registry and apache2-utils).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class RegistryError(Exception):
    """The registry could not be started; the text says what to install or check."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OciRegistry:
    host: str  # 127.0.0.1:<port>
    username: str
    password: str = field(repr=False)
    directory: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def docker_config(self, path: Path) -> Path:
        """A docker config file with this registry's login, as `docker login` writes it."""
        import base64
        import json

        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        path.write_text(json.dumps({"auths": {self.host: {"auth": token}}}))
        return path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @classmethod
    @contextlib.contextmanager
    def start(cls, directory: Path, *, username: str = "kubetrade") -> Iterator[OciRegistry]:
        registry = cls.launch(directory, username=username)
        try:
            yield registry
        finally:
            registry.stop()

    @classmethod
    def launch(cls, directory: Path, *, username: str = "kubetrade") -> OciRegistry:
        binary = shutil.which("docker-registry")
        htpasswd = shutil.which("htpasswd")
        if binary is None or htpasswd is None:
            raise RegistryError(
                "the registry tests need Debian's docker-registry and apache2-utils (htpasswd);"
                " run scripts/install-container-tools.sh"
            )
        directory.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(18)
        users = directory / "htpasswd"
        subprocess.run(
            [htpasswd, "-Bbc", str(users), username, password], check=True, capture_output=True
        )
        port = _free_port()
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(directory / "storage")},
                "delete": {"enabled": True},
            },
            "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
            "auth": {"htpasswd": {"realm": "kubetrade-tests", "path": str(users)}},
        }
        config_path = directory / "config.yml"
        config_path.write_text(yaml.safe_dump(config))
        log_path = directory / "registry.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [binary, "serve", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        registry = cls(f"127.0.0.1:{port}", username, password, directory, process, log_path)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RegistryError(
                    f"docker-registry exited ({process.returncode}):\n{registry.log()}"
                )
            try:
                urllib.request.urlopen(f"{registry.url}/v2/", timeout=1)  # loopback
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # up, and asking for a login
                    return registry
            except OSError:
                pass
            time.sleep(0.05)
        registry.stop()
        raise RegistryError(f"docker-registry did not answer within 30 s:\n{registry.log()}")
