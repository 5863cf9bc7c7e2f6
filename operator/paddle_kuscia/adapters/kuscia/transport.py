"""One pooled HTTPS client and the retry loop the Kuscia and BFIA clients share.

Transport errors and HTTP 5xx are retried with exponential backoff and jitter within one call; a
certificate problem is reported at once (it does not fix itself within a second). Secrets never reach
error messages or logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from .errors import KusciaAuthError, KusciaError, KusciaRejected, KusciaTLSError, KusciaUnavailable

logger = logging.getLogger("paddle_kuscia.adapters.kuscia")

#: ``on_call(route, outcome, seconds)``; outcome: ``ok``, ``error_code``, ``http_<status>``, ``transport``.
CallHook = Callable[[str, str, float], None]

# TLS alerts a server sends when it refuses our client certificate.
_CLIENT_CERT_ALERTS = (
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "HANDSHAKE_FAILURE",
    "ACCESS_DENIED",
    "DECRYPT_ERROR",
)


def _exception_chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _tls_problem(exc: BaseException) -> str | None:
    """Explain a certificate problem hidden in an httpx exception chain, or None when there is none.

    Only verification failures and certificate alerts count: other TLS hiccups (a peer vanishing
    mid-handshake, would-block states seen while timing out) are ordinary transport errors.
    """
    if isinstance(exc, httpx.TimeoutException):
        return None
    for item in _exception_chain(exc):
        if isinstance(item, ssl.SSLCertVerificationError):
            detail = item.verify_message or item.reason or "verification failed"
            return f"TLS verification of the server certificate failed against the configured CA ({detail})"
        if isinstance(item, ssl.SSLError) and not isinstance(item, _BENIGN_SSL_ERRORS):
            reason = (item.reason or "").upper()
            if any(alert in reason for alert in _CLIENT_CERT_ALERTS):
                return f"the server refused the TLS handshake, likely our client certificate ({item.reason})"
    return None


_BENIGN_SSL_ERRORS = (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


class _Poster:
    """A pooled httpx client plus the retry loop shared by the Kuscia and BFIA clients."""

    def __init__(
        self,
        base_url: str,
        *,
        verify: ssl.SSLContext | bool,
        headers: Mapping[str, str],
        timeout: float,
        retries: int,
        backoff_base: float,
        on_call: CallHook | None,
        secrets: Sequence[str] = (),
        extensions: Mapping[str, Any] | None = None,
        max_backoff: float = 10.0,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self._retries = retries
        self._backoff_base = backoff_base
        self._max_backoff = max_backoff
        self._on_call = on_call
        self._secrets = [s for s in secrets if s]
        self._extensions = dict(extensions or {})
        self._http = httpx.AsyncClient(
            base_url=base_url,
            verify=verify,
            headers=dict(headers),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            follow_redirects=False,
            trust_env=False,
        )

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    async def aclose(self) -> None:
        await self._http.aclose()

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _report(self, route: str, outcome: str, started: float) -> None:
        if self._on_call is None:
            return
        try:
            self._on_call(route, outcome, time.perf_counter() - started)
        except Exception:  # a broken metrics hook must not break Kuscia calls
            logger.warning("Ignored failing on_call hook route=%s outcome=%s", route, outcome, exc_info=True)

    def _delay(self, attempt: int) -> float:
        delay = min(self._max_backoff, self._backoff_base * (2 ** (attempt - 1)))
        return float(delay + random.uniform(0, delay * 0.1))

    async def post(
        self, route: str, body: Mapping[str, Any], decode: Callable[[httpx.Response, bool], Any]
    ) -> Any:
        """POST with retries on transport errors and HTTP 5xx; ``decode`` turns a non-5xx answer into
        a result or raises a KusciaError."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        attempts = self._retries + 1
        ambiguous = False
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self._delay(attempt))
            last = attempt == attempts - 1
            started = time.perf_counter()
            try:
                response = await self._http.post(route, content=payload, extensions=self._extensions)
            except httpx.TransportError as exc:
                self._report(route, "transport", started)
                tls = _tls_problem(exc)
                if tls is not None:
                    # Certificates do not fix themselves within a second: fail now, let the caller back off.
                    raise KusciaTLSError(None, self._scrub(tls), route, after_retry=ambiguous) from exc
                text = self._scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
                if last:
                    raise KusciaUnavailable(
                        None, f"unreachable after {attempts} attempt(s): {text}", route, after_retry=ambiguous
                    ) from exc
                logger.warning(
                    "Retrying Kuscia call route=%s attempt=%d/%d reason=%s",
                    route,
                    attempt + 1,
                    attempts,
                    text,
                )
                # Only a failure before the request was written is known not to have reached Kuscia.
                ambiguous = ambiguous or not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                continue
            status = response.status_code
            if status >= 500:
                self._report(route, f"http_{status}", started)
                if last:
                    raise KusciaUnavailable(
                        None, f"HTTP {status} after {attempts} attempt(s)", route, after_retry=True
                    )
                logger.warning(
                    "Retrying Kuscia call route=%s attempt=%d/%d reason=http_%d",
                    route,
                    attempt + 1,
                    attempts,
                    status,
                )
                ambiguous = True
                continue
            try:
                result = decode(response, ambiguous)
            except KusciaError as exc:
                outcome = f"http_{status}" if exc.code is None and status != 200 else "error_code"
                self._report(route, outcome, started)
                exc.message = self._scrub(exc.message)
                exc.args = (exc._render(),)
                raise
            self._report(route, "ok", started)
            return result
        raise AssertionError("unreachable")  # pragma: no cover


def _http_error(route: str, response: httpx.Response, after_retry: bool) -> KusciaError | None:
    """Errors signalled by the HTTP status alone (middleware answers, not business outcomes)."""
    status = response.status_code
    if status == 401:
        return KusciaAuthError(None, "HTTP 401: the Token header was refused", route, after_retry=after_retry)
    if status == 404:
        return KusciaRejected(
            None,
            "HTTP 404: route not served (wrong path or method, or not a Kuscia API)",
            route,
            after_retry=after_retry,
        )
    return None


def _json_body(route: str, response: httpx.Response, after_retry: bool) -> Any:
    try:
        return response.json()
    except ValueError:
        raise KusciaUnavailable(
            None,
            f"HTTP {response.status_code} answer is not JSON ({len(response.content)} bytes)",
            route,
            after_retry=after_retry,
        ) from None


def parse_int64(value: Any) -> int:
    """Kuscia sends 64-bit integers as JSON strings and omits zeros in some encodings: accept all."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return int(str(value).strip())
