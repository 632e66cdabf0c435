"""Strategies as OCI artifacts, against a real registry (Debian's docker-registry, htpasswd).

Push, resolve and pull with kubetrade's own client and with `kubetrade strategy`, the
CNCF wasm layout on the wire, the older layer type read, logins from docker config
files, and every way a blob can be tampered with refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.registry import Registry as OciRegistry
from e2e.registry import start_registry
from helpers import ROOT, SMA_WASM

from kubetrade.runner.oci import OciError, Reference, RegistryAuth, load_docker_config
from kubetrade.runner.oci.artifact import (
    CONFIG_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    LEGACY_LAYER_MEDIA_TYPE,
    pull_strategy,
    push_strategy,
    resolve_digest,
)
from kubetrade.runner.oci.auth import Login
from kubetrade.runner.oci.registry import OCI_MANIFEST, Registry, sha256_digest

KUBETRADE = Path(sys.executable).parent / "kubetrade"
WASM = SMA_WASM.read_bytes()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    running = start_registry(tmp_path_factory.mktemp("registry"))
    yield running
    running.stop()


@pytest.fixture
def auth(registry: OciRegistry, tmp_path: Path) -> RegistryAuth:
    return load_docker_config(_docker_config(registry, tmp_path / "config.json"))


def ref(registry: OciRegistry, path: str) -> Reference:
    return Reference.parse(f"{registry.host}/{path}")


def _docker_config(registry: OciRegistry, path: Path) -> Path:
    """The registry's login in a docker config file, as `docker login` leaves it."""
    path.write_text(registry.docker_config())
    return path


async def test_push_then_pull_by_tag_and_by_digest(
    registry: OciRegistry, auth: RegistryAuth
) -> None:
    tag = ref(registry, "strategies/sma:v1")
    digest = await push_strategy(WASM, tag, name="sma", revision="abc123", auth=auth)
    assert await resolve_digest(tag, auth=auth) == digest
    by_tag = await pull_strategy(tag, auth=auth)
    by_digest = await pull_strategy(tag.with_digest(digest), auth=auth)
    assert by_tag.wasm == by_digest.wasm == WASM
    assert by_tag.manifest_digest == by_digest.manifest_digest == digest
    assert by_tag.layer_digest == sha256_digest(WASM)
    assert by_tag.annotations["io.kubetrade.strategy.abi-version"] == "1"
    assert by_tag.annotations["org.opencontainers.image.revision"] == "abc123"
    # The same module pushed again is the same artifact: the digest is reproducible.
    assert await push_strategy(WASM, tag, name="sma", revision="abc123", auth=auth) == digest


async def test_the_manifest_follows_the_cncf_wasm_layout(
    registry: OciRegistry, auth: RegistryAuth
) -> None:
    tag = ref(registry, "strategies/layout:v1")
    await push_strategy(WASM, tag, name="layout", auth=auth)
    async with Registry(tag, auth=auth) as client:
        _, manifest, _ = await client.manifest()
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    [layer] = manifest["layers"]
    assert (layer["mediaType"], layer["size"]) == (LAYER_MEDIA_TYPE, len(WASM))


async def test_the_older_wasm_layer_type_is_read(registry: OciRegistry, auth: RegistryAuth) -> None:
    tag = ref(registry, "strategies/legacy:v1")
    config = b"{}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.wasm.config.v1+json",
                   "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": LEGACY_LAYER_MEDIA_TYPE, "digest": sha256_digest(WASM),
                    "size": len(WASM)}],
    }  # fmt: skip
    async with Registry(tag, auth=auth) as client:
        await client.put_blob(config)
        await client.put_blob(WASM)
        await client.put_manifest(json.dumps(manifest).encode(), tag="v1")
    assert (await pull_strategy(tag, auth=auth)).wasm == WASM


async def test_an_image_that_is_not_a_strategy_is_refused(
    registry: OciRegistry, auth: RegistryAuth
) -> None:
    tag = ref(registry, "strategies/image:v1")
    config, layer = b"{}", b"not a strategy"
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256_digest(layer), "size": len(layer)}],
    }  # fmt: skip
    async with Registry(tag, auth=auth) as client:
        await client.put_blob(config)
        await client.put_blob(layer)
        await client.put_manifest(json.dumps(manifest).encode(), tag="v1")
    with pytest.raises(OciError, match="exactly one application/wasm layer; this one has 0"):
        await pull_strategy(tag, auth=auth)


