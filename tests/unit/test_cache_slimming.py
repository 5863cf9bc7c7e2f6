"""What the caches keep of our own objects, and that slimming never hides a change we act on."""

from __future__ import annotations

import copy

from paddle_kuscia.handlers import _significant
from paddle_kuscia.runtime.cache import ObjectCache
from paddle_kuscia.runtime.context import LAST_APPLIED, slim_object


def paddleservice(**meta: object) -> dict:
    base = {
        "apiVersion": "elasticserving.paddlepaddle.org/v1",
        "kind": "PaddleService",
        "metadata": {
            "name": "s",
            "namespace": "n",
            "uid": "u",
            "resourceVersion": "7",
            "generation": 2,
            "labels": {"team": "a"},
            "annotations": {"note": "kept", LAST_APPLIED: '{"spec": "a whole copy"}'},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"default": {"tag": "v1"}},
        "status": {"observedGeneration": 2},
    }
    base["metadata"].update(meta)
    return base


def test_slimming_drops_managed_fields_and_the_last_applied_copy_only() -> None:
    raw = paddleservice()
    before = copy.deepcopy(raw)
    slim = slim_object(raw)
    assert raw == before, "the watch event's body must not be modified"
    assert "managedFields" not in slim["metadata"]
    assert slim["metadata"]["annotations"] == {"note": "kept"}
    assert {k: v for k, v in slim.items() if k != "metadata"} == {
        k: v for k, v in raw.items() if k != "metadata"
    }
    assert {k: v for k, v in slim["metadata"].items() if k not in ("annotations",)} == {
        k: v for k, v in raw["metadata"].items() if k not in ("annotations", "managedFields")
    }


def test_a_cached_object_compares_equal_to_the_same_raw_event() -> None:
    cache = ObjectCache(slim_object)
    cache.store(paddleservice())
    old = cache.get(("n", "s"))
    # The echo of our own status write: nothing we act on changed.
    assert not _significant(old, paddleservice(resourceVersion="8"))
    # A re-apply that only rewrote the last-applied copy is not a change either.
    echo = paddleservice(resourceVersion="9")
    echo["metadata"]["annotations"][LAST_APPLIED] = '{"spec": "another copy"}'
    assert not _significant(old, echo)
    # Real changes still are.
    assert _significant(old, paddleservice(generation=3))
    assert _significant(old, paddleservice(annotations={"note": "changed", LAST_APPLIED: "x"}))
    assert _significant(old, paddleservice(finalizers=["f"]))
    assert _significant(old, paddleservice(deletionTimestamp="2026-11-22T00:00:00Z"))


def test_reads_are_copies_and_an_older_version_never_replaces_a_newer_one() -> None:
    cache = ObjectCache(slim_object)
    assert cache.store(paddleservice(resourceVersion="10"))
    first = cache.get(("n", "s"))
    assert first is not None
    first["spec"]["default"]["tag"] = "changed by a careless caller"
    assert cache.get(("n", "s"))["spec"]["default"]["tag"] == "v1"
    assert not cache.store(paddleservice(resourceVersion="9"))  # a late watch event
    assert cache.get(("n", "s"))["metadata"]["resourceVersion"] == "10"
    assert cache.store(paddleservice(resourceVersion="11"))
    assert [key for key, _ in cache.items()] == [("n", "s")] and ("n", "s") in cache


