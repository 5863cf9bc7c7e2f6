"""The Knative simulator's informer cache: its namespace and label indexes answer as a full scan would."""

from __future__ import annotations

import random
from typing import Any

from support.knative_sim import _Store


def obj(ns: str, name: str, rv: int, labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": str(rv), "labels": labels}}


def scan(items: dict[tuple[str, str], dict[str, Any]], ns: str, labels: dict[str, str]) -> list[str]:
    return sorted(
        name
        for (n, name), o in items.items()
        if n == ns and all(o["metadata"]["labels"].get(k) == v for k, v in labels.items())
    )


def names(objs: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def test_indexed_lists_match_a_full_scan_through_upserts_relabels_deletes_and_relists() -> None:
    rng = random.Random(7)
    store, truth = _Store(), {}
    for rv in range(1, 2001):
        ns, name = rng.choice(["a", "b", "c"]), f"r{rng.randrange(40)}"
        if rng.random() < 0.2:
            truth.pop((ns, name), None)
            store.delete(obj(ns, name, rv, {}))
            assert store.get(ns, name) is None
        else:
            labels = {"cfg": rng.choice(["x", "y", "z"]), "tier": rng.choice(["1", "2"])}
            o = obj(ns, name, rv, labels)
            assert store.upsert(o)
            truth[(ns, name)] = o
        if rng.random() < 0.01:  # a relist replaces everything
            store.replace(list(truth.values()), str(rv))
        for ns in ("a", "b", "c", "absent"):
            assert names(store.list(ns)) == scan(truth, ns, {})
            assert sorted(store.names(ns)) == scan(truth, ns, {})
            for labels in ({"cfg": "x"}, {"cfg": "y", "tier": "2"}, {"cfg": "nope"}):
                assert names(store.list(ns, labels)) == scan(truth, ns, labels)


def test_an_older_write_never_replaces_a_newer_object_in_the_indexes() -> None:
    store = _Store()
    assert store.upsert(obj("a", "r", 5, {"cfg": "new"}))
    assert not store.upsert(obj("a", "r", 4, {"cfg": "old"}))
    assert names(store.list("a", {"cfg": "new"})) == ["r"]
    assert store.list("a", {"cfg": "old"}) == []
