"""KusciaClient and BfiaClient against the Kuscia emulator over real mTLS."""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from paddle_kuscia.adapters import kuscia as k
from paddle_kuscia.adapters.kuscia import (
    BfiaClient,
    KusciaAlreadyExists,
    KusciaAuthError,
    KusciaClient,
    KusciaCredentials,
    KusciaCredentialsError,
    KusciaError,
    KusciaNotFound,
    KusciaRejected,
    KusciaTLSError,
    KusciaUnavailable,
)
from paddle_kuscia.adapters.kuscia.errors import error_from_status, missing_object_name
from paddle_kuscia.adapters.kuscia.transport import parse_int64
from paddle_kuscia.status.kuscia import Reported, service_url
from support.certs import Pki, generate_foreign_pki, generate_pki
from support.kuscia_double import KusciaDouble

# A long step: states only move when a test calls double.advance(), so nothing here races the clock.
STEP = 60.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return generate_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return generate_foreign_pki(tmp_path_factory.mktemp("foreign"))


@pytest.fixture
async def double(pki: Pki) -> AsyncIterator[KusciaDouble]:
    emulator = KusciaDouble(pki.directory, step_seconds=STEP, seed=7)
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
def credentials(pki: Pki, double: KusciaDouble) -> KusciaCredentials:
    return KusciaCredentials.from_dir(pki.directory, url=double.base_url)


@pytest.fixture
def calls() -> list[tuple[str, str, float]]:
    return []


@pytest.fixture
async def client(
    credentials: KusciaCredentials, calls: list[tuple[str, str, float]]
) -> AsyncIterator[KusciaClient]:
    async with KusciaClient(
        credentials,
        timeout=0.4,
        retries=2,
        backoff_base=0.01,
        on_call=lambda route, outcome, seconds: calls.append((route, outcome, seconds)),
    ) as kuscia:
        yield kuscia


def serving_request(serving_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "serving_id": serving_id,
        "initiator": "alice",
        "serving_input_config": '{"partyConfigs":{}}',
        "parties": [
            {"domain_id": "alice", "app_image": "secretflow-serving-image", "replicas": 2},
            {"domain_id": "bob", "app_image": "secretflow-serving-image"},
        ],
    }
    body.update(overrides)
    return body


def job_request(job_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "job_id": job_id,
        "initiator": "alice",
        "max_parallelism": 0,
        "tasks": [
            {
                "alias": "train",
                "app_image": "secretflow-image",
                "task_input_config": "{}",
                "parties": [{"domain_id": "alice"}, {"domain_id": "bob"}],
            }
        ],
    }
    body.update(overrides)
    return body


def outcomes(calls: list[tuple[str, str, float]]) -> list[str]:
    return [outcome for _, outcome, _ in calls]


# -- happy paths on every route ------------------------------------------------------------------


async def test_health_reports_ready(client: KusciaClient, calls: list[tuple[str, str, float]]) -> None:
    assert await client.health() is True
    assert calls[0][:2] == ("/healthZ", "ok")
    assert calls[0][2] >= 0


async def test_serving_create_query_update_delete_follow_the_lifecycle(
    client: KusciaClient, double: KusciaDouble
) -> None:
    await client.create_serving(serving_request("serving-1"))
    assert await client.batch_query_serving_status(["serving-1"]) == {"serving-1": None}

    double.advance()
    detail = (await client.query_serving("serving-1"))["status"]
    assert detail["state"] == "Progressing"

    double.advance()
    data = await client.query_serving("serving-1")
    assert data["initiator"] == "alice"
    assert data["parties"][0]["replicas"] == 2 and "replicas" not in data["parties"][1]
    status = data["status"]
    assert status["state"] == "Available"
    alice = next(p for p in status["party_statuses"] if p["domain_id"] == "alice")
    assert (alice["available_replicas"], alice["updatedReplicas"]) == (2, 2)
    assert (service_url(Reported(status), "bob") or "").startswith("http://serving-1-service.bob.svc:")

    await client.update_serving(
        {"serving_id": "serving-1", "parties": [{"domain_id": "alice", "replicas": 3}]}
    )
    assert double.servings["serving-1"]["parties"][0]["replicas"] == 3
    assert (await client.query_serving("serving-1"))["status"]["state"] == "Progressing"

    await client.delete_serving("serving-1")
    with pytest.raises(KusciaNotFound):
        await client.query_serving("serving-1")
    await client.delete_serving("serving-1", missing_ok=True)


