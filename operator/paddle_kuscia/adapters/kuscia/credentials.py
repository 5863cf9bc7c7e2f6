"""Where and how to reach one Kuscia API: URL, CA, client certificate and key, token; the TLS context."""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..keyfiles import IN_MEMORY, memory_file
from .errors import KusciaCredentialsError

# Header values must be visible ASCII; anything else would make httpx raise with the value in the message.
_TOKEN_OK = re.compile(r"^[\x21-\x7e]+$")


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
        # load_cert_chain only reads files: the pair lives in a memfd (`keyfiles`), or else in a 0600 temp file,
        # for the duration of the call.
        pair = self.cert_pem.rstrip(b"\n") + b"\n" + self.key_pem
        if IN_MEMORY:
            fd, name = memory_file("kuscia-client", pair)
        else:
            fd, name = tempfile.mkstemp(prefix="kuscia-client-", suffix=".pem")
            with open(fd, "wb", closefd=False) as handle:
                handle.write(pair)
        try:
            context.load_cert_chain(name)
        except ssl.SSLError as exc:
            raise KusciaCredentialsError(
                f"client certificate/key could not be loaded: {exc.reason or type(exc).__name__}"
            ) from None
        finally:
            os.close(fd)
            if not IN_MEMORY:
                os.unlink(name)
        return context
