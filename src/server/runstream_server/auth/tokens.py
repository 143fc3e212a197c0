"""Bearer JWT verification with a fixed algorithm allow-list per key type, and dev tokens.

The server trusts keys, not tokens: each configured key accepts only the algorithms of its
own type (an HMAC secret HS256; an RSA key RS256; an EC P-256 key ES256, P-384 ES384; an
Ed25519 key EdDSA). The token's ``alg`` header only chooses among the configured keys, so
``alg: none`` and an HS256 token "signed" with the public key are refused before any
signature is computed. Every refusal is a :class:`TokenError` whose reason names the check
that failed and never echoes the key or the token.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from runstream_server.auth.followed import FollowedFiles
from runstream_server.domain.fields import NAME, control_character
from runstream_server.principal import Principal

log = logging.getLogger("runstream.auth")

__all__ = ["MIN_SECRET_BYTES", "AuthConfig", "TokenError", "TokenVerifier", "mint_token"]

MIN_SECRET_BYTES = 32
"""Shorter HS256 secrets are refused at startup: they can be brute-forced offline."""

_REQUIRED_CLAIMS = ("exp", "sub", "tenant")
_VERIFIED_CACHE = 10_000
LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z


class TokenError(Exception):
    """A token was refused; `reason` names the failed check (safe to send to the caller),
    `code` the kind of refusal for programs (the ErrorInfo reason: ``TOKEN_MISSING``,
    ``TOKEN_EXPIRED``, ``TOKEN_NOT_YET_VALID``, else ``TOKEN_INVALID``)."""

    def __init__(self, reason: str, code: str = "TOKEN_INVALID") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class AuthConfig:
    """Where the server's verification keys live and which issuer and audience it wants."""

    secret_file: Path | None = None
    """A file holding the HS256 shared secret (at least 32 bytes; a final newline is dropped)."""
    public_key_file: Path | None = None
    """A PEM public key (RSA: RS256; EC P-256: ES256; Ed25519: EdDSA) or a JWKS JSON file."""
    issuer: str | None = None
    """When set, tokens must carry exactly this `iss`."""
    audience: str | None = None
    """When set, tokens must list this in `aud`."""
    leeway: float = 0.0
    """Seconds a token is still accepted past its `exp`."""
    clock_skew: float = 60.0
    """Seconds an identity provider's clock may run ahead of this server's: a token valid
    from (`nbf`) up to this far in the future is accepted, where a clock a fraction of a
    second ahead made fresh tokens "not yet valid" at random. Envoy's JWT filter allows the
    same 60 s. When a token was issued (`iat`) is not checked against the clock at all:
    RFC 7519 makes it information, and a server minutes behind refused every fresh token."""


@dataclass(frozen=True)
class _Key:
    key: Any
    algorithms: tuple[str, ...]


def _algorithms_for(key: Any) -> tuple[str, ...]:
    if isinstance(key, rsa.RSAPublicKey):
        return ("RS256",)
    if isinstance(key, ec.EllipticCurvePublicKey):
        curves = {"secp256r1": ("ES256",), "secp384r1": ("ES384",)}
        if key.curve.name not in curves:
            raise ValueError(f"EC curve {key.curve.name} is not supported; use P-256 or P-384")
        return curves[key.curve.name]
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ("EdDSA",)
    raise ValueError(f"unsupported public key type {type(key).__name__}")


def read_secret(path: Path) -> bytes:
    """An HS256 secret file's bytes, without one final line ending (an editor's): the one
    rule for the server and for `runstream token`. ValueError when it is too short."""
    return _secret(path.read_bytes(), path)


def _secret(secret: bytes, path: Path) -> bytes:
    """The secret that `path`'s bytes hold (see :func:`read_secret`)."""
    if secret.endswith(b"\r\n"):
        secret = secret[:-2]
    elif secret.endswith(b"\n"):
        secret = secret[:-1]
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{path}: the HS256 secret must be at least {MIN_SECRET_BYTES} bytes "
            f"(it is {len(secret)})"
        )
    try:  # PyJWT refuses a key as an HMAC secret only when a token comes: every one failed
        jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256).prepare_key(secret)
    except jwt.InvalidKeyError:
        raise ValueError(
            f"{path}: holds a public key or certificate, not an HS256 secret "
            "(a public key goes in --jwt-public-key)"
        ) from None
    return secret


