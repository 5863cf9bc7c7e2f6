"""Reconcile one PaddleService: parse it, then hand it to its backend's path.

A Kuscia-backed PaddleService (or one still holding the Kuscia finalizer) goes to `kuscia_serving`, every
other to `knative_serving`; the two paths do not know each other (`.importlinter`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..models.paddleservice import Backend, PaddleService
from ..runtime.cache import Key
from ..runtime.context import Context
from .common import refuse_paddleservice
from .knative_serving import reconcile_knative_serving
from .kuscia_serving import FINALIZER, reconcile_kuscia_serving


def _validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(p) for p in e["loc"])
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


async def reconcile_paddleservice(ctx: Context, key: Key) -> float | None:
    body = ctx.paddleservices.get(key)
    if body is None:
        return None
    meta = body["metadata"]
    try:
        ps = PaddleService.model_validate(body)
    except ValidationError as err:
        await refuse_paddleservice(
            ctx, body, "InvalidSpec", f"The spec is invalid: {_validation_message(err)}"
        )
        return None
    if ps.spec.effective_backend == Backend.KUSCIA or _has_kuscia_finalizer(body):
        return await reconcile_kuscia_serving(ctx, key, body, ps)
    if meta.get("deletionTimestamp"):
        return None  # the Knative Service goes with it through its ownerReference
    return await reconcile_knative_serving(ctx, key, body, ps)


def _has_kuscia_finalizer(body: dict[str, Any]) -> bool:
    return FINALIZER in (body["metadata"].get("finalizers") or [])
