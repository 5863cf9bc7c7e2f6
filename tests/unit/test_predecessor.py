"""A Knative Service left by a deleted PaddleService of the same name is recognised as garbage, nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from paddle_kuscia.builders.knative import Owner
from paddle_kuscia.reconcile.knative_serving import owned_by_predecessor

OWNER = Owner("svc", "ns", "uid-new", {})


def ksvc(**ref: Any) -> dict[str, Any]:
    base = {
        "apiVersion": "elasticserving.paddlepaddle.org/v1",
        "kind": "PaddleService",
        "name": "svc",
        "uid": "uid-old",
        "controller": True,
    }
    return {"metadata": {"name": "svc", "uid": "k-1", "ownerReferences": [{**base, **ref}]}}


def test_a_deleted_predecessor_of_the_same_name_owns_garbage() -> None:
    assert owned_by_predecessor(ksvc(), OWNER)


@pytest.mark.parametrize(
    "ref",
    [
        {"uid": "uid-new"},  # ours
        {"name": "other"},  # another PaddleService's
        {"kind": "Deployment", "apiVersion": "apps/v1"},  # someone else's
        {"controller": False},  # not controlled by it
    ],
)
def test_anything_else_is_not_taken_for_garbage(ref: dict[str, Any]) -> None:
    assert not owned_by_predecessor(ksvc(**ref), OWNER)


def test_an_unowned_knative_service_is_not_garbage() -> None:
    assert not owned_by_predecessor({"metadata": {"name": "svc", "uid": "k-1"}}, OWNER)
