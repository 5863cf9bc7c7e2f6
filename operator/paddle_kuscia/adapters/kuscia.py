"""Async client for the Kuscia API (kusciaapi) and the BFIA job-create endpoint.

Everything that touches Kuscia over the network lives here: mTLS with the configured CA (the server
certificate is always verified, there is no switch to turn that off), the ``Token`` header, the
``{"status": {...}, "data": ...}`` envelope, retries on transport errors and HTTP 5xx, and the mapping
of Kuscia's error codes onto a handful of typed exceptions that callers turn into kopf errors.

Request bodies are plain dicts already in wire shape (snake_case); results are the ``data`` payloads.
The wire rules are those of Kuscia's KusciaAPI (its protobuf messages and HTTP handlers).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
import random
import re
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

__all__ = [
    "BATCH_LIMIT",
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
    "error_from_status",
    "find_serving_endpoint",
    "missing_object_name",
    "normalize_party_serving_status",
    "normalize_serving_status",
    "parse_int64",
    "parse_rfc3339",
    "party_updated_replicas",
]

logger = logging.getLogger(__name__)

# Kuscia API routes (all POST; /healthZ really has a capital Z).
HEALTH = "/healthZ"
SERVING_CREATE = "/api/v1/serving/create"
SERVING_UPDATE = "/api/v1/serving/update"
SERVING_DELETE = "/api/v1/serving/delete"
SERVING_QUERY = "/api/v1/serving/query"
SERVING_BATCH_STATUS = "/api/v1/serving/status/batchQuery"
JOB_CREATE = "/api/v1/job/create"
JOB_QUERY = "/api/v1/job/query"
JOB_STOP = "/api/v1/job/stop"
JOB_DELETE = "/api/v1/job/delete"
JOB_BATCH_STATUS = "/api/v1/job/status/batchQuery"
APPIMAGE_CREATE = "/api/v1/appimage/create"
APPIMAGE_QUERY = "/api/v1/appimage/query"
BFIA_JOB_CREATE = "/v1/interconn/schedule/job/create"

#: Largest number of ids sent in one batchQuery request.
BATCH_LIMIT = 100

#: ``on_call(route, outcome, seconds)``; outcome: ``ok``, ``error_code``, ``http_<status>``, ``transport``.
CallHook = Callable[[str, str, float], None]

# Error codes (proto/api/v1alpha1/errorcode/error_code.proto).
CODE_VALIDATE = 11100
CODE_UNEXPECTED = 11101
CODE_AUTH_FAILED = 11102
CODE_MASTER_UNREACHABLE = 11103
CODE_CREATE_JOB = 11201
CODE_CREATE_SERVING = 11600
CODE_APPIMAGE_NOT_EXISTS = 13105
CODE_APPIMAGE_EXISTS = 13106
_NOT_FOUND_CODES = frozenset({11601, 11603, 11604, 11202, 11203, 11204, 11205})
_EXISTS_CODES = frozenset({CODE_CREATE_SERVING, CODE_CREATE_JOB})
_UNAVAILABLE_CODES = frozenset({CODE_UNEXPECTED, CODE_MASTER_UNREACHABLE})

_K8S_NOT_FOUND = re.compile(r'(?P<resource>[A-Za-z0-9.\-]+) "(?P<name>[^"]*)" not found')
# Header values must be visible ASCII; anything else would make httpx raise with the value in the message.
_TOKEN_OK = re.compile(r"^[\x21-\x7e]+$")
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


# --------------------------------------------------------------------------------------------------
# Exceptions
# --------------------------------------------------------------------------------------------------


class KusciaError(Exception):
    """A failed Kuscia call: ``code`` is Kuscia's ``status.code`` (None for HTTP/transport failures)."""

    retryable: ClassVar[bool] = False

    def __init__(self, code: int | None, message: str, route: str, *, after_retry: bool = False) -> None:
        self.code = code
        self.message = message
        self.route = route
        #: True when an earlier attempt of the same call may have reached Kuscia (timeout, dropped
        #: connection, 5xx). A create answered "already exists" may then be our own first attempt.
        self.after_retry = after_retry
        super().__init__(self._render())

    def _render(self) -> str:
        code = f" code={self.code}" if self.code is not None else ""
        return f"Kuscia API {self.route} failed{code}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (type(self), self.code, self.message, self.route, self.after_retry))


def _rebuild_error(
    cls: type[KusciaError], code: int | None, message: str, route: str, after: bool
) -> KusciaError:
    return cls(code, message, route, after_retry=after)


class KusciaNotFound(KusciaError):
    """The serving, job or AppImage does not exist."""


