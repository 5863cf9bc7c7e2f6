"""The Kuscia API client (servings, jobs, AppImages) and the BFIA job-create client.

Request bodies are plain dicts already in wire shape (snake_case, as Kuscia's messages name their
fields); results are the ``data`` payloads.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from .credentials import KusciaCredentials
from .errors import (
    KusciaAlreadyExists,
    KusciaCredentialsError,
    KusciaNotFound,
    KusciaRejected,
    KusciaTLSError,
    KusciaUnavailable,
    error_from_status,
    missing_object_name,
)
from .transport import CallHook, _http_error, _json_body, _Poster, parse_int64

logger = logging.getLogger("paddle_kuscia.adapters.kuscia")

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


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class _PooledClient:
    """An async context manager over one pool of connections (`_poster`), closed on exit."""

    _poster: _Poster

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._poster.aclose()


class KusciaClient(_PooledClient):
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

    @property
    def closed(self) -> bool:
        return self._poster.closed

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

    async def _delete(self, route: str, body: Mapping[str, Any], *, missing_ok: bool) -> None:
        """With `missing_ok`, an id Kuscia does not know counts as deleted."""
        try:
            await self.call(route, body)
        except KusciaNotFound:
            if not missing_ok:
                raise

    # -- servings ---------------------------------------------------------------------------------

    async def create_serving(self, request: Mapping[str, Any]) -> None:
        await self.call(SERVING_CREATE, request)

    async def update_serving(self, request: Mapping[str, Any]) -> None:
        await self.call(SERVING_UPDATE, request)

    async def delete_serving(self, serving_id: str, *, missing_ok: bool = False) -> None:
        await self._delete(SERVING_DELETE, {"serving_id": serving_id}, missing_ok=missing_ok)

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
        await self._delete(JOB_DELETE, {"job_id": job_id}, missing_ok=missing_ok)

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


class BfiaClient(_PooledClient):
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
        data: dict[str, Any] = await self._poster.post(
            BFIA_JOB_CREATE, body, lambda response, after: self._decode(BFIA_JOB_CREATE, response, after)
        )
        return data