async def test_job_create_query_stop_delete(client: KusciaClient, double: KusciaDouble) -> None:
    assert await client.create_job(job_request("job-1")) == "job-1"
    data = await client.query_job("job-1")
    assert data["max_parallelism"] == 1  # <= 0 becomes 1
    assert data["status"]["state"] == "Pending"

    double.advance()
    assert (await client.batch_query_job_status(["job-1"]))["job-1"]["state"] == "Running"

    await client.stop_job("job-1", reason="operator asked")
    status = (await client.query_job("job-1"))["status"]
    assert status["state"] == "Failed"
    assert "operator asked" in status["err_msg"]

    await client.delete_job("job-1")
    assert "job-1" not in double.jobs
    await client.delete_job("job-1", missing_ok=True)


async def test_appimage_create_and_query(client: KusciaClient) -> None:
    await client.create_appimage(
        {
            "name": "paddle-serving",
            "image": {"name": "registry.local/paddle", "tag": "2.6", "id": "", "sign": ""},
            "config_templates": {"app.yaml": "port: {{.PORT}}"},
            "deploy_templates": [{"name": "paddle", "replicas": 1, "containers": [{"name": "paddle"}]}],
        }
    )
    data = await client.query_appimage("paddle-serving")
    assert data["image"] == {"name": "registry.local/paddle", "tag": "2.6", "id": "", "sign": ""}
    assert data["config_templates"] == {"app.yaml": "port: {{.PORT}}"}
    # Kuscia's encoding: every field of the container present, an unset sub-message as null.
    container = data["deploy_templates"][0]["containers"][0]
    assert container["name"] == "paddle"
    assert container["ports"] == [] and container["command"] == [] and container["resources"] is None


# -- error mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda c: c.update_serving({"serving_id": "ghost", "serving_input_config": "{}"}), 11603),
        (lambda c: c.delete_serving("ghost"), 11604),
        (lambda c: c.query_serving("ghost"), 11601),
        (lambda c: c.query_job("ghost"), 11202),
        (lambda c: c.delete_job("ghost"), 11204),
        (lambda c: c.stop_job("ghost"), 11205),
        (lambda c: c.query_appimage("ghost"), 13105),
    ],
    ids=[
        "serving-update",
        "serving-delete",
        "serving-query",
        "job-query",
        "job-delete",
        "job-stop",
        "appimage",
    ],
)
async def test_missing_objects_raise_not_found(client: KusciaClient, call: Any, code: int) -> None:
    with pytest.raises(KusciaNotFound) as caught:
        await call(client)
    assert caught.value.code == code
    assert '"ghost" not found' in caught.value.message
    assert caught.value.route in str(caught.value) and str(code) in str(caught.value)
    assert caught.value.retryable is False


async def test_duplicates_raise_already_exists(client: KusciaClient) -> None:
    await client.create_serving(serving_request("dup"))
    await client.create_job(job_request("dup"))
    cases = [
        (client.create_serving(serving_request("dup")), 11600),
        (client.create_job(job_request("dup")), 11201),
        (
            client.create_appimage(
                {
                    "name": "secretflow-image",
                    "image": {"name": "x"},
                    "deploy_templates": [{"name": "t", "containers": [{"name": "c"}]}],
                }
            ),
            13106,
        ),
    ]
    for pending, code in cases:
        with pytest.raises(KusciaAlreadyExists) as caught:
            await pending
        assert caught.value.code == code
        assert caught.value.after_retry is False


async def test_validation_errors_are_rejected_permanently(
    client: KusciaClient, calls: list[tuple[str, str, float]]
) -> None:
    with pytest.raises(KusciaRejected) as caught:
        await client.create_serving(serving_request("Not_A_Name"))
    assert caught.value.code == 11100
    assert "serving_id" in caught.value.message
    assert caught.value.retryable is False
    assert outcomes(calls) == ["error_code"]  # business errors are never retried


async def test_missing_appimage_under_a_serving_code_is_not_a_missing_serving(client: KusciaClient) -> None:
    resources = [
        {"container_name": "", "min_cpu": "0.1", "max_cpu": "1", "min_memory": "1Gi", "max_memory": "2Gi"}
    ]
    request = serving_request("s-img")
    request["parties"][0].update(app_image="no-such-image", resources=resources)
    with pytest.raises(KusciaRejected) as caught:
        await client.create_serving(request)
    assert caught.value.code == 11600
    assert 'appimages.kuscia.secretflow "no-such-image" not found' in caught.value.message


