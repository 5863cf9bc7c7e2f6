"""Which code and which versions a run measured, for the report's header and the JSON."""

from __future__ import annotations

import contextlib
import hashlib
import platform
import subprocess
from importlib import metadata as pkg_metadata
from pathlib import Path
from typing import Any

from support.control_plane import ControlPlane

from .base import ROOT


def operator_tree_digest(source: Path = ROOT / "operator") -> str:
    """Which operator code ran: others edit the working tree while benchmarks run."""
    h = hashlib.sha256()
    for file in sorted((source / "paddle_kuscia").rglob("*.py")):
        h.update(file.relative_to(source).as_posix().encode() + b"\0" + file.read_bytes())
    return h.hexdigest()[:16]


def versions(plane: ControlPlane, source: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for package in ("kopf", "httpx", "pydantic", "aiohttp", "kubernetes"):
        with contextlib.suppress(pkg_metadata.PackageNotFoundError):
            out[package] = pkg_metadata.version(package)
    with contextlib.suppress(Exception):
        out["kube_apiserver"] = plane.version()
    env = dict(
        line.split("=", 1)
        for line in (ROOT / "hack" / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    out["etcd"] = env.get("ETCD_VERSION")
    out["knative_serving_crds"] = env.get("KNATIVE_SERVING_VERSION")
    git = ["git", "-C", str(ROOT)]
    out["git_commit"] = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "operator"], capture_output=True, text=True
    ).stdout
    out["operator_dirty_files"] = len(dirty.splitlines())
    out["operator_tree_sha256"] = operator_tree_digest(source)
    out["operator_source"] = str(source)
    return out
