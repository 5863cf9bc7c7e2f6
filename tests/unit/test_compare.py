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


def _container(resources: dict) -> dict:
    return {"spec": {"template": {"spec": {"containers": [{"name": "c", "resources": resources}]}}}}


def test_resource_quantities_compare_by_value_as_knative_stores_them_canonical() -> None:
    desired = _container(
        {"requests": {"cpu": "0.2", "memory": "1Gi"}, "limits": {"cpu": 2, "memory": "1.5Gi"}}
    )
    live = _container(
        {"requests": {"cpu": "200m", "memory": "1024Mi"}, "limits": {"cpu": "2", "memory": "1536Mi"}}
    )
    assert is_subset(desired, live)
    assert first_difference(desired, live) is None


def test_a_changed_quantity_is_drift_and_named() -> None:
    desired = _container({"requests": {"cpu": "0.2"}})
    assert not is_subset(desired, _container({"requests": {"cpu": "201m"}}))
    assert first_difference(desired, _container({"requests": {"cpu": "201m"}})) == (
        ".spec.template.spec.containers[0].resources.requests.cpu"
    )


def test_only_quantity_fields_compare_by_value() -> None:
    assert not is_subset(
        {"metadata": {"annotations": {"a": "0.2"}}}, {"metadata": {"annotations": {"a": "200m"}}}
    )
    assert not is_subset({"requests": {"cpu": "0.2"}}, {"requests": {"cpu": "200m"}})  # not under resources
    volume = {"volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi"}}]}
    assert is_subset(volume, {"volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1024Mi"}}]})
    # Not a quantity on either side: compared as written.
    assert not is_subset(_container({"requests": {"cpu": "lots"}}), _container({"requests": {"cpu": "many"}}))
