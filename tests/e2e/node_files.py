"""What the node agent gives a container instead of a filesystem: volumes, env, argv.

Nothing on the test machine runs containers, so a container becomes a local process with a
*root directory* standing in for its filesystem. The rules, which the operator's pods must
fit (they do in a real cluster too):

- Every volumeMount is materialized under the container's root at the same path: a ConfigMap
  mounted at /config becomes <root>/config/<key> files. configMap, secret, projected
  (configMap, secret, downwardAPI, serviceAccountToken) and downwardAPI volumes are written as
  real files; emptyDir volumes are one directory per pod, linked into each container's root;
  a persistentVolumeClaim volume is the directory of the claim's bound hostPath volume
  (node_storage.py provisions them), the same for every pod of the claim.
- In the command, args, env values and workingDir, every absolute path that starts with a
  mountPath is rewritten to the same path under the root (/config/session.yaml ->
  <root>/config/session.yaml), also inside a longer string such as `--flag=/out/x` or
  `sh -c "cat /config/x"` (see path_rewriter for the exact boundaries). Other absolute paths
  are left alone: they name the "image", which is this machine. Paths *inside* mounted files
  are not rewritten, so a session file must refer to its strategy by a path relative to
  itself (../strategy/strategy.wasm), which resolves the same way in a real container.
- The process runs in <root> (or its translated workingDir) with PATH from the agent, HOME
  and TMPDIR inside <root>, PYTHONSAFEPATH=1, and the container's env; not the agent's env.
- $(VAR) references in command, args and env values expand as Kubernetes expands them.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .kubeclient import ApiError, KubeClient

Obj = dict[str, Any]
Files = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)


@dataclass(frozen=True, slots=True)
class HostDir:
    """A volume that is a directory of this machine: a claim's bound hostPath volume."""

    path: Path
    read_only: bool = False


Volume = Files | HostDir | None  # files to write, a directory to link, or an emptyDir

DEFAULT_MODE = 0o644


