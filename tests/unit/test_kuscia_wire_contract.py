"""Every request body the Kuscia and BFIA clients send, parsed strictly into Kuscia's own messages.

The bodies are captured on their way into the emulator, then parsed with
``json_format.Parse(..., ignore_unknown_fields=False)`` into the message Kuscia's server binds that route
to: a field Kuscia does not have, or a value of the wrong type, fails here, not silently in production.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from paddle_kuscia.adapters.kuscia import BfiaClient, KusciaClient, KusciaCredentials
from paddle_kuscia.builders.kuscia import (
    bfia_create_request,
    build_appimage,
    deployment_create_request,
    job_create_request,
    paddleservice_create_request,
    update_request,
)
from paddle_kuscia.models.kuscia import KusciaDeployment, KusciaJob
from paddle_kuscia.models.paddleservice import PaddleService
from support.certs import Pki, generate_pki
from support.kuscia_double import KusciaDouble
from support.kuscia_wire import (
    NEWER_FIELDS,
    ROUTES,
    appimage_pb2,
    contract_parse,
    interconn_job_pb2,
    job_pb2,
    serving_pb2,
)

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
BFIA_CREATE = "/v1/interconn/schedule/job/create"


def sample(name: str) -> dict[str, Any]:
    return yaml.safe_load((SAMPLES / name).read_text())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return generate_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def double(pki: Pki) -> AsyncIterator[KusciaDouble]:
    emulator = KusciaDouble(pki.directory, step_seconds=60.0, seed=3)
    await emulator.start()
    yield emulator
    await emulator.stop()


def paddleservice_with_every_field() -> PaddleService:
    """The Kuscia sample plus everything the serving builder can emit (strategy, resources, prefix,
    affinity mode) and a party without appImage, so the registered AppImage is built too."""
    doc = sample("paddleservice-kuscia.yaml")
    doc["spec"]["default"]["arg"] = "python3 -m paddle_serving_server.serve --port $PORT"
    doc["spec"]["workingDir"] = "/srv"
    doc["spec"]["resources"] = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2"}}
    doc["spec"]["kuscia"]["affinityMode"] = "anti-affinity"
    parties = doc["spec"]["kuscia"]["parties"]
    parties[0].update(
        updateStrategy={"type": "RollingUpdate", "maxSurge": "30%", "maxUnavailable": "10%"},
        serviceNamePrefix="model",
        replicas=2,
    )
    parties[-1].pop("appImage", None)
    return PaddleService.model_validate(doc)


def job_with_every_field() -> KusciaJob:
    doc = sample("kusciajob-psi.yaml")
    task = doc["spec"]["tasks"][0]
    task["scheduleConfig"] = {
        "lifecycleSeconds": 600,
        "resourceReservedSeconds": 30,
        "retryIntervalSeconds": 15,
    }
    task["parties"][0]["resources"] = {
        "requests": {"cpu": "1", "memory": "2Gi", "kuscia.io/bandwidth": "10"},
        "limits": {"cpu": "2", "memory": "4Gi", "kuscia.io/bandwidth": "10"},
    }
    task["parties"][0]["bandwidthLimits"] = [{"destinationID": "bob", "limitKBps": 1000}]
    return KusciaJob.model_validate(doc)


async def send_every_request(double: KusciaDouble, pki: Pki) -> None:
    """Each client method once, with bodies from the production builders."""
    ps = paddleservice_with_every_field()
    image = build_appimage("ps", ps.spec)
    serving = paddleservice_create_request("ps", ps.spec, image["name"])
    deployment = deployment_create_request(
        "kd", KusciaDeployment.model_validate(sample("kusciadeployment-serving.yaml")).spec
    )
    job = job_create_request("job-1", job_with_every_field().spec)
    bfia = bfia_create_request("bfia-1", KusciaJob.model_validate(sample("kusciajob-bfia.yaml")).spec)

    credentials = KusciaCredentials.from_dir(pki.directory, url=double.base_url)
    async with (
        KusciaClient(credentials, retries=0) as client,
        BfiaClient(double.bfia_url, retries=0) as bfia_client,
    ):
        assert await client.health()
        await client.create_appimage(image)
        await client.query_appimage(image["name"])
        await client.create_serving(serving)
        await client.update_serving(update_request(serving))
        await client.create_serving(deployment)
        await client.query_serving("ps")
        await client.batch_query_serving_status(["ps", "kd"])
        await client.delete_serving("ps")
        assert await client.create_job(job) == "job-1"
        await client.query_job("job-1")
        await client.batch_query_job_status(["job-1"])
        await client.stop_job("job-1", reason="deleted in Kubernetes")
        await client.delete_job("job-1")
        await bfia_client.create_job(bfia)


async def test_every_request_body_parses_into_kuscias_message(double: KusciaDouble, pki: Pki) -> None:
    await send_every_request(double, pki)
    seen: set[str] = set()
    newer_used: set[str] = set()
    for path, body in double.requests:
        message_class = interconn_job_pb2.CreateJobRequest if path == BFIA_CREATE else ROUTES[path][0]
        message, newer = contract_parse(message_class, body)  # raises on any field the message lacks
        assert message.ByteSize() > 0 or path == "/healthZ", f"{path} sent an empty body"
        seen.add(path)
        newer_used.update(".".join(p for p in key.split(".") if not p.isdigit()) for key in newer)
    assert seen == {*ROUTES} - {"/api/v1/appimage/delete"} | {BFIA_CREATE}
    # The builders do send the fields newer than the package; they travel through the allow-list.
    assert newer_used == {
        "affinity_mode",
        "tasks.schedule_config",
        "tasks.tolerable",
        "tasks.parties.bandwidth_limits",
        "tasks.parties.resources.bandwidth",
    }
    assert double.unknown_fields == []


def test_a_field_kuscia_lacks_fails_the_contract() -> None:
    # The AppImage container port of old: Kuscia's ContainerPort has name, protocol and scope only.
    body = {
        "name": "x",
        "deploy_templates": [
            {"name": "t", "containers": [{"name": "c", "ports": [{"name": "service", "port": 9292}]}]}
        ],
    }
    with pytest.raises(json_format.ParseError, match='no field named "port"'):
        contract_parse(appimage_pb2.CreateAppImageRequest, body)
    with pytest.raises(json_format.ParseError):
        contract_parse(job_pb2.CreateJobRequest, {"job_id": "j", "max_parallelism": "many"})


def test_newer_fields_are_exactly_those_the_packaged_messages_lack() -> None:
    """When the package catches up with Kuscia, an entry here goes stale and this test says which."""
    messages = {
        m.DESCRIPTOR.full_name: m
        for m in (*vars(job_pb2).values(), *vars(serving_pb2).values())
        if hasattr(m, "DESCRIPTOR") and hasattr(m.DESCRIPTOR, "fields_by_name")
    }
    for (message, field), newer in NEWER_FIELDS.items():
        assert message in messages, message
        assert field not in messages[message].DESCRIPTOR.fields_by_name, f"{message}.{field} is packaged now"
        assert newer.release


async def test_emulator_drops_and_records_fields_kuscia_does_not_know(double: KusciaDouble, pki: Pki) -> None:
    credentials = KusciaCredentials.from_dir(pki.directory, url=double.base_url)
    body = copy.deepcopy(build_appimage("ps", paddleservice_with_every_field().spec))
    body["deploy_templates"][0]["containers"][0]["ports"][0]["port"] = 9292
    async with KusciaClient(credentials, retries=0) as client:
        await client.create_appimage(body)  # accepted, as Kuscia's lenient binder would
    stored = double.appimages[body["name"]]["deploy_templates"][0]["containers"][0]["ports"]
    assert stored == [{"name": "service", "protocol": "HTTP", "scope": "Domain"}]
    assert double.unknown_fields == [
        ("/api/v1/appimage/create", "deploy_templates.0.containers.0.ports.0.port")
    ]
