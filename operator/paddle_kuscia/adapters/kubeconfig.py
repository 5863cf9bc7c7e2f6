"""Where the operator's Kubernetes credentials come from: the in-cluster ServiceAccount, or a kubeconfig.

The operator needs four things from them: the API server's address, the CA that signs its certificate, a
client certificate or a bearer token, and (for kopf's events) a default namespace. They are read here
rather than through the `kubernetes` package: importing it costs every operator process about 11 MiB of
memory and 0.2 CPU seconds at start-up (measured for `docs/performance.md`), for a few dozen lines of YAML.

Supported, as kubectl reads them: `KUBECONFIG` (several files, the first to name an entry wins), then
`~/.kube/config`; clusters with `certificate-authority[-data]`; users with `client-certificate[-data]` and
`client-key[-data]`, `token` or `tokenFile`, or an `exec` credential plugin (`client.authentication.k8s.io`,
token or client certificate, cached until it expires). A legacy `auth-provider` is used only for the token
it has already stored. In a cluster, the ServiceAccount token is re-read from disk once a minute, since the
kubelet rotates it.
"""

from __future__ import annotations

import atexit
import base64
import datetime as dt
import functools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .keyfiles import IN_MEMORY, memory_file

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0
EXEC_EXPIRY_MARGIN = dt.timedelta(seconds=10)


class KubeconfigError(Exception):
    """No usable credentials: neither in a cluster nor a readable kubeconfig, or one we cannot use."""


