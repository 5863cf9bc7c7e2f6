#!/usr/bin/env python3
"""Measure the Kuscia API calls the operator makes per poll interval in steady state.

Starts the Kuscia emulator in this process and a real control plane (or reuses the one PK_RUN_DIR names),
runs the operator as a subprocess, creates mirrored KusciaJobs and KusciaDeployments, waits until every
object reports Kuscia's state, then counts the calls the emulator receives over several poll intervals.
Status is polled in batches, so the figure is ceil(n/100) per Kuscia kind, whatever the number of objects.

    hack/kuscia-calls.py                      250 KusciaJobs and 50 KusciaDeployments
    hack/kuscia-calls.py --jobs 1000 --deployments 0 --intervals 20

Exit code 1 when a kind needs more calls per interval than its ceil(n/100) batches.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"

# Under a bare `python3` without the test dependencies, start again with the repository's virtualenv.
if (
    (importlib.util.find_spec("aiohttp") is None or importlib.util.find_spec("kuscia") is None)
    and VENV_PYTHON.exists()
    and Path(sys.executable) != VENV_PYTHON
):
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])

sys.path.insert(0, str(REPO / "tests"))

import yaml  # noqa: E402

from support.control_plane import ControlPlane, wait_for  # noqa: E402
from support.kuscia_double import KusciaDoubleThread  # noqa: E402
from support.operator import OperatorProcess  # noqa: E402

ROUTES = {
    "KusciaJob": "/api/v1/job/status/batchQuery",
    "KusciaDeployment": "/api/v1/serving/status/batchQuery",
}


def job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kuscia.secretflow/v1alpha1",
        "kind": "KusciaJob",
        "metadata": {"name": name, "annotations": {"paddle-kuscia.io/mirror": "true"}},
        "spec": {
            "initiator": "alice",
            "tasks": [
                {
                    "alias": "psi",
                    "appImage": "secretflow-image",
                    "taskInputConfig": "{}",
                    "parties": [{"domainID": "alice"}, {"domainID": "bob"}],
                }
            ],
        },
    }


def deployment(name: str) -> dict[str, Any]:
    obj = yaml.safe_load((REPO / "manifests" / "samples" / "kusciadeployment-serving.yaml").read_text())
    obj["metadata"]["name"] = name
    return obj


def phases(plane: ControlPlane, resource: str, namespace: str) -> list[str | None]:
    return [(o.get("status") or {}).get("phase") for o in plane.list(resource, namespace)]


def measure(args: argparse.Namespace, plane: ControlPlane, workdir: Path) -> int:
    namespace = f"kuscia-calls-{uuid.uuid4().hex[:6]}"
    base = REPO / "manifests" / "base"
    plane.kubectl("apply", "-f", str(base / "clusterrole.yaml"), "-f", str(base / "clusterrolebinding.yaml"))
    plane.kubectl("create", "namespace", namespace)
    # One emulated controller step per hour: nothing moves unless this script says so.
    with KusciaDoubleThread(workdir / "pki", step_seconds=3600, seed=1) as kuscia:
        operator = OperatorProcess(
            plane,
            workdir / "operator.log",
            args=[
                "--namespace",
                namespace,
                "--kuscia-url",
                kuscia.base_url,
                "--kuscia-credentials-dir",
                str(kuscia.pki.directory),
                "--kuscia-poll-interval",
                str(args.poll_interval),
            ],
        )
        operator.start()
        try:
            started = time.monotonic()
            items = [job(f"job-{i:04d}") for i in range(args.jobs)]
            items += [deployment(f"serving-{i:04d}") for i in range(args.deployments)]
            plane.kubectl(
                "apply",
                "-n",
                namespace,
                "-f",
                "-",
                input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
            )
            wait_for(
                lambda: len(kuscia.jobs) == args.jobs and len(kuscia.servings) == args.deployments,
                timeout=600,
                interval=1,
                what="every object submitted to Kuscia",
            )
            kuscia.advance(1)  # jobs Running, servings Progressing: all of them still polled
            wait_for(
                lambda: (
                    all(p == "Running" for p in phases(plane, "kusciajobs", namespace))
                    and all(p == "Progressing" for p in phases(plane, "kusciadeployments", namespace))
                ),
                timeout=600,
                interval=1,
                what="every object reporting Kuscia's state",
            )
            print(
                f"Set up {args.jobs} KusciaJobs and {args.deployments} KusciaDeployments "
                f"in {time.monotonic() - started:.0f}s",
                file=sys.stderr,
            )

            kuscia.reset_stats()
            window = args.intervals * args.poll_interval
            time.sleep(window)  # the measurement window
            stats = kuscia.stats()
        finally:
            operator.stop()
    plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)

    counts = {"KusciaJob": args.jobs, "KusciaDeployment": args.deployments}
    print(
        f"Kuscia API calls per {args.poll_interval:g}s poll interval in steady state "
        f"({args.intervals} intervals measured):"
    )
    failed = False
    for kind, route in ROUTES.items():
        per_interval = stats.pop(route, 0) / args.intervals
        bound = math.ceil(counts[kind] / 100)
        failed |= per_interval > bound
        print(f"  {kind:<17} {counts[kind]:>5} objects  {route:<36} {per_interval:5.2f}  (bound {bound})")
    other = sum(stats.values())
    failed |= other > 0
    print(f"  other calls: {other}" + (f" {stats}" if stats else ""))
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=250)
    parser.add_argument("--deployments", type=int, default=50)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--intervals", type=int, default=10, help="poll intervals to measure over")
    args = parser.parse_args()
    plane = ControlPlane.start()
    try:
        with tempfile.TemporaryDirectory(prefix="kuscia-calls-") as tmp:
            return measure(args, plane, Path(tmp))
    finally:
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
