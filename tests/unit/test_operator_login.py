"""The operator's login: kubeconfig files, the ServiceAccount, token rotation, exec plugins.

The operator against the real API server, by client certificate and by a ServiceAccount
token kubeconfig, is tests/e2e/test_operator.py's; here each way of logging in is checked
on its own, and a rotated token is followed through a 401 by a local HTTP server.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from aiohttp import web

from kubetrade.operator import login as login_module
from kubetrade.operator.kube import Kube
from kubetrade.operator.login import load_login


def kubeconfig(path: Path, user: dict[str, Any], **cluster: Any) -> Path:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "ctx",
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}],
        "clusters": [{"name": "c", "cluster": {"server": "https://example.test:6443/", **cluster}}],
        "users": [{"name": "u", "user": user}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    return path


def test_client_certificate_paths_are_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    path = kubeconfig(
        tmp_path / "conf" / "config",
        {"client-certificate": "certs/me.crt", "client-key": "/abs/me.key"},
        **{"certificate-authority": "ca.crt"},
    )
    info = load_login(path).info()
    assert info.server == "https://example.test:6443"
    assert info.ca_path == str(tmp_path / "conf" / "ca.crt")
    assert info.certificate_path == str(tmp_path / "conf" / "certs" / "me.crt")
    assert info.private_key_path == "/abs/me.key"
    assert info.default_namespace == "ns"
    assert info.as_http_headers() == {}  # the certificate is the identity


def test_data_fields_win_over_files_and_a_token_is_a_bearer(tmp_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"
    data = base64.b64encode(pem.encode()).decode()
    path = kubeconfig(
        tmp_path / "config",
        {"token": "t0k3n", "client-certificate": "x.crt", "client-certificate-data": data},
        **{"certificate-authority": "ca.crt", "certificate-authority-data": data},
    )
    info = load_login(path).info()
    assert (info.ca_path, info.ca_data) == (None, data)
    assert (info.certificate_path, info.certificate_data) == (None, data)
    assert info.as_http_headers() == {"Authorization": "Bearer t0k3n"}
    assert not load_login(path).renewable  # a fixed token: a 401 is not worth a retry


def test_kubeconfig_variable_merges_files_and_home_is_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    first = kubeconfig(tmp_path / "a", {"token": "first"})
    second = tmp_path / "b"
    second.write_text(yaml.safe_dump({"current-context": "other", "users": [
        {"name": "u", "user": {"token": "second"}}]}))  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", f"{second}:{first}")
    # current-context from the first file that has one ("other", which no file defines).
    with pytest.raises(kopf.LoginError, match="no context named 'other'"):
        load_login()
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    assert load_login().info().token == "first"  # the first mention of user "u" wins
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    kubeconfig(tmp_path / ".kube" / "config", {"token": "home"})
    assert load_login().info().token == "home"
    monkeypatch.setenv("HOME", str(tmp_path / "nobody"))
    with pytest.raises(kopf.LoginError, match="give --kubeconfig PATH"):
        load_login()


def test_in_cluster_token_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("one\n")
    (account / "ca.crt").write_text("ca")
    (account / "namespace").write_text("kubetrade-system")
    monkeypatch.setattr(login_module, "SERVICE_ACCOUNT", account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "ignored"))  # in a pod, the pod's identity
    login = load_login()
    info = login.info()
    assert (info.server, info.ca_path, info.token) == (
        "https://[fd00::1]:443",
        str(account / "ca.crt"),
        "one",
    )
    assert info.default_namespace == "kubetrade-system"
    (account / "token").write_text("two\n")  # the kubelet rotated it
    assert login.info().token == "one"  # read once a minute...
    assert login.info(refresh=True).token == "two"  # ...and at once after a 401
    (account / "token").write_text("three\n")
    login.every = 0.0
    assert login.info().token == "three"


def test_token_file_of_a_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    login = load_login(kubeconfig(tmp_path / "config", {"tokenFile": "token"}))
    assert login.renewable and login.info().token == "from-file"
    (tmp_path / "token").write_text("")
    with pytest.raises(kopf.LoginError, match="is empty"):
        login.info(refresh=True)


PLUGIN = """
import json, os, sys
from pathlib import Path
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
assert info["spec"]["interactive"] is False, info
count = Path(sys.argv[1])
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
if os.environ.get("PLUGIN_FAIL"):
    sys.exit("no credentials for you")
