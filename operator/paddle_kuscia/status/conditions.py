"""metav1.Condition bookkeeping: lastTransitionTime moves only when the status flips."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cond:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""


def merge_conditions(
    previous: list[dict[str, Any]] | None, wanted: list[Cond], *, generation: int | None, now: str
) -> list[dict[str, Any]]:
    """The condition list to write: `wanted` in order, keeping transition times of unchanged statuses.

    Conditions of other types found in `previous` (set by someone else) are kept after ours.
    """
    before = {c.get("type"): c for c in previous or []}
    ours = {c.type for c in wanted}
    out: list[dict[str, Any]] = []
    for c in wanted:
        old = before.get(c.type)
        moved = old is None or old.get("status") != c.status
        entry: dict[str, Any] = {
            "type": c.type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message[:32768],
            "lastTransitionTime": now if moved else old.get("lastTransitionTime", now),  # type: ignore[union-attr]
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        out.append(entry)
    out.extend(c for t, c in before.items() if t not in ours)
    return out


def summarize(parts: list[Cond], *, ready_reason: str, ready_message: str) -> Cond:
    """`Ready` from its dependencies: False if any is False, Unknown if any is Unknown, else True."""
    for status in ("False", "Unknown"):
        for c in parts:
            if c.status == status:
                return Cond("Ready", status, c.reason, f"{c.type}: {c.message}" if c.message else c.type)
    return Cond("Ready", "True", ready_reason, ready_message)
