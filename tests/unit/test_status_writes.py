"""Status writes: only when the serialised status changed, with an Event only when Ready moved."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from paddle_kuscia.adapters.kube import KUSCIA_JOBS, PADDLESERVICES, Conflict
from paddle_kuscia.adapters.kuscia import KusciaRejected
from paddle_kuscia.builders.compare import merge_patch
from paddle_kuscia.models.kuscia import Kind
from paddle_kuscia.models.paddleservice import Condition, PaddleServiceStatus, VariantStatus
from paddle_kuscia.reconcile.common import failure_status, write_status
from paddle_kuscia.reconcile.kuscia_mirrors import _report_send
from paddle_kuscia.runtime.cache import ObjectCache
from paddle_kuscia.runtime.context import Config, Context
from paddle_kuscia.runtime.kuscia_hub import Connection, KusciaHub
from paddle_kuscia.runtime.queue import RetryLater
from paddle_kuscia.status.conditions import Cond, condition

NOW = "2026-01-01T00:00:00Z"


class RecordingKube:
    """The two calls a status write makes, recorded; the patch is applied as the API server would."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []
        self.events: list[dict[str, str]] = []

    async def patch_status(
        self, resource: Any, namespace: str, name: str, patch: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        self.patches.append(patch)
        body = copy.deepcopy(self.body)
        body["status"] = _apply(body.get("status") or {}, patch.get("status", patch))
        body["metadata"]["resourceVersion"] = str(int(body["metadata"]["resourceVersion"]) + 1)
        return body

    async def post_event(self, involved: dict[str, Any], *, type: str, reason: str, message: str) -> None:
        self.events.append({"type": type, "reason": reason, "message": message})


def _apply(old: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _apply(out[key], value)
        else:
            out[key] = value
    return out


def body(status: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "elasticserving.paddlepaddle.org/v1",
        "kind": "PaddleService",
        "metadata": {
            "name": "ps",
            "namespace": "ns",
            "uid": "u",
            "generation": generation,
            "resourceVersion": "1",
        },
        "spec": {"default": {"containerImage": "img", "tag": "v1", "port": 80}},
        **({"status": status} if status is not None else {}),
    }


def setup(obj: dict[str, Any]) -> tuple[Context, RecordingKube, ObjectCache]:
    kube = RecordingKube()
    kube.body = obj  # type: ignore[attr-defined]
    ctx = Context(config=Config(), kube=kube)  # type: ignore[arg-type]
    return ctx, kube, ctx.paddleservices


def ready_status(status: str, reason: str, *, url: str = "http://a") -> PaddleServiceStatus:
    ready = condition("Ready", status, reason, "m", now=NOW).model_copy(update={"observed_generation": 1})  # type: ignore[arg-type]
    return PaddleServiceStatus(observed_generation=1, conditions=[ready], url=url)


async def test_an_unchanged_status_is_not_written() -> None:
    status = ready_status("True", "Serving")
    obj = body(status.wire())
    ctx, kube, cache = setup(obj)
    assert await write_status(ctx, PADDLESERVICES, cache, obj, status) is False
    assert kube.patches == [] and kube.events == []


async def test_a_changed_field_is_written_as_a_merge_patch_of_the_difference() -> None:
    old = ready_status("True", "Serving")
    new = ready_status("True", "Serving", url="http://b")
    obj = body(old.wire())
    ctx, kube, cache = setup(obj)
    assert await write_status(ctx, PADDLESERVICES, cache, obj, new) is True
    assert kube.patches == [merge_patch(old.wire(), new.wire())]
    assert cache.get(("ns", "ps"))["status"] == new.wire()  # type: ignore[index]
    assert kube.events == []  # Ready did not move


async def test_a_removed_field_is_written_as_null() -> None:
    old = PaddleServiceStatus(observed_generation=1, canary=VariantStatus(name="c"))
    new = PaddleServiceStatus(observed_generation=1)
    obj = body(old.wire())
    ctx, kube, _ = setup(obj)
    assert await write_status(ctx, PADDLESERVICES, ctx.paddleservices, obj, new) is True
    assert kube.patches[0]["canary"] is None


async def test_ready_flipping_posts_one_event_with_its_reason() -> None:
    obj = body(ready_status("True", "Serving").wire())
    ctx, kube, cache = setup(obj)
    await write_status(ctx, PADDLESERVICES, cache, obj, ready_status("False", "ExitCode1"))
    assert kube.events == [{"type": "Warning", "reason": "ExitCode1", "message": "Ready=False: m"}]


async def test_a_new_objects_first_unknown_is_no_event_but_its_first_verdict_is() -> None:
    obj = body()
    ctx, kube, cache = setup(obj)
    await write_status(ctx, PADDLESERVICES, cache, obj, ready_status("Unknown", "Reconciling"))
    assert kube.events == []
    await write_status(ctx, PADDLESERVICES, cache, body(), ready_status("True", "Serving"))
    assert kube.events == [{"type": "Normal", "reason": "Serving", "message": "Ready=True: m"}]


async def test_failing_for_a_new_reason_is_news_and_the_same_reason_is_not() -> None:
    obj = body(ready_status("False", "A").wire())
    ctx, kube, cache = setup(obj)
    await write_status(ctx, PADDLESERVICES, cache, obj, ready_status("False", "A", url="http://b"))
    assert kube.events == []
    await write_status(ctx, PADDLESERVICES, cache, obj, ready_status("False", "B"))
    assert [e["reason"] for e in kube.events] == ["B"]


async def test_dict_statuses_are_still_accepted() -> None:
    status = ready_status("True", "Serving").wire()
    obj = body(status)
    ctx, _kube, cache = setup(obj)
    assert await write_status(ctx, PADDLESERVICES, cache, obj, dict(status)) is False
    assert await write_status(ctx, PADDLESERVICES, cache, obj, {**status, "url": "http://c"}) is True


def test_a_failure_keeps_the_rest_of_the_status_and_says_why() -> None:
    previous = ready_status("True", "Serving")
    obj = body(previous.wire(), generation=2)
    failed = failure_status(obj, model=PaddleServiceStatus, reason="InvalidSpec", message="bad")
    ready = {c.type: c for c in failed.conditions or []}["Ready"]
    assert (ready.status, ready.reason, ready.message, ready.observed_generation) == (
        "False",
        "InvalidSpec",
        "bad",
        2,
    )
    assert ready.last_transition_time != NOW  # it flipped
    assert failed.observed_generation == 2 and failed.url == previous.url


def test_a_failure_can_be_unknown_and_carry_dependency_conditions() -> None:
    extra = condition("KusciaServingReady", "Unknown", "Busy", "retrying", now=NOW)
    failed = failure_status(
        body(), model=PaddleServiceStatus, reason="Busy", message="retrying", ready="Unknown", extra=[extra]
    )
    assert [(c.type, c.status) for c in failed.conditions or []] == [
        ("Ready", "Unknown"),
        ("KusciaServingReady", "Unknown"),
    ]


def test_a_failure_over_an_unreadable_status_starts_afresh() -> None:
    failed = failure_status(body({"replicas": -1}), model=PaddleServiceStatus, reason="R", message="m")
    assert failed.replicas is None and failed.conditions is not None


def test_the_dict_form_of_a_failure_matches_the_model_form() -> None:
    """The Kuscia reconcilers still call failure_status without a model and with `Cond`s."""
    obj = body(ready_status("True", "Serving").wire(), generation=2)
    as_dict = failure_status(obj, reason="R", message="m", extra=[Cond("X", "False", "R", "m")])
    as_model = failure_status(
        obj, model=PaddleServiceStatus, reason="R", message="m", extra=[Cond("X", "False", "R", "m").at(NOW)]
    )
    assert [
        Condition.model_validate(c).model_copy(update={"last_transition_time": ""})
        for c in as_dict["conditions"]
    ] == [c.model_copy(update={"last_transition_time": ""}) for c in as_model.conditions or []]
    assert {k: v for k, v in as_dict.items() if k != "conditions"} == {
        k: v for k, v in as_model.wire().items() if k != "conditions"
    }


class ConflictingKube(RecordingKube):
    """Every status write loses to a newer version of the object."""

    async def patch_status(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise Conflict(409, "the object has been modified")


async def test_a_refusal_is_remembered_even_when_its_status_write_conflicts() -> None:
    """The conflicting write is retried; the retry must find the refusal remembered and not send the
    refused request again (the order once was the other way round, and CI saw two creates)."""

    obj = body()
    kube = ConflictingKube()
    kube.body = obj  # type: ignore[attr-defined]
    ctx = Context(config=Config(), kube=kube)  # type: ignore[arg-type]
    ctx.kuscia = KusciaHub(ctx)
    conn = Connection("c", "https://127.0.0.1:1", client=None)  # type: ignore[arg-type]
    err = KusciaRejected(11100, "refused for the test", "job/create")
    with pytest.raises(RetryLater):
        await _report_send(ctx, KUSCIA_JOBS, ctx.kuscia_jobs, obj, err, (Kind.JOB, conn, "ps", "attempt-1"))
    remembered = ctx.kuscia.refused(Kind.JOB, conn, "ps")
    assert remembered is not None and remembered[0] == "attempt-1"
    assert "refused for the test" in remembered[1].message