async def test_unparseable_request_maps_to_unavailable_11101(client: KusciaClient) -> None:
    # A list field sent as a string cannot be bound, like malformed JSON: the framework answers 11101.
    with pytest.raises(KusciaUnavailable) as caught:
        await client.call(k.SERVING_BATCH_STATUS, {"serving_ids": "not-a-list"})
    assert caught.value.code == 11101
    assert caught.value.retryable is True


async def test_wrong_token_raises_auth_error_without_retry(
    pki: Pki, double: KusciaDouble, calls: list[tuple[str, str, float]]
) -> None:
    creds = KusciaCredentials.from_mapping(
        {
            "ca.crt": pki.ca_cert.read_bytes(),
            "tls.crt": pki.client_cert.read_bytes(),
            "tls.key": pki.client_key.read_bytes(),
            "token": "x" * 32,
        },
        default_url=double.base_url,
    )
    hook = lambda route, outcome, seconds: calls.append((route, outcome, seconds))  # noqa: E731
    async with KusciaClient(creds, retries=3, backoff_base=0.01, on_call=hook) as kuscia:
        with pytest.raises(KusciaAuthError) as caught:
            await kuscia.query_job("any")
    assert caught.value.code is None and "401" in caught.value.message
    assert outcomes(calls) == ["http_401"]
    assert double.calls("job/query") == 1


async def test_injected_error_codes_map_to_their_classes(
    client: KusciaClient, double: KusciaDouble, calls: list[tuple[str, str, float]]
) -> None:
    double.inject("healthZ", "code", code=11102, message="domain may not do that")
    with pytest.raises(KusciaAuthError):
        await client.call(k.HEALTH, {})
    double.inject("job/query", "code", code=11103, message="request master failed")
    with pytest.raises(KusciaUnavailable) as caught:
        await client.query_job("j")
    assert caught.value.code == 11103
    double.inject("job/query", "auth_401")
    with pytest.raises(KusciaAuthError):
        await client.query_job("j")
    assert outcomes(calls) == ["error_code", "error_code", "http_401"]


async def test_unknown_route_is_rejected_with_a_clear_message(client: KusciaClient) -> None:
    with pytest.raises(KusciaRejected) as caught:
        await client.call("/api/v1/serving/frobnicate", {})
    assert caught.value.code is None
    assert "404" in str(caught.value) and "/api/v1/serving/frobnicate" in str(caught.value)


# -- retries -------------------------------------------------------------------------------------


async def test_5xx_is_retried_until_success(
    client: KusciaClient, double: KusciaDouble, calls: list[tuple[str, str, float]]
) -> None:
    await client.create_serving(serving_request("s5"))
    calls.clear()
    double.inject("serving/query", "http_503", count=1)
    double.inject("serving/query", "http_500", count=1)
    data = await client.query_serving("s5")
    assert data["initiator"] == "alice"
    assert outcomes(calls) == ["http_503", "http_500", "ok"]
    assert double.calls("serving/query") == 3


async def test_5xx_exhausting_retries_raises_unavailable(
    client: KusciaClient, double: KusciaDouble, calls: list[tuple[str, str, float]]
) -> None:
    double.inject("*", "http_500", count=None)
    with pytest.raises(KusciaUnavailable) as caught:
        await client.query_job("j")
    assert caught.value.retryable is True
    assert caught.value.after_retry is True
    assert outcomes(calls) == ["http_500"] * 3  # first attempt + retries=2
    assert double.calls("job/query") == 3


async def test_timeout_is_retried(
    client: KusciaClient, double: KusciaDouble, calls: list[tuple[str, str, float]]
) -> None:
    double.inject("healthZ", "timeout", delay=3.0)
    assert await client.health() is True
    assert outcomes(calls) == ["transport", "ok"]
    assert calls[0][2] >= 0.3  # the first attempt waited for the client timeout


async def test_dropped_connection_is_retried(
    client: KusciaClient, double: KusciaDouble, calls: list[tuple[str, str, float]]
) -> None:
    await client.create_job(job_request("drop-1"))
    calls.clear()
    double.inject("job/status/batchQuery", "drop", count=2)
    result = await client.batch_query_job_status(["drop-1"])
    assert set(result) == {"drop-1"}
    assert outcomes(calls) == ["transport", "transport", "ok"]


