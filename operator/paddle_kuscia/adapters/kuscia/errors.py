"""Kuscia's answers as a few typed exceptions: which failures may pass by themselves, which will not.

Kuscia answers business outcomes with HTTP 200 and a non-zero ``status.code``; not-found and
already-exists share their operation's code and differ only in the message.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

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