async def test_a_tampered_blob_is_refused(registry: OciRegistry, auth: RegistryAuth) -> None:
    tag = ref(registry, "strategies/tampered:v1")
    module = WASM + b"\0"  # a blob of its own, so tampering it spoils no other test
    digest = await push_strategy(module, tag, name="tampered", auth=auth)
    blob = registry.blob_file(sha256_digest(module))
    original = blob.read_bytes()
    blob.write_bytes(original[:-1] + b"\1")
    try:
        for reference in (tag, tag.with_digest(digest)):
            with pytest.raises(OciError, match="was changed; refusing it"):
                await pull_strategy(reference, auth=auth)
    finally:
        blob.write_bytes(original)


async def test_a_manifest_other_than_the_pinned_digest_is_refused(
    registry: OciRegistry, auth: RegistryAuth
) -> None:
    tag = ref(registry, "strategies/moved:v1")
    first = await push_strategy(WASM, tag, name="first", auth=auth)
    await push_strategy(WASM, tag, name="second", auth=auth)  # the tag moves on
    assert await resolve_digest(tag, auth=auth) != first
    # Pinned, the first is still what is read: a moved tag changes nothing pinned.
    assert (await pull_strategy(tag.with_digest(first), auth=auth)).manifest_digest == first
    other = "sha256:" + "0" * 64
    with pytest.raises(OciError, match="not found in the registry"):
        await pull_strategy(tag.with_digest(other), auth=auth)


async def test_a_pinned_strategy_pulled_once_loads_without_the_registry(
    tmp_path: Path, registry: OciRegistry, auth: RegistryAuth
) -> None:
    tag = ref(registry, "strategies/cached:v1")
    digest = await push_strategy(WASM, tag, name="cached", auth=auth)
    pinned = tag.with_digest(digest)
    cache = tmp_path / "cache"
    await pull_strategy(pinned, auth=auth, cache_dir=cache)
    unreachable = Reference.parse(f"127.0.0.1:9/{pinned.repository}@{digest}")
    assert (await pull_strategy(unreachable, cache_dir=cache)).wasm == WASM
    # A changed cache entry is not used: without the registry, that is an error.
    entry = cache / sha256_digest(WASM).replace(":", "-")
    entry.write_bytes(b"\0asm\1\0\0\0")
    with pytest.raises(OciError, match="cannot reach the registry"):
        await pull_strategy(unreachable, cache_dir=cache)
    assert (await pull_strategy(pinned, auth=auth, cache_dir=cache)).wasm == WASM


async def test_logins_missing_or_wrong_are_clear_errors(registry: OciRegistry) -> None:
    tag = ref(registry, "strategies/sma:v1")
    with pytest.raises(OciError, match="needs a login and no credentials were given"):
        await resolve_digest(tag)
    wrong = RegistryAuth({registry.host: Login("kubetrade", "nope")})
    with pytest.raises(OciError, match="the credentials given were refused") as refused:
        await push_strategy(WASM, tag, name="x", auth=wrong)
    assert registry.password not in str(refused.value)


def test_references_are_parsed_as_docker_does() -> None:
    assert str(Reference.parse("127.0.0.1:5000/s/sma:v1")) == "127.0.0.1:5000/s/sma:v1"
    hub = Reference.parse("sma")
    assert (hub.registry, hub.repository, hub.tag, hub.api_host) == (
        "docker.io", "library/sma", "latest", "registry-1.docker.io",
    )  # fmt: skip
    pinned = Reference.parse("ghcr.io/acme/sma@sha256:" + "a" * 64)
    assert pinned.pinned and pinned.tag is None and pinned.manifest_ref == "sha256:" + "a" * 64
    for bad in ("ghcr.io/Acme/sma:v1", "ghcr.io/acme/sma@sha256:abc", "ghcr.io/acme/sma:-v"):
        with pytest.raises(OciError):
            Reference.parse(bad)