def _public_keys(data: bytes, path: Path) -> list[tuple[str, _Key]]:
    """The keys that `path`'s bytes `data` hold, each with its key id ("" for a PEM key, or
    a JWKS key without one: an identity provider rotating its keys may publish several
    such)."""
    if data.lstrip().startswith(b"{"):
        try:
            jwks = jwt.PyJWKSet.from_dict(json.loads(data))
        except (ValueError, jwt.PyJWTError) as exc:
            raise ValueError(f"{path}: not a valid JWKS file ({exc})") from None
        keys: list[tuple[str, _Key]] = []
        for jwk in jwks.keys:
            if jwk.key_type == "oct":
                raise ValueError(f"{path}: symmetric keys do not belong in a public JWKS")
            allowed = _algorithms_for(jwk.key)
            if jwk.algorithm_name not in allowed:
                raise ValueError(
                    f"{path}: key {jwk.key_id!r} uses {jwk.algorithm_name!r}; its key type "
                    f"accepts only {', '.join(allowed)}"
                )
            if jwk.key_id and any(kid == jwk.key_id for kid, _ in keys):
                raise ValueError(f"{path}: two keys have the key id {jwk.key_id!r}")
            keys.append((jwk.key_id or "", _Key(jwk.key, allowed)))
        return keys
    try:
        key = load_pem_public_key(data)
    except ValueError:
        raise ValueError(f"{path}: not a PEM public key or a JWKS file") from None
    return [("", _Key(key, _algorithms_for(key)))]


class _BadSignature(TokenError):
    """The signature does not verify with one key (another may be the token's)."""


@dataclass(frozen=True)
class _KeySet:
    """The keys the configured files hold."""

    secret: _Key | None
    named: dict[str, _Key]
    unnamed: list[_Key]
    contents: tuple[bytes, ...]
    """The files' bytes, as read: the same bytes are the same keys."""

    @classmethod
    def read(cls, config: AuthConfig) -> _KeySet:
        secret_file, public_file = config.secret_file, config.public_key_file
        secret_data = secret_file.read_bytes() if secret_file else b""
        public_data = public_file.read_bytes() if public_file else b""
        secret = _Key(_secret(secret_data, secret_file), ("HS256",)) if secret_file else None
        public = _public_keys(public_data, public_file) if public_file else []
        named = {kid: key for kid, key in public if kid}
        unnamed = [key for kid, key in public if not kid]
        return cls(secret, named, unnamed, (secret_data, public_data))

    @property
    def algorithms(self) -> tuple[str, ...]:
        accepted = set(self.secret.algorithms if self.secret else ())
        for key in (*self.named.values(), *self.unnamed):
            accepted.update(key.algorithms)
        return tuple(sorted(accepted))


