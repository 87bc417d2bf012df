"""The sandbox's own certificate authority and the one server certificate all its servers share.

EC P-256 keys (a few milliseconds to make). The CA certificate is written to ``D/ca.pem`` for the
clients (``connection_verify`` / ``ca_bundle``); the server key never touches the disk for longer
than it takes ``SSLContext.load_cert_chain`` to read it, unless the sandbox is persisted (the demo): then both
keys are kept in its 0600 world file so that the next run has the same CA (``to_pem`` / ``from_pem``).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 (created that way, never world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


class SandboxTLS:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost."""

    def __init__(self, validity: timedelta = timedelta(days=30)) -> None:
        now = datetime.now(UTC) - timedelta(minutes=5)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "keyturn sandbox"),
                x509.NameAttribute(NameOID.COMMON_NAME, "keyturn sandbox CA"),
            ]
        )
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(self._ca_key.public_key())
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
            .add_extension(ca_ski, critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        self._server_key = ec.generate_private_key(ec.SECP256R1())
        self.server_cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name)
            .public_key(self._server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + validity)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
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
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._server_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )

    # -- kept with a persisted world (app.sandbox.persist): the same CA across runs -------------------

    def to_pem(self) -> dict[str, bytes]:
        """The CA and server keys and certificates as PEM (the keys unencrypted: keep it 0600)."""

        def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
            return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

        return {
            "ca_key": key_pem(self._ca_key),
            "ca_cert": self.ca_pem,
            "server_key": key_pem(self._server_key),
            "server_cert": self.server_cert.public_bytes(serialization.Encoding.PEM),
        }

    @classmethod
    def from_pem(cls, pems: dict[str, bytes]) -> SandboxTLS:
        """The CA and server certificate ``to_pem`` gave."""
        tls = cls.__new__(cls)
        ca_key = serialization.load_pem_private_key(pems["ca_key"], password=None)
        server_key = serialization.load_pem_private_key(pems["server_key"], password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey) or not isinstance(server_key, ec.EllipticCurvePrivateKey):
            raise ValueError("the sandbox's keys are EC keys")
        tls._ca_key, tls._server_key = ca_key, server_key
        tls.ca_cert = x509.load_pem_x509_certificate(pems["ca_cert"])
        tls.server_cert = x509.load_pem_x509_certificate(pems["server_cert"])
        return tls

    def valid_for(self) -> timedelta:
        """How long both certificates stay valid from now."""
        ends = min(self.ca_cert.not_valid_after_utc, self.server_cert.not_valid_after_utc)
        return ends - datetime.now(UTC)

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM)

    def write_ca(self, path: Path) -> Path:
        """Write the CA certificate (public) to ``path``; mode 0600 like everything the sandbox writes."""
        write_private(path, self.ca_pem)
        return path

    def server_context(self, scratch_dir: Path) -> ssl.SSLContext:
        """An ``SSLContext`` for the servers (TLS 1.2+). The key is read from a 0600 temp file, then deleted."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        chain = self.server_cert.public_bytes(serialization.Encoding.PEM) + self.ca_pem
        key = self._server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd, name = tempfile.mkstemp(prefix=".sandbox-tls-", suffix=".pem", dir=scratch_dir)
        try:
            os.close(fd)
            write_private(Path(name), key + chain)
            ctx.load_cert_chain(name)
        finally:
            os.unlink(name)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client ``SSLContext`` that trusts only the sandbox CA (for tests and the benchmark)."""
        ctx = ssl.create_default_context()
        ctx.load_verify_locations(cadata=self.ca_pem.decode("ascii"))
        return ctx