def _kubetrade(*args: str | Path, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    if cache is not None:  # the runner's caches (compiled modules, pulled strategies) here
        env["KUBETRADE_CACHE"] = str(cache)
    return subprocess.run(
        [str(KUBETRADE), *map(str, args)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False, env=env,
    )  # fmt: skip


def test_kubetrade_strategy_push_and_pull(tmp_path: Path, registry: OciRegistry) -> None:
    config = _docker_config(registry, tmp_path / "config.json")
    reference = f"{registry.host}/strategies/cli:v1"
    pushed = _kubetrade("strategy", "push", SMA_WASM, reference, "--registry-config", config)
    assert pushed.returncode == 0, pushed.stderr
    pinned = pushed.stdout.strip()
    assert pinned.startswith(f"{reference}@sha256:") or pinned.startswith(
        f"{registry.host}/strategies/cli@sha256:"
    )
    out = tmp_path / "pulled.wasm"
    pulled = _kubetrade("strategy", "pull", pinned, "-o", out, "--registry-config", config)
    assert pulled.returncode == 0, pulled.stderr
    assert out.read_bytes() == WASM and pulled.stdout.strip() == pinned.split("@")[1]
    # Bad input: exit 2, one line, no traceback, no password.
    for args in (
        ("strategy", "push", tmp_path / "config.json", reference, "--registry-config", config),
        ("strategy", "pull", f"{registry.host}/strategies/cli:v1", "-o", out),
        ("strategy", "pull", "Not/A:Ref!", "-o", out),
    ):
        result = _kubetrade(*args)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert registry.password not in result.stderr


def _session(tmp_path: Path, strategy: str, name: str) -> Path:
    """The demo session with its strategy given as `strategy` (a YAML mapping)."""
    text = (ROOT / "examples" / "session.yaml").read_text()
    text = text.replace("    path: ../strategies/examples/sma/sma.wasm\n", f"    {strategy}\n")
    bars = ROOT / "examples" / "data" / "btcusdt_1m_synthetic.csv"
    text = text.replace("path: data/btcusdt_1m_synthetic.csv", f"path: {bars}")
    text = text.replace("name: sma-demo", f"name: {name}")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_kubetrade_run_pulls_verifies_and_runs_an_oci_strategy(
    tmp_path: Path, registry: OciRegistry
) -> None:
    config = _docker_config(registry, tmp_path / "config.json")
    reference = f"{registry.host}/strategies/run:v1"
    pushed = _kubetrade("strategy", "push", SMA_WASM, reference, "--registry-config", config)
    assert pushed.returncode == 0, pushed.stderr
    pinned = pushed.stdout.strip()
    common = ("--max-bars", "400", "--no-http", "--quiet")
    figures = {}
    for name, strategy, extra in (
        ("by-path", f"path: {SMA_WASM}", ()),
        ("by-tag", f"oci: {{reference: '{reference}'}}", ("--registry-config", config)),
        ("by-digest", f"oci: {{reference: '{pinned}'}}", ("--registry-config", config)),
    ):
        summary = tmp_path / f"{name}.json"
        ran = _kubetrade(
            "run", _session(tmp_path, strategy, name), *common, *extra, "--summary-json", summary,
            cache=tmp_path / "cache",
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        figures[name] = {
            k: v for k, v in json.loads(summary.read_text()).items() if k != "duration_s"
        }
    # The same module, wherever it came from: the same orders on the same bars.
    assert figures["by-tag"] == figures["by-digest"] == figures["by-path"]
    assert figures["by-path"]["orders"] > 0
    # Pulled once, kept by digest: the manifest (pinned) and the module.
    kept = {p.name for p in (tmp_path / "cache" / "oci").iterdir()}
    assert {pinned.split("@")[1].replace(":", "-"), sha256_digest(WASM).replace(":", "-")} <= kept

    # Bad sources stop the run before it starts: exit 2, one line, no traceback, no password.
    tampered = WASM + b"\0\0"
    tampered_ref = f"{registry.host}/strategies/run-tampered:v1"
    digest_of_tampered = sha256_digest(tampered)
    module = tmp_path / "tampered.wasm"
    module.write_bytes(tampered)
    pushed = _kubetrade("strategy", "push", module, tampered_ref, "--registry-config", config)
    assert pushed.returncode == 0, pushed.stderr
    blob = registry.blob_file(digest_of_tampered)
    blob.write_bytes(tampered[:-1] + b"\1")
    missing = f"{registry.host}/strategies/run:v9"
    cases = {
        "was changed; refusing it": (tampered_ref, ("--registry-config", config)),
        "not found in the registry": (missing, ("--registry-config", config)),
        "needs a login and no credentials were given": (
            reference, ("--registry-config", tmp_path / "empty.json")
        ),
    }  # fmt: skip
    (tmp_path / "empty.json").write_text('{"auths": {}}')
    for message, (source, extra) in cases.items():
        path = _session(tmp_path, f"oci: {{reference: '{source}'}}", "bad")
        result = _kubetrade("run", path, *common, *extra, cache=tmp_path / "cache")
        assert result.returncode == 2, result.stderr
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert registry.password not in result.stderr


async def test_errors_say_whether_a_retry_can_help(
    registry: OciRegistry, auth: RegistryAuth
) -> None:
    # The operator resolves a session's tag at every resync until it can: the kind of an
    # error tells a registry that is down (try again) from a reference or login to fix.
    tag = ref(registry, "strategies/kinds:v1")
    await push_strategy(WASM, tag, name="kinds", auth=auth)
    cases = {
        "not-found": (ref(registry, "strategies/kinds:v2"), auth),
        "unauthorized": (tag, RegistryAuth()),
        "unreachable": (Reference.parse(f"127.0.0.1:9/{tag.repository}:v1"), auth),
    }
    for kind, (reference, login) in cases.items():
        with pytest.raises(OciError) as raised:
            await resolve_digest(reference, auth=login)
        assert raised.value.kind == kind, (kind, str(raised.value))