async def test_unreachable_kuscia_is_unavailable_and_unhealthy(
    client: KusciaClient, double: KusciaDouble
) -> None:
    await double.down()
    assert await client.health() is False
    with pytest.raises(KusciaUnavailable) as caught:
        await client.query_job("j")
    assert "unreachable after 3 attempt(s)" in caught.value.message
    await double.up()
    assert await client.health() is True


async def test_failing_on_call_hook_does_not_break_calls(credentials: KusciaCredentials) -> None:
    def broken(route: str, outcome: str, seconds: float) -> None:
        raise RuntimeError("metrics backend down")

    async with KusciaClient(credentials, on_call=broken) as kuscia:
        assert await kuscia.health() is True


# -- batch queries -------------------------------------------------------------------------------


async def test_serving_batch_query_is_chunked_by_100(client: KusciaClient, double: KusciaDouble) -> None:
    await client.create_serving(serving_request("known-a"))
    await client.create_serving(serving_request("known-b"))
    double.advance(2)
    ids = [f"unknown-{i}" for i in range(248)] + ["known-a", "known-b"]
    double.reset_stats()
    result = await client.batch_query_serving_status(ids)
    assert double.calls("serving/status/batchQuery") == 3
    assert set(result) == {"known-a", "known-b"}  # unknown ids are simply absent
    assert result["known-a"] is not None and result["known-a"]["state"] == "Available"


async def test_serving_batch_query_maps_null_status_to_none(client: KusciaClient) -> None:
    await client.create_serving(serving_request("fresh"))
    assert await client.batch_query_serving_status(["fresh", "fresh", "other"]) == {"fresh": None}
    assert await client.batch_query_serving_status([]) == {}


async def test_job_batch_query_is_chunked_by_100(client: KusciaClient, double: KusciaDouble) -> None:
    ids = [f"bulk-{i}" for i in range(150)]
    for job_id in ids:
        assert double.store.create_job(job_request(job_id))["status"]["code"] == 0
    double.reset_stats()
    result = await client.batch_query_job_status(ids)
    assert double.calls("job/status/batchQuery") == 2
    assert set(result) == set(ids)


async def test_job_batch_query_drops_vanished_jobs_and_reports_the_rest(
    client: KusciaClient, double: KusciaDouble
) -> None:
    for job_id in ("a", "b", "c", "d"):
        await client.create_job(job_request(job_id))
    double.remove_job("b")
    double.remove_job("d")
    double.reset_stats()
    result = await client.batch_query_job_status(["a", "b", "c", "d"])
    assert set(result) == {"a", "c"}
    assert result["a"]["state"] == "Pending"
    assert double.calls("job/status/batchQuery") == 3  # two vanished ids, one clean retry


async def test_job_batch_query_falls_back_to_single_queries_on_an_unexpected_message(
    client: KusciaClient, double: KusciaDouble
) -> None:
    await client.create_job(job_request("kept"))
    double.inject("job/status/batchQuery", "code", code=11203, message="some job not found")
    double.reset_stats()
    result = await client.batch_query_job_status(["kept", "gone"])
    assert set(result) == {"kept"} and result["kept"]["state"] == "Pending"
    assert double.stats() == {"/api/v1/job/status/batchQuery": 1, "/api/v1/job/query": 2}


async def test_job_batch_query_with_only_unknown_ids_is_empty(client: KusciaClient) -> None:
    assert await client.batch_query_job_status(["x", "y"]) == {}


# -- mTLS ----------------------------------------------------------------------------------------


async def test_server_refuses_a_client_without_certificate(pki: Pki, double: KusciaDouble) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    async with httpx.AsyncClient(verify=context, timeout=2.0) as raw:
        with pytest.raises(httpx.TransportError):
            await raw.post(f"{double.base_url}/healthZ", headers={"Token": double.token}, json={})
    assert double.calls("healthZ") == 0


async def test_server_refuses_a_client_certificate_from_another_ca(
    pki: Pki, foreign: Pki, double: KusciaDouble
) -> None:
    creds = KusciaCredentials(
        url=double.base_url,
        ca_pem=pki.ca_cert.read_bytes(),
        cert_pem=foreign.client_cert.read_bytes(),
        key_pem=foreign.client_key.read_bytes(),
        token=double.token,
    )
    async with KusciaClient(creds, retries=1, backoff_base=0.01) as kuscia:
        with pytest.raises(KusciaUnavailable):
            await kuscia.query_job("j")
    assert double.calls("job/query") == 0


