"""Only our fields are compared with the live object; status patches carry only what changed."""

from __future__ import annotations

from paddle_kuscia.builders.compare import first_difference, is_subset, merge_patch


def test_fields_defaulted_by_others_do_not_count_as_drift() -> None:
    desired = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    live = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "c", "image": "i", "resources": {}}],
                    "enableServiceLinks": False,
                }
            }
        },
        "status": {"x": 1},
    }
    assert is_subset(desired, live)
    assert first_difference(desired, live) is None


def test_a_changed_or_removed_list_entry_is_drift() -> None:
    desired = {"traffic": [{"percent": 90}, {"percent": 10}]}
    assert not is_subset(desired, {"traffic": [{"percent": 100}, {"percent": 0}]})
    assert first_difference(desired, {"traffic": [{"percent": 90}]}) == ".traffic"
    assert is_subset({"n": 1}, {"n": "1"})


def test_merge_patch_removes_keys_that_disappeared() -> None:
    old = {"url": "u", "canary": {"name": "c"}, "conditions": [1], "traffic": [1, 2]}
    new = {"url": "u", "conditions": [1], "traffic": [1]}
    assert merge_patch(old, new) == {"canary": None, "traffic": [1]}
    assert merge_patch(new, new) == {}
