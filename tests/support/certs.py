"""Throwaway PKI for tests: a CA, a Kuscia API server certificate, a client certificate and a token.

The layout mirrors what the operator reads from its credentials directory (``ca.crt``, ``tls.crt``,
``tls.key``, ``token``) plus the server half the Kuscia emulator needs (``server.crt``, ``server.key``)
and the CA key. Every certificate carries basicConstraints, keyUsage and key identifiers so the chain
also verifies under ``ssl.VERIFY_X509_STRICT`` (the default from Python 3.13 on).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_CN = "KusciaAPI"
CLIENT_CN = "KusciaAPIClient"
SERVER_DNS_NAMES = ("kusciaapi", "localhost")
SERVER_IPS = ("127.0.0.1",)
TOKEN_LENGTH = 32
_TOKEN_ALPHABET = string.ascii_letters + string.digits

FILES = ("ca.crt", "ca.key", "server.crt", "server.key", "tls.crt", "tls.key", "token")


@dataclass(frozen=True)
class Pki:
    """Paths of one generated PKI directory."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def client_cert(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def client_key(self) -> Path:
        return self.directory / "tls.key"

    @property
    def token_file(self) -> Path:
        return self.directory / "token"

    def token(self) -> str:
        return self.token_file.read_text()


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys are generated in microseconds, which keeps fixtures fast; TLS accepts them everywhere.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _validity() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(minutes=5), now + dt.timedelta(days=3650)


def _make_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before, not_after = _validity()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    server: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    not_before, not_after = _validity()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    if server:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_DNS_NAMES]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def new_token() -> str:
    """A random 32-character token, like the one Kuscia writes (no trailing newline)."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def _write(path: Path, data: bytes, *, private: bool) -> None:
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)


def generate_pki(directory: str | os.PathLike[str], *, ca_name: str = "test-kuscia-ca") -> Pki:
    """Write a fresh CA, server pair, client pair (``tls.*``) and token into ``directory``."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _make_ca(ca_name)
    server_cert, server_key = _make_leaf(ca_cert, ca_key, SERVER_CN, server=True)
    client_cert, client_key = _make_leaf(ca_cert, ca_key, CLIENT_CN, server=False)
    _write(target / "ca.crt", _cert_pem(ca_cert), private=False)
    _write(target / "ca.key", _key_pem(ca_key), private=True)
    _write(target / "server.crt", _cert_pem(server_cert), private=False)
    _write(target / "server.key", _key_pem(server_key), private=True)
    _write(target / "tls.crt", _cert_pem(client_cert), private=False)
    _write(target / "tls.key", _key_pem(client_key), private=True)
    _write(target / "token", new_token().encode(), private=True)
    return Pki(target)


def generate_foreign_pki(directory: str | os.PathLike[str]) -> Pki:
    """The same layout signed by a second, unrelated CA: its certificates must be refused by the first."""
    return generate_pki(directory, ca_name="unrelated-ca")


def ensure_pki(directory: str | os.PathLike[str]) -> Pki:
    """Generate the PKI only when one of its files is missing; keep an existing one untouched."""
    target = Path(directory)
    if all((target / name).is_file() for name in FILES):
        return Pki(target)
    return generate_pki(target)
