"""Autoscaling values Knative would refuse are refused by the model (and by the CRD, naming the field).

Bounds from knative.dev/serving v0.42.2, pkg/apis/autoscaling/annotation_validation.go and register.go.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from paddle_kuscia.models.autoscaling import cel_rules, go_duration_ns
from paddle_kuscia.models.crd import all_crds
from paddle_kuscia.models.paddleservice import PaddleServiceSpec


def validate(**service: Any) -> PaddleServiceSpec:
    return PaddleServiceSpec.model_validate(
        {"default": {"containerImage": "img", "tag": "v1", "port": 9292}, "service": service}
    )


def refused_field(**service: Any) -> str:
    with pytest.raises(ValidationError) as err:
        validate(**service)
    return ".".join(str(p) for p in err.value.errors()[0]["loc"])


# (field, accepted edge values, values just outside)
BOUNDS = [
    (
        "window",
        ["6s", "1h", "7000ms", "1.5m", "60m"],
        ["5s", "5999ms", "3601s", "1h0m1s", "6500ms", "6000001us"],
    ),
    ("panicWindow", [1, 100, "1", "100.0", "10"], [0, 101, "0.99", "100.01", "1e2", "ten"]),
    ("panicThreshold", [110, 1000, "110.0", "200"], [109, 1001, "109.99", "1000.5"]),
    ("targetUtilization", [1, 100, "1", "70", "99.5"], [0, 101, "0.5", "100.5"]),
    ("target", [1, 100], [0, -1]),
    ("minScale", [0, 2**31 - 1], [-1, 2**31]),
    ("maxScale", [0, 2**31 - 1], [-1, 2**31]),
    ("initialScale", [0, 1, 2**31 - 1], [-1, 2**31]),
    ("scaleDownDelay", ["0s", "1h", "2000ms"], ["61m", "1500ms", "1h1s"]),
    ("scaleToZeroPodRetentionPeriod", ["0s", "1h", "1500ms"], ["1h1ns", "61m"]),
]


@pytest.mark.parametrize(("field", "accepted", "refused"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_edge_values_are_accepted_and_values_just_outside_are_refused_naming_the_field(
    field: str, accepted: list[Any], refused: list[Any]
) -> None:
    for value in accepted:
        validate(**{field: value})
    for value in refused:
        assert refused_field(**{field: value}) == f"service.{field}", value


def test_the_kpa_scales_on_concurrency_or_rps_only() -> None:
    validate(metric="concurrency")
    validate(metric="rps", autoscaler="kpa.autoscaling.knative.dev")
    validate(metric="cpu", autoscaler="hpa")
    validate(metric="memory", autoscaler="hpa.autoscaling.knative.dev")
    assert refused_field(metric="cpu") == "service.metric"  # the default autoscaler is the KPA
    assert refused_field(metric="memory", autoscaler="kpa") == "service.metric"


def test_scale_bounds_that_depend_on_each_other() -> None:
    validate(minScale=3, maxScale=0)  # 0: no limit
    validate(minScale=3, maxScale=3, initialScale=3)
    assert refused_field(minScale=3, maxScale=2) == "service.maxScale"
    assert refused_field(initialScale=5, maxScale=4) == "service.initialScale"


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1.5m", 90 * 10**9),
        ("1h0m1s", 3601 * 10**9),
        ("6000001us", 6_000_001_000),
        ("6.0000000001s", 6 * 10**9),  # Go drops what a nanosecond cannot hold, and Knative then accepts it
        ("0.1h", 360 * 10**9),
        ("1µs", 1000),
    ],
)
def test_durations_are_read_as_go_reads_them(text: str, ns: int) -> None:
    assert go_duration_ns(text) == ns


def test_the_crd_carries_every_range_on_the_service_object() -> None:
    crd = all_crds()["elasticserving.paddlepaddle.org_paddleservices.yaml"]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    service = schema["properties"]["spec"]["properties"]["service"]
    rules = service["x-kubernetes-validations"]
    for rule in cel_rules():
        assert rule in rules
        assert rule["fieldPath"].lstrip(".") in service["properties"]
        assert rule["message"].startswith(rule["fieldPath"].lstrip("."))
    assert service["properties"]["target"]["minimum"] == 1
    assert service["properties"]["panicWindow"]["pattern"] == r"^[0-9]+(\.[0-9]+)?$"