class KusciaAlreadyExists(KusciaError):
    """Create refused because an object of that name exists."""


class KusciaAuthError(KusciaError):
    """Token refused (HTTP 401) or the caller lacks permission (11102). Permanent until reconfigured."""


class KusciaRejected(KusciaError):
    """Kuscia refused the request (validation, unknown route, other business errors). Permanent."""


class KusciaUnavailable(KusciaError):
    """Kuscia could not be reached or failed internally; trying again later may succeed."""

    retryable: ClassVar[bool] = True


class KusciaTLSError(KusciaUnavailable):
    """The TLS handshake failed: server certificate not trusted, or our client certificate refused."""


class KusciaCredentialsError(ValueError):
    """Connection settings are missing or malformed. Messages never contain secret values."""


def error_from_status(route: str, code: int, message: str, *, after_retry: bool = False) -> KusciaError:
    """Map a non-zero ``status.code`` (HTTP 200 envelope) to the matching exception."""
    cls: type[KusciaError]
    if code == CODE_AUTH_FAILED:
        cls = KusciaAuthError
    elif code in _UNAVAILABLE_CODES:
        cls = KusciaUnavailable
    elif code == CODE_APPIMAGE_NOT_EXISTS or (code in _NOT_FOUND_CODES and _is_missing_object(message)):
        cls = KusciaNotFound
    elif code == CODE_APPIMAGE_EXISTS or (code in _EXISTS_CODES and " already exists" in message):
        cls = KusciaAlreadyExists
    else:
        cls = KusciaRejected
    return cls(code, message, route, after_retry=after_retry)


def _is_missing_object(message: str) -> bool:
    """True when the message says the addressed serving/job is missing (not e.g. its AppImage)."""
    match = _K8S_NOT_FOUND.search(message)
    if match:
        return not match.group("resource").startswith("appimages")
    return message.rstrip().endswith(" not found")


def missing_object_name(message: str) -> str | None:
    """Name in a Kubernetes not-found message: ``kusciajobs.kuscia.secretflow "x" not found`` -> ``x``."""
    match = _K8S_NOT_FOUND.search(message)
    return match.group("name") if match else None


