"""Who the operator is to the API server: the pod's ServiceAccount, or a kubeconfig.

No Kubernetes client library: `load_login` finds the credentials as kubectl does
(--kubeconfig, else the pod's ServiceAccount, else $KUBECONFIG or ~/.kube/config) and
gives them as a kopf.ConnectionInfo, which kopf and our own client (kube.Kube) both use,
so the operator acts as one user.

Tokens rotate. A ServiceAccount's bound token, and a kubeconfig's tokenFile, is read
again once a minute and at once when the API server refuses it (401); an exec plugin's
(client.authentication.k8s.io ExecCredential, as for EKS or GKE) is made again when it
expires or is refused. Kubeconfig fields: server, certificate-authority(-data),
insecure-skip-tls-verify, client-certificate(-data), client-key(-data), token,
tokenFile, username/password, exec and the context's namespace; file paths relative
to the kubeconfig that names them. Not supported: auth-provider plugins (their cached
access-token is used as it is, never refreshed), proxy-url, and an exec plugin that
asks for a terminal; an exec plugin's client certificate is read once, at start.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import kopf
import yaml

SERVICE_ACCOUNT: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_FILE_SECONDS: Final = 60.0  # a token read from a file is read again after this long
EXEC_SECONDS: Final = 60.0  # the longest an exec plugin may take
EXEC_EARLY: Final = timedelta(seconds=30)  # an exec token is made again this long before expiry
EXEC_API: Final = "client.authentication.k8s.io/v1"

# Fields of a kubeconfig entry that name a file, relative to the kubeconfig.
_FILES: Final = {
    "clusters": ("certificate-authority",),
    "users": ("client-certificate", "client-key", "tokenFile"),
}

Fields = dict[str, Any]  # keyword arguments of kopf.ConnectionInfo


@dataclass(slots=True)
class Login:
    """The operator's identity. `info()` gives its credentials as they are now.

    `renew` fetches what changes (a token, perhaps a client certificate): again after
    `every` seconds, when what it gave expires, or when `info(refresh=True)` says the
    API server refused it. kopf calls its login handler from a thread, hence the lock.
    """

    base: kopf.ConnectionInfo
    renew: Callable[[], Fields] | None = None
    every: float | None = None
    _fields: Fields | None = None
    _fetched: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def renewable(self) -> bool:
        """Whether asking again could give other credentials (worth a retry after a 401)."""
        return self.renew is not None

    def info(self, *, refresh: bool = False) -> kopf.ConnectionInfo:
        if self.renew is None:
            return self.base
        with self._lock:
            now = time.monotonic()
            fields = self._fields
            if (
                refresh
                or fields is None
                or (self.every is not None and now - self._fetched >= self.every)
                or _expiring(fields.get("expiration"))
            ):
                fields = self.renew()  # a failure raises, and the next call tries again
                self._fields, self._fetched = fields, now
            return dataclasses.replace(self.base, **fields)


def load_login(kubeconfig: Path | None = None) -> Login:
    """From `kubeconfig`, or else the pod's ServiceAccount, or else $KUBECONFIG/~/.kube."""
    if kubeconfig is not None:
        return _from_kubeconfig([kubeconfig])
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if host and port and (SERVICE_ACCOUNT / "token").is_file():
        return _in_cluster(host, port)
    paths = [Path(p).expanduser() for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    default = Path("~/.kube/config").expanduser()
    if not paths and default.is_file():
        paths = [default]
    if not paths:
        raise kopf.LoginError(
            "no Kubernetes credentials: not in a pod (no KUBERNETES_SERVICE_HOST and "
            f"ServiceAccount token) and no kubeconfig ($KUBECONFIG is unset, {default} does not "
            "exist); give --kubeconfig PATH"
        )
    return _from_kubeconfig(paths)


def _in_cluster(host: str, port: str) -> Login:
    """The pod's ServiceAccount, as the API server's in-cluster address tells it."""
    ca = SERVICE_ACCOUNT / "ca.crt"
    namespace = SERVICE_ACCOUNT / "namespace"
    base = kopf.ConnectionInfo(
        server=f"https://{f'[{host}]' if ':' in host else host}:{port}",
        ca_path=str(ca) if ca.is_file() else None,
        default_namespace=namespace.read_text().strip() if namespace.is_file() else None,
    )
    token = SERVICE_ACCOUNT / "token"
    return Login(base, renew=lambda: {"token": _read_token(token)}, every=TOKEN_FILE_SECONDS)


def _from_kubeconfig(paths: list[Path]) -> Login:
    """The current context of one or more kubeconfig files (the first mention wins)."""
    current: str | None = None
    tables: dict[str, dict[str, Fields]] = {"contexts": {}, "clusters": {}, "users": {}}
    for path in paths:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            # Line and column only: PyYAML's own text quotes the line, which in a kubeconfig
            # may hold a token or a key.
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise kopf.LoginError(f"the kubeconfig {path} is not valid YAML{where}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise kopf.LoginError(f"cannot read the kubeconfig {path}: {exc}") from None
        if not isinstance(document, dict):
            raise kopf.LoginError(f"the kubeconfig {path} is not a YAML mapping")
        current = current or document.get("current-context")
        for key, table in tables.items():
            for item in document.get(key) or []:
                entry = dict(item.get(key[:-1]) or {})  # "clusters" -> its "cluster" mapping
                for name in _FILES.get(key, ()):
                    if entry.get(name):
                        entry[name] = str(path.parent / Path(entry[name]).expanduser())
                table.setdefault(item.get("name"), entry)
    where = ", ".join(map(str, paths))
    if not current:
        raise kopf.LoginError(
            f"no current-context in {where}; pick one: kubectl config use-context"
        )
    context = _entry(tables["contexts"], current, "context", where)
    cluster = _entry(tables["clusters"], context.get("cluster"), "cluster", where)
    user = (
        _entry(tables["users"], context.get("user"), "user", where) if context.get("user") else {}
    )
    if not cluster.get("server"):
        raise kopf.LoginError(f"the cluster {context.get('cluster')!r} in {where} has no server")
    # A *-data field wins over its file, as with kubectl.
    ca_data, cert_data, key_data = (
        cluster.get("certificate-authority-data"),
        user.get("client-certificate-data"),
        user.get("client-key-data"),
    )
    provider = (user.get("auth-provider") or {}).get("config") or {}
    base = kopf.ConnectionInfo(
        server=str(cluster["server"]).rstrip("/"),
        ca_path=None if ca_data else cluster.get("certificate-authority"),
        ca_data=ca_data,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        certificate_path=None if cert_data else user.get("client-certificate"),
        certificate_data=cert_data,
        private_key_path=None if key_data else user.get("client-key"),
        private_key_data=key_data,
        username=user.get("username"),
        password=user.get("password"),
        token=user.get("token") or provider.get("access-token"),
        default_namespace=context.get("namespace"),
    )
    if user.get("exec"):
        spec: Mapping[str, Any] = user["exec"]
        return Login(base, renew=lambda: _exec_credential(spec))
    if user.get("tokenFile") and not base.token:
        token = Path(user["tokenFile"])
        return Login(base, renew=lambda: {"token": _read_token(token)}, every=TOKEN_FILE_SECONDS)
    return Login(base)


def _entry(table: dict[str, Fields], name: object, kind: str, where: str) -> Fields:
    if not isinstance(name, str) or name not in table:
        raise kopf.LoginError(f"no {kind} named {name!r} in {where}")
    return table[name]


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise kopf.LoginError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not token:
        raise kopf.LoginError(f"the token file {path} is empty")
    return token


def _expiring(expiration: datetime | None) -> bool:
    return expiration is not None and expiration - EXEC_EARLY <= datetime.now(UTC)


def _exec_credential(spec: Mapping[str, Any]) -> Fields:
    """Run a kubeconfig's exec plugin; its ExecCredential status as ConnectionInfo fields."""
    command = str(spec.get("command") or "")
    if not command:
        raise kopf.LoginError("the kubeconfig's exec plugin names no command")
    api = spec.get("apiVersion") or EXEC_API
    env = {**os.environ, **{str(e["name"]): str(e.get("value", "")) for e in spec.get("env") or []}}
    # The plugin is told it has no terminal: the operator has no one to ask.
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {"apiVersion": api, "kind": "ExecCredential", "spec": {"interactive": False}}
    )
    try:
        done = subprocess.run(
            [command, *map(str, spec.get("args") or [])],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=EXEC_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise kopf.LoginError(f"the exec plugin {command} did not run: {exc}") from None
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [""])[-1][:300]
        raise kopf.LoginError(f"the exec plugin {command} exited {done.returncode}: {said}")
    try:
        status = json.loads(done.stdout).get("status") or {}
    except (ValueError, AttributeError):
        raise kopf.LoginError(
            f"the exec plugin {command} did not print an ExecCredential"
        ) from None
    fields: Fields = {}
    if status.get("token"):
        fields["token"] = str(status["token"])
    if status.get("clientCertificateData") and status.get("clientKeyData"):
        fields |= {  # in place of the kubeconfig's client certificate, if it has one
            "certificate_path": None,
            "certificate_data": str(status["clientCertificateData"]),
            "private_key_path": None,
            "private_key_data": str(status["clientKeyData"]),
        }
    if not fields:
        raise kopf.LoginError(
            f"the exec plugin {command} gave neither a token nor a client certificate"
        )
    if status.get("expirationTimestamp"):
        stamp = str(status["expirationTimestamp"]).replace("Z", "+00:00")
        try:
            expiration = datetime.fromisoformat(stamp)
        except ValueError:
            raise kopf.LoginError(
                f"the exec plugin {command} gave an expirationTimestamp that is not RFC 3339"
            ) from None
        # kopf logs in again before this; so does Login.info.
        fields["expiration"] = expiration if expiration.tzinfo else expiration.replace(tzinfo=UTC)
    return fields
