"""Keys, tokens and certificates the identity tests make themselves (PyJWT, cryptography).

Nothing here is a fixture secret checked into the repository: every key and certificate is
generated per test session, and tokens are signed by the tests, never by the server.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ISSUER = "https://id.example.test"
AUDIENCE = "runstream"


def pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pem_private(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class Keys:
    """An RSA key pair (the server verifies RS256 with its public half), a stranger's RSA
    key (bad signatures), and an HS256 secret; the public parts written under `folder`."""

    signing: rsa.RSAPrivateKey
    stranger: rsa.RSAPrivateKey
    secret: bytes
    public_key_file: Path
    secret_file: Path

    @classmethod
    def make(cls, folder: Path) -> Keys:
        folder.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        secret = base64.b64encode(hashlib.sha256(str(time.time_ns()).encode()).digest())
        public_key_file = folder / "jwt-public.pem"
        public_key_file.write_bytes(pem_public(key))
        secret_file = folder / "jwt-secret"
        secret_file.write_bytes(secret + b"\n")
        return cls(key, stranger, secret, public_key_file, secret_file)

    def token(self, roles: Sequence[str] = ("viewer",), **overrides: Any) -> str:
        """A valid RS256 token (sub alice, tenant acme, iss/aud set) with claim overrides."""
        return jwt.encode(claims(roles, **overrides), self.signing, algorithm="RS256")

    def hs_token(self, roles: Sequence[str] = ("viewer",), **overrides: Any) -> str:
        return jwt.encode(claims(roles, **overrides), self.secret, algorithm="HS256")


def claims(roles: Iterable[str] = ("viewer",), **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "tenant": "acme",
        "roles": list(roles),
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def write_jwks(path: Path, keys: list[tuple[str | None, ec.EllipticCurvePrivateKey]]) -> None:
    """A JWKS file of these keys' public halves (under their kid; None: without one)."""
    jwks = {
        "keys": [
            {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(k.public_key()))}
            | ({"kid": kid} if kid else {})
            for kid, k in keys
        ]
    }
    path.write_text(json.dumps(jwks))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(payload: dict[str, Any]) -> str:
    """`alg: none`: a token with no signature at all."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(payload).encode())}."


def hmac_token(payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 token made by hand, so any bytes (a public key's PEM) can be the secret."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


@dataclass
class Pki:
    """A CA, a server certificate for 127.0.0.1/localhost, and a client certificate."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def make(cls, folder: Path, server_names: Sequence[str] = ("localhost", "127.0.0.1")) -> Pki:
        """Certificates under `folder`; the server's names `server_names` (DNS names or IP
        addresses, the first also its common name)."""
        folder.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Runstream test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )

        def leaf(name: str, server: bool) -> tuple[bytes, bytes]:
            key = ec.generate_private_key(ec.SECP256R1())
            builder = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            )
            if server:
                builder = builder.add_extension(
                    x509.SubjectAlternativeName([_general_name(n) for n in server_names]),
                    critical=False,
                ).add_extension(
                    x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                    critical=False,
                )
            else:
                builder = builder.add_extension(
                    x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                    critical=False,
                )
            cert = builder.sign(ca_key, hashes.SHA256())
            return cert.public_bytes(serialization.Encoding.PEM), pem_private(key)

        paths = {
            "ca_file": folder / "ca.pem",
            "server_cert": folder / "server.pem",
            "server_key": folder / "server-key.pem",
            "client_cert": folder / "client.pem",
            "client_key": folder / "client-key.pem",
        }
        paths["ca_file"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        cert, key = leaf(server_names[0], server=True)
        paths["server_cert"].write_bytes(cert)
        paths["server_key"].write_bytes(key)
        cert, key = leaf("runstream-client", server=False)
        paths["client_cert"].write_bytes(cert)
        paths["client_key"].write_bytes(key)
        return cls(**paths)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


async def start_server(folder: Path, security: Any, **config: Any) -> Any:
    """A started in-process server on 127.0.0.1:0 with `security` (a SecurityConfig)."""
    from runstream_server.app import RunstreamServer, ServerConfig

    server = RunstreamServer(
        ServerConfig(
            address="127.0.0.1:0",
            store_path=folder / "runstream.db",
            security=security,
            **config,
        )
    )
    await server.start()
    return server


def rs256_auth(keys: Keys) -> Any:
    """The SecurityConfig of a server verifying the tests' RS256 tokens (iss and aud set)."""
    from runstream_server.auth.edge import SecurityConfig
    from runstream_server.auth.tokens import AuthConfig

    auth = AuthConfig(public_key_file=keys.public_key_file, issuer=ISSUER, audience=AUDIENCE)
    return SecurityConfig(auth=auth)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """Keys for one test module (RSA generation is the slow part)."""
    return Keys.make(tmp_path_factory.mktemp("keys"))


@pytest.fixture
async def secured(tmp_path: Path, keys: Keys, server_config: Any) -> AsyncIterator[Any]:
    """A server that verifies the tests' RS256 tokens, with issuer and audience, over the
    store the test runs with (tests/server: SQLite and Redis)."""
    from runstream_server.app import RunstreamServer

    server = RunstreamServer(server_config(tmp_path / "runstream.db", security=rs256_auth(keys)))
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0.5)
