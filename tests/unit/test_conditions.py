"""metav1.Condition bookkeeping shared by every status: transition times, generations, Ready's summary."""

from __future__ import annotations

from paddle_kuscia.models.paddleservice import Condition
from paddle_kuscia.status.conditions import (
    MAX_MESSAGE,
    Cond,
    condition,
    merge_conditions,
    parse_conditions,
    summarize,
)

NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"


def test_a_condition_keeps_its_transition_time_while_its_status_stays() -> None:
    [first] = merge_conditions(None, [condition("A", "True", "Up", "fine", now=NOW)], generation=1)
    [again] = merge_conditions([first], [condition("A", "True", "StillUp", "other", now=LATER)], generation=2)
    assert (again.last_transition_time, again.reason, again.message) == (NOW, "StillUp", "other")
    assert again.observed_generation == 2


def test_a_condition_moves_its_transition_time_when_its_status_flips() -> None:
    [first] = merge_conditions(None, [condition("A", "True", "Up", now=NOW)], generation=1)
    [flipped] = merge_conditions([first.wire()], [condition("A", "False", "Down", now=LATER)], generation=1)
    assert (flipped.status, flipped.last_transition_time) == ("False", LATER)


def test_ours_come_in_the_order_decided_and_others_are_kept_after_them() -> None:
    theirs = {"type": "Z", "status": "True", "reason": "R", "message": "", "lastTransitionTime": NOW}
    merged = merge_conditions(
        [theirs],
        [condition("B", "True", "R", now=NOW), condition("A", "True", "R", now=NOW)],
        generation=None,
    )
    assert [c.type for c in merged] == ["B", "A", "Z"]
    assert merged[2].wire() == theirs  # untouched, no generation added
    assert merged[0].observed_generation is None and "observedGeneration" not in merged[0].wire()


def test_entries_that_are_no_conditions_are_left_out() -> None:
    assert parse_conditions([{"type": "A"}, {"status": "True"}]) == []


def test_messages_are_cut_at_the_api_limit() -> None:
    assert len(condition("A", "True", "R", "x" * (MAX_MESSAGE + 10), now=NOW).message) == MAX_MESSAGE


def test_ready_is_false_if_any_dependency_is_false_even_after_an_unknown_one() -> None:
    parts = [
        condition("A", "Unknown", "Pending", "wait", now=NOW),
        condition("B", "False", "Broken", "boom", now=NOW),
    ]
    ready = summarize(parts, ready_reason="Serving", ready_message="ok", now=LATER)
    assert (ready.type, ready.status, ready.reason, ready.message) == ("Ready", "False", "Broken", "B: boom")
    assert ready.last_transition_time == LATER


def test_ready_is_unknown_if_a_dependency_is_unknown_and_none_false() -> None:
    parts = [condition("A", "True", "Up", now=NOW), condition("B", "Unknown", "Pending", now=NOW)]
    ready = summarize(parts, ready_reason="Serving", ready_message="ok", now=NOW)
    assert (ready.status, ready.reason, ready.message) == ("Unknown", "Pending", "B")


def test_ready_is_true_with_the_given_reason_when_every_dependency_is() -> None:
    parts = [condition("A", "True", "Up", now=NOW), condition("B", "True", "Up", now=NOW)]
    ready = summarize(parts, ready_reason="Serving", ready_message="All good.", now=NOW)
    assert (ready.status, ready.reason, ready.message) == ("True", "Serving", "All good.")


def test_the_dict_form_gives_the_same_conditions_as_the_models() -> None:
    """The Kuscia statuses still use `Cond` and dicts; they must get what the models would give."""
    previous = [condition("Ready", "True", "Serving", "ok", now=NOW).wire()]
    wanted = [Cond("Ready", "True", "Serving", "ok"), Cond("X", "False", "Broken", "boom")]
    as_dicts = merge_conditions(previous, wanted, generation=3, now=LATER)
    as_models = merge_conditions(previous, [c.at(LATER) for c in wanted], generation=3)
    assert as_dicts == [c.wire() for c in as_models]
    assert [Condition.model_validate(c).last_transition_time for c in as_dicts] == [NOW, LATER]
    ready = summarize(wanted, ready_reason="Serving", ready_message="ok")
    assert ready == Cond("Ready", "False", "Broken", "X: boom")
