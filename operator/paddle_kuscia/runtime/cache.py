"""Last-seen copies of watched objects, fed by watch events (our informers, kopf's for the Kuscia mirrors) and by our
own write responses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

Key = tuple[str, str]  # (namespace, name)


def _rv(obj: dict[str, Any]) -> int | None:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", ""))
    except ValueError:
        return None


class ObjectCache:
    """Keeps the newest version of each object; a late watch event never overwrites a newer write response.

    Objects are kept as compact JSON and parsed on each read. A parsed Kubernetes object costs two to three
    times its JSON in Python objects; at a few thousand PaddleServices (with their Knative Services and
    Revisions) that difference is most of the operator's memory. A read returns a fresh copy, so no caller
    can change the cache by accident.
    """

    def __init__(self, slim: Any = None) -> None:
        self._items: dict[Key, tuple[int | None, str]] = {}
        self._slim = slim

    def store(self, obj: dict[str, Any]) -> bool:
        """Store `obj` unless we already hold this version or a newer one; returns whether it was stored.

        Holding this very version is the common case for the watch event of our own write: the write's
        response got here first. Such an event brings no news, and callers treat it as none."""
        if self.holds(obj):
            return False
        kept = self._slim(obj) if self._slim else obj
        self._items[key_of(obj)] = (_rv(obj), json.dumps(kept, separators=(",", ":")))
        return True

    def holds(self, obj: dict[str, Any]) -> bool:
        """Whether this version of `obj`, or a newer one, is held already (cheap: nothing is parsed)."""
        old = self._items.get(key_of(obj))
        new_rv = _rv(obj)
        return old is not None and new_rv is not None and old[0] is not None and new_rv <= old[0]

    def forget(self, key: Key) -> None:
        self._items.pop(key, None)

    def get(self, key: Key) -> dict[str, Any] | None:
        item = self._items.get(key)
        return json.loads(item[1]) if item is not None else None

    def __contains__(self, key: Key) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Key]:
        """The keys held now (a copy: the cache may change while the caller iterates)."""
        return iter(list(self._items))

    def items(self) -> Iterator[tuple[Key, dict[str, Any]]]:
        return iter([(key, json.loads(text)) for key, (_, text) in list(self._items.items())])


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata", {})
    return (meta.get("namespace", ""), meta.get("name", ""))


class IndexedCache(ObjectCache):
    """An ObjectCache with one secondary index (e.g. Revisions by their Knative Service)."""

    def __init__(self, index: Any, slim: Any = None) -> None:
        super().__init__(slim)
        self._index_fn = index
        self._index: dict[Any, set[Key]] = {}
        self._index_of: dict[Key, Any] = {}

    def store(self, obj: dict[str, Any]) -> bool:
        key = key_of(obj)
        stored = super().store(obj)
        if stored:
            self._unindex(key)
            idx = self._index_fn(obj)
            if idx is not None:
                self._index.setdefault(idx, set()).add(key)
                self._index_of[key] = idx
        return stored

    def forget(self, key: Key) -> None:
        self._unindex(key)
        super().forget(key)

    def _unindex(self, key: Key) -> None:
        idx = self._index_of.pop(key, None)
        members = self._index.get(idx) if idx is not None else None
        if members is not None:
            members.discard(key)
            if not members:
                del self._index[idx]

    def by_index(self, idx: Any) -> list[dict[str, Any]]:
        return [obj for key in sorted(self._index.get(idx, ())) if (obj := self.get(key)) is not None]
