"""The real local control plane (etcd + kube-apiserver + kube-controller-manager) for tests.

`hack/control-plane.sh` builds and starts it; this module wraps the script for pytest. Nothing here mocks the
Kubernetes API: when Go or the module proxy is missing, `ControlPlane.start()` raises with the build output.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "control-plane.sh"


OPERATOR_USER = "system:serviceaccount:paddle-kuscia-system:paddle-kuscia-operator"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


class ControlPlaneError(RuntimeError):
    pass


@dataclass
class ControlPlane:
    run_dir: Path
    owned: bool

    @property
    def admin_kubeconfig(self) -> Path:
        return self.run_dir / "admin.kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        """Kubeconfig for the operator's own identity (ServiceAccount paddle-kuscia-system/paddle-kuscia-operator)."""
        return self.run_dir / "operator.kubeconfig"

    @property
    def bin_dir(self) -> Path:
        return Path(_script("bin-dir", run_dir=self.run_dir).strip())

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def audit_log(self) -> Path:
        return self.run_dir / "logs" / "audit.log"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{(self.run_dir / 'apiserver.port').read_text().strip()}"

    @classmethod
    def start(cls, run_dir: Path | None = None, *, knative: bool = True) -> ControlPlane:
        """Start one in `run_dir` (default: a new temporary directory), or, without `run_dir`, reuse the one
        PK_RUN_DIR names when it is running. `knative=False`: Knative's CRDs without its processes."""
        env = {} if knative else {"PK_KNATIVE": "0"}
        reuse = os.environ.get("PK_RUN_DIR")
        if run_dir is None and reuse and (Path(reuse) / "kube-apiserver.pid").exists():
            plane = cls(Path(reuse), owned=False)
            _script("up", run_dir=plane.run_dir, env=env)  # idempotent: re-installs CRDs
            return plane
        run_dir = run_dir or Path(tempfile.mkdtemp(prefix="pk-control-plane-"))
        _script("up", run_dir=run_dir, env=env)
        return cls(run_dir, owned=True)

    def stop(self) -> None:
        if self.owned:
            _script("down", run_dir=self.run_dir)

    def restart_apiserver(self) -> None:
        _script("restart-apiserver", run_dir=self.run_dir)

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(kubeconfig or self.admin_kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.kubectl_path), *args],
            input=input,
            text=True,
            capture_output=True,
            env=self.env(kubeconfig),
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def apply(self, obj: dict[str, Any] | str, namespace: str | None = None) -> None:
        text = obj if isinstance(obj, str) else yaml.safe_dump(obj)
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        self.kubectl(*args, input=text)

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        args = ["get", resource, name, "-o", "json"] + (["-n", namespace] if namespace else [])
        proc = self.kubectl(*args, check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr or "not found" in proc.stderr:
                return None
            raise ControlPlaneError(proc.stderr)
        return json.loads(proc.stdout)

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        args = ["get", resource, "-o", "json"] + (["-n", namespace] if namespace else ["-A"])
        return json.loads(self.kubectl(*args).stdout)["items"]

    def raw_get(self, path: str) -> bytes:
        """GET a raw API path (e.g. /metrics, /version) as the admin."""
        cfg = yaml.safe_load(self.admin_kubeconfig.read_text())
        user = cfg["users"][0]["user"]
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
        )
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "c.crt", Path(tmp) / "c.key"
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            ctx.load_cert_chain(cert, key)
        with urllib.request.urlopen(self.server + path, context=ctx, timeout=30) as resp:
            return resp.read()

    def create_namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "namespace", name)
        return name

    def version(self) -> str:
        return json.loads(self.raw_get("/version"))["gitVersion"]

    def audit_events(self, since_line: int = 0) -> list[dict[str, Any]]:
        lines = self.audit_log.read_text().splitlines() if self.audit_log.exists() else []
        return [json.loads(line) for line in lines[since_line:] if line.strip()]

    def operator_writes(self, since_line: int, namespace: str | None = None) -> list[dict[str, Any]]:
        """Writes the operator's ServiceAccount made after `since_line` of the audit log (leases excluded)."""
        out = []
        for e in self.audit_events(since_line):
            ref = e.get("objectRef") or {}
            if (
                e["user"]["username"] == OPERATOR_USER
                and e["verb"] in WRITE_VERBS
                and e.get("stage") == "ResponseComplete"
                and ref.get("resource") != "leases"
                and (namespace is None or ref.get("namespace") == namespace)
            ):
                out.append(e)
        return out

    def audit_line_count(self) -> int:
        return len(self.audit_log.read_text().splitlines()) if self.audit_log.exists() else 0


def _script(command: str, *, run_dir: Path, env: dict[str, str] | None = None) -> str:
    env = dict(os.environ, PK_RUN_DIR=str(run_dir), **(env or {}))
    proc = subprocess.run(["bash", str(SCRIPT), command], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"hack/control-plane.sh {command} failed (exit {proc.returncode}). The integration tests need Go "
            f"and the Go module proxy to build kube-apiserver, kube-controller-manager and etcd.\n"
            f"--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc.stdout


def project_kubectl() -> Path:
    """The kubectl `hack/control-plane.sh build` made (its kustomize renders the manifests); fails if missing."""
    import pytest

    bin_dir = subprocess.run(
        ["bash", str(SCRIPT), "bin-dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    kubectl = Path(bin_dir) / "kubectl"
    if not kubectl.is_file():
        pytest.fail(
            f"the project's kubectl is missing at {kubectl}; run `hack/control-plane.sh build`", pytrace=False
        )
    return kubectl


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy; raise with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last value: {last!r})")