status = {"token": f"exec-{n}-{os.environ['PLUGIN_WORD']}", "expirationTimestamp": sys.argv[2]}
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential", "status": status}))
"""


def test_exec_plugin_token_is_made_again_when_it_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(PLUGIN)
    count = tmp_path / "count"

    def login_expiring_in(delta: timedelta) -> Any:
        stamp = (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")
        exec_spec = {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": sys.executable,
            "args": [str(plugin), str(count), stamp],
            "env": [{"name": "PLUGIN_WORD", "value": "hi"}],
        }
        return load_login(kubeconfig(tmp_path / "config", {"exec": exec_spec}))

    login = login_expiring_in(timedelta(hours=1))
    info = login.info()
    assert info.token == "exec-1-hi" and info.expiration is not None  # kopf renews before
    assert login.info().token == "exec-1-hi"  # still valid: not run again
    assert login.info(refresh=True).token == "exec-2-hi"  # refused: run again
    soon = login_expiring_in(timedelta(seconds=5))  # within the 30 s margin: every time
    assert soon.info().token == "exec-3-hi"
    assert soon.info().token == "exec-4-hi"
    monkeypatch.setenv("PLUGIN_FAIL", "1")
    with pytest.raises(kopf.LoginError, match="exited 1: no credentials for you"):
        soon.info()


def test_kubeconfig_errors_name_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("current-context: ''\n")
    with pytest.raises(kopf.LoginError, match="no current-context in"):
        load_login(path)
    path.write_text("- a list\n")
    with pytest.raises(kopf.LoginError, match="is not a YAML mapping"):
        load_login(path)
    kubeconfig(path, {})
    document = yaml.safe_load(path.read_text())
    document["users"] = []
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(kopf.LoginError, match="no user named 'u'"):
        load_login(path)
    broken = kubeconfig(tmp_path / "exec", {"exec": {"command": str(tmp_path / "nope")}})
    with pytest.raises(kopf.LoginError, match="did not run"):
        load_login(broken).info()


@pytest.fixture
async def api_server() -> AsyncIterator[tuple[str, list[str]]]:
    """Answers GET /x when the bearer token is "new", 401 otherwise; records the tokens."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        seen.append(token)
        if token != "new":
            return web.json_response({"reason": "Unauthorized", "message": "bad"}, status=401)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/x", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_a_refused_token_is_read_again_and_the_request_retried(
    tmp_path: Path, api_server: tuple[str, list[str]]
) -> None:
    url, seen = api_server
    (tmp_path / "token").write_text("old")
    path = kubeconfig(tmp_path / "config", {"tokenFile": "token"})
    document = yaml.safe_load(path.read_text())
    document["clusters"][0]["cluster"]["server"] = url
    path.write_text(json.dumps(document))
    async with Kube(load_login(path)) as kube:
        (tmp_path / "token").write_text("new")  # rotated after it was read
        assert await kube.request("GET", "/x") == {"ok": True}
        assert seen == ["old", "new"]
        (tmp_path / "token").write_text("revoked")
        await kube.request("GET", "/x")  # still "new": read again only after a 401
        assert seen == ["old", "new", "new"]


def test_a_broken_kubeconfig_is_named_without_quoting_its_secrets(tmp_path: Path) -> None:
    token = "kt-token-" + "Zq8" * 12
    path = tmp_path / "config"
    path.write_text(f"apiVersion: v1\nusers:\n- name: u\n  user:\n    token: {token}: x: [\n")
    with pytest.raises(kopf.LoginError) as refused:
        load_login(path)
    assert "is not valid YAML at line 5" in str(refused.value)
    assert token not in str(refused.value)
