"""The troubleshooting table as data: what a condition reason means and what to do about it. Pure."""

from __future__ import annotations

ADVICE: dict[str, str] = {
    "InvalidSpec": "The spec passed the schema but cannot be built; the message names the field. Fix the spec.",
    "KnativeServiceConflict": (
        "A Knative Service with this name exists and is not owned by this PaddleService. "
        "Delete or rename that Knative Service, or rename the PaddleService."
    ),
    "KnativeServiceRejected": "Knative's admission refused the service; its message says why. Fix the spec.",
    "RevisionNotReady": (
        "A rollout step is in flight; the previous revision keeps serving. If it lasts, look at the "
        "revision's pods: kubectl get pods -n {namespace} -l serving.knative.dev/revision={revision}"
    ),
    "TrafficMigrating": "A ready revision is receiving its traffic; Knative finishes this within seconds.",
    "UnsupportedOnKuscia": "Remove the named Knative-only fields, or use backend: knative.",
    "KusciaNotConfigured": (
        "Start the operator with --kuscia-credentials-dir and --kuscia-url, or name a connection Secret "
        "that has ca.crt, tls.crt, tls.key and token."
    ),
    "KusciaUnavailable": (
        "The Kuscia API is unreachable or failing; the operator retries with backoff and recovers by itself. "
        "Check that KusciaAPI (port 8082) runs and is reachable from the operator."
    ),
    "KusciaAuthFailed": (
        "Kuscia refused the token or client certificate. Update the credentials Secret with Kuscia's "
        "current token and certificates."
    ),
    "KusciaTLSFailed": (
        "TLS with the Kuscia API failed: check ca.crt, and set server-name in the connection Secret when the "
        "URL's host is not in Kuscia's certificate."
    ),
    "KusciaRequestRejected": (
        "Kuscia refused the request (its code and message are above); it is not retried until the spec changes."
    ),
    "ImmutableAfterSubmit": "Kuscia jobs cannot change: delete and re-create the KusciaJob to run the new spec.",
    "JobMissing": "Kuscia no longer knows this job; delete and re-create the KusciaJob to run it again.",
    "ServingMissing": "Kuscia lost the serving; the operator creates it again.",
}

CANARY_FAILED = (
    "The canary revision failed and receives no traffic; {serving}. Fix spec.canary, "
    "or roll back with canaryTrafficPercent: 0 (or remove spec.canary)."
)
DEFAULT_FAILED = (
    "The default revision failed. Fix spec.default (image, tag, arg, port, resources); a previously ready "
    "default revision keeps serving meanwhile."
)
REVISION_PENDING = (
    "Knative is starting it. If it lasts, look at its pods: "
    "kubectl get pods -n {namespace} -l serving.knative.dev/revision={revision}"
)
NO_STATUS = (
    "The operator has not written a status: check that it runs and watches this namespace "
    "(kubectl -n paddle-kuscia-system get pods) and that it holds the leader Lease."
)
STALE_STATUS = (
    "The operator has not caught up with the latest spec yet; if this lasts, check the operator "
    "(kubectl -n paddle-kuscia-system logs deploy/paddle-kuscia-operator)."
)
KNATIVE_SERVICE_MISSING = (
    "The operator creates it; if it stays missing, check the operator's log and its RBAC on "
    "serving.knative.dev services."
)
PARTY_UNAVAILABLE = (
    "This party's replicas are not available in its Kuscia domain: look at the domain's pods, image and "
    "resources on the Kuscia side."
)
JOB_FAILED = (
    "Kuscia's message above says why. Kuscia jobs cannot change: fix the cause, then delete and re-create "
    "the KusciaJob."
)
NOT_MIRRORED = (
    'The operator mirrors only objects annotated paddle-kuscia.io/mirror: "true" (or all, with '
    "--mirror-kuscia-resources)."
)


class _Placeholders(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return key.upper()


def fill(text: str, **values: str) -> str:
    """`text` with {namespace}, {revision}... filled in (unknown ones shown as NAMESPACE, REVISION...)."""
    return text.format_map(_Placeholders(values))


def advice_for(reason: str | None, **values: str) -> str:
    """What to do about a condition reason; empty when the table has no row for it."""
    return fill(ADVICE.get(reason or "", ""), **values)