def test_the_index_follows_an_object_that_moves_and_forgets_it_when_it_goes() -> None:
    from paddle_kuscia.runtime.cache import IndexedCache
    from paddle_kuscia.runtime.context import revision_service, slim_revision

    def revision(name: str, service: str, rv: str) -> dict:
        labels = {"serving.knative.dev/service": service}
        return {"metadata": {"name": name, "namespace": "n", "resourceVersion": rv, "labels": labels}}

    cache = IndexedCache(revision_service, slim_revision)
    cache.store(revision("r1", "a", "1"))
    cache.store(revision("r2", "a", "2"))
    assert [r["metadata"]["name"] for r in cache.by_index(("n", "a"))] == ["r1", "r2"]
    cache.store(revision("r2", "b", "3"))  # relabelled
    assert [r["metadata"]["name"] for r in cache.by_index(("n", "a"))] == ["r1"]
    assert [r["metadata"]["name"] for r in cache.by_index(("n", "b"))] == ["r2"]
    cache.forget(("n", "r1"))
    assert cache.by_index(("n", "a")) == [] and len(cache) == 1


def test_the_watch_event_of_our_own_write_queues_no_reconcile() -> None:
    """The reconciler stores each write's response; the same version arriving on the watch is no news. A newer
    version (Knative's own status step) still queues the owner."""
    import asyncio

    from paddle_kuscia.handlers import Operator
    from paddle_kuscia.runtime.context import Config, Context
    from paddle_kuscia.runtime.queue import WorkQueue

    async def reconcile(_key: object) -> None:
        return None

    def ksvc(resource_version: str) -> dict:
        return {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {
                "name": "s",
                "namespace": "n",
                "resourceVersion": resource_version,
                "ownerReferences": [
                    {"apiVersion": "elasticserving.paddlepaddle.org/v1", "kind": "PaddleService", "name": "s"}
                ],
            },
            "spec": {},
        }

    async def scenario() -> list[int]:
        operator = Operator(Config())
        ctx = operator._ctx = Context(config=Config(), kube=None)  # type: ignore[arg-type]
        queue = ctx.queues["PaddleService"] = WorkQueue("PaddleService", reconcile)
        ctx.paddleservices.store(paddleservice())
        ctx.knative_services.store(ksvc("20"))  # the apply's response, stored by the reconciler
        sizes = []
        for resource_version in ("20", "19", "21"):
            operator.knative_service_event({"type": "MODIFIED", "object": ksvc(resource_version)})
            sizes.append(len(queue))
        return sizes

    assert asyncio.run(scenario()) == [0, 0, 1]


def test_paddleservice_events_queue_only_what_a_reconcile_must_see() -> None:
    """PaddleService events come from the operator's own informer: the echo of our status write and a newer
    status-only version queue nothing; a spec change queues the key; a deletion forgets it in the caches."""
    import asyncio

    from paddle_kuscia.handlers import Operator
    from paddle_kuscia.runtime.context import Config, Context
    from paddle_kuscia.runtime.queue import WorkQueue

    forgotten: list[object] = []

    class Hub:
        def forget_paddleservice(self, key: object) -> None:
            forgotten.append(key)

    async def reconcile(_key: object) -> None:
        return None

    async def scenario() -> list[int]:
        operator = Operator(Config())
        ctx = operator._ctx = Context(config=Config(), kube=None)  # type: ignore[arg-type]
        ctx.kuscia = Hub()  # type: ignore[assignment]
        queue = ctx.queues["PaddleService"] = WorkQueue("PaddleService", reconcile)
        ctx.paddleservices.store(paddleservice(resourceVersion="8"))  # our status write's response
        sizes = []
        steps = [
            ("MODIFIED", paddleservice(resourceVersion="8")),  # its echo on the watch
            ("MODIFIED", paddleservice(resourceVersion="9")),  # someone else's status-only write
            ("MODIFIED", paddleservice(resourceVersion="10", generation=3)),  # a spec change
        ]
        for kind, body in steps:
            operator.paddleservice_event({"type": kind, "object": body})
            sizes.append(len(queue))
        operator.paddleservice_event({"type": "DELETED", "object": paddleservice(resourceVersion="11")})
        assert ("n", "s") not in ctx.paddleservices  # the queued reconcile finds it gone
        return sizes

    assert asyncio.run(scenario()) == [0, 0, 1]
    assert forgotten == [("n", "s")]
