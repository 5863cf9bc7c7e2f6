"""Shared pieces for the Kuscia integration tests: one emulator, one namespace and one operator per module.

The operator runs as a real subprocess under its own ServiceAccount against the real control plane, and talks
to the Kuscia emulator over mTLS with the emulator's client certificate and token. A test module imports the
fixtures it uses by name (pytest finds fixtures among a module's globals) and lists them in `__all__`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from support.control_plane import ROOT, ControlPlane, wait_for
from support.kuscia_double import KusciaDoubleThread
from support.operator import OperatorProcess

Obj = dict[str, Any]

SAMPLES = ROOT / "manifests" / "samples"
# Emulated controllers move one step every STEP seconds; the operator polls Kuscia every POLL seconds.
STEP = 0.3
POLL = 1.0


def sample(filename: str, **metadata: Any) -> Obj:
    """A sample manifest from manifests/samples, with metadata fields (name, annotations...) overridden."""
    obj = yaml.safe_load((SAMPLES / filename).read_text())
    meta = obj.setdefault("metadata", {})
    for key, value in metadata.items():
        if isinstance(value, dict):
            meta[key] = {**(meta.get(key) or {}), **value}
        else:
            meta[key] = value
    return obj


def condition(obj: Obj | None, ctype: str) -> Obj:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return {}


def wait_condition(
    cp: ControlPlane,
    kind: str,
    name: str,
    namespace: str,
    ctype: str,
    status: str,
    *,
    reason: str | None = None,
    timeout: float = 30,
) -> Obj:
    """Wait until `kind/name` carries condition `ctype` with `status` (and `reason`, when given); return it."""

    def check() -> Obj | None:
        obj = cp.get(kind, name, namespace)
        cond = condition(obj, ctype)
        if cond.get("status") == status and (reason is None or cond.get("reason") == reason):
            return obj
        return None

    what = f"{kind} {namespace}/{name} {ctype}={status}" + (f" reason={reason}" if reason else "")
    return wait_for(check, timeout=timeout, what=what)


def wait_gone(cp: ControlPlane, kind: str, name: str, namespace: str, *, timeout: float = 30) -> None:
    wait_for(
        lambda: cp.get(kind, name, namespace) is None, timeout=timeout, what=f"{kind} {namespace}/{name} gone"
    )


def creates_and_updates(stats: dict[str, int]) -> dict[str, int]:
    """The calls that change something in Kuscia, from the emulator's per-route counters."""
    writes = ("/create", "/update", "/delete", "/stop")
    return {route: n for route, n in stats.items() if route.endswith(writes)}


def assert_token_never_exposed(cp: ControlPlane, namespace: str, token: str, operator_log: str) -> None:
    """The Kuscia token must not leak into the operator log, Events or any status the operator wrote."""
    assert token and len(token) >= 16
    assert token not in operator_log, "the Kuscia token appeared in the operator log"
    events = cp.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert token not in events, "the Kuscia token appeared in an Event"
    objects = cp.kubectl(
        "get", "paddleservices,kusciajobs,kusciadeployments", "-n", namespace, "-o", "json"
    ).stdout
    for item in json.loads(objects)["items"]:
        assert token not in json.dumps(item.get("status") or {}), (
            f"the Kuscia token appeared in the status of {item['kind']} {item['metadata']['name']}"
        )


def operator_args(namespace: str, emulator: KusciaDoubleThread, *extra: str) -> list[str]:
    return [
        "--namespace",
        namespace,
        "--kuscia-url",
        emulator.base_url,
        "--kuscia-credentials-dir",
        str(emulator.pki.directory),
        "--kuscia-poll-interval",
        str(POLL),
        "--bfia-url",
        emulator.bfia_url,
        *extra,
    ]


@pytest.fixture(scope="module")
def kuscia(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KusciaDoubleThread]:
    """The Kuscia API emulator on 127.0.0.1, shared by the tests of one module."""
    with KusciaDoubleThread(tmp_path_factory.mktemp("kuscia-pki"), step_seconds=STEP, seed=11) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def kuscia_namespace(control_plane: ControlPlane) -> Iterator[str]:
    """One namespace per module, so one operator can serve all of its tests."""
    name = f"k-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    wait_for(lambda: control_plane.get("namespace", name), what=f"namespace {name}")
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def start_operator(
    control_plane: ControlPlane, operator_rbac: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start operators (stopped at module end): `start_operator(namespace, emulator, *extra_args, env=...)`."""
    started: list[OperatorProcess] = []
    logs = tmp_path_factory.mktemp("operator-logs")

    def start(
        namespace: str, emulator: KusciaDoubleThread, *extra: str, env: dict[str, str] | None = None
    ) -> OperatorProcess:
        log = logs / f"operator-{len(started)}.log"
        proc = OperatorProcess(control_plane, log, args=operator_args(namespace, emulator, *extra), env=env)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="module")
def kuscia_operator(
    start_operator: Callable[..., OperatorProcess], kuscia_namespace: str, kuscia: KusciaDoubleThread
) -> OperatorProcess:
    """The module's operator, watching the module's namespace, connected to the module's emulator."""
    return start_operator(kuscia_namespace, kuscia)


@pytest.fixture
def clean_kuscia(kuscia: KusciaDoubleThread) -> Iterator[KusciaDoubleThread]:
    """The module's emulator with no faults left over from another test (and none left behind)."""
    kuscia.clear_faults()
    kuscia.set_refuse_tls(False)
    if kuscia.is_down:
        kuscia.up()
    yield kuscia
    kuscia.clear_faults()
    kuscia.set_refuse_tls(False)
    if kuscia.is_down:
        kuscia.up()