class PodSetupError(Exception):
    """The container cannot start yet; `reason` is the kubelet's waiting reason for it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class PodRef:
    """What volumes and env may read about the pod besides its spec."""

    pod: Obj
    pod_ip: str
    host_ip: str

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])


# --- reading ConfigMaps and Secrets -------------------------------------------------------


async def _fetch(client: KubeClient, ref: PodRef, kind: str, name: str, optional: bool) -> Obj:
    try:
        return await client.get(f"/api/v1/namespaces/{ref.namespace}/{kind}s/{name}")
    except ApiError as exc:
        if exc.status == 404 and optional:
            return {}
        # 403 right after binding is normal: the Node authorizer learns of the pod a moment
        # later. Either way the kubelet's answer is to wait and retry.
        raise PodSetupError("ContainerCreating", f"{kind} {name!r}: {exc.message}") from None


def _config_map_data(obj: Obj) -> dict[str, bytes]:
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _secret_data(obj: Obj) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}


def _safe_relative(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or ".." in parts:
        raise PodSetupError("CreateContainerConfigError", f"volume item path {path!r} is invalid")
    return str(PurePosixPath(*parts))


def _key_files(data: Mapping[str, bytes], source: Obj, default_mode: int, what: str) -> Files:
    """Files for a configMap/secret source: its items, or every key when there are none."""
    items = source.get("items")
    if not items:
        return {_safe_relative(k): (v, default_mode) for k, v in data.items()}
    files: Files = {}
    for item in items:
        key = item["key"]
        if key not in data:
            if source.get("optional"):
                continue
            raise PodSetupError("ContainerCreating", f"{what} has no key {key!r}")
        files[_safe_relative(item["path"])] = (data[key], item.get("mode", default_mode))
    return files


async def _config_map_files(client: KubeClient, ref: PodRef, source: Obj, mode: int) -> Files:
    name = source["name"]
    obj = await _fetch(client, ref, "configmap", name, bool(source.get("optional")))
    return _key_files(_config_map_data(obj), source, mode, f"configmap {name!r}")


async def _secret_files(client: KubeClient, ref: PodRef, source: Obj, mode: int) -> Files:
    name = source.get("secretName") or source["name"]
    obj = await _fetch(client, ref, "secret", name, bool(source.get("optional")))
    return _key_files(_secret_data(obj), source, mode, f"secret {name!r}")


def field_value(ref: PodRef, field_path: str) -> str:
    """The value of a downward-API fieldRef."""
    meta = ref.pod["metadata"]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", field_path)
    if match:
        return str((meta.get(match[1]) or {}).get(match[2], ""))
    if field_path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(field_path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    simple = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": ref.pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": ref.pod["spec"].get("serviceAccountName", ""),
        "status.podIP": ref.pod_ip,
        "status.podIPs": ref.pod_ip,
        "status.hostIP": ref.host_ip,
        "status.hostIPs": ref.host_ip,
    }
    if field_path not in simple:
        raise PodSetupError("CreateContainerConfigError", f"unsupported fieldRef {field_path!r}")
    return str(simple[field_path])


def _downward_files(ref: PodRef, source: Obj, mode: int) -> Files:
    files: Files = {}
    for item in source.get("items") or []:
        if "fieldRef" not in item:
            raise PodSetupError("CreateContainerConfigError", "only fieldRef downwardAPI items")
        value = field_value(ref, item["fieldRef"]["fieldPath"])
        files[_safe_relative(item["path"])] = (value.encode(), item.get("mode", mode))
    return files


async def _token_files(client: KubeClient, ref: PodRef, source: Obj, mode: int) -> Files:
    # A token bound to this pod, as the kubelet asks for it (NodeRestriction insists).
    account = ref.pod["spec"].get("serviceAccountName") or "default"
    spec: Obj = {
        "expirationSeconds": source.get("expirationSeconds", 3600),
        "boundObjectRef": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": ref.name,
            "uid": ref.pod["metadata"]["uid"],
        },
    }
    if source.get("audience"):
        spec["audiences"] = [source["audience"]]
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    path = f"/api/v1/namespaces/{ref.namespace}/serviceaccounts/{account}/token"
    try:
        answer = await client.create(path, body)
    except ApiError as exc:
        raise PodSetupError("ContainerCreating", f"service account token: {exc.message}") from None
    return {_safe_relative(source["path"]): (answer["status"]["token"].encode(), mode)}


async def _claim_dir(client: KubeClient, ref: PodRef, source: Obj) -> HostDir:
    """The directory of the volume bound to a claim, as the kubelet finds it (the Node
    authorizer lets a node read the claims of its pods and the volumes bound to them)."""
    name = source["claimName"]
    claim = await _fetch(client, ref, "persistentvolumeclaim", name, False)
    if claim["metadata"].get("deletionTimestamp"):
        raise PodSetupError("ContainerCreating", f"persistentvolumeclaim {name!r} is being deleted")
    volume_name = claim["spec"].get("volumeName")
    if not volume_name or (claim.get("status") or {}).get("phase") != "Bound":
        raise PodSetupError("ContainerCreating", f"persistentvolumeclaim {name!r} is not bound")
    try:
        volume = await client.get(f"/api/v1/persistentvolumes/{volume_name}")
    except ApiError as exc:
        raise PodSetupError("ContainerCreating", f"volume {volume_name!r}: {exc.message}") from None
    host_path = (volume["spec"].get("hostPath") or {}).get("path")
    if not host_path or not await asyncio.to_thread(Path(host_path).is_dir):
        # A node can mount only a directory of its own (a hostPath volume that exists).
        raise PodSetupError(
            "ContainerCreating", f"volume {volume_name!r} is not a directory of this node"
        )
    return HostDir(Path(host_path), read_only=bool(source.get("readOnly")))


async def volume_files(client: KubeClient, ref: PodRef, volume: Obj) -> Volume:
    """The files of one static volume, the directory of a claim, or None for an emptyDir.
    Raises PodSetupError."""
    if "emptyDir" in volume:
        return None
    if "persistentVolumeClaim" in volume:
        return await _claim_dir(client, ref, volume["persistentVolumeClaim"])
    if "configMap" in volume:
        source = volume["configMap"]
        return await _config_map_files(client, ref, source, source.get("defaultMode", DEFAULT_MODE))
    if "secret" in volume:
        source = volume["secret"]
        return await _secret_files(client, ref, source, source.get("defaultMode", DEFAULT_MODE))
    if "downwardAPI" in volume:
        source = volume["downwardAPI"]
        return _downward_files(ref, source, source.get("defaultMode", DEFAULT_MODE))
    if "projected" in volume:
        mode = volume["projected"].get("defaultMode", DEFAULT_MODE)
        files: Files = {}
        for source in volume["projected"].get("sources") or []:
            if "configMap" in source:
                files |= await _config_map_files(client, ref, source["configMap"], mode)
            elif "secret" in source:
                files |= await _secret_files(client, ref, source["secret"], mode)
            elif "downwardAPI" in source:
                files |= _downward_files(ref, source["downwardAPI"], mode)
            elif "serviceAccountToken" in source:
                files |= await _token_files(client, ref, source["serviceAccountToken"], mode)
            else:
                kinds = ", ".join(source)
                raise PodSetupError("CreateContainerConfigError", f"unsupported source {kinds}")
        return files
    kinds = ", ".join(k for k in volume if k != "name")
    raise PodSetupError(
        "CreateContainerConfigError", f"volume {volume['name']!r}: unsupported type {kinds}"
    )


# --- laying out a container's root --------------------------------------------------------


def _write_files(files: Files, target: Path, sub_path: str) -> None:
    chosen = files
    if sub_path:
        sub = _safe_relative(sub_path)
        if sub in files:  # a single key mounted as a file
            content, mode = files[sub]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(mode)
            return
        chosen = {k[len(sub) + 1 :]: v for k, v in files.items() if k.startswith(sub + "/")}
    target.mkdir(parents=True, exist_ok=True)
    for relative, (content, mode) in chosen.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)


def lay_out_root(
    root: Path, container: Obj, volumes: Mapping[str, Volume], empty_dirs: Path
) -> list[str]:
    """Materialize the container's mounts under root; return its mount paths."""
    if root.exists():
        shutil.rmtree(root)  # a restarted container starts from its volumes' contents again
    root.mkdir(parents=True)
    (root / "tmp").mkdir()
    mount_paths = []
    for mount in container.get("volumeMounts") or []:
        name, mount_path = mount["name"], mount["mountPath"]
        if name not in volumes:
            raise PodSetupError("CreateContainerConfigError", f"no volume named {name!r}")
        target = root / mount_path.lstrip("/")
        files = volumes[name]
        if files is None or isinstance(files, HostDir):
            # emptyDir: one directory per pod, shared by its containers; a claim: its
            # volume's directory, shared by every pod of the claim.
            base = empty_dirs / name if files is None else files.path
            source = base / mount.get("subPath", "")
            source.mkdir(parents=True, exist_ok=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source, target_is_directory=True)
        else:
            _write_files(files, target, mount.get("subPath", ""))
        mount_paths.append(str(PurePosixPath("/", mount_path)))
    return mount_paths


