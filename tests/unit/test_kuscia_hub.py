"""KusciaHub: connections, batched status polling and its failure handling, against the Kuscia emulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from paddle_kuscia.adapters.kube import NotFound
from paddle_kuscia.adapters.kuscia import (
    KusciaAlreadyExists,
    KusciaAuthError,
    KusciaNotFound,
    KusciaRejected,
    KusciaTLSError,
    KusciaUnavailable,
)
from paddle_kuscia.models.kuscia import Kind
from paddle_kuscia.runtime.context import Config
from paddle_kuscia.runtime.kuscia_hub import (
    Connection,
    KusciaHub,
    NoKusciaConnection,
    describe,
    is_refusal,
    refusal,
)
from paddle_kuscia.runtime.queue import Priority
from paddle_kuscia.status.kuscia import MISSING, Reported
from paddle_kuscia.status.kuscia_plan import attempt_key
from support.certs import Pki, generate_pki
from support.kuscia_double import KusciaDouble

# States move only when a test calls double.advance().
STEP = 3600.0


@dataclass
class RecordingQueue:
    added: list[Any] = field(default_factory=list)

    def add(self, key: Any, priority: Priority = Priority.CHANGE) -> None:
        # A status seen on Kuscia is a refresh: it must never jump ahead of spec changes.
        assert priority == Priority.REFRESH
        self.added.append(key)


@dataclass
class FakeKube:
    """Only what the hub reads from Kubernetes: connection Secrets, by namespace and name."""

    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        if (namespace, name) not in self.secrets:
            raise NotFound(404, f"secrets {name!r} not found")
        return self.secrets[(namespace, name)]


@dataclass
class Ctx:
    config: Config
    kube: FakeKube = field(default_factory=FakeKube)
    queues: dict[str, RecordingQueue] = field(
        default_factory=lambda: {
            k: RecordingQueue() for k in ("PaddleService", "KusciaDeployment", "KusciaJob")
        }
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return generate_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def double(pki: Pki) -> AsyncIterator[KusciaDouble]:
    emulator = KusciaDouble(pki.directory, step_seconds=STEP, seed=1)
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def hub(pki: Pki, double: KusciaDouble) -> AsyncIterator[KusciaHub]:
    config = Config(
        kuscia_url=double.base_url,
        kuscia_credentials_dir=str(pki.directory),
        kuscia_poll_interval=0.05,
        backoff_max=0.2,
    )
    hub = KusciaHub(Ctx(config))
    yield hub
    await hub.stop()


def queued(hub: KusciaHub, kind: str) -> list[Any]:
    return hub._ctx.queues[kind].added


def clear_queues(hub: KusciaHub) -> None:
    for q in hub._ctx.queues.values():
        q.added.clear()


async def submit_jobs(hub: KusciaHub, ids: list[str]) -> None:
    conn = await hub.connection("ns", None)
    for job_id in ids:
        await conn.client.create_job(
            {
                "job_id": job_id,
                "initiator": "alice",
                "tasks": [
                    {
                        "alias": "t",
                        "app_image": "secretflow-image",
                        "task_input_config": "{}",
                        "parties": [{"domain_id": "alice"}],
                    }
                ],
            }
        )


async def submit_servings(hub: KusciaHub, ids: list[str]) -> None:
    conn = await hub.connection("ns", None)
    for serving_id in ids:
        await conn.client.create_serving(
            {
                "serving_id": serving_id,
                "initiator": "alice",
                "parties": [{"domain_id": "alice", "app_image": "secretflow-serving-image"}],
            }
        )


async def poll_until(hub: KusciaHub, predicate: Any, *, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached while polling"
        await hub.poll_once()
        await asyncio.sleep(0.02)


async def test_one_batch_call_per_kuscia_kind_per_hundred_ids(hub: KusciaHub, double: KusciaDouble) -> None:
    jobs = [f"job-{i:03d}" for i in range(250)]
    servings = [f"svc-{i:03d}" for i in range(130)]
    await submit_jobs(hub, jobs)
    await submit_servings(hub, servings)
    conn = await hub.connection("ns", None)
    for job_id in jobs:
        hub.track(Kind.JOB, conn, job_id, ("ns", job_id))
    # PaddleServices and KusciaDeployments are both servings: they share one status call.
    for serving_id in servings[:70]:
        hub.track(Kind.PADDLESERVICE, conn, serving_id, ("ns", serving_id))
    for serving_id in servings[70:]:
        hub.track(Kind.DEPLOYMENT, conn, serving_id, ("ns", serving_id))
    double.reset_stats()

    await hub.poll_once()
    assert double.stats() == {"/api/v1/job/status/batchQuery": 3, "/api/v1/serving/status/batchQuery": 2}
    assert sorted(queued(hub, "KusciaJob")) == [("ns", j) for j in jobs]
    assert len(queued(hub, "PaddleService")) == 70 and len(queued(hub, "KusciaDeployment")) == 60
    assert hub.remote(Kind.JOB, conn, "job-000").detail["state"] == "Pending"  # type: ignore[union-attr]
    # Known to Kuscia, no party status yet.
    assert hub.remote(Kind.PADDLESERVICE, conn, "svc-000") == Reported({"state": "Pending"})

    # Nothing moved: the same calls, and no object is queued again.
    clear_queues(hub)
    await hub.poll_once()
    assert all(not q.added for q in hub._ctx.queues.values())

    double.advance(1)
    await hub.poll_once()
    assert len(queued(hub, "KusciaJob")) == 250
    assert hub.remote(Kind.JOB, conn, "job-000").detail["state"] == "Running"  # type: ignore[union-attr]


async def test_finished_and_vanished_jobs_are_not_polled_again(hub: KusciaHub, double: KusciaDouble) -> None:
    await submit_jobs(hub, ["done", "gone"])
    conn = await hub.connection("ns", None)
    hub.track(Kind.JOB, conn, "done", ("ns", "done"))
    hub.track(Kind.JOB, conn, "gone", ("ns", "gone"))
    double.remove_job("gone")
    double.advance(5)
    double.reset_stats()

    await hub.poll_once()
    assert hub.remote(Kind.JOB, conn, "done").detail["state"] == "Succeeded"  # type: ignore[union-attr]
    assert hub.remote(Kind.JOB, conn, "gone") == MISSING
    calls = double.calls("job/status/batchQuery")
    assert calls == 2  # the unknown id fails the batch once, then the rest is asked again
    await hub.poll_once()
    await hub.poll_once()
    assert double.calls("job/status/batchQuery") == calls


async def test_vanished_serving_is_reported_missing_and_queued(hub: KusciaHub, double: KusciaDouble) -> None:
    await submit_servings(hub, ["svc"])
    conn = await hub.connection("ns", None)
    hub.track(Kind.PADDLESERVICE, conn, "svc", ("ns", "ps"))
    await hub.poll_once()
    clear_queues(hub)
    double.remove_serving("svc")
    await hub.poll_once()
    assert hub.remote(Kind.PADDLESERVICE, conn, "svc") == MISSING
    assert queued(hub, "PaddleService") == [("ns", "ps")]


async def test_a_failing_route_is_reported_for_its_kinds_only_and_backs_off(
    hub: KusciaHub, double: KusciaDouble
) -> None:
    await submit_jobs(hub, ["job"])
    await submit_servings(hub, ["svc"])
    conn = await hub.connection("ns", None)
    hub.track(Kind.JOB, conn, "job", ("ns", "job"))
    hub.track(Kind.PADDLESERVICE, conn, "svc", ("ns", "svc"))
    await hub.poll_once()
    clear_queues(hub)

    double.inject("job/status/batchQuery", "auth_401", count=None)
    await hub.poll_once()
    problem = conn.problem_for(Kind.JOB)
    assert problem is not None and (problem.status, problem.reason) == ("False", "KusciaAuthFailed")
    assert conn.problem_for(Kind.PADDLESERVICE) is None and conn.problem_for(Kind.DEPLOYMENT) is None
    assert queued(hub, "KusciaJob") == [("ns", "job")] and queued(hub, "PaddleService") == []

    # Polled again only after the backoff delay; the same problem does not queue the object again.
    failed_calls = double.calls("job/status/batchQuery")
    await hub.poll_once()
    assert double.calls("job/status/batchQuery") == failed_calls
    clear_queues(hub)
    await poll_until(hub, lambda: double.calls("job/status/batchQuery") > failed_calls)
    assert queued(hub, "KusciaJob") == []

    double.clear_faults()
    await poll_until(hub, lambda: conn.problem_for(Kind.JOB) is None)
    assert queued(hub, "KusciaJob") == [("ns", "job")]


async def test_untracked_objects_are_forgotten(hub: KusciaHub, double: KusciaDouble) -> None:
    await submit_servings(hub, ["shared"])
    conn = await hub.connection("ns", None)
    hub.track(Kind.PADDLESERVICE, conn, "shared", ("ns", "a"))
    hub.track(Kind.PADDLESERVICE, conn, "shared", ("ns", "b"))
    await hub.poll_once()
    hub.forget_paddleservice(("ns", "a"))
    assert hub.remote(Kind.PADDLESERVICE, conn, "shared") is not None  # b still follows it
    hub.untrack(Kind.PADDLESERVICE, ("ns", "b"))
    assert hub.remote(Kind.PADDLESERVICE, conn, "shared") is None
    double.reset_stats()
    await hub.poll_once()
    assert double.stats() == {}


async def test_connection_secrets_share_a_client_per_identity(
    pki: Pki, hub: KusciaHub, double: KusciaDouble
) -> None:
    data = {f: (pki.directory / f).read_text() for f in ("ca.crt", "tls.crt", "tls.key", "token")}
    kube = hub._ctx.kube
    kube.secrets[("a", "kuscia")] = data
    kube.secrets[("b", "kuscia")] = data
    kube.secrets[("c", "kuscia")] = {**data, "url": double.base_url.replace("127.0.0.1", "localhost")}
    default = await hub.connection("a", None)
    first = await hub.connection("a", "kuscia")
    assert first is default  # same URL, certificates and token: the same pooled client
    assert await hub.connection("b", "kuscia") is first
    other = await hub.connection("c", "kuscia")
    assert other is not first and other.url.startswith("https://localhost:")
    assert await other.client.health()

    with pytest.raises(NoKusciaConnection) as missing:
        await hub.connection("a", "absent")
    kube.secrets[("a", "broken")] = {**data, "token": ""}
    with pytest.raises(NoKusciaConnection) as broken:
        await hub.connection("a", "broken")
    for err in (missing, broken):
        assert data["token"] not in str(err.value)
    assert "a/absent" in str(missing.value) and "a/broken" in str(broken.value)


async def test_no_default_connection_is_explained(tmp_path: Path) -> None:
    hub = KusciaHub(Ctx(Config()))
    with pytest.raises(NoKusciaConnection, match="--kuscia-credentials-dir"):
        await hub.connection("ns", None)
    with pytest.raises(NoKusciaConnection, match="--bfia-url"):
        hub.bfia()
    empty = KusciaHub(Ctx(Config(kuscia_url="https://127.0.0.1:1", kuscia_credentials_dir=str(tmp_path))))
    with pytest.raises(NoKusciaConnection, match="unusable"):
        await empty.connection("ns", None)


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (KusciaAuthError(None, "HTTP 401", "/r"), "False", "KusciaAuthFailed"),
        (KusciaTLSError(None, "bad certificate", "/r"), "False", "KusciaTLSFailed"),
        (KusciaUnavailable(None, "HTTP 503", "/r"), "Unknown", "KusciaUnavailable"),
        (KusciaRejected(11100, "invalid", "/r"), "False", "KusciaRequestRejected"),
        (RuntimeError("surprise"), "Unknown", "KusciaUnavailable"),
    ],
)
def test_errors_become_conditions_with_their_cause(error: Exception, status: str, reason: str) -> None:
    problem = describe(error)
    assert (problem.status, problem.reason) == (status, reason)
    assert str(error) in problem.message


# ---- what is retried -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "refusal"),
    [
        (KusciaRejected(11100, "validation failed", "/api/v1/serving/create"), True),
        (
            KusciaAlreadyExists(
                11201, 'kusciajobs.kuscia.secretflow "j" already exists', "/api/v1/job/create"
            ),
            True,
        ),
        (
            KusciaNotFound(
                11603, 'kusciadeployments.kuscia.secretflow "s" not found', "/api/v1/serving/update"
            ),
            True,
        ),
        (KusciaUnavailable(11103, "master unreachable", "/api/v1/serving/create"), False),
        (KusciaUnavailable(None, "HTTP 503", "/api/v1/serving/create"), False),
        (KusciaTLSError(None, "certificate", "/api/v1/serving/create"), False),
        (KusciaAuthError(None, "HTTP 401", "/api/v1/serving/create"), False),
    ],
)
def test_only_kuscias_answers_refusing_the_request_are_refusals(error: Exception, refusal: bool) -> None:
    """A refusal would be answered the same way again: it is not re-sent. The rest recovers by itself
    (Kuscia back, credentials fixed) and is retried with backoff."""
    assert is_refusal(error) is refusal


def test_a_refused_attempt_is_remembered_per_kind_and_id() -> None:
    hub = KusciaHub(Ctx(Config()))
    conn = Connection(id="c", url="https://kuscia", client=None)  # type: ignore[arg-type]
    attempt = attempt_key("digest", 3, {"a": "1"})
    problem = refusal(KusciaRejected(11100, "serving id is invalid", "/api/v1/serving/create"))
    assert problem.reason == "KusciaRequestRejected" and "not sent again" in problem.message

    hub.set_refused(Kind.PADDLESERVICE, conn, "s", attempt, problem)
    assert hub.refused(Kind.PADDLESERVICE, conn, "s") == (attempt, problem)
    assert hub.refused(Kind.DEPLOYMENT, conn, "s") is None
    assert hub.refused(Kind.PADDLESERVICE, conn, "t") is None
    hub.set_refused(Kind.PADDLESERVICE, conn, "s", None)
    assert hub.refused(Kind.PADDLESERVICE, conn, "s") is None