# --------------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------------


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _as_text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True, repr=False)
class KusciaCredentials:
    """Where and how to reach one Kuscia API: URL, CA, client certificate/key and token.

    ``server_name`` overrides the name the server certificate is checked against (and sent as SNI),
    for when the URL's host is not among the certificate's names (Kuscia's own certificate names
    ``kusciaapi``, ``localhost`` and ``127.0.0.1``). The certificate is verified either way.
    """

    url: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    token: str
    server_name: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme != "https" or not parts.hostname:
            raise KusciaCredentialsError(f"Kuscia API URL must be https://host[:port], got {self.url!r}")
        for label, pem in (("ca.crt", self.ca_pem), ("tls.crt", self.cert_pem), ("tls.key", self.key_pem)):
            if b"-----BEGIN" not in pem:
                raise KusciaCredentialsError(f"{label} does not contain a PEM block")
        if not _TOKEN_OK.match(self.token):
            raise KusciaCredentialsError(
                "token is empty or contains characters not allowed in an HTTP header"
            )

    def __repr__(self) -> str:
        return f"KusciaCredentials(url={self.url!r}, fingerprint={self.fingerprint()[:12]!r})"

    __str__ = __repr__

    def fingerprint(self) -> str:
        """Stable sha256 of the connection identity (url, CA, certificate, key, token, server name)."""
        digest = hashlib.sha256()
        for part in (
            self.url.encode(),
            self.ca_pem,
            self.cert_pem,
            self.key_pem,
            self.token.encode(),
            (self.server_name or "").encode(),
        ):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.hexdigest()

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, bytes | str], default_url: str | None = None
    ) -> KusciaCredentials:
        """Build from a Secret's decoded data: ``ca.crt``, ``tls.crt``, ``tls.key``, ``token`` and
        optionally ``url`` and ``server-name``."""
        missing = [key for key in ("ca.crt", "tls.crt", "tls.key", "token") if key not in data]
        if missing:
            raise KusciaCredentialsError(f"Kuscia credentials lack {', '.join(missing)}")
        url = _as_text(data["url"]).strip() if "url" in data else default_url
        if not url:
            raise KusciaCredentialsError("Kuscia credentials have no url and no default URL was given")
        server_name = _as_text(data["server-name"]).strip() if "server-name" in data else None
        return cls(
            url=url,
            ca_pem=_as_bytes(data["ca.crt"]),
            cert_pem=_as_bytes(data["tls.crt"]),
            key_pem=_as_bytes(data["tls.key"]),
            # Kuscia writes the token without a newline; files made by hand often end with one.
            token=_as_text(data["token"]).strip(),
            server_name=server_name or None,
        )

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str], url: str | None = None) -> KusciaCredentials:
        """Read the same keys as files from a directory (a mounted Secret, or the test PKI)."""
        base = Path(path)
        data: dict[str, bytes | str] = {}
        for name in ("ca.crt", "tls.crt", "tls.key", "token", "url", "server-name"):
            file = base / name
            if file.is_file():
                data[name] = file.read_bytes()
        if url is not None:
            data["url"] = url
        return cls.from_mapping(data)

    def ssl_context(self) -> ssl.SSLContext:
        """Client context: trust only the configured CA, present the client certificate."""
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self.ca_pem.decode("ascii"))
        except (ssl.SSLError, ValueError) as exc:
            raise KusciaCredentialsError(f"ca.crt could not be loaded: {type(exc).__name__}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # load_cert_chain only reads files: the pair lives in a 0600 temp file for the duration of the call.
        fd, name = tempfile.mkstemp(prefix="kuscia-client-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.cert_pem.rstrip(b"\n") + b"\n" + self.key_pem)
            context.load_cert_chain(name)
        except ssl.SSLError as exc:
            raise KusciaCredentialsError(
                f"client certificate/key could not be loaded: {exc.reason or type(exc).__name__}"
            ) from None
        finally:
            os.unlink(name)
        return context


# --------------------------------------------------------------------------------------------------
# Transport with retries
# --------------------------------------------------------------------------------------------------


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
        return delay + random.uniform(0, delay * 0.1)

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


# --------------------------------------------------------------------------------------------------
# Kuscia API client
# --------------------------------------------------------------------------------------------------


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class KusciaClient:
    """Async Kuscia API client over mTLS with one pooled connection set per instance.

    ``retries`` is the number of additional attempts after the first one, made only for transport
    errors and HTTP 5xx, with exponential backoff from ``backoff_base`` seconds plus jitter.
    """

    def __init__(
        self,
        credentials: KusciaCredentials,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff_base: float = 0.5,
        on_call: CallHook | None = None,
    ) -> None:
        self.credentials = credentials
        extensions = {"sni_hostname": credentials.server_name} if credentials.server_name else None
        self._poster = _Poster(
            credentials.url,
            verify=credentials.ssl_context(),
            headers={"Token": credentials.token, "Content-Type": "application/json"},
            timeout=timeout,
            retries=retries,
            backoff_base=backoff_base,
            on_call=on_call,
            secrets=[credentials.token],
            extensions=extensions,
        )

    def __repr__(self) -> str:
        return f"KusciaClient(url={self.credentials.url!r})"

    async def __aenter__(self) -> KusciaClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._poster.closed

    async def aclose(self) -> None:
        await self._poster.aclose()

    # -- generic ----------------------------------------------------------------------------------

    async def call(self, route: str, body: Mapping[str, Any]) -> Any:
        """POST ``body`` to ``route`` and return the envelope's ``data`` (None when absent)."""
        return await self._poster.post(
            route, body, lambda response, after: self._decode(route, response, after)
        )

    @staticmethod
    def _decode(route: str, response: httpx.Response, after_retry: bool) -> Any:
        error = _http_error(route, response, after_retry)
        if error is not None:
            raise error
        if response.status_code != 200:
            raise KusciaRejected(
                None, f"unexpected HTTP {response.status_code}", route, after_retry=after_retry
            )
        body = _json_body(route, response, after_retry)
        status = body.get("status") if isinstance(body, dict) else None
        if not isinstance(status, dict):
            raise KusciaUnavailable(None, "answer has no status envelope", route, after_retry=after_retry)
        code = parse_int64(status.get("code"))
        if code != 0:
            raise error_from_status(route, code, str(status.get("message") or ""), after_retry=after_retry)
        return body.get("data")

    async def health(self) -> bool:
        """True when Kuscia answers ``/healthZ`` with ``ready: true``, False when it cannot be reached.

        A refused token, route or certificate still raises: those are configuration errors that a
        health probe must not hide behind "unhealthy".
        """
        try:
            data = await self.call(HEALTH, {})
        except KusciaTLSError:
            raise
        except KusciaUnavailable:
            return False
        return bool((data or {}).get("ready"))

    # -- servings ---------------------------------------------------------------------------------

    async def create_serving(self, request: Mapping[str, Any]) -> None:
        await self.call(SERVING_CREATE, request)

    async def update_serving(self, request: Mapping[str, Any]) -> None:
        await self.call(SERVING_UPDATE, request)

    async def delete_serving(self, serving_id: str, *, missing_ok: bool = False) -> None:
        try:
            await self.call(SERVING_DELETE, {"serving_id": serving_id})
        except KusciaNotFound:
            if not missing_ok:
                raise

    async def query_serving(self, serving_id: str) -> dict[str, Any]:
        return await self.call(SERVING_QUERY, {"serving_id": serving_id}) or {}

    async def batch_query_serving_status(self, ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Status detail per serving id; None while Kuscia has no party status yet; unknown ids absent."""
        result: dict[str, dict[str, Any] | None] = {}
        for chunk in _chunks(_unique(ids), BATCH_LIMIT):
            data = await self.call(SERVING_BATCH_STATUS, {"serving_ids": chunk}) or {}
            for entry in data.get("servings") or []:
                result[entry.get("serving_id", "")] = entry.get("status")
        return result

    # -- jobs -------------------------------------------------------------------------------------

    async def create_job(self, request: Mapping[str, Any]) -> str:
        data = await self.call(JOB_CREATE, request) or {}
        return str(data.get("job_id") or request.get("job_id") or "")

    async def query_job(self, job_id: str) -> dict[str, Any]:
        return await self.call(JOB_QUERY, {"job_id": job_id}) or {}

    async def stop_job(self, job_id: str, reason: str = "") -> None:
        await self.call(JOB_STOP, {"job_id": job_id, "reason": reason})

    async def delete_job(self, job_id: str, *, missing_ok: bool = False) -> None:
        try:
            await self.call(JOB_DELETE, {"job_id": job_id})
        except KusciaNotFound:
            if not missing_ok:
                raise

    async def batch_query_job_status(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Status detail per job id; ids Kuscia does not know are absent from the result.

        Kuscia fails the whole batch (11203) on the first unknown id, so that id is dropped and the
        rest asked again: one vanished job never hides the status of the others. Should the message
        not name the id, the chunk is asked job by job instead.
        """
        result: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(_unique(ids), BATCH_LIMIT):
            pending = chunk
            while pending:
                try:
                    data = await self.call(JOB_BATCH_STATUS, {"job_ids": pending}) or {}
                except KusciaNotFound as exc:
                    missing = missing_object_name(exc.message)
                    if missing is None or missing not in pending:
                        result.update(await self._job_status_one_by_one(pending))
                        break
                    logger.debug("Dropped unknown job from status batch job_id=%s", missing)
                    pending = [job_id for job_id in pending if job_id != missing]
                    continue
                for entry in data.get("jobs") or []:
                    result[entry.get("job_id", "")] = entry.get("status") or {}
                break
        return result

    async def _job_status_one_by_one(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        for job_id in ids:
            try:
                result[job_id] = (await self.query_job(job_id)).get("status") or {}
            except KusciaNotFound:
                continue
        return result

    # -- app images -------------------------------------------------------------------------------

    async def create_appimage(self, request: Mapping[str, Any]) -> None:
        """Body: ``name``, ``image{name,tag,id,sign}``, ``config_templates``, ``deploy_templates``."""
        await self.call(APPIMAGE_CREATE, request)

    async def query_appimage(self, name: str) -> dict[str, Any]:
        return await self.call(APPIMAGE_QUERY, {"name": name}) or {}


# --------------------------------------------------------------------------------------------------
# BFIA interconnection client
# --------------------------------------------------------------------------------------------------


class BfiaClient:
    """Client for Kuscia's BFIA job-create endpoint (``{"code": 200, "msg": ..., "data": ...}`` answers).

    ``https`` URLs use the CA and client certificate from ``credentials`` (required then); plain
    ``http`` is what Kuscia's own port 8084 serves behind its gateway.
    """

    def __init__(
        self,
        base_url: str,
        *,
        credentials: KusciaCredentials | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff_base: float = 0.5,
        on_call: CallHook | None = None,
    ) -> None:
        scheme = urlsplit(base_url).scheme
        verify: ssl.SSLContext | bool
        if scheme == "https":
            if credentials is None:
                raise KusciaCredentialsError(
                    "an https BFIA URL needs credentials for its CA and client certificate"
                )
            verify = credentials.ssl_context()
        elif scheme == "http":
            # Kuscia's BFIA port (8084) speaks plain HTTP behind its gateway. Verification stays on, so a
            # redirect or a later switch to https can never go unverified.
            verify = True
        else:
            raise KusciaCredentialsError(f"BFIA URL must be http:// or https://, got {base_url!r}")
        self.base_url = base_url
        self._poster = _Poster(
            base_url,
            verify=verify,
            headers={"Content-Type": "application/json"},
            timeout=timeout,
            retries=retries,
            backoff_base=backoff_base,
            on_call=on_call,
            secrets=[credentials.token] if credentials else [],
        )

    def __repr__(self) -> str:
        return f"BfiaClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> BfiaClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._poster.aclose()

    @staticmethod
    def _decode(route: str, response: httpx.Response, after_retry: bool) -> dict[str, Any]:
        error = _http_error(route, response, after_retry)
        if error is not None:
            raise error
        body = _json_body(route, response, after_retry)
        if not isinstance(body, dict):
            raise KusciaUnavailable(None, "answer is not a JSON object", route, after_retry=after_retry)
        code = parse_int64(body.get("code"))
        # Success carries "msg"; validation errors from the framework carry "message" instead.
        message = str(body.get("msg") or body.get("message") or "")
        if code == 200:
            return body.get("data") or {}
        if "already exists" in message.lower():
            raise KusciaAlreadyExists(code, message, route, after_retry=after_retry)
        if code >= 500:
            raise KusciaUnavailable(code, message, route, after_retry=after_retry)
        raise KusciaRejected(code, message or f"HTTP {response.status_code}", route, after_retry=after_retry)

    async def create_job(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a BFIA job; returns the answer's ``data`` (e.g. ``{"status": "PENDING"}``)."""
        return await self._poster.post(
            BFIA_JOB_CREATE, body, lambda response, after: self._decode(BFIA_JOB_CREATE, response, after)
        )


# --------------------------------------------------------------------------------------------------
# Pure helpers for reading wire status
# --------------------------------------------------------------------------------------------------


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


def party_updated_replicas(party_status: Mapping[str, Any]) -> int:
    """``updatedReplicas`` is camelCase on the wire (the proto field itself is); accept both spellings."""
    if "updatedReplicas" in party_status:
        return parse_int64(party_status["updatedReplicas"])
    return parse_int64(party_status.get("updated_replicas"))


def normalize_party_serving_status(party_status: Mapping[str, Any]) -> dict[str, Any]:
    """A PartyServingStatus with snake_case keys only, integers as int and endpoints in a stable order."""
    endpoints = [
        {
            "port_name": str(ep.get("port_name", "")),
            "scope": str(ep.get("scope", "")),
            "endpoint": str(ep.get("endpoint", "")),
        }
        for ep in party_status.get("endpoints") or []
    ]
    endpoints.sort(key=lambda ep: (ep["port_name"], ep["scope"], ep["endpoint"]))
    return {
        "domain_id": str(party_status.get("domain_id", "")),
        "role": str(party_status.get("role", "")),
        "state": str(party_status.get("state", "")),
        "replicas": parse_int64(party_status.get("replicas")),
        "available_replicas": parse_int64(party_status.get("available_replicas")),
        "unavailable_replicas": parse_int64(party_status.get("unavailable_replicas")),
        "updated_replicas": party_updated_replicas(party_status),
        "create_time": str(party_status.get("create_time", "")),
        "endpoints": endpoints,
    }


def normalize_serving_status(detail: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A ServingStatusDetail with parties sorted by (domain_id, role); None stays None (no status yet)."""
    if detail is None:
        return None
    parties = [normalize_party_serving_status(p) for p in detail.get("party_statuses") or []]
    parties.sort(key=lambda p: (p["domain_id"], p["role"]))
    return {
        "state": str(detail.get("state", "")),
        "reason": str(detail.get("reason", "")),
        "message": str(detail.get("message", "")),
        "total_parties": parse_int64(detail.get("total_parties")),
        "available_parties": parse_int64(detail.get("available_parties")),
        "create_time": str(detail.get("create_time", "")),
        "party_statuses": parties,
    }


def find_serving_endpoint(
    detail: Mapping[str, Any] | None, domain_id: str, port_name: str = "service", scope: str = "Domain"
) -> str | None:
    """The endpoint a party exposes for ``port_name``/``scope``, or None when not (yet) reported."""
    for party in (detail or {}).get("party_statuses") or []:
        if party.get("domain_id") != domain_id:
            continue
        for ep in party.get("endpoints") or []:
            if ep.get("port_name") == port_name and ep.get("scope") == scope and ep.get("endpoint"):
                return str(ep["endpoint"])
    return None


def parse_rfc3339(value: str | None) -> dt.datetime | None:
    """Kuscia times (``2024-01-17T10:18:02Z``, ``""`` when unset) as aware datetimes."""
    if not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
