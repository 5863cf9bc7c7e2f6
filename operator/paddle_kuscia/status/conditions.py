"""metav1.Condition bookkeeping: lastTransitionTime moves only when the status flips."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from pydantic import ValidationError

from ..models.paddleservice import Condition, ConditionStatus

MAX_MESSAGE = 32768  # metav1.Condition's limit on message


def condition(type: str, status: ConditionStatus, reason: str, message: str = "", *, now: str) -> Condition:
    """A condition as decided now; `merge_conditions` keeps the earlier transition time if it did not flip."""
    return Condition(
        type=type, status=status, reason=reason, message=message[:MAX_MESSAGE], last_transition_time=now
    )


def parse_conditions(raw: Sequence[Condition | Mapping[str, Any]] | None) -> list[Condition]:
    """Conditions as models; entries that are not valid conditions (none the API server would store) are left out."""
    out: list[Condition] = []
    for c in raw or []:
        if isinstance(c, Condition):
            out.append(c)
            continue
        try:
            out.append(Condition.model_validate(c))
        except ValidationError:
            continue
    return out


@overload
def merge_conditions(
    previous: Sequence[Condition | Mapping[str, Any]] | None,
    wanted: Sequence[Condition],
    *,
    generation: int | None,
) -> list[Condition]: ...


@overload
def merge_conditions(
    previous: Sequence[Condition | Mapping[str, Any]] | None,
    wanted: Sequence[Cond],
    *,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]: ...


def merge_conditions(
    previous: Sequence[Condition | Mapping[str, Any]] | None,
    wanted: Sequence[Condition] | Sequence[Cond],
    *,
    generation: int | None,
    now: str | None = None,
) -> list[Condition] | list[dict[str, Any]]:
    """The condition list to write: `wanted` in order, keeping transition times of unchanged statuses.

    Conditions of other types found in `previous` (set by someone else) are kept after ours. Given `Cond`s
    and `now` (the Kuscia statuses, until they move to the models), the list comes back as dicts.
    """
    if now is not None:
        decided = [c.at(now) for c in wanted if isinstance(c, Cond)]
        return [c.wire() for c in merge_conditions(previous, decided, generation=generation)]
    before = {c.type: c for c in parse_conditions(previous)}
    ours = {c.type for c in wanted}
    out: list[Condition] = []
    for c in wanted:
        assert isinstance(c, Condition)
        old = before.get(c.type)
        since = (
            old.last_transition_time if old is not None and old.status == c.status else c.last_transition_time
        )
        out.append(c.model_copy(update={"last_transition_time": since, "observed_generation": generation}))
    out.extend(c for t, c in before.items() if t not in ours)
    return out


@overload
def summarize(
    parts: Sequence[Condition], *, ready_reason: str, ready_message: str, now: str
) -> Condition: ...


@overload
def summarize(parts: Sequence[Cond], *, ready_reason: str, ready_message: str) -> Cond: ...


def summarize(
    parts: Sequence[Condition] | Sequence[Cond],
    *,
    ready_reason: str,
    ready_message: str,
    now: str | None = None,
) -> Condition | Cond:
    """`Ready` from its dependencies: False if any is False, Unknown if any is Unknown, else True."""
    if now is None:
        ready = summarize(
            [c.at("") for c in parts if isinstance(c, Cond)],
            ready_reason=ready_reason,
            ready_message=ready_message,
            now="",
        )
        return Cond(ready.type, ready.status, ready.reason, ready.message)
    for status in ("False", "Unknown"):
        for c in parts:
            if c.status == status:
                message = f"{c.type}: {c.message}" if c.message else c.type
                return condition("Ready", c.status, c.reason, message, now=now)
    return condition("Ready", "True", ready_reason, ready_message, now=now)


@dataclass(frozen=True)
class Cond:
    """Temporary: the decided condition of status/kuscia.py and the Kuscia reconcilers, which still build
    statuses as dicts. Delete when they use `condition` and the status models."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""

    def at(self, now: str) -> Condition:
        return condition(self.type, self.status, self.reason, self.message, now=now)
