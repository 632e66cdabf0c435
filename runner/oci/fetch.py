"""A session's strategy from a registry: what `kubetrade run` does with spec.strategy.oci.

The runner assembles a session before its event loop starts, so this is a plain function:
it reads the registry logins (`--registry-config`, a docker config file or a mounted pull
Secret's directory, else where docker and podman keep them), pulls the artifact and
checks every byte against its digest (`pull_strategy`). A pinned reference is served from
the per-digest cache when it is there, verified again, so a restarted runner starts
without the registry; a tag is asked of the registry every time.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubetrade.runner.oci.artifact import WasmArtifact, default_cache_dir, pull_strategy
from kubetrade.runner.oci.auth import load_docker_config
from kubetrade.runner.oci.reference import Reference


def fetch_strategy(
    reference: str, *, registry_config: Path | None = None, cache_dir: Path | None = None
) -> WasmArtifact:
    """The verified strategy `reference` names; OciError (one line, no secret) if not."""
    parsed = Reference.parse(reference)
    auth = load_docker_config(registry_config)
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    # Its own thread and loop: a caller that is itself inside an event loop (a test, an
    # embedding) could not asyncio.run here.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="oci-pull") as pool:
        return pool.submit(asyncio.run, pull_strategy(parsed, auth=auth, cache_dir=cache)).result()
