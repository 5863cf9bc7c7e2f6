"""The Kuscia emulator's wire behaviour, spoken to with a raw mTLS httpx client."""

from __future__ import annotations

import asyncio
import copy
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.certs import Pki, generate_pki
from support.kuscia_double import KusciaDouble, KusciaDoubleThread

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return generate_pki(tmp_path_factory.mktemp("pki"))


def client_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # the throwaway PKI must pass strict checks too
    context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


async def start(pki: Pki, **kwargs: Any) -> KusciaDouble:
    kwargs.setdefault("step_seconds", 60.0)
    double = KusciaDouble(pki.directory, **kwargs)
    await double.start()
    return double


@pytest.fixture
async def double(pki: Pki) -> AsyncIterator[KusciaDouble]:
    emulator = await start(pki, seed=3)
    yield emulator
    await emulator.stop()


@pytest.fixture
async def http(pki: Pki, double: KusciaDouble) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=double.base_url, verify=client_context(pki), headers={"Token": double.token}, timeout=5.0
    ) as raw:
        yield raw


async def post(http: httpx.AsyncClient, path: str, body: Any = None) -> dict[str, Any]:
    response = await http.post(path, json={} if body is None else body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    return response.json()


async def eventually(
    probe: Callable[[], Awaitable[Any]], accept: Callable[[Any], bool], timeout: float = 5.0
) -> Any:
    """Poll ``probe`` until ``accept`` holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(0.02)


SERVING = {
    "serving_id": "serving-1",
    "initiator": "alice",
    "serving_input_config": "{}",
    "parties": [
        {"domain_id": "alice", "app_image": "secretflow-serving-image", "replicas": 1},
        {"domain_id": "bob", "app_image": "secretflow-serving-image"},
    ],
}
JOB = {
    "job_id": "job-1",
    "initiator": "alice",
    "tasks": [
        {
            "alias": "psi",
            "task_id": "job-1-psi",
            "app_image": "secretflow-image",
            "parties": [
                {"domain_id": "alice", "bandwidth_limits": [{"destination_id": "bob", "limit_kbps": 1000}]},
                {"domain_id": "bob", "resources": {"cpu": "1", "memory": "2Gi"}},
            ],
        },
        {
            "alias": "train",
            "app_image": "secretflow-image",
            "dependencies": ["psi"],  # an alias, as Kuscia resolves them
            "parties": [{"domain_id": "alice"}, {"domain_id": "bob"}],
        },
    ],
}


# -- routing and authentication ------------------------------------------------------------------


async def test_unknown_paths_and_other_methods_get_gins_404_text(http: httpx.AsyncClient) -> None:
    for response in (
        await http.post("/api/v1/nothing", json={}),
        await http.get("/healthZ"),
        await http.put("/api/v1/serving/create", json={}),
        await http.post("/healthz", json={}),  # the route really has a capital Z
    ):
        assert response.status_code == 404
        assert response.text == "404 page not found"
        assert response.headers["content-type"].startswith("text/plain")


async def test_token_is_checked_on_every_path_with_an_empty_401(http: httpx.AsyncClient, pki: Pki) -> None:
    for path in ("/healthZ", "/api/v1/serving/query", "/api/v1/nothing", "/_emulator/stats"):
        for headers in ({"Token": "wrong"}, {"Token": ""}):
            response = await http.post(path, json={}, headers=headers)
            assert (response.status_code, response.content) == (401, b"")
    async with httpx.AsyncClient(base_url=str(http.base_url), verify=client_context(pki)) as bare:
        response = await bare.post("/healthZ", json={})
    assert (response.status_code, response.content) == (401, b"")


async def test_health(http: httpx.AsyncClient) -> None:
    assert await post(http, "/healthZ") == {
        "status": {"code": 0, "message": "success", "details": []},
        "data": {"ready": True},
    }


async def test_unparseable_json_gets_the_bare_11101_envelope(http: httpx.AsyncClient) -> None:
    for raw in (b"{not json", b"[1, 2]", b'{"serving_ids": "x"}'):
        response = await http.post("/api/v1/serving/status/batchQuery", content=raw)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"status"}
        assert set(body["status"]) == {"code", "message"}
        assert body["status"]["code"] == 11101


async def test_camel_case_request_keys_are_accepted(http: httpx.AsyncClient) -> None:
    await post(http, "/api/v1/serving/create", SERVING)
    body = await post(http, "/api/v1/serving/query", {"servingId": "serving-1", "unknownField": 1})
    assert body["status"]["code"] == 0


# -- EmitUnpopulated shapes ----------------------------------------------------------------------


async def test_error_and_success_envelopes_have_kuscias_shapes(http: httpx.AsyncClient) -> None:
    assert await post(http, "/api/v1/serving/query", {"serving_id": "ghost"}) == {
        "status": {
            "code": 11601,
            "message": 'kusciadeployments.kuscia.secretflow "ghost" not found',
            "details": [],
        },
        "data": None,
    }
    # Create/update/delete serving responses have no data field at all.
    assert await post(http, "/api/v1/serving/create", SERVING) == {
        "status": {"code": 0, "message": "success", "details": []}
    }
    assert "data" not in await post(http, "/api/v1/serving/delete", {"serving_id": "ghost"})


async def test_serving_without_party_status_has_null_status_and_omits_unset_replicas(
    http: httpx.AsyncClient, double: KusciaDouble
) -> None:
    await post(http, "/api/v1/serving/create", SERVING)
    data = (await post(http, "/api/v1/serving/query", {"serving_id": "serving-1"}))["data"]
    assert data["status"] is None
    alice, bob = data["parties"]
    assert alice["replicas"] == 1 and "replicas" not in bob
    assert bob["update_strategy"] == {"type": "RollingUpdate", "max_surge": "25%", "max_unavailable": "25%"}
    assert bob["resources"] == [] and bob["service_name_prefix"] == "" and bob["role"] == ""
    batch = (await post(http, "/api/v1/serving/status/batchQuery", {"serving_ids": ["serving-1"]}))["data"]
    assert batch == {"servings": [{"serving_id": "serving-1", "status": None}]}

    double.advance(2)
    status = (await post(http, "/api/v1/serving/query", {"serving_id": "serving-1"}))["data"]["status"]
    party = status["party_statuses"][0]
    assert "updatedReplicas" in party and "updated_replicas" not in party
    assert set(party) == {
        "domain_id",
        "role",
        "state",
        "replicas",
        "available_replicas",
        "unavailable_replicas",
        "updatedReplicas",
        "create_time",
        "endpoints",
    }
    assert status["create_time"].endswith("Z") and len(status["create_time"]) == 20


async def test_job_query_sends_uint64_as_string_and_null_for_unset_messages(http: httpx.AsyncClient) -> None:
    assert (await post(http, "/api/v1/job/create", JOB))["data"] == {"job_id": "job-1"}
    data = (await post(http, "/api/v1/job/query", {"job_id": "job-1"}))["data"]
    alice, bob = data["tasks"][0]["parties"]
    assert alice["bandwidth_limits"] == [{"destination_id": "bob", "limit_kbps": "1000"}]
    assert alice["resources"] is None
    assert bob["resources"] == {"cpu": "1", "memory": "2Gi", "bandwidth": ""}
    assert "tolerable" not in data["tasks"][0]
    assert data["tasks"][0]["schedule_config"] is None
    assert data["custom_fields"] == {}
    assert data["max_parallelism"] == 1
    assert data["tasks"][1]["task_id"] == "job-1-train"  # generated when not given
    status = data["status"]
    assert status["state"] == "Pending"
    assert status["tasks"][0] == {
        "task_id": "job-1-psi",
        "state": "Pending",
        "err_msg": "",
        "create_time": "",
        "start_time": "",
        "end_time": "",
        "parties": [],
        "alias": "psi",
        "progress": 0.0,
    }
    assert status["stage_status_list"] == [] and status["approve_status_list"] == []


# -- batch queries -------------------------------------------------------------------------------


async def test_serving_batch_query_skips_unknown_ids(http: httpx.AsyncClient) -> None:
    body = await post(http, "/api/v1/serving/status/batchQuery", {"serving_ids": ["a", "b"]})
    assert body == {"status": {"code": 0, "message": "success", "details": []}, "data": {"servings": []}}
    for ids, message in (([], "serving ids can not be empty"), (["a", ""], "serving id can not be empty")):
        body = await post(http, "/api/v1/serving/status/batchQuery", {"serving_ids": ids})
        assert (body["status"]["code"], body["status"]["message"], body["data"]) == (11100, message, None)


async def test_job_batch_query_fails_whole_call_on_an_unknown_id(http: httpx.AsyncClient) -> None:
    await post(http, "/api/v1/job/create", JOB)
    body = await post(http, "/api/v1/job/status/batchQuery", {"job_ids": ["job-1", "gone", "job-1"]})
    assert body == {
        "status": {"code": 11203, "message": 'kusciajobs.kuscia.secretflow "gone" not found', "details": []},
        "data": None,
    }
    body = await post(http, "/api/v1/job/status/batchQuery", {"job_ids": ["job-1", "job-1"]})
    assert [j["job_id"] for j in body["data"]["jobs"]] == ["job-1", "job-1"]  # request order kept


# -- serving create / update rules ---------------------------------------------------------------


def serving(**changes: Any) -> dict[str, Any]:
    body = {**SERVING, "parties": [dict(p) for p in SERVING["parties"]]}
    body.update(changes)
    return body


RESOURCES = [
    {"container_name": "", "min_cpu": "0.1", "max_cpu": "1", "min_memory": "1Gi", "max_memory": "1Gi"}
]


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (serving(serving_id=""), 11100, "serving id can not be empty"),
        (serving(serving_id="Bad_Id"), 11100, "Field 'serving_id' is invalid, Invalid value: 'Bad_Id'"),
        (serving(serving_id="x" * 64), 11100, "regex used for validation is '^[a-z0-9]"),
        (serving(initiator=""), 11100, "initiator can not be empty"),
        (serving(parties=[]), 11100, "parties can not be empty"),
        (serving(parties=[{"domain_id": "alice"}]), 11100, "appimage can't be empty in parties[0]"),
        (serving(parties=[{"app_image": "i"}]), 11100, "domain id can't be empty in parties[0]"),
        (
            serving(parties=[{"domain_id": "alice", "app_image": "i", "service_name_prefix": "9bad"}]),
            11100,
            "service name prefix is invalid in parties[0]",
        ),
        (serving(initiator="carol"), 11100, "initiator carol should be one of the parties"),
        (
            serving(parties=[{"domain_id": "alice", "app_image": "unknown-image", "resources": RESOURCES}]),
            11600,
            'can not get appimage unknown-image from cluster, appimages.kuscia.secretflow "unknown-image" '
            "not found",
        ),
        (
            serving(
                parties=[{"domain_id": "alice", "app_image": "i", "update_strategy": {"type": "Canary"}}]
            ),
            11600,
            "update strategy type should be Recreate or RollingUpdate for party/role alice/",
        ),
        # Order: the id is checked before anything else, the initiator before the parties.
        (serving(serving_id="", initiator="", parties=[]), 11100, "serving id can not be empty"),
        (serving(initiator="", parties=[]), 11100, "initiator can not be empty"),
    ],
)
async def test_serving_create_validation(
    http: httpx.AsyncClient, body: dict[str, Any], code: int, message: str
) -> None:
    status = (await post(http, "/api/v1/serving/create", body))["status"]
    assert status["code"] == code
    assert message in status["message"]


async def test_serving_create_without_resources_does_not_check_the_appimage(http: httpx.AsyncClient) -> None:
    body = serving(parties=[{"domain_id": "alice", "app_image": "not-registered"}])
    assert (await post(http, "/api/v1/serving/create", body))["status"]["code"] == 0


async def test_strict_appimages_make_query_fail_like_kuscia(pki: Pki) -> None:
    double = await start(pki, strict_appimages=True, appimages=["secretflow-serving-image"])
    try:
        async with httpx.AsyncClient(
            base_url=double.base_url, verify=client_context(pki), headers={"Token": double.token}
        ) as http:
            body = serving(parties=[{"domain_id": "alice", "app_image": "later-image"}])
            await post(http, "/api/v1/serving/create", body)
            status = (await post(http, "/api/v1/serving/query", {"serving_id": "serving-1"}))["status"]
            assert status["code"] == 11601
            assert 'appimages.kuscia.secretflow "later-image" not found' in status["message"]
            double.add_appimage("later-image")
            assert (await post(http, "/api/v1/serving/query", {"serving_id": "serving-1"}))["status"][
                "code"
            ] == 0
    finally:
        await double.stop()


async def test_duplicate_serving_message(http: httpx.AsyncClient) -> None:
    await post(http, "/api/v1/serving/create", SERVING)
    status = (await post(http, "/api/v1/serving/create", SERVING))["status"]
    assert status["code"] == 11600
    assert status["message"] == (
        'serving "cross-domain/serving-1" already exists, please ensure that the name is not duplicated'
    )


async def test_p2p_initiator_must_be_the_own_domain(pki: Pki) -> None:
    double = await start(pki, p2p=True, domain="alice")
    try:
        async with httpx.AsyncClient(
            base_url=double.base_url, verify=client_context(pki), headers={"Token": double.token}
        ) as http:
            status = (await post(http, "/api/v1/serving/create", serving(initiator="bob")))["status"]
            assert (status["code"], status["message"]) == (11100, "initiator must be alice in P2P")
            status = (await post(http, "/api/v1/job/create", {**JOB, "initiator": "bob"}))["status"]
            assert status["code"] == 11100
            assert "initiator is bob, but initiator must be alice in P2P" in status["message"]
            assert (await post(http, "/api/v1/serving/create", SERVING))["status"]["code"] == 0
    finally:
        await double.stop()


async def test_serving_update_rules(http: httpx.AsyncClient, double: KusciaDouble) -> None:
    def update(**body: Any) -> Awaitable[dict[str, Any]]:
        return post(http, "/api/v1/serving/update", body)

    # Nothing to change: success without even looking the serving up.
    assert (await update(serving_id="ghost"))["status"]["code"] == 0
    assert (await update(serving_id=""))["status"]["code"] == 11100
    ghost = (await update(serving_id="ghost", serving_input_config="{}"))["status"]
    assert (ghost["code"], ghost["message"]) == (
        11603,
        'kusciadeployments.kuscia.secretflow "ghost" not found',
    )

    await post(http, "/api/v1/serving/create", SERVING)
    double.advance(2)
    unknown = (await update(serving_id="serving-1", parties=[{"domain_id": "carol"}]))["status"]
    assert (unknown["code"], unknown["message"]) == (11603, "party domain_id/role carol/ does not exist")
    image = (await update(serving_id="serving-1", parties=[{"domain_id": "bob", "app_image": "nope"}]))[
        "status"
    ]
    assert image["code"] == 11603 and 'appimages.kuscia.secretflow "nope" not found' in image["message"]

    same = await update(serving_id="serving-1", serving_input_config="{}", parties=[{"domain_id": "alice"}])
    assert same["status"]["code"] == 0
    assert double.servings["serving-1"]["updates"] == 0  # nothing differed: no rollout
    assert double.serving_status("serving-1")["state"] == "Available"  # type: ignore[index]

    await update(serving_id="serving-1", parties=[{"domain_id": "bob", "replicas": 3}])
    assert double.servings["serving-1"]["updates"] == 1
    status = double.serving_status("serving-1")
    assert status is not None and status["state"] == "Progressing"
    double.advance()
    status = double.serving_status("serving-1")
    assert status is not None and status["state"] == "Available"
    bob = next(p for p in status["party_statuses"] if p["domain_id"] == "bob")
    assert (bob["replicas"], bob["available_replicas"]) == (3, 3)


async def test_endpoints_follow_kusciass_service_naming(
    http: httpx.AsyncClient, double: KusciaDouble
) -> None:
    body = serving(
        serving_id="7up",
        parties=[
            {"domain_id": "alice", "app_image": "i"},
            {"domain_id": "bob", "app_image": "i", "service_name_prefix": "bob-model"},
        ],
    )
    await post(http, "/api/v1/serving/create", body)
    double.advance(2)
    status = double.serving_status("7up")
    assert status is not None
    endpoints = {
        (p["domain_id"], e["port_name"], e["scope"]): e["endpoint"]
        for p in status["party_statuses"]
        for e in p["endpoints"]
    }
    assert endpoints[("alice", "service", "Domain")].startswith("svc-7up-service.alice.svc:")
    assert endpoints[("alice", "communication", "Cluster")] == "svc-7up-communication.alice.svc"
    assert endpoints[("bob", "service", "Domain")].startswith("bob-model-service.bob.svc:")


async def test_party_and_endpoint_order_is_random(http: httpx.AsyncClient, double: KusciaDouble) -> None:
    await post(http, "/api/v1/serving/create", SERVING)
    double.advance(2)
    orders = set()
    for _ in range(20):
        status = (await post(http, "/api/v1/serving/query", {"serving_id": "serving-1"}))["data"]["status"]
        orders.add(
            tuple(
                (p["domain_id"], tuple(e["port_name"] for e in p["endpoints"]))
                for p in status["party_statuses"]
            )
        )
    assert len(orders) > 1


# -- jobs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"job_id": ""}, "job id can not be empty"),
        ({"job_id": "Job_1"}, "Field 'job_id' is invalid"),
        ({"initiator": ""}, "initiator can not be empty"),
        ({"tasks": []}, "tasks can not be empty"),
        (
            {"tasks": [{"app_image": "i", "parties": [{"domain_id": "a"}]}]},
            "task alias can not be empty on tasks[0]",
        ),
        ({"tasks": [{"alias": "t", "app_image": "i"}]}, "parties can not be empty on tasks[0]"),
        ({"tasks": [{"alias": "t", "parties": [{"role": "x"}]}]}, "party domain id can not be empty"),
        (
            {"tasks": [{"alias": "t", "parties": [{"domain_id": "a", "resources": {"cpu": "lots"}}]}]},
            "is not a valid quantity",
        ),
        (
            {
                "tasks": [
                    {
                        "alias": "t",
                        "parties": [{"domain_id": "a", "bandwidth_limits": [{"destination_id": "b"}]}],
                    }
                ]
            },
            "limit_kbps must be greater than 0",
        ),
    ],
)
async def test_job_create_validation(http: httpx.AsyncClient, changes: dict[str, Any], message: str) -> None:
    body = await post(http, "/api/v1/job/create", {**JOB, **changes})
    assert body["status"]["code"] == 11100 and body["data"] is None
    assert message in body["status"]["message"]


async def test_job_routes_on_missing_jobs(http: httpx.AsyncClient) -> None:
    expected = {"/api/v1/job/query": 11202, "/api/v1/job/delete": 11204, "/api/v1/job/stop": 11205}
    for path, code in expected.items():
        body = await post(http, path, {"job_id": "nope"})
        assert body["status"] == {
            "code": code,
            "message": 'kusciajobs.kuscia.secretflow "nope" not found',
            "details": [],
        }
        assert (await post(http, path, {"job_id": ""}))["status"]["code"] == 11100
    await post(http, "/api/v1/job/create", JOB)
    duplicate = await post(http, "/api/v1/job/create", JOB)
    assert duplicate["status"]["code"] == 11201
    assert duplicate["status"]["message"] == 'kusciajobs.kuscia.secretflow "job-1" already exists'
    assert (await post(http, "/api/v1/job/delete", {"job_id": "job-1"}))["data"] == {"job_id": "job-1"}


async def test_stopping_a_running_job_fails_it_and_stopping_again_is_a_no_op(
    http: httpx.AsyncClient, double: KusciaDouble
) -> None:
    await post(http, "/api/v1/job/create", JOB)
    double.advance()
    assert (await post(http, "/api/v1/job/stop", {"job_id": "job-1", "reason": "r"}))["data"] == {
        "job_id": "job-1"
    }
    assert (await post(http, "/api/v1/job/stop", {"job_id": "job-1"}))["status"]["code"] == 0
    status = double.job_status("job-1")
    assert status["state"] == "Failed" and status["end_time"]
    psi, train = status["tasks"]
    assert (psi["state"], psi["err_msg"]) == ("Failed", "KusciaJobStopped")
    assert train["state"] == "Pending" and train["parties"] == []  # never started
    assert {s["state"] for s in status["stage_status_list"]} == {"JobStopStageSucceeded"}
    double.advance(5)
    assert double.job_status("job-1")["state"] == "Failed"


async def test_stopping_a_finished_job_keeps_its_state(http: httpx.AsyncClient, double: KusciaDouble) -> None:
    await post(http, "/api/v1/job/create", JOB)
    double.advance(3)
    assert double.job_status("job-1")["state"] == "Succeeded"
    await post(http, "/api/v1/job/stop", {"job_id": "job-1"})
    assert double.job_status("job-1")["state"] == "Succeeded"


# -- lifecycles on the real clock ----------------------------------------------------------------


async def test_serving_and_job_progress_on_the_clock(pki: Pki) -> None:
    double = await start(pki, step_seconds=0.05)
    try:
        async with httpx.AsyncClient(
            base_url=double.base_url, verify=client_context(pki), headers={"Token": double.token}
        ) as http:
            await post(http, "/api/v1/serving/create", SERVING)
            await post(http, "/api/v1/job/create", JOB)

            async def serving_state() -> str | None:
                status = (await post(http, "/api/v1/serving/query", {"serving_id": "serving-1"}))["data"][
                    "status"
                ]
                return None if status is None else status["state"]

            async def job_state() -> str:
                return (await post(http, "/api/v1/job/query", {"job_id": "job-1"}))["data"]["status"]["state"]

            seen_serving = []
            seen_job = []

            def record(seen: list[Any], final: Any) -> Callable[[Any], bool]:
                def accept(value: Any) -> bool:
                    if not seen or seen[-1] != value:
                        seen.append(value)
                    return value == final

                return accept

            await eventually(serving_state, record(seen_serving, "Available"))
            await eventually(job_state, record(seen_job, "Succeeded"))
            # Polling may skip a short state but never sees them out of order.
            order = [None, "Progressing", "Available"]
            assert [order.index(s) for s in seen_serving] == sorted(order.index(s) for s in seen_serving)
            job_order = ["Pending", "Running", "Succeeded"]
            assert [job_order.index(s) for s in seen_job] == sorted(job_order.index(s) for s in seen_job)
            final = double.job_status("job-1")
            assert all(t["state"] == "Succeeded" and t["progress"] == 1.0 for t in final["tasks"])
            assert final["start_time"] and final["end_time"] >= final["start_time"]
    finally:
        await double.stop()


async def test_fail_app_images_and_control_failures(http: httpx.AsyncClient, double: KusciaDouble) -> None:
    failing = serving(serving_id="bad", parties=[{"domain_id": "alice", "app_image": "image-that-will-fail"}])
    await post(http, "/api/v1/serving/create", failing)
    double.advance()
    progressing = double.serving_status("bad")
    assert progressing is not None and progressing["reason"] == "domainID: alice, reason: ImagePullBackOff"
    double.advance()
    failed = double.serving_status("bad")
    assert failed is not None and (failed["state"], failed["reason"]) == ("Failed", "CreateDeploymentFailed")

    await post(http, "/api/v1/serving/create", SERVING)
    double.fail_serving("serving-1", reason="AllocatePortsFailed", message="no ports")
    forced = double.serving_status("serving-1")
    assert forced is not None and (forced["state"], forced["reason"], forced["message"]) == (
        "Failed",
        "AllocatePortsFailed",
        "no ports",
    )
    double.set_serving_state("serving-1", "PartialAvailable")
    assert double.serving_status("serving-1")["state"] == "PartialAvailable"  # type: ignore[index]

    bad_job = {**JOB, "job_id": "bad-job"}
    bad_job["tasks"] = [{**JOB["tasks"][0], "app_image": "fail-image"}, JOB["tasks"][1]]
    await post(http, "/api/v1/job/create", bad_job)
    double.advance(2)
    status = double.job_status("bad-job")
    assert status["state"] == "Failed"
    assert "Task[psi]-Party[alice]" in status["err_msg"]
    assert status["tasks"][1]["state"] == "Pending"

    await post(http, "/api/v1/job/create", JOB)
    double.fail_job("job-1", "pod evicted")
    status = double.job_status("job-1")
    assert status["state"] == "Failed" and "pod evicted" in status["err_msg"]


# -- appimages and BFIA --------------------------------------------------------------------------


async def test_appimage_routes(http: httpx.AsyncClient) -> None:
    body = {
        "name": "img",
        "image": {"name": "repo/img", "tag": "1"},
        "deploy_templates": [{"name": "t", "containers": [{"name": "c"}]}],
    }
    assert await post(http, "/api/v1/appimage/create", body) == {
        "status": {"code": 0, "message": "success", "details": []}
    }
    data = (await post(http, "/api/v1/appimage/query", {"name": "img"}))["data"]
    assert data["image"] == {"name": "repo/img", "tag": "1", "id": "", "sign": ""}
    assert data["deploy_templates"][0] == {
        "name": "t",
        "role": "",
        "replicas": 0,
        "restart_policy": "",
        "containers": [
            {
                "name": "c",
                "command": [],
                "args": [],
                "working_dir": "",
                "config_volume_mounts": [],
                "ports": [],
                "env": [],
                "resources": None,
                "image_pull_policy": "",
            }
        ],
    }
    missing = (await post(http, "/api/v1/appimage/query", {"name": "nope"}))["status"]
    assert (missing["code"], missing["message"]) == (13105, 'appimages.kuscia.secretflow "nope" not found')
    for broken, message in (
        ({**body, "name": ""}, "appimage name can not be empty"),
        ({**body, "image": {}}, "base image name can not be empty"),
        ({**body, "deploy_templates": []}, "deploy templates can not be empty"),
    ):
        status = (await post(http, "/api/v1/appimage/create", broken))["status"]
        assert (status["code"], status["message"]) == (11100, message)


async def test_bfia_port_is_plain_http_and_validates(double: KusciaDouble) -> None:
    async with httpx.AsyncClient(base_url=double.bfia_url) as bfia:
        missing = (await bfia.post("/v1/interconn/schedule/job/create", json={"job_id": "b"})).json()
        assert missing == {"code": 400, "message": "dag can not be empty"}
        body = {
            "job_id": "b",
            "dag": {"components": [{"code": "secretflow", "name": "c"}]},
            "config": {
                "role": {"host": ["bob"]},
                "initiator": {"node_id": "bob"},
                "task_params": {"host": {"0": {"c": {}}}},
            },
        }
        assert (await bfia.post("/v1/interconn/schedule/job/create", json=body)).json() == {
            "code": 200,
            "msg": "",
            "data": {"status": "PENDING"},
        }
        assert (await bfia.post("/v1/interconn/schedule/job/create", json=body)).json() == {
            "code": 400,
            "msg": "Job already exists",
            "data": None,
        }
        assert (await bfia.get("/v1/interconn/schedule/job/create")).status_code == 404
    assert double.jobs["b"]["tasks"][0]["parties"][0]["domain_id"] == "bob"


# -- faults, statistics and the control API ------------------------------------------------------


async def test_control_api_injects_faults_and_counts_calls(
    http: httpx.AsyncClient, double: KusciaDouble
) -> None:
    assert (await post(http, "/_emulator/fault", {"route": "healthZ", "fault": "http_503", "count": 2}))["ok"]
    assert [(await http.post("/healthZ", json={})).status_code for _ in range(3)] == [503, 503, 200]
    await post(
        http, "/_emulator/fault", {"route": "*", "fault": "code", "code": 11103, "message": "master down"}
    )
    assert (await post(http, "/api/v1/job/query", {"job_id": "x"}))["status"] == {
        "code": 11103,
        "message": "master down",
        "details": [],
    }
    stats = (await post(http, "/_emulator/stats"))["stats"]
    assert stats == {"/healthZ": 3, "/api/v1/job/query": 1}
    await post(http, "/_emulator/reset-stats")
    assert (await post(http, "/_emulator/stats"))["stats"] == {}
    await post(http, "/_emulator/fault", {"route": "healthZ", "fault": "auth_401", "count": -1})
    assert [(await http.post("/healthZ", json={})).status_code for _ in range(2)] == [401, 401]
    await post(http, "/_emulator/clear-faults")
    assert (await http.post("/healthZ", json={})).status_code == 200
    assert (await http.get("/_emulator/stats")).status_code == 404
    bad = await http.post("/_emulator/fault", json={"route": "healthZ", "fault": "explode"})
    assert bad.status_code == 400


async def test_control_api_drives_lifecycles(http: httpx.AsyncClient, double: KusciaDouble) -> None:
    await post(http, "/api/v1/serving/create", SERVING)
    await post(http, "/_emulator/advance", {"steps": 2})
    assert double.serving_status("serving-1")["state"] == "Available"  # type: ignore[index]
    await post(http, "/_emulator/serving/fail", {"serving_id": "serving-1", "reason": "ValidateFailed"})
    assert double.serving_status("serving-1")["reason"] == "ValidateFailed"  # type: ignore[index]
    await post(http, "/_emulator/serving/remove", {"serving_id": "serving-1"})
    dump = await post(http, "/_emulator/dump")
    assert dump["servings"] == {} and "secretflow-serving-image" in dump["appimages"]


async def test_drop_and_timeout_faults_close_the_connection(pki: Pki, double: KusciaDouble) -> None:
    double.inject("healthZ", "drop")
    double.inject("job/query", "timeout", delay=0.3)
    async with httpx.AsyncClient(
        base_url=double.base_url, verify=client_context(pki), headers={"Token": double.token}
    ) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/healthZ", json={})
        started = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/api/v1/job/query", json={"job_id": "x"})
        assert time.monotonic() - started >= 0.3
        assert (await http.post("/healthZ", json={})).status_code == 200


async def test_refuse_tls_presents_a_certificate_from_another_ca(pki: Pki, double: KusciaDouble) -> None:
    double.set_refuse_tls(True)
    async with httpx.AsyncClient(base_url=double.base_url, verify=client_context(pki)) as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.post("/healthZ", json={}, headers={"Token": double.token})
    double.set_refuse_tls(False)
    async with httpx.AsyncClient(base_url=double.base_url, verify=client_context(pki)) as http:
        assert (await http.post("/healthZ", json={}, headers={"Token": double.token})).status_code == 200


async def test_down_and_timed_comeback_through_the_control_api(pki: Pki, double: KusciaDouble) -> None:
    context = client_context(pki)

    async def reachable() -> bool:
        async with httpx.AsyncClient(base_url=double.base_url, verify=context, timeout=1.0) as http:
            try:
                return (
                    await http.post("/healthZ", json={}, headers={"Token": double.token})
                ).status_code == 200
            except httpx.TransportError:
                return False

    async with httpx.AsyncClient(
        base_url=double.base_url, verify=context, headers={"Token": double.token}
    ) as http:
        assert (await post(http, "/_emulator/down", {"seconds": 0.5}))["ok"]
    assert await eventually(reachable, lambda ok: not ok) is False
    assert await eventually(reachable, lambda ok: ok) is True


def test_thread_wrapper_serves_synchronous_tests(pki: Pki) -> None:
    with (
        KusciaDoubleThread(pki.directory, step_seconds=60.0) as double,
        httpx.Client(
            base_url=double.base_url, verify=client_context(pki), headers={"Token": double.token}
        ) as http,
    ):
        assert http.post("/healthZ", json={}).json()["data"] == {"ready": True}
        double.inject("healthZ", "http_500")
        assert http.post("/healthZ", json={}).status_code == 500
        assert double.stats() == {"/healthZ": 2}
        double.down()
        with pytest.raises(httpx.TransportError):
            http.post("/healthZ", json={})
        double.up()
        assert http.post("/healthZ", json={}).status_code == 200
        http.post("/api/v1/serving/create", json=SERVING)
        assert set(double.servings) == {"serving-1"}


def test_sandbox_script_serves_until_terminated(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "hack" / "kuscia-sandbox"),
            "--certs-dir",
            str(tmp_path / "pki"),
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "sandbox did not write its port file"
            time.sleep(0.05)
        port = int(port_file.read_text())
        sandbox_pki = Pki(tmp_path / "pki")
        with httpx.Client(verify=client_context(sandbox_pki)) as http:
            response = http.post(
                f"https://localhost:{port}/healthZ", json={}, headers={"Token": sandbox_pki.token()}
            )
        assert response.json()["data"] == {"ready": True}
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    assert f"https://127.0.0.1:{port}" in output
    assert sandbox_pki.token() not in output


def test_emulator_refuses_non_loopback_hosts(pki: Pki) -> None:
    with pytest.raises(ValueError, match="loopback"):
        KusciaDouble(pki.directory, host="0.0.0.0")


@pytest.mark.parametrize(
    ("dependencies", "message"),
    [
        (["job-1-psi"], "validate failed: task train has not exist dependency task job-1-psi"),
        (["train"], "validate failed: cycled dependencies"),
    ],
)
async def test_jobs_failing_kuscias_validation_are_created_then_failed(
    http: httpx.AsyncClient, double: KusciaDouble, dependencies: list[str], message: str
) -> None:
    job = copy.deepcopy(JOB)
    job["tasks"][1]["dependencies"] = dependencies
    if dependencies == ["train"]:
        job["tasks"][0]["dependencies"] = ["train"]
    assert (await post(http, "/api/v1/job/create", job))["status"]["code"] == 0
    assert double.job_status("job-1")["state"] == "Pending"
    double.advance(1)
    status = double.job_status("job-1")
    assert (status["state"], status["err_msg"]) == ("Failed", message)
    assert {t["state"] for t in status["tasks"]} == {"Pending"}  # no task was ever created
    double.advance(5)
    assert double.job_status("job-1")["state"] == "Failed"