@dataclass(frozen=True, slots=True)
class Mount:
    """A bind mount of container mode: a host file or directory at `target` in the container."""

    source: Path
    target: str
    read_only: bool


def _give_to_group(path: Path, group: int, *, writable: bool) -> None:
    """What the kubelet does for fsGroup: the group owns the files, may read them (write
    too when the volume is writable), and new files in its directories inherit it."""
    for entry in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if entry.is_symlink():
            continue
        os.chown(entry, -1, group)
        mode = entry.stat().st_mode & 0o7777
        if entry.is_dir():
            entry.chmod(mode | 0o2050 | (0o020 if writable else 0))
        else:
            entry.chmod(mode | 0o040 | (0o020 if writable else 0))


def lay_out_mounts(
    root: Path,
    container: Obj,
    volumes: Mapping[str, Volume],
    empty_dirs: Path,
    fs_group: int | None,
) -> list[Mount]:
    """Container mode: write each mounted volume's files under root, return the bind mounts.

    configMap, secret, downwardAPI and projected volumes are mounted read-only (as the
    kubelet mounts them), emptyDirs read-write unless the mount says readOnly; an emptyDir
    is one directory per pod, mode 0777 as the kubelet makes it. A claim's volume is its
    directory, bind-mounted read-write (unless the claim's or the mount's readOnly says
    otherwise). With an fsGroup, the group owns every volume's files except a claim's (the
    runner's 0440 credentials are readable by it).
    """
    if root.exists():
        shutil.rmtree(root)  # a restarted container starts from its volumes' contents again
    root.mkdir(parents=True)
    mounts: list[Mount] = []
    for mount in container.get("volumeMounts") or []:
        name, mount_path = mount["name"], mount["mountPath"]
        if name not in volumes:
            raise PodSetupError("CreateContainerConfigError", f"no volume named {name!r}")
        files = volumes[name]
        if files is None:  # emptyDir: one directory per pod, shared by its containers
            sub_path = mount.get("subPath") or ""
            source = empty_dirs / name / (_safe_relative(sub_path) if sub_path else "")
            source.mkdir(parents=True, exist_ok=True)
            source.chmod(0o777)
            read_only = bool(mount.get("readOnly"))
        elif isinstance(files, HostDir):  # a claim's volume: its directory, as it is
            sub_path = mount.get("subPath") or ""
            source = files.path / (_safe_relative(sub_path) if sub_path else "")
            source.mkdir(parents=True, exist_ok=True)
            mounts.append(
                Mount(
                    source,
                    str(PurePosixPath("/", mount_path)),
                    files.read_only or bool(mount.get("readOnly")),
                )
            )
            continue  # the kubelet leaves a hostPath volume's ownership alone (no fsGroup)
        else:
            # One directory per mount (two mounts of one volume may pick different items).
            source = root / "mounts" / str(len(mounts)) / "volume"
            _write_files(files, source, mount.get("subPath", ""))
            read_only = True
        if fs_group is not None:
            _give_to_group(source, fs_group, writable=not read_only)
        mounts.append(Mount(source, str(PurePosixPath("/", mount_path)), read_only))
    return mounts