class TokenVerifier:
    """Verifies bearer JWTs against the configured keys and returns their :class:`Principal`.

    The key files are followed (auth/followed.py): an identity provider's rotated JWKS, or a
    new secret, written in place verifies the next token with no restart, and a key taken
    out refuses the tokens it signed from then on (streams already open with one are cut:
    auth/streams.py, told through :meth:`on_keys_changed`).
    """

    def __init__(self, config: AuthConfig) -> None:
        if config.secret_file is None and config.public_key_file is None:
            raise ValueError("auth needs a secret file or a public key file")
        self._config = config
        files = [path for path in (config.secret_file, config.public_key_file) if path]
        self._followed = FollowedFiles(files)
        self._keys = _KeySet.read(config)
        # Tokens already verified, until their exp: a client sends the same token on every
        # call, and an RS256 check costs about 0.3 ms of CPU. Bounded, oldest out first.
        self._verified: OrderedDict[str, Principal] = OrderedDict()
        self._listeners: list[Callable[[], None]] = []

    def on_keys_changed(self, listener: Callable[[], None]) -> None:
        """Calls `listener` each time the key files were taken again (after the new keys are
        in use)."""
        self._listeners.append(listener)

    def recheck_files(self) -> None:
        """Looks at the key files now (at most once a second), as a token would: for a
        server whose only callers are streams opened earlier."""
        self._follow_files()

    @property
    def algorithms(self) -> tuple[str, ...]:
        """Every algorithm some configured key accepts."""
        return self._keys.algorithms

    def _follow_files(self) -> None:
        """Takes the key files again if they changed (and load): tokens are checked again."""
        stamp = self._followed.changed()
        if stamp is None:
            return
        try:
            keys = _KeySet.read(self._config)
        except (OSError, ValueError) as exc:
            self._followed.refuse(stamp)
            log.warning("token key files changed but cannot be used, kept the last: %s", exc)
            return
        self._followed.take(stamp)
        if keys.contents == self._keys.contents:
            return  # written again as it was (a sync that rewrites the file on a schedule)
        self._keys = keys
        self._verified.clear()  # a key taken out no longer vouches for what it signed
        log.info("token key files changed: tokens are verified with the new keys")
        for listener in self._listeners:
            listener()

    def _keys_for(self, header: Mapping[str, Any]) -> list[_Key]:
        """The keys that may have signed a token with this header, to try in turn: the one
        its key id names, else every key without an id (or, with no id in the token, every
        key) of its algorithm."""
        alg = header.get("alg")
        keys_now = self._keys
        if not isinstance(alg, str) or alg not in keys_now.algorithms:
            accepted = ", ".join(keys_now.algorithms)
            raise TokenError(f"algorithm {alg!r} is not accepted (accepted: {accepted})")
        if keys_now.secret is not None and alg in keys_now.secret.algorithms:
            return [keys_now.secret]
        kid = header.get("kid")
        if isinstance(kid, str) and kid in keys_now.named:
            key = keys_now.named[kid]
            if alg not in key.algorithms:
                raise TokenError(f"algorithm {alg!r} does not match key {kid!r}")
            return [key]
        named, unnamed = keys_now.named.values(), keys_now.unnamed
        keys = unnamed if kid is not None else [*named, *unnamed]
        candidates = [key for key in keys if alg in key.algorithms]
        if not candidates:
            raise TokenError(f"unknown key id {kid!r}")
        return candidates

    def verify(self, token: str) -> Principal:
        """The token's principal; raises TokenError naming the first check that failed."""
        self._follow_files()
        known = self._verified.get(token)
        if known is not None:
            if (
                known.expires_at is not None
                and time.time() < known.expires_at + self._config.leeway
            ):
                self._verified.move_to_end(token)
                return known
            del self._verified[token]  # expired: the full check below says so
        principal = self._verify(token)
        self._verified[token] = principal
        if len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token: not a JWS compact serialization") from None
        for key in self._keys_for(header):
            try:
                return _principal(self._decode(token, key, header))
            except _BadSignature:
                continue  # another key of the set may have signed it
        raise TokenError("bad signature")

    def _decode(self, token: str, key: _Key, header: Mapping[str, Any]) -> dict[str, Any]:
        """The token's claims, its signature checked with `key`; TokenError naming the
        first check that failed (_BadSignature when only the signature did)."""
        config = self._config
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(key.algorithms),
                issuer=config.issuer,
                audience=config.audience,
                leeway=max(config.leeway, config.clock_skew),
                options={
                    "require": list(_REQUIRED_CLAIMS),
                    "verify_aud": config.audience is not None,
                    "verify_iss": config.issuer is not None,
                    "verify_iat": False,  # informational (RFC 7519 4.1.6); its type: _principal
                },
            )
        except jwt.ExpiredSignatureError:  # raised once the signature checked out
            raise TokenError(_expired(_claim_of(token, "exp")), "TOKEN_EXPIRED") from None
        except jwt.ImmatureSignatureError:
            early = _not_yet_valid(_claim_of(token, "nbf"))
            raise TokenError(early, "TOKEN_NOT_YET_VALID") from None
        except jwt.InvalidIssuerError:
            # Named: an issuer is no secret, and a mismatch such as a trailing slash is
            # hard to spot without the accepted one side by side.
            accepted = f"this server accepts only iss {config.issuer!r}"
            raise TokenError(f"wrong issuer ({accepted})") from None
        except jwt.InvalidAudienceError:
            raise TokenError("wrong audience (aud does not name this server)") from None
        except jwt.InvalidSignatureError:
            raise _BadSignature("bad signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"missing claim {exc.claim!r}") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError(f"algorithm {header.get('alg')!r} is not accepted") from None
        except jwt.DecodeError:
            raise TokenError("malformed token: its parts do not decode") from None
        except _INVALID_SUBJECT:  # PyJWT 2.10+ checks sub's type before _principal does
            raise TokenError("claim 'sub' must be a non-empty string") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token ({type(exc).__name__})") from None
        # The skew covers a token from the future, not one past its exp (PyJWT has one
        # leeway for both): exp is held to this server's clock. (Its type: _principal.)
        exp = claims["exp"]
        if isinstance(exp, int | float) and exp <= time.time() - config.leeway:
            raise TokenError(_expired(exp), "TOKEN_EXPIRED")
        return claims


def _claim_of(token: str, claim: str) -> float | None:
    """A time claim of a token whose signature checked out (PyJWT checks the times after
    the signature), for the refusal's text; None when it is not a number."""
    try:
        value = jwt.decode(token, options={"verify_signature": False}).get(claim)
    except jwt.PyJWTError:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# How far the claim is from this server's clock: an operator can tell a clock out of sync
# from a forged or stale token. Nothing secret: the caller holds the token and its clock.
def _expired(exp: float | None) -> str:
    if exp is None:
        return "token expired (exp is in the past)"
    ago = max(0.0, time.time() - exp)
    return f"token expired {ago:.0f} s ago by this server's clock (exp); clocks out of sync?"


def _not_yet_valid(nbf: float | None) -> str:
    if nbf is None:
        return "token not yet valid (nbf is in the future)"
    ahead = max(0.0, nbf - time.time())
    return (
        f"token not yet valid (nbf is {ahead:.0f} s ahead of this server's clock; "
        "clocks out of sync?)"
    )


MAX_NAME_CLAIM = NAME.chars
"""The longest `sub` or `tenant` accepted: the names they become hold at most as many."""

_INVALID_SUBJECT: Any = getattr(jwt.exceptions, "InvalidSubjectError", ())
"""PyJWT's error for a `sub` that is not a string (none before 2.10: nothing to catch)."""


def _principal(claims: Mapping[str, Any]) -> Principal:
    subject, tenant = _name_claim(claims, "sub"), _name_claim(claims, "tenant")
    roles = claims.get("roles", [])
    if isinstance(roles, str):
        roles = roles.split()
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TokenError("claim 'roles' must be a list of role names")
    for claim in ("exp", "nbf", "iat"):
        # RFC 7519's NumericDate is a JSON number; PyJWT also takes a string of digits.
        value = claims.get(claim, 0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TokenError(f"claim {claim!r} must be a number (seconds since the epoch)")
        # A valid signature vouches for the issuer, not for the number: one of 400 digits
        # overflowed float() (UNKNOWN), and the expiry timer of a stream needs a real time.
        if not 0 <= value <= LAST_SECOND:
            raise TokenError(f"claim {claim!r} must be a time between 1970 and the year 9999")
    return Principal.of(subject, tenant, roles, float(claims["exp"]))


def _name_claim(claims: Mapping[str, Any], claim: str) -> str:
    """The claim's value, which the server stores and shows as a name (a run's `created_by`,
    an answer's `answered_by`, the tenant): a string of 1 to 256 characters without control
    characters, as the same names sent in a request must be."""
    value = claims[claim]
    if not isinstance(value, str) or not value:
        raise TokenError(f"claim {claim!r} must be a non-empty string")
    if len(value) > MAX_NAME_CLAIM:
        raise TokenError(f"claim {claim!r} must be at most {MAX_NAME_CLAIM} characters")
    problem = control_character(value)
    if problem is not None:
        raise TokenError(f"claim {claim!r} {problem}")
    return value


def mint_token(
    secret: bytes,
    *,
    subject: str,
    tenant: str,
    roles: Sequence[str] | Iterable[str],
    ttl: float,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """An HS256 token for development (`runstream token`); never logs the secret.
    ValueError for a `ttl` that ends after the year 9999, whose token servers refuse."""
    now = int(time.time())
    expires = now + max(1, round(ttl))
    if expires > LAST_SECOND:
        raise ValueError("ttl: the token would expire after the year 9999, which no server accepts")
    claims: dict[str, Any] = {
        "sub": subject,
        "tenant": tenant,
        "roles": list(roles),
        "iat": now,
        "exp": expires,
        "jti": uuid.uuid4().hex,
    }
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")
