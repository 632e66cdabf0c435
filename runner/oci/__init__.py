"""Strategies as OCI artifacts: push, pull and resolve them in any OCI registry.

`reference` parses image references, `auth` finds credentials (a docker config file,
a Kubernetes pull Secret) and answers a registry's challenge, `registry` speaks the
OCI distribution protocol over aiohttp, and `artifact` lays a .wasm out as the CNCF
wasm artifact (config `application/vnd.wasm.config.v0+json`, one `application/wasm`
layer) and reads it back, the older `application/vnd.wasm.content.layer.v1+wasm`
layer included. Every blob read is checked against its digest.
"""

from kubetrade.runner.oci.artifact import (
    WasmArtifact,
    pull_strategy,
    push_strategy,
    resolve_digest,
)
from kubetrade.runner.oci.auth import RegistryAuth, load_docker_config
from kubetrade.runner.oci.errors import OciError
from kubetrade.runner.oci.reference import Reference

__all__ = [
    "OciError",
    "Reference",
    "RegistryAuth",
    "WasmArtifact",
    "load_docker_config",
    "pull_strategy",
    "push_strategy",
    "resolve_digest",
]