async def test_client_refuses_a_server_certificate_from_another_ca(
    client: KusciaClient, double: KusciaDouble, calls: list[tuple[str, str, float]]
) -> None:
    double.set_refuse_tls(True)
    with pytest.raises(KusciaTLSError) as caught:
        await client.query_job("j")
    assert "verification of the server certificate failed" in caught.value.message
    assert outcomes(calls) == ["transport"]  # certificate problems are reported at once
    assert double.calls("job/query") == 0
    double.set_refuse_tls(False)
    with pytest.raises(KusciaNotFound):
        await client.query_job("j")


async def test_client_trusting_another_ca_refuses_the_server(
    foreign: Pki, pki: Pki, double: KusciaDouble
) -> None:
    creds = KusciaCredentials.from_mapping(
        {
            "ca.crt": foreign.ca_cert.read_text(),
            "tls.crt": pki.client_cert.read_text(),
            "tls.key": pki.client_key.read_text(),
            "token": double.token,
            "url": double.base_url,
        }
    )
    async with KusciaClient(creds) as kuscia:
        with pytest.raises(KusciaTLSError):
            await kuscia.health()


async def test_server_name_override_still_verifies(pki: Pki, double: KusciaDouble) -> None:
    base = KusciaCredentials.from_dir(pki.directory, url=double.base_url)
    good = KusciaCredentials(**{**base.__dict__, "server_name": "kusciaapi"})
    async with KusciaClient(good) as kuscia:
        assert await kuscia.health() is True
    wrong = KusciaCredentials(**{**base.__dict__, "server_name": "not-in-the-certificate"})
    async with KusciaClient(wrong, retries=0) as kuscia:
        with pytest.raises(KusciaTLSError):
            await kuscia.query_job("j")


# -- secrets -------------------------------------------------------------------------------------


def test_credentials_never_show_token_or_key(pki: Pki) -> None:
    creds = KusciaCredentials.from_dir(pki.directory, url="https://127.0.0.1:8082")
    key_body = pki.client_key.read_text().splitlines()[1]
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert creds.token not in text
        assert key_body not in text
        assert "127.0.0.1:8082" in text


def test_fingerprint_is_stable_and_tracks_every_part(pki: Pki) -> None:
    creds = KusciaCredentials.from_dir(pki.directory, url="https://127.0.0.1:8082")
    again = KusciaCredentials.from_dir(pki.directory, url="https://127.0.0.1:8082")
    assert creds.fingerprint() == again.fingerprint()
    assert len(creds.fingerprint()) == 64
    changed = [
        KusciaCredentials(**{**creds.__dict__, "token": "y" * 32}),
        KusciaCredentials(**{**creds.__dict__, "url": "https://127.0.0.1:9999"}),
        KusciaCredentials(**{**creds.__dict__, "cert_pem": creds.cert_pem + b"\n"}),
    ]
    assert len({c.fingerprint() for c in [creds, *changed]}) == 4


