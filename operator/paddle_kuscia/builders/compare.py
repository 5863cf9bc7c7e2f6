"""Compare what we want with what is live, looking only at the fields we set."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def is_subset(desired: Any, live: Any) -> bool:
    """True when every field in `desired` has the same value in `live` (extra live fields are someone else's).

    Lists must match element by element: a list we own is replaced as a whole by server-side apply.
    Numbers and their string forms compare equal, as the API server may render either.
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(is_subset(v, live.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        return all(is_subset(d, v) for d, v in zip(desired, live, strict=True))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired == live
    if (isinstance(desired, int | float) and isinstance(live, str)) or (
        isinstance(live, int | float) and isinstance(desired, str)
    ):
        return str(desired) == str(live)
    return desired == live


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


def first_difference(desired: Any, live: Any, path: str = "") -> str | None:
    """The first path where `live` does not carry `desired` (for logs), or None."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return path or "/"
        for key, value in desired.items():
            found = first_difference(value, live.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return path
        for i, (d, v) in enumerate(zip(desired, live, strict=True)):
            found = first_difference(d, v, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if is_subset(desired, live) else path
