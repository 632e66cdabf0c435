"""Container mode of the node agent: a pod's containers as podman containers of their images.

With `--runtime podman` the agent runs each container the way a kubelet with a container
runtime would, instead of as a local process (node_pod.py decides which; the pod's life,
probes, restarts, status and deletion are the same in both modes):

- **Image.** Pulled by the container's imagePullPolicy (Always; IfNotPresent; Never) with
  the pod's imagePullSecrets (the node may read the Secrets of pods bound to it), over
  plain HTTP for the registries the agent is told are insecure (`--insecure-registry`).
  A failed pull is ErrImagePull, then ImagePullBackOff, retried with the kubelet's back-off.
- **Files.** The volumes node_files.py materializes are bind-mounted at their mountPaths:
  configMap, secret, downwardAPI and projected (the ServiceAccount token, ca.crt and
  namespace at /var/run/secrets/kubernetes.io/serviceaccount) read-only, emptyDirs
  read-write (0777, shared by the pod's containers). fsGroup owns the files.
- **Command.** command/args as the kubelet applies them over the image's entrypoint and
  default arguments, with $(VAR) expansion; env as the pod declares it, plus
  KUBERNETES_SERVICE_HOST/PORT naming the API server, so in-cluster clients work.
- **Security.** runAsUser/runAsGroup (`--user`), fsGroup and supplementalGroups
  (`--group-add`), runAsNonRoot checked against the image's user, readOnlyRootFilesystem
  (`--read-only`, with no tmpfs added), capabilities, allowPrivilegeEscalation: false
  (`no-new-privileges`), privileged, seccomp Unconfined; resources' cpu and memory.
- **Network.** The host's (`--network host`): pods reach the API server on 127.0.0.1 and
  each other at their pod IPs through the agent's proxies, exactly as in process mode, so a
  container listens on the host ports the agent gives it (node_files.container_argv).
  Service names (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`) are in its
  /etc/hosts, for the ready pods on this node that the Services select, as they are when
  the container starts: a Service whose port is its pods' containerPort works by name.
- **Status.** From podman: running once podman says so, exit codes, OOMKilled, StartError
  for a command that never started; containerID `podman://<id>`, imageID the image's digest.

Every container carries the agent's pid as a label; an agent removes the containers of
agents that are gone when it starts, and the harness removes an agent's when it stops it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from .node_files import Mount, PodSetupError

log = logging.getLogger("node_agent.container")

Obj = dict[str, Any]

LABEL_AGENT_PID: Final = "io.kubetrade.e2e.agent-pid"
LABEL_NAMESPACE: Final = "io.kubernetes.pod.namespace"
LABEL_POD: Final = "io.kubernetes.pod.name"
LABEL_POD_UID: Final = "io.kubernetes.pod.uid"
LABEL_CONTAINER: Final = "io.kubernetes.container.name"
ID_PREFIX: Final = "podman://"
_NEVER: Final = "0001-01-01T00:00:00Z"  # Go's zero time: podman's "not yet"


class PodmanError(Exception):
    """podman exited non-zero (or took too long); the message is its error output."""

    def __init__(self, args: Sequence[str], code: int | None, output: str) -> None:
        super().__init__(f"podman {' '.join(args[:2])}: {output or f'exit {code}'}")
        self.code = code
        self.output = output


async def podman(*args: str, seconds: float = 120) -> str:
    """Run podman (with the agent's CONTAINERS_CONF); its stdout, or PodmanError."""
    process = await asyncio.create_subprocess_exec(
        "podman",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), seconds)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise PodmanError(args, None, f"no answer within {seconds:g} s") from None
    if process.returncode != 0:
        raise PodmanError(args, process.returncode, err.decode(errors="replace").strip())
    return out.decode(errors="replace")


# --- images --------------------------------------------------------------------------------


