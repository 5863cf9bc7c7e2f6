"""Shared pydantic plumbing for the custom resources: camelCase on the wire, schema hints for the CRD generator.

The CRDs in crds/ are generated from these models (hack/gen-crds.py), so every constraint written here is
enforced by the API server at apply time, and the operator parses objects with the very same rules.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """A Kubernetes-style object part: camelCase keys, unknown keys kept (the API server already pruned them)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    def wire(self) -> dict[str, Any]:
        """The object as it appears in Kubernetes (camelCase, unset fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# Schema fragments understood by the CRD generator (passed through as-is into the OpenAPI schema).
INT_OR_STRING: dict[str, Any] = {"x-kubernetes-int-or-string": True}
PRESERVE_UNKNOWN: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
QUANTITY_MAP: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
        "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
    },
}

# Kubernetes name rules, reused by several kinds.
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Kuscia's K3sRegex: ids of servings, jobs and domains.
KUSCIA_ID = r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$"

# The copy of the whole object that client-side `kubectl apply` keeps in an annotation: the caches drop it, and
# nothing the operator decides may depend on it.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
