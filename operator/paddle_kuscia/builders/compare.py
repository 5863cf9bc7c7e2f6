"""Compare what we want with what is live, looking only at the fields we set."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .quantity import InvalidQuantity, parse_quantity


def is_subset(desired: Any, live: Any) -> bool:
    """True when every field in `desired` has the same value in `live` (extra live fields are someone else's).

    Lists must match element by element: a list we own is replaced as a whole by server-side apply.
    Numbers and their string forms compare equal, as the API server may render either; resource quantities
    compare by value, as Knative's webhook rewrites them in canonical form (`0.2` is stored as `200m`).
    """
    return _difference(desired, live, _PLAIN) is None


# Where a value sits, as far as comparing it goes: quantities are `resources.{requests,limits}.<name>`
# (containers, volume claim templates) and `emptyDir.sizeLimit`.
_PLAIN, _RESOURCES, _QUANTITY_MAP, _QUANTITY = range(4)


def _within(context: int, key: str) -> int:
    if context == _QUANTITY_MAP:
        return _QUANTITY
    if key == "resources":
        return _RESOURCES
    if context == _RESOURCES and key in ("requests", "limits"):
        return _QUANTITY_MAP
    return _QUANTITY if key == "sizeLimit" else _PLAIN


def _same_value(desired: Any, live: Any, context: int) -> bool:
    if desired == live:
        return True
    if isinstance(desired, bool) or isinstance(live, bool):
        return False
    if context == _QUANTITY and isinstance(desired, int | str) and isinstance(live, int | str):
        try:
            return parse_quantity(desired) == parse_quantity(live)
        except InvalidQuantity:
            return False
    scalars = int | float | str
    return isinstance(desired, scalars) and isinstance(live, scalars) and str(desired) == str(live)


def digest(obj: Any) -> str:
    """A short, stable digest of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def merge_patch(old: Any, new: Any) -> Any:
    """The RFC 7386 JSON merge patch that turns `old` into `new` (None values delete keys)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value) if isinstance(value, dict) else value
    return patch


def first_difference(desired: Any, live: Any) -> str | None:
    """The first path where `live` does not carry `desired` (for logs), or None."""
    found = _difference(desired, live, _PLAIN)
    if found is None:
        return None
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in reversed(found)) or "/"


def _difference(desired: Any, live: Any, context: int) -> list[str | int] | None:
    """None when `live` carries `desired`, else the path to the first difference, innermost key first."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return []
        for key, value in desired.items():
            found = _difference(value, live.get(key), _within(context, key))
            if found is not None:
                found.append(key)
                return found
        return None
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return []
        for i, (d, v) in enumerate(zip(desired, live, strict=True)):
            found = _difference(d, v, _PLAIN)
            if found is not None:
                found.append(i)
                return found
        return None
    return None if _same_value(desired, live, context) else []
