"""Reads for `describe`, with the user's kubeconfig (read-only: GET and LIST only).

The operator's own client (adapters/kube.py) is async and prefers the in-cluster ServiceAccount; a one-shot
command run by a person wants the kubeconfig and its current namespace, which the `kubernetes` package
resolves, so the few reads here use it directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from .tree import REVISION_LABEL

PADDLESERVICES = ("elasticserving.paddlepaddle.org", "v1", "paddleservices")
KUSCIA_JOBS = ("kuscia.secretflow", "v1alpha1", "kusciajobs")
KUSCIA_DEPLOYMENTS = ("kuscia.secretflow", "v1alpha1", "kusciadeployments")
KNATIVE = ("serving.knative.dev", "v1")
USER_AGENT = "paddle-kuscia-describe"


class ReadError(Exception):
    """An object could not be read (not found, forbidden, unreachable), with a message for the user."""


@dataclass
class Cluster:
    api: client.CustomObjectsApi
    namespace: str  # the kubeconfig context's namespace, or "default"


def connect(context: str | None = None) -> Cluster:
    try:
        # KUBECONFIG as it is now (the kubernetes package reads it once, when imported); a list is merged.
        path = os.environ.get("KUBECONFIG") or None
        config.load_kube_config(config_file=path, context=context)
        contexts, active = config.list_kube_config_contexts(config_file=path)
        chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
        namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
    except config.ConfigException:
        try:
            config.load_incluster_config()
        except config.ConfigException as err:
            raise ReadError(f"no usable kubeconfig and not in a cluster: {err}") from None
        namespace = "default"
    api = client.ApiClient()
    api.user_agent = USER_AGENT  # so that an audit log tells describe's reads from other clients'
    return Cluster(client.CustomObjectsApi(api), namespace)


def _get(
    cluster: Cluster, resource: tuple[str, str, str], namespace: str, name: str
) -> dict[str, Any] | None:
    group, version, plural = resource
    try:
        return cluster.api.get_namespaced_custom_object(group, version, namespace, plural, name)  # type: ignore[no-any-return]
    except ApiException as err:
        if err.status == 404:
            return None
        raise ReadError(
            f"cannot read {plural}.{group} {namespace}/{name}: HTTP {err.status} {err.reason}"
        ) from None


def _list(
    cluster: Cluster, resource: tuple[str, str, str], namespace: str, selector: str
) -> list[dict[str, Any]]:
    group, version, plural = resource
    try:
        found = cluster.api.list_namespaced_custom_object(
            group, version, namespace, plural, label_selector=selector
        )
    except ApiException as err:
        if err.status == 404:  # the resource itself is not installed (no Knative)
            return []
        raise ReadError(
            f"cannot list {plural}.{group} in {namespace}: HTTP {err.status} {err.reason}"
        ) from None
    return list(found.get("items") or [])


def read_paddleservice(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    """The PaddleService and, on Knative, its Knative Service, Revisions and Route (same name and namespace)."""
    ps = _get(cluster, PADDLESERVICES, namespace, name)
    if ps is None:
        raise ReadError(f'PaddleService "{name}" not found in namespace "{namespace}"')
    out: dict[str, Any] = {"ps": ps}
    if ((ps.get("spec") or {}).get("backend") or "knative") == "knative":
        out["knative_service"] = _get(cluster, (*KNATIVE, "services"), namespace, name)
        out["revisions"] = _list(cluster, (*KNATIVE, "revisions"), namespace, f"{REVISION_LABEL}={name}")
        out["route"] = _get(cluster, (*KNATIVE, "routes"), namespace, name)
    return out


def read_kuscia(cluster: Cluster, kind: str, namespace: str, name: str) -> dict[str, Any]:
    resource = KUSCIA_JOBS if kind == "KusciaJob" else KUSCIA_DEPLOYMENTS
    obj = _get(cluster, resource, namespace, name)
    if obj is None:
        raise ReadError(f'{kind} "{name}" not found in namespace "{namespace}"')
    return obj