@dataclass
class Credentials:
    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    token_file: str | None = None
    exec_plugin: Mapping[str, Any] | None = None
    namespace: str | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    _read_at: float = field(default=0.0, repr=False)
    _expires: dt.datetime | None = field(default=None, repr=False)

    def bearer(self) -> str | None:
        """The token to send now: re-read from its file once a minute, re-run from the exec plugin once
        its credential is about to expire."""
        if self.token_file is not None and time.monotonic() - self._read_at > TOKEN_REREAD_SECONDS:
            self.token = Path(self.token_file).read_text().strip()
            self._read_at = time.monotonic()
        if self.exec_plugin is not None and (
            self._read_at == 0.0
            or (self._expires is not None and dt.datetime.now(dt.UTC) > self._expires - EXEC_EXPIRY_MARGIN)
        ):
            self._run_exec_plugin()
        return self.token

    def _run_exec_plugin(self) -> None:
        plugin = self.exec_plugin or {}
        command = str(plugin.get("command") or "")
        if not command:
            raise KubeconfigError("the kubeconfig's exec credential plugin names no command")
        if os.sep in command and not os.path.isabs(command):
            command = str(self.base_dir / command)
        api_version = plugin.get("apiVersion", "client.authentication.k8s.io/v1")
        env = dict(os.environ)
        env.update({e["name"]: e["value"] for e in plugin.get("env") or []})
        env["KUBERNETES_EXEC_INFO"] = json.dumps(
            {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
        )
        try:
            done = subprocess.run(
                [command, *map(str, plugin.get("args") or [])],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise KubeconfigError(f"the exec credential plugin {command!r} failed: {err}") from None
        if done.returncode != 0:
            raise KubeconfigError(
                f"the exec credential plugin {command!r} exited with {done.returncode}: {done.stderr.strip()[:500]}"
            )
        try:
            status = json.loads(done.stdout).get("status") or {}
        except (ValueError, AttributeError):
            raise KubeconfigError(
                f"the exec credential plugin {command!r} printed no ExecCredential"
            ) from None
        self.token = status.get("token") or None
        if status.get("clientCertificateData") and status.get("clientKeyData"):
            self.cert_file = _private_file("exec-client.crt", status["clientCertificateData"].encode())
            self.key_file = _private_file("exec-client.key", status["clientKeyData"].encode())
        if not self.token and not self.cert_file:
            raise KubeconfigError(
                f"the exec credential plugin {command!r} returned neither token nor certificate"
            )
        expiry = status.get("expirationTimestamp")
        self._expires = dt.datetime.fromisoformat(expiry.replace("Z", "+00:00")) if expiry else None
        self._read_at = time.monotonic()


def load(kubeconfig: str | None = None, *, service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> Credentials:
    """Credentials from `kubeconfig` if given; otherwise in-cluster when the ServiceAccount is mounted and
    the API server's address is in the environment, else `KUBECONFIG` or `~/.kube/config`."""
    if kubeconfig is not None:
        return from_kubeconfig([Path(kubeconfig)])
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if host and port and (service_account_dir / "token").is_file():
        return in_cluster(host, port, service_account_dir)
    paths = [Path(p).expanduser() for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return from_kubeconfig(paths or [Path("~/.kube/config").expanduser()])


def in_cluster(host: str, port: str, directory: Path = SERVICE_ACCOUNT_DIR) -> Credentials:
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    namespace_file = directory / "namespace"
    creds = Credentials(
        server=server,
        ca_file=str(directory / "ca.crt"),
        token_file=str(directory / "token"),
        namespace=namespace_file.read_text().strip() if namespace_file.is_file() else None,
    )
    creds.bearer()  # read it now: a missing or unreadable token fails at start-up, not on the first request
    return creds


def from_kubeconfig(paths: list[Path]) -> Credentials:
    """The current context's credentials from kubeconfig files merged as kubectl does: the first file to set
    `current-context` or to name a cluster, user or context wins. Relative paths are relative to the file
    that names them."""
    current: str | None = None
    entries: dict[str, dict[str, tuple[dict[str, Any], Path]]] = {"clusters": {}, "users": {}, "contexts": {}}
    for path in paths:
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except OSError as err:
            if len(paths) > 1 and isinstance(err, FileNotFoundError):
                continue  # kubectl skips missing files in a KUBECONFIG list
            raise KubeconfigError(f"cannot read kubeconfig {path}: {err}") from None
        except yaml.YAMLError as err:
            raise KubeconfigError(f"kubeconfig {path} is not YAML: {err}") from None
        current = current or config.get("current-context")
        for plural, table in entries.items():
            singular = plural[:-1]
            for item in config.get(plural) or []:
                table.setdefault(item["name"], (item.get(singular) or {}, path.parent))
    if not current:
        raise KubeconfigError(f"no current-context in {', '.join(map(str, paths))}")
    try:
        context, _ = entries["contexts"][current]
        cluster, cluster_dir = entries["clusters"][context["cluster"]]
        user, user_dir = entries["users"].get(context.get("user", ""), ({}, cluster_dir))
    except KeyError as err:
        raise KubeconfigError(
            f"kubeconfig context {current!r} refers to {err} which no file defines"
        ) from None
    if not cluster.get("server"):
        raise KubeconfigError(f"kubeconfig cluster {context['cluster']!r} has no server")
    provider = (user.get("auth-provider") or {}).get("config") or {}
    return Credentials(
        server=cluster["server"],
        ca_file=_file(cluster, "certificate-authority", cluster_dir, "ca.crt"),
        cert_file=_file(user, "client-certificate", user_dir, "client.crt"),
        key_file=_file(user, "client-key", user_dir, "client.key"),
        token=user.get("token") or provider.get("access-token") or provider.get("id-token"),
        token_file=str(user_dir / user["tokenFile"]) if user.get("tokenFile") else None,
        exec_plugin=user.get("exec"),
        namespace=context.get("namespace"),
        base_dir=user_dir,
    )


def _file(entry: Mapping[str, Any], key: str, base: Path, name: str) -> str | None:
    """The path of `key` (relative to the kubeconfig's folder), or `key-data` written to a private file."""
    if entry.get(f"{key}-data"):
        try:
            data = base64.b64decode(entry[f"{key}-data"], validate=True)
        except ValueError:
            raise KubeconfigError(f"kubeconfig {key}-data is not base64") from None
        return _private_file(name, data)
    if entry.get(key):
        return str(base / Path(entry[key]).expanduser())
    return None


# `key-data` entries are kept in memfds where the kernel offers them (IN_MEMORY), so that no copy of a client key
# outlives the process, even one killed with SIGKILL; otherwise in a private folder removed at exit.
_written: dict[
    tuple[str, bytes], str
] = {}  # (name, data) -> path: loading the same kubeconfig again reuses it


@functools.cache
def _private_dir() -> str:
    path = tempfile.mkdtemp(prefix="paddle-kuscia-credentials-")
    atexit.register(remove_private_files)
    return path


def remove_private_files() -> None:
    """Remove the files `key-data` entries were written to (the in-memory ones go with the process). Runs at
    exit; a process that leaves with `os._exit` (the leader that lost its Lease) calls it first, since atexit
    handlers do not run then."""
    for key, path in list(_written.items()):
        if not path.startswith("/proc/"):
            del _written[key]
    if _private_dir.cache_info().currsize:
        shutil.rmtree(_private_dir(), ignore_errors=True)
        _private_dir.cache_clear()


def _private_file(name: str, data: bytes) -> str:
    """The path of a file holding `data` that only this process (or, on disk, this user) can read: ssl loads
    certificates and keys from files only. In memory, the path is that of an open memfd under /proc/self."""
    if (name, data) in _written:
        return _written[(name, data)]
    if IN_MEMORY:
        _, path = memory_file(name, data)  # open for as long as the process runs
    else:
        fd, path = tempfile.mkstemp(prefix=name + ".", dir=_private_dir())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    _written[(name, data)] = path
    return path