async def test_token_never_reaches_errors_or_logs(
    pki: Pki, double: KusciaDouble, client: KusciaClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = double.token
    errors: list[BaseException] = []
    double.inject("*", "http_503", count=2)
    double.inject("job/query", "code", code=11100, message=f"token {token} was echoed back")
    double.inject("serving/query", "drop", count=3)
    for pending in (client.health(), client.query_job("j"), client.query_serving("s"), client.stop_job("x")):
        try:
            await pending
        except KusciaError as exc:
            errors.append(exc)
    wrong = KusciaCredentials(**{**client.credentials.__dict__, "token": "w" * 32})
    async with KusciaClient(wrong) as other:
        try:
            await other.health()
        except KusciaError as exc:
            errors.append(exc)
    assert len(errors) == 4
    assert "***" in str(errors[0])  # Kuscia's echo of the token was scrubbed
    for exc in errors:
        assert token not in str(exc) and token not in repr(exc) and token not in repr(exc.args)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Retrying Kuscia call" in logged
    assert token not in logged
    assert token not in repr(client)


def test_credentials_loading_and_validation(pki: Pki, tmp_path: Path) -> None:
    data = {
        "ca.crt": pki.ca_cert.read_text(),
        "tls.crt": pki.client_cert.read_bytes(),
        "tls.key": pki.client_key.read_bytes(),
        "token": pki.token() + "\n",
        "url": "https://kusciaapi:8082\n",
    }
    creds = KusciaCredentials.from_mapping(data)
    assert creds.token == pki.token() and creds.url == "https://kusciaapi:8082"
    assert isinstance(creds.ssl_context(), ssl.SSLContext)

    for name, value in data.items():
        (tmp_path / name).write_bytes(value if isinstance(value, bytes) else value.encode())
    assert KusciaCredentials.from_dir(tmp_path) == creds
    assert KusciaCredentials.from_dir(tmp_path, url="https://other:1").url == "https://other:1"

    with pytest.raises(KusciaCredentialsError, match=r"lack tls\.key"):
        KusciaCredentials.from_mapping({k: v for k, v in data.items() if k != "tls.key"})
    with pytest.raises(KusciaCredentialsError, match="no url"):
        KusciaCredentials.from_mapping({k: v for k, v in data.items() if k != "url"})
    with pytest.raises(KusciaCredentialsError, match="https"):
        KusciaCredentials.from_mapping({**data, "url": "http://kusciaapi:8082"})
    with pytest.raises(KusciaCredentialsError) as caught:
        KusciaCredentials.from_mapping({**data, "token": "secret with spaces"})
    assert "secret" not in str(caught.value)
    broken = KusciaCredentials.from_mapping({**data, "tls.key": pki.ca_cert.read_bytes()})
    with pytest.raises(KusciaCredentialsError, match="client certificate/key"):
        broken.ssl_context()


@pytest.mark.parametrize("in_memory", [True, False], ids=["memfd", "temp-file"])
def test_the_client_key_is_left_in_no_file(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_memory: bool
) -> None:
    """ssl reads the client certificate and key from a file: a memfd where Linux offers one, so the key never
    touches a disk; otherwise a private temp file, gone once the context is made, and gone when loading fails."""
    from paddle_kuscia.adapters.kuscia import credentials as module

    if in_memory and not module.IN_MEMORY:
        pytest.skip("no memfd on this system")
    monkeypatch.setattr(module, "IN_MEMORY", in_memory)
    monkeypatch.setattr(module.tempfile, "tempdir", str(tmp_path))
    opened: list[int] = []
    real = module.memory_file
    monkeypatch.setattr(module, "memory_file", lambda *a: opened.append((made := real(*a))[0]) or made)
    data = {
        "ca.crt": pki.ca_cert.read_bytes(),
        "tls.crt": pki.client_cert.read_bytes(),
        "tls.key": pki.client_key.read_bytes(),
        "token": pki.token(),
        "url": "https://kusciaapi:8082",
    }
    descriptors = set(os.listdir("/proc/self/fd")) if in_memory else set()
    assert isinstance(KusciaCredentials.from_mapping(data).ssl_context(), ssl.SSLContext)
    with pytest.raises(KusciaCredentialsError):
        KusciaCredentials.from_mapping({**data, "tls.key": pki.ca_cert.read_bytes()}).ssl_context()
    assert list(tmp_path.iterdir()) == [], "no file is left behind"
    assert len(opened) == (2 if in_memory else 0), "the key went to a memfd exactly when one is offered"
    if in_memory:
        assert set(os.listdir("/proc/self/fd")) <= descriptors, "the memfds are closed: the kernel frees them"


# -- BFIA ----------------------------------------------------------------------------------------

BFIA_BODY: dict[str, Any] = {
    "job_id": "bfia-1",
    "flow_id": "flow-1",
    "dag": {
        "version": "2.0.0",
        "components": [
            {
                "code": "secretflow",
                "name": "intersect_rsa_1",
                "module_name": "intersect_rsa",
                "version": "v1.0.0",
                "output": [{"type": "training_set", "key": "data0"}],
            },
            {
                "code": "secretflow",
                "name": "hetero_logistic_regression_1",
                "module_name": "hetero_logistic_regression",
                "version": "v1.0.0",
                "input": [{"type": "training_set", "key": "intersect_rsa_1.data0"}],
                "output": [{"type": "model", "key": "data2"}],
            },
        ],
    },
    "config": {
        "role": {"arbiter": ["alice"], "host": ["bob"], "guest": ["alice"]},
        "initiator": {"role": "guest", "node_id": "alice"},
        "task_params": {
            "host": {"0": {"hetero_logistic_regression_1": {}, "intersect_rsa_1": {"name": "h"}}},
            "arbiter": {"0": {"intersect_rsa_1": {}}},
            "guest": {"0": {"hetero_logistic_regression_1": {}, "intersect_rsa_1": {"name": "g"}}},
            "common": {
                "intersect_rsa_1": {"intersect_method": "rsa"},
                "hetero_logistic_regression_1": {"maxIter": 5},
            },
        },
        "version": "2.0.0",
    },
}


async def test_bfia_job_create_shows_up_in_job_status(client: KusciaClient, double: KusciaDouble) -> None:
    async with BfiaClient(double.bfia_url, retries=1, backoff_base=0.01) as bfia:
        assert await bfia.create_job(BFIA_BODY) == {"status": "PENDING"}
        with pytest.raises(KusciaAlreadyExists):
            await bfia.create_job(BFIA_BODY)
        with pytest.raises(KusciaRejected, match="dag can not be empty"):
            await bfia.create_job({**BFIA_BODY, "job_id": "bfia-2", "dag": None})
    status = (await client.batch_query_job_status(["bfia-1"]))["bfia-1"]
    assert [t["alias"] for t in status["tasks"]] == ["intersect_rsa_1", "hetero_logistic_regression_1"]
    job = double.jobs["bfia-1"]
    assert job["protocol"] == "bfia" and job["initiator"] == "alice" and job["max_parallelism"] == 2
    first, second = job["tasks"]
    assert [(p["domain_id"], p["role"]) for p in first["parties"]] == [
        ("alice", "arbiter"),
        ("bob", "host"),
        ("alice", "guest"),
    ]
    assert second["dependencies"] == [first["alias"]]
    assert '"maxIter": 5' in second["task_input_config"]  # struct keys are user data, kept as sent


async def test_bfia_server_errors_are_retried(double: KusciaDouble) -> None:
    double.inject("/v1/interconn/schedule/job/create", "http_500")
    async with BfiaClient(double.bfia_url, retries=1, backoff_base=0.01) as bfia:
        assert await bfia.create_job({**BFIA_BODY, "job_id": "bfia-3"}) == {"status": "PENDING"}


def test_bfia_https_needs_credentials() -> None:
    with pytest.raises(KusciaCredentialsError):
        BfiaClient("https://127.0.0.1:8084")
    with pytest.raises(KusciaCredentialsError):
        BfiaClient("ftp://127.0.0.1:8084")


# -- pure helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (11601, 'kusciadeployments.kuscia.secretflow "s" not found', KusciaNotFound),
        (
            11601,
            'can not get appimage x from cluster, appimages.kuscia.secretflow "x" not found',
            KusciaRejected,
        ),
        (11603, "party domain_id/role a/b does not exist", KusciaRejected),
        (11203, 'kusciajobs.kuscia.secretflow "j" not found', KusciaNotFound),
        (11601, "serving not found", KusciaNotFound),
        (13105, "whatever", KusciaNotFound),
        (11600, 'serving "cross-domain/s" already exists, please ensure ...', KusciaAlreadyExists),
        (11600, "update strategy type should be Recreate or RollingUpdate", KusciaRejected),
        (11201, 'kusciajobs.kuscia.secretflow "j" already exists', KusciaAlreadyExists),
        (13106, "whatever", KusciaAlreadyExists),
        (11102, "no permission", KusciaAuthError),
        (11100, "serving id can not be empty", KusciaRejected),
        (11101, "bind failed", KusciaUnavailable),
        (11103, "master unreachable", KusciaUnavailable),
        (11104, "not supported", KusciaRejected),
    ],
)
def test_error_from_status(code: int, message: str, expected: type[KusciaError]) -> None:
    error = error_from_status("/r", code, message)
    assert type(error) is expected
    assert (error.code, error.message, error.route) == (code, message, "/r")
    assert error.retryable is (expected is KusciaUnavailable)


def test_errors_survive_pickling() -> None:
    import pickle

    error = KusciaNotFound(11202, "gone", "/api/v1/job/query", after_retry=True)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is KusciaNotFound and copy.after_retry and str(copy) == str(error)


def test_wire_helpers() -> None:
    assert [parse_int64(v) for v in ("123", 7, None, "", " 9 ", 2.0)] == [123, 7, 0, 0, 9, 2]
    assert missing_object_name('kusciajobs.kuscia.secretflow "job-9" not found') == "job-9"
    assert missing_object_name("boom") is None
