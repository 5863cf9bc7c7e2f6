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
