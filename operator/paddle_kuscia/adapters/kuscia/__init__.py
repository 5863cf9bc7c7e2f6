"""Async client for the Kuscia API (KusciaAPI) and Kuscia's BFIA job-create endpoint.

Split by concern: ``errors`` (Kuscia's answers as typed exceptions), ``credentials`` (URL, CA, client
certificate, token and the TLS context; the server certificate is always verified), ``transport`` (the
pooled HTTPS client and its retries) and ``clients`` (the routes). The names below are the public
ones; the helpers that turn Kuscia's answers into them (``error_from_status``, ``parse_int64``, ...)
stay in their modules.
"""

from .clients import (
    BATCH_LIMIT,
    BFIA_JOB_CREATE,
    HEALTH,
    SERVING_BATCH_STATUS,
    BfiaClient,
    KusciaClient,
)
from .credentials import KusciaCredentials
from .errors import (
    KusciaAlreadyExists,
    KusciaAuthError,
    KusciaCredentialsError,
    KusciaError,
    KusciaNotFound,
    KusciaRejected,
    KusciaTLSError,
    KusciaUnavailable,
)
from .transport import CallHook

__all__ = [
    "BATCH_LIMIT",
    "BFIA_JOB_CREATE",
    "HEALTH",
    "SERVING_BATCH_STATUS",
    "BfiaClient",
    "CallHook",
    "KusciaAlreadyExists",
    "KusciaAuthError",
    "KusciaClient",
    "KusciaCredentials",
    "KusciaCredentialsError",
    "KusciaError",
    "KusciaNotFound",
    "KusciaRejected",
    "KusciaTLSError",
    "KusciaUnavailable",
]