def registry_of(image: str) -> str:
    """The registry host of an image reference, as docker and podman read it."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def docker_config(secrets: Iterable[Obj]) -> Obj:
    """One auth file (`{"auths": {...}}`, which podman's --authfile reads) from the pod's
    imagePullSecrets: kubernetes.io/dockerconfigjson and the older kubernetes.io/dockercfg.
    For a registry named by two secrets the first wins."""
    auths: Obj = {}
    for secret in secrets:
        data = secret.get("data") or {}
        if ".dockerconfigjson" in data:
            entries = json.loads(base64.b64decode(data[".dockerconfigjson"])).get("auths") or {}
        elif ".dockercfg" in data:
            entries = json.loads(base64.b64decode(data[".dockercfg"]))
        else:
            continue
        for server, entry in entries.items():
            host = re.sub(r"^https?://", "", server).split("/", 1)[0]
            if host in auths or not isinstance(entry, dict):
                continue
            auth = entry.get("auth")
            if not auth and "username" in entry:
                auth = base64.b64encode(
                    f"{entry['username']}:{entry.get('password', '')}".encode()
                ).decode()
            if auth:
                auths[host] = {"auth": auth}
    return {"auths": auths}


async def image_present(image: str) -> bool:
    try:
        await podman("image", "exists", image, seconds=60)
    except PodmanError:
        return False
    return True


async def pull(image: str, *, authfile: str | None, tls_verify: bool) -> None:
    """Pull the image; PodmanError with podman's message if it cannot."""
    args = ["pull", "--quiet", f"--tls-verify={str(tls_verify).lower()}"]
    if authfile:
        args.append(f"--authfile={authfile}")
    await podman(*args, image, seconds=900)


async def image_inspect(image: str) -> Obj:
    """The local image's inspect record (Id, Digest, RepoDigests, Config)."""
    found: list[Obj] = json.loads(await podman("image", "inspect", "--format=json", image))
    return found[0]


def image_id(image: str, inspected: Obj) -> str:
    """What a kubelet reports as imageID: the image pinned by its digest in the registry."""
    if "@" in image:
        return image
    repository = image
    if ":" in repository.rsplit("/", 1)[-1]:  # a tag
        repository = repository.rsplit(":", 1)[0]
    return f"{repository}@{inspected.get('Digest') or inspected['Id']}"


# --- the container's options ---------------------------------------------------------------

_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?")
_FACTORS: Final = {
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity (`512Mi`, `100m`, `1.5`, `2G`) as a number."""
    match = _QUANTITY.fullmatch(str(value).strip())
    if match is None:
        raise PodSetupError("CreateContainerConfigError", f"invalid quantity {value!r}")
    try:
        return Decimal(match[1]) * _FACTORS[match[2] or ""]
    except InvalidOperation:
        raise PodSetupError("CreateContainerConfigError", f"invalid quantity {value!r}") from None


def resource_options(container: Obj) -> list[str]:
    """Memory and CPU limits, and the CPU request as a share, as the kubelet sets them."""
    resources = container.get("resources") or {}
    limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
    options = []
    if "memory" in limits:
        options.append(f"--memory={int(quantity(limits['memory']))}")
    if "cpu" in limits:
        options.append(f"--cpus={quantity(limits['cpu']).normalize():f}")
    request = requests.get("cpu", limits.get("cpu"))
    if request is not None:
        options.append(f"--cpu-shares={max(2, int(quantity(request) * 1024))}")
    return options


def _setting(pod_spec: Obj, container: Obj, key: str) -> Any:
    """A securityContext field: the container's, else the pod's."""
    own = (container.get("securityContext") or {}).get(key)
    return own if own is not None else (pod_spec.get("securityContext") or {}).get(key)


def security_options(pod_spec: Obj, container: Obj, image_user: str) -> list[str]:
    """podman options for the pod's and the container's securityContext.

    PodSetupError (CreateContainerConfigError) where the kubelet refuses to start it: a
    runAsNonRoot container that would run as root, or whose image user cannot be checked.
    """
    user = _setting(pod_spec, container, "runAsUser")
    group = _setting(pod_spec, container, "runAsGroup")
    image_uid = (image_user or "0").split(":", 1)[0] or "0"
    if _setting(pod_spec, container, "runAsNonRoot"):
        if user is None and not image_uid.isdigit():
            raise PodSetupError(
                "CreateContainerConfigError",
                f"container has runAsNonRoot and image has non-numeric user ({image_uid}),"
                " cannot verify user is non-root",
            )
        if int(user if user is not None else image_uid) == 0:
            raise PodSetupError(
                "CreateContainerConfigError",
                "container has runAsNonRoot and image will run as root",
            )
    options = []
    if user is not None or group is not None:
        uid = str(user) if user is not None else image_uid
        options.append(f"--user={uid}:{group}" if group is not None else f"--user={uid}")
    pod_context = pod_spec.get("securityContext") or {}
    groups = [pod_context.get("fsGroup"), *(pod_context.get("supplementalGroups") or [])]
    options += [f"--group-add={g}" for g in dict.fromkeys(groups) if g is not None]
    context = container.get("securityContext") or {}
    if context.get("readOnlyRootFilesystem"):
        # Only the root: podman would otherwise add tmpfs mounts the kubelet does not.
        options += ["--read-only", "--read-only-tmpfs=false"]
    if context.get("privileged"):
        options.append("--privileged")
    if context.get("allowPrivilegeEscalation") is False:
        options.append("--security-opt=no-new-privileges")
    capabilities = context.get("capabilities") or {}
    options += [f"--cap-drop={c}" for c in capabilities.get("drop") or []]
    options += [f"--cap-add={c}" for c in capabilities.get("add") or []]
    seccomp = _setting(pod_spec, container, "seccompProfile") or {}
    if seccomp.get("type") == "Unconfined":
        options.append("--security-opt=seccomp=unconfined")
    elif seccomp.get("type") == "Localhost":
        raise PodSetupError(
            "CreateContainerConfigError", "seccompProfile Localhost: not supported by this node"
        )
    return options


def run_arguments(
    *,
    name: str,
    labels: Mapping[str, str],
    hostname: str,
    image: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    mounts: Sequence[Mount],
    options: Sequence[str],
    workdir: str | None,
    hosts: Mapping[str, str] | None = None,
) -> list[str]:
    """`podman run` arguments for one container: attached (its output is the caller's), on
    the host's network, with exactly the given argv (command and args applied already)."""
    if not argv:
        raise PodSetupError("CreateContainerConfigError", "no command specified")
    arguments = [
        "run",
        f"--name={name}",
        "--network=host",
        f"--hostname={hostname}",
        "--pull=never",  # pulled already, by the pod's policy and secrets
        "--http-proxy=false",  # the agent's proxy settings are not the pod's
        "--stop-signal=SIGTERM",
    ]
    arguments += [f"--label={key}={value}" for key, value in labels.items()]
    for key, value in env.items():
        arguments += ["--env", f"{key}={value}"]  # always KEY=VALUE: never the agent's own
    for mount in mounts:
        spec = f"type=bind,source={mount.source},destination={mount.target}"
        arguments.append(f"--mount={spec}" + (",ro=true" if mount.read_only else ""))
    if workdir:
        arguments.append(f"--workdir={workdir}")
    # Service names, in the container's /etc/hosts: the cluster has no DNS.
    arguments += [f"--add-host={name}:{address}" for name, address in (hosts or {}).items()]
    arguments += options
    # A JSON entrypoint is the whole argv: the image's default arguments are dropped.
    arguments += [f"--entrypoint={json.dumps(list(argv))}", image]
    return arguments


# --- a container's life --------------------------------------------------------------------


async def inspect(name: str) -> Obj | None:
    """The container's inspect record, or None if it does not exist (yet, or any more)."""
    try:
        found: list[Obj] = json.loads(
            await podman("container", "inspect", "--format=json", name, seconds=60)
        )
    except PodmanError:
        return None
    return found[0] if found else None


async def signal(name: str, signal_name: str) -> bool:
    """Send a signal to the container's process; False if it is not running."""
    try:
        await podman("kill", f"--signal={signal_name}", name, seconds=60)
    except PodmanError:
        return False
    return True


async def remove(name: str) -> None:
    try:
        await podman("rm", "--force", "--ignore", "--time=0", name, seconds=120)
    except PodmanError as exc:
        log.warning("removing container %s: %s", name, exc)


async def exec_probe(name: str, command: Sequence[str], seconds: float) -> tuple[bool, str]:
    """An exec probe: the command in the running container; passes on exit code 0."""
    try:
        await podman("exec", name, *command, seconds=seconds)
    except PodmanError as exc:
        return False, str(exc)
    return True, ""


def kube_time(podman_time: str) -> str:
    """podman's RFC 3339 time (nanoseconds) in the API's format (seconds)."""
    text = re.sub(r"\.\d+", "", podman_time).replace("Z", "+00:00")
    return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def started(info: Obj) -> bool:
    return str(info["State"].get("StartedAt") or _NEVER) != _NEVER


async def remove_orphans(alive: Iterable[int]) -> list[str]:
    """Remove the containers of agents that are gone (a killed test run); their names."""
    keep = {str(pid) for pid in alive}
    listing = await podman(
        "ps", "--all", "--format=json", f"--filter=label={LABEL_AGENT_PID}", seconds=60
    )
    gone = []
    for entry in json.loads(listing or "[]"):
        owner = (entry.get("Labels") or {}).get(LABEL_AGENT_PID, "")
        if owner not in keep and not _pid_alive(owner):
            name = (entry.get("Names") or [entry["Id"]])[0]
            await remove(name)
            gone.append(name)
    return gone


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
