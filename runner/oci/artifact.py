"""A strategy as an OCI artifact: the CNCF wasm artifact layout, pushed and pulled.

The layout (CNCF TAG Runtime's "Wasm OCI Artifact layout"): an OCI image manifest whose
config has media type `application/vnd.wasm.config.v0+json` and whose one layer is the
module, `application/wasm`. kubetrade adds annotations: the strategy's name, the ABI
version it was built for, and the source revision. Pulling also reads the older layout
(`application/vnd.wasm.content.layer.v1+wasm`, from wasm-to-oci), and checks every blob
against its digest: the manifest's own digest when the reference is pinned, the layer's
digest always. Pulled modules are kept in a cache by digest and verified again on every
load.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kubetrade.runner.oci.auth import RegistryAuth
from kubetrade.runner.oci.errors import OciError
from kubetrade.runner.oci.reference import Reference
from kubetrade.runner.oci.registry import OCI_MANIFEST, Descriptor, Registry, sha256_digest

CONFIG_MEDIA_TYPE: Final = "application/vnd.wasm.config.v0+json"
LAYER_MEDIA_TYPE: Final = "application/wasm"
LEGACY_LAYER_MEDIA_TYPE: Final = "application/vnd.wasm.content.layer.v1+wasm"
WASM_LAYERS: Final = frozenset({LAYER_MEDIA_TYPE, LEGACY_LAYER_MEDIA_TYPE})
ANNOTATION_NAME: Final = "org.opencontainers.image.title"
ANNOTATION_REVISION: Final = "org.opencontainers.image.revision"
ANNOTATION_ABI: Final = "io.kubetrade.strategy.abi-version"
ANNOTATION_STRATEGY: Final = "io.kubetrade.strategy.name"
ABI_VERSION: Final = "1"  # the argo-trading plugin ABI's API version


@dataclass(frozen=True, slots=True)
class WasmArtifact:
    """A pulled strategy: its module, the manifest's digest and its annotations."""

    wasm: bytes = field(repr=False)
    manifest_digest: str
    layer_digest: str
    annotations: dict[str, str]


def manifest_for(wasm: bytes, *, name: str, revision: str | None) -> tuple[bytes, bytes]:
    """The config blob and manifest bytes for `wasm` (deterministic: same input, same digest)."""
    layer = Descriptor(LAYER_MEDIA_TYPE, sha256_digest(wasm), len(wasm))
    config = json.dumps(
        {"architecture": "wasm", "os": "wasip1", "layerDigests": [layer.digest]},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    annotations = {ANNOTATION_NAME: name, ANNOTATION_STRATEGY: name, ANNOTATION_ABI: ABI_VERSION}
    if revision:
        annotations[ANNOTATION_REVISION] = revision
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor(CONFIG_MEDIA_TYPE, sha256_digest(config), len(config)).to_json(),
        "layers": [layer.to_json()],
        "annotations": annotations,
    }
    return config, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


async def push_strategy(
    wasm: bytes,
    reference: Reference,
    *,
    name: str,
    revision: str | None = None,
    auth: RegistryAuth | None = None,
) -> str:
    """Push `wasm` as a strategy artifact to `reference` (a tag); the manifest's digest."""
    if reference.tag is None:
        raise OciError(f"{reference}: push to a tag (name:tag); the digest is what comes back")
    config, manifest = manifest_for(wasm, name=name, revision=revision)
    async with Registry(reference, auth=auth) as registry:
        await registry.put_blob(config)
        await registry.put_blob(wasm)
        return await registry.put_manifest(manifest, tag=reference.tag)


async def resolve_digest(reference: Reference, *, auth: RegistryAuth | None = None) -> str:
    """The manifest digest a tag names now (a pinned reference: checked and returned)."""
    async with Registry(reference, auth=auth) as registry:
        return await registry.resolve()


def _wasm_layer(manifest: dict[str, object], reference: Reference) -> Descriptor:
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise OciError(f"{reference}: the manifest has no layers; is it a strategy artifact?")
    found = [
        Descriptor.from_json(layer, where=f"{reference} layer {index}")
        for index, layer in enumerate(layers)
        if isinstance(layer, dict) and layer.get("mediaType") in WASM_LAYERS
    ]
    if len(found) != 1:
        kinds = sorted({str(layer.get("mediaType")) for layer in layers if isinstance(layer, dict)})
        raise OciError(
            f"{reference}: a strategy artifact has exactly one {LAYER_MEDIA_TYPE} layer;"
            f" this one has {len(found)} (layer types: {', '.join(kinds) or 'none'})"
        )
    return found[0]


def default_cache_dir() -> Path:
    base = os.environ.get("KUBETRADE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "kubetrade"
    )
    return Path(base) / "oci"


def _cached(cache_dir: Path | None, digest: str) -> bytes | None:
    if cache_dir is None:
        return None
    try:
        data = (cache_dir / digest.replace(":", "-")).read_bytes()
    except OSError:
        return None
    # Verified on every load: a cache is a file anyone with the user's rights can change.
    return data if sha256_digest(data) == digest else None


def _keep(cache_dir: Path | None, digest: str, data: bytes) -> None:
    if cache_dir is None:
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = cache_dir / digest.replace(":", "-")
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(data)
        temporary.replace(target)
    except OSError:
        pass  # a read-only or full cache costs a download next time, nothing more


def _pinned_from_cache(
    reference: Reference, cache_dir: Path | None
) -> tuple[str, dict[str, object], Descriptor, bytes] | None:
    if reference.digest is None:
        return None
    raw = _cached(cache_dir, reference.digest)
    if raw is None:
        return None
    try:
        manifest = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(manifest, dict):
        return None
    layer = _wasm_layer(manifest, reference)
    wasm = _cached(cache_dir, layer.digest)
    return None if wasm is None else (reference.digest, manifest, layer, wasm)


async def pull_strategy(
    reference: Reference,
    *,
    auth: RegistryAuth | None = None,
    cache_dir: Path | None = None,
) -> WasmArtifact:
    """The strategy module `reference` names, every byte checked against its digest."""
    offline = _pinned_from_cache(reference, cache_dir)
    if offline is not None:
        # A pinned reference whose manifest and module are cached (and verified): a
        # restarted runner starts without the registry.
        manifest_digest, manifest, layer, wasm = offline
    else:
        async with Registry(reference, auth=auth) as registry:
            manifest_digest, manifest, raw = await registry.manifest()
            layer = _wasm_layer(manifest, reference)
            cached = _cached(cache_dir, layer.digest)
            if cached is None:
                wasm = await registry.blob(layer)
                _keep(cache_dir, layer.digest, wasm)
            else:
                wasm = cached
        if reference.pinned:
            _keep(cache_dir, manifest_digest, raw)
    annotations = manifest.get("annotations")
    return WasmArtifact(
        wasm=wasm,
        manifest_digest=manifest_digest,
        layer_digest=layer.digest,
        annotations={str(k): str(v) for k, v in annotations.items()}
        if isinstance(annotations, dict)
        else {},
    )
