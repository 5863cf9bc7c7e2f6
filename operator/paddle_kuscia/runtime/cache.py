"""Last-seen copies of watched objects, fed by kopf's watch events and by our own write responses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Key = tuple[str, str]  # (namespace, name)


def _rv(obj: dict[str, Any]) -> int | None:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", ""))
    except ValueError:
        return None


class ObjectCache:
    """Keeps the newest version of each object; a late watch event never overwrites a newer write response."""

    def __init__(self, slim: Any = None) -> None:
        self._items: dict[Key, dict[str, Any]] = {}
        self._slim = slim

    def store(self, obj: dict[str, Any]) -> bool:
        """Store `obj` unless we already hold a newer version; returns whether it was stored."""
        meta = obj.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        old = self._items.get(key)
        if old is not None:
            new_rv, old_rv = _rv(obj), _rv(old)
            if new_rv is not None and old_rv is not None and new_rv < old_rv:
                return False
        self._items[key] = self._slim(obj) if self._slim else obj
        return True

    def forget(self, key: Key) -> None:
        self._items.pop(key, None)

    def get(self, key: Key) -> dict[str, Any] | None:
        return self._items.get(key)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> Iterator[tuple[Key, dict[str, Any]]]:
        return iter(list(self._items.items()))


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata", {})
    return (meta.get("namespace", ""), meta.get("name", ""))


class IndexedCache(ObjectCache):
    """An ObjectCache with one secondary index (e.g. Revisions by their Knative Service)."""

    def __init__(self, index: Any, slim: Any = None) -> None:
        super().__init__(slim)
        self._index_fn = index
        self._index: dict[Any, set[Key]] = {}

    def store(self, obj: dict[str, Any]) -> bool:
        key = key_of(obj)
        old = self.get(key)
        stored = super().store(obj)
        if stored:
            if old is not None:
                self._unindex(key, old)
            idx = self._index_fn(obj)
            if idx is not None:
                self._index.setdefault(idx, set()).add(key)
        return stored

    def forget(self, key: Key) -> None:
        old = self.get(key)
        if old is not None:
            self._unindex(key, old)
        super().forget(key)

    def _unindex(self, key: Key, obj: dict[str, Any]) -> None:
        idx = self._index_fn(obj)
        members = self._index.get(idx)
        if members is not None:
            members.discard(key)
            if not members:
                del self._index[idx]

    def by_index(self, idx: Any) -> list[dict[str, Any]]:
        return [obj for key in sorted(self._index.get(idx, ())) if (obj := self.get(key)) is not None]
