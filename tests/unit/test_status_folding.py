"""Which Knative status steps are written at once and which wait for a later write: checked on plain data."""

from __future__ import annotations

import copy
import time
from typing import Any

from paddle_kuscia.reconcile.knative_serving import HOLD_SECONDS, _hold
from paddle_kuscia.runtime.context import Config, Context
from paddle_kuscia.status.knative import APPLY_FAILED, worth_writing

KEY = ("ns", "ps")
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z"


def cond(ctype: str, status: str, reason: str, message: str = "", since: str = T0) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": 1,
    }


def rolling_out(**changes: Any) -> dict[str, Any]:
    """A new object's status once Knative reported its Service: the revision is still deploying."""
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "conditions": [
            cond("Ready", "Unknown", "RevisionNotReady", "DefaultEndpointReady: Waiting for revision ps-a."),
            cond("DefaultEndpointReady", "Unknown", "RevisionNotReady", "Waiting for revision ps-a."),
            cond("RoutesReady", "Unknown", "RevisionMissing", "Configuration is waiting for a Revision."),
        ],
        "latestCreatedRevision": "ps-a",
    }
    status.update(changes)
    return status


def with_condition(base: dict[str, Any], ctype: str, **fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for c in out["conditions"]:
        if c["type"] == ctype:
            c.update(fields)
    return out


def serving() -> dict[str, Any]:
    return rolling_out(
        conditions=[
            cond("Ready", "True", "Serving", "All traffic is served by ready revisions.", since=T1),
            cond("DefaultEndpointReady", "True", "RevisionReady", "Revision ps-a is ready.", since=T1),
            cond("RoutesReady", "True", "TrafficAssigned", "Traffic is split as requested.", since=T1),
        ],
        url="http://ps.ns.example.com",
        address={"url": "http://ps.ns.svc.cluster.local"},
        default={"name": "ps-a"},
        traffic=[{"tag": "default", "revisionName": "ps-a", "percent": 100, "url": "http://default-ps"}],
        latestReadyRevision="ps-a",
        replicas=1,
    )


def test_an_unchanged_status_is_not_worth_a_write() -> None:
    assert not worth_writing(rolling_out(), rolling_out())


def test_the_first_status_is_written() -> None:
    assert worth_writing({}, rolling_out())


def test_the_steps_of_a_rollout_wait_while_ready_stays_unknown() -> None:
    stored = rolling_out()
    for step in (
        with_condition(stored, "DefaultEndpointReady", message="Waiting (Deploying: pulling image)."),
        with_condition(stored, "Ready", reason="IngressNotConfigured", message="RoutesReady: ingress"),
        with_condition(stored, "RoutesReady", reason="TrafficNotMigrated"),
        with_condition(stored, "DefaultEndpointReady", status="True", reason="RevisionReady"),
        rolling_out(url="http://ps.ns.example.com", address={"url": "http://ps.ns.svc.cluster.local"}),
        rolling_out(traffic=[{"tag": "default", "revisionName": "ps-a", "percent": 100}]),
        rolling_out(default={"name": "ps-a"}, canary={"name": "ps-b"}),
        rolling_out(latestCreatedRevision="ps-b", latestReadyRevision="ps-a", replicas=0),
    ):
        assert not worth_writing(stored, step), step


def test_a_new_generation_is_written_at_once() -> None:
    assert worth_writing(rolling_out(), rolling_out(observedGeneration=2))


def test_a_new_or_dropped_condition_is_written_at_once() -> None:
    stored = rolling_out()
    canary = rolling_out(conditions=[*stored["conditions"], cond("CanaryEndpointReady", "Unknown", "X")])
    assert worth_writing(stored, canary)
    assert worth_writing(canary, stored)


def test_ready_leaving_a_verdict_is_written_at_once() -> None:
    assert worth_writing(serving(), with_condition(serving(), "Ready", status="Unknown", reason="X"))


def test_a_settled_status_is_written_whole_even_for_a_message() -> None:
    ready = serving()
    assert worth_writing(rolling_out(), ready)
    assert worth_writing(ready, with_condition(ready, "RoutesReady", message="another message"))
    assert worth_writing(ready, {**ready, "replicas": 0})
    failed = with_condition(rolling_out(), "Ready", status="False", reason="ExitCode1")
    assert worth_writing(rolling_out(), failed)
    assert worth_writing(failed, with_condition(failed, "Ready", message="Container failed again."))


def test_a_status_without_ready_is_written() -> None:
    assert worth_writing({"observedGeneration": 1}, {"observedGeneration": 1, "url": "http://x"})


def context() -> Context:
    return Context(config=Config(), kube=None)  # type: ignore[arg-type]


def test_a_held_step_waits_and_keeps_its_first_deadline() -> None:
    ctx = context()
    stored, step = rolling_out(), rolling_out(replicas=0)
    first = _hold(ctx, KEY, stored, step)
    assert first is not None and 0 < first <= HOLD_SECONDS
    again = _hold(ctx, KEY, stored, rolling_out(replicas=1))
    assert again is not None and again <= first  # a later step does not push the deadline back


def test_a_held_step_is_written_once_its_deadline_passed() -> None:
    ctx = context()
    ctx.held[KEY] = time.monotonic() - HOLD_SECONDS - 1
    assert _hold(ctx, KEY, rolling_out(), rolling_out(replicas=0)) is None
    assert KEY not in ctx.held


def test_a_write_worth_making_takes_the_held_steps_with_it_and_clears_the_deadline() -> None:
    ctx = context()
    assert _hold(ctx, KEY, rolling_out(), rolling_out(replicas=0)) is not None
    assert _hold(ctx, KEY, rolling_out(), serving()) is None
    assert KEY not in ctx.held


def test_nothing_to_write_clears_the_deadline() -> None:
    ctx = context()
    assert _hold(ctx, KEY, rolling_out(), rolling_out(replicas=0)) is not None
    assert _hold(ctx, KEY, rolling_out(), rolling_out()) is None
    assert KEY not in ctx.held


def test_the_end_of_a_failed_apply_is_written_at_once() -> None:
    failed = with_condition(rolling_out(), "Ready", reason=APPLY_FAILED, message="retrying")
    assert worth_writing(failed, rolling_out())