def path_rewriter(root: Path, mount_paths: list[str]) -> Callable[[str], str]:
    """A function that moves every mount path found in a string under root.

    A mount path counts where it starts a path: at the start of the string or after
    whitespace, a quote, `=`, `:`, `,` or `(`, and up to its end or a `/`, whitespace, quote,
    `:`, `;`, `,` or `)`. So `/config/session.yaml`, `--summary-json=/out/s.json` and
    `sh -c "cat /config/x"` are all rewritten, `/configs` and `http://h/config` are not.
    """
    paths = sorted({m.rstrip("/") for m in mount_paths if m.rstrip("/")}, key=len, reverse=True)
    if not paths:
        return lambda value: value
    alternatives = "|".join(re.escape(p) for p in paths)
    # One pass, longest first: a rewritten path is never rewritten again.
    pattern = re.compile(rf"(?<![^\s'\"=:,(])({alternatives})(?=$|[/\s'\":;,)])")
    prefix = str(root)
    return lambda value: pattern.sub(lambda match: prefix + match[1], value)


# --- environment and argv ------------------------------------------------------------------

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names are replaced, `$$` is a literal `$`."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return _REF.sub(one, value)


async def container_env(client: KubeClient, ref: PodRef, container: Obj) -> dict[str, str]:
    """The env the container declares (envFrom, then env), with $(VAR) expanded."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            r = source["configMapRef"]
            obj = await _fetch(client, ref, "configmap", r["name"], bool(r.get("optional")))
            data = _config_map_data(obj)
        else:
            r = source["secretRef"]
            obj = await _fetch(client, ref, "secret", r["name"], bool(r.get("optional")))
            data = _secret_data(obj)
        env.update({prefix + k: v.decode() for k, v in data.items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_value(ref, source["fieldRef"]["fieldPath"])
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind = "configmap" if "configMapKeyRef" in source else "secret"
            r = source.get("configMapKeyRef") or source["secretKeyRef"]
            obj = await _fetch(client, ref, kind, r["name"], bool(r.get("optional")))
            data = _config_map_data(obj) if kind == "configmap" else _secret_data(obj)
            if r["key"] in data:
                env[name] = data[r["key"]].decode()
            elif not r.get("optional"):
                reason = "CreateContainerConfigError"
                raise PodSetupError(reason, f"{kind} {r['name']!r} has no key {r['key']!r}")
        else:
            kinds = ", ".join(source)
            raise PodSetupError("CreateContainerConfigError", f"env {name}: unsupported {kinds}")
    return env


def base_env(root: Path, pod_name: str) -> dict[str, str]:
    """What an image would provide: a PATH, a home, a temp dir. Never the agent's own env."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(root),
        "TMPDIR": str(root / "tmp"),
        "HOSTNAME": pod_name,
        "LANG": "C.UTF-8",
        # The repository's operator/ directory must never shadow the standard library.
        "PYTHONSAFEPATH": "1",
    }


