"""A minimal async Kubernetes client on httpx (HTTP/1.1, pooled) for the harness and the floor."""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

Obj = dict[str, Any]

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
# Watch only metadata: enough to time an object's arrival, at a fraction of the bytes.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:300]}")
        self.status = status


@dataclass(frozen=True)
class Credentials:
    server: str
    ssl_context: ssl.SSLContext
    token: str | None


def load_kubeconfig(path: str | Path) -> Credentials:
    """Server, CA and user (client certificate or token) of the kubeconfig's current context."""
    cfg = yaml.safe_load(Path(path).read_text())
    contexts = {c["name"]: c["context"] for c in cfg.get("contexts") or []}
    ctx = contexts.get(cfg.get("current-context")) or next(iter(contexts.values()))
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next((u["user"] for u in cfg.get("users") or [] if u["name"] == ctx.get("user")), {})
    ca = cluster.get("certificate-authority-data")
    context = ssl.create_default_context(cadata=base64.b64decode(ca).decode() if ca else None)
    if user.get("client-certificate-data"):
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "c.crt", Path(tmp) / "c.key"
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.touch(mode=0o600)
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            context.load_cert_chain(cert, key)
    return Credentials(cluster["server"].rstrip("/"), context, user.get("token"))


class Kube:
    """JSON requests and watch streams over one pooled connection set."""

    def __init__(self, kubeconfig: str | Path, *, connections: int = 16, agent: str = "paddle-kuscia-bench"):
        creds = load_kubeconfig(kubeconfig)
        headers = {"Accept": "application/json", "User-Agent": agent}
        if creds.token:
            headers["Authorization"] = f"Bearer {creds.token}"
        self.server = creds.server
        self.http = httpx.AsyncClient(
            base_url=creds.server,
            verify=creds.ssl_context,
            headers=headers,
            timeout=httpx.Timeout(60.0),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Obj:
        headers = {"Content-Type": content_type} if body is not None else None
        content = json.dumps(body) if body is not None else None
        resp = await self.http.request(method, path, content=content, headers=headers, params=params)
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, resp.text)
        return resp.json() if resp.content else {}

    async def watch(
        self, path: str, resource_version: str, *, accept: str | None = None, timeout: int = 600
    ) -> AsyncIterator[Obj]:
        """Events from `resource_version` on, until the server ends the stream."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout),
        }
        headers = {"Accept": accept} if accept else None
        wait = httpx.Timeout(connect=10.0, read=timeout + 30.0, write=10.0, pool=10.0)
        async with self.http.stream("GET", path, params=params, headers=headers, timeout=wait) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                raise ApiError(resp.status_code, resp.text)
            async for line in resp.aiter_lines():
                if line:
                    yield json.loads(line)


def path(
    group_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    sub: str | None = None,
) -> str:
    out = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
    if namespace:
        out += f"/namespaces/{namespace}"
    out += f"/{plural}"
    if name:
        out += f"/{name}"
    if sub:
        out += f"/{sub}"
    return out


PS = "elasticserving.paddlepaddle.org/v1", "paddleservices"
KSVC = "serving.knative.dev/v1", "services"
KJ = "kuscia.secretflow/v1alpha1", "kusciajobs"
KD = "kuscia.secretflow/v1alpha1", "kusciadeployments"


def ready(obj: Obj) -> bool:
    status = obj.get("status") or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