_LISTEN_URL = re.compile(r"(?<=://)(?:0\.0\.0\.0|127\.0\.0\.1|localhost|\[::\]):(\d+)(?=[/?#]|$)")


def listen_on_host_ports(value: str, host_ports: Mapping[int, int]) -> str:
    """`http://0.0.0.0:8080/x` -> `http://127.0.0.1:<host port of 8080>/x` in one argument;
    a URL on another port, or on another host, is left alone."""

    def one(match: re.Match[str]) -> str:
        host = host_ports.get(int(match[1]))
        return match[0] if host is None else f"127.0.0.1:{host}"

    return _LISTEN_URL.sub(one, value)


def served_port(container: Obj) -> int | None:
    """The containerPort the runner serves HTTP on: the one named `metrics`, or the only one."""
    ports = [p for p in container.get("ports") or [] if p.get("protocol", "TCP") == "TCP"]
    named = [p for p in ports if p.get("name") == "metrics"]
    if named:
        return int(named[0]["containerPort"])
    return int(ports[0]["containerPort"]) if len(ports) == 1 else None


def container_argv(
    container: Obj,
    env: Mapping[str, str],
    *,
    kubetrade: Path | None,
    root: Path,
    mount_paths: list[str],
    http_port: tuple[int, int] | None,
    host_ports: Mapping[int, int] | None = None,
    entrypoint: Sequence[str] = ("kubetrade",),
    image_args: Sequence[str] = (),
) -> list[str]:
    """The process's argv: command + args, expanded, paths rewritten, `kubetrade` resolved.

    As the kubelet does: `command` replaces the image's entrypoint (and its default
    arguments), `args` replace the default arguments. The kubetrade image's entrypoint is
    `kubetrade`, the default here, so a container with args and no command runs
    `kubetrade ARGS`; container mode passes the image's real entrypoint and arguments.
    kubetrade=None leaves a `kubetrade` argv[0] alone (container mode: the image's own).

    Ports: every pod shares the host's network, so a program listens on a host port of its
    own. http_port is (containerPort, host port) for the runner: a `--http-port P` (or
    `--http-port=P`) naming the containerPort gets the host port instead, and a
    `kubetrade run` without the flag gets `--http-port H` inserted after `run`.
    host_ports maps every declared containerPort to its host port: an argument holding a
    URL that listens on one (`--liveness=http://0.0.0.0:8080/healthz`, with 0.0.0.0,
    127.0.0.1, localhost or [::] as the host) is given `127.0.0.1:<host port>` instead.
    """
    command = [expand(a, env) for a in container.get("command") or []]
    args = [expand(a, env) for a in container.get("args") or []]
    if command:
        argv = [*command, *args]
    else:
        argv = [*entrypoint, *(args if container.get("args") is not None else image_args)]
    rewrite = path_rewriter(root, mount_paths)
    argv = [rewrite(a) for a in argv]
    if host_ports:
        argv = [listen_on_host_ports(a, host_ports) for a in argv]
    is_kubetrade = PurePosixPath(argv[0]).name == "kubetrade"
    if is_kubetrade and kubetrade is not None:
        argv[0] = str(kubetrade)
    if http_port is None:
        return argv
    wanted, host = (str(p) for p in http_port)
    out: list[str] = []
    given = False
    items = iter(argv)
    for arg in items:
        if arg == "--http-port":
            value = next(items, "")
            out += [arg, host if value == wanted else value]
            given = True
        elif arg.startswith("--http-port="):
            value = arg.split("=", 1)[1]
            out.append(f"--http-port={host if value == wanted else value}")
            given = True
        else:
            out.append(arg)
    if not given and is_kubetrade and len(out) > 1 and out[1] == "run":
        out[2:2] = ["--http-port", host]
    return out
