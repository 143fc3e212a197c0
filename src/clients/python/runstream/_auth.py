"""Bearer tokens and TLS for the SDK: a token or a token provider, sent on every call.

A provider (a function, sync or async, returning a JWT) is asked for a token on the first
call and again whenever the one it gave is close to its ``exp``; the SDK reads ``exp`` from
the token's payload without verifying it (verifying is the server's job). When the server
ends a stream because the token expired, or because it no longer accepts it (the key that
signed it was withdrawn), the watcher or reporter reconnects: the new call carries a fresh
token from the provider (asked again at once in the second case, however long the token had
left) and resumes from the stream's cursor, so nothing is lost or repeated. A fixed token
cannot be refreshed: once past its ``exp`` by this machine's clock, that reconnect, and any
call, raises UnauthenticatedError saying so, without sending it.

A token goes in clear only where no one else can read it. Like gRPC's own call credentials
(grpc-go's ``RequireTransportSecurity``), a token on a plaintext channel is refused unless
the target stays on this machine (:func:`is_local_target`), or the caller says
``insecure_token=True``.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import ipaddress
import json
import logging
import ssl
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from runstream._errors import ErrorDetails, UnauthenticatedError
from runstream._target import target_addresses

_log = logging.getLogger("runstream.auth")

__all__ = [
    "PlaintextTokenError",
    "TokenProvider",
    "TokenProviderError",
    "ask_providers_again",
    "auth_interceptors",
    "channel_credentials",
    "check_token_transport",
    "is_local_target",
    "is_refused_stream",
    "is_stream_cut_at_its_expiry",
    "is_stream_cut_for_its_token",
    "token_as_sent",
]

TokenProvider = Callable[[], "str | Awaitable[str]"]
"""A function that returns a bearer JWT (without the "Bearer " prefix), possibly async."""

EXPIRED_DURING_STREAM = "token expired during the stream"
"""The start of the status detail the server ends a stream with at its token's expiry."""

REFUSED_DURING_STREAM = "token no longer accepted during the stream"
"""The start of the status detail the server ends a stream with once its token stopped
verifying (the key that signed it was withdrawn)."""


def is_stream_cut_for_its_token(exc: grpc.aio.AioRpcError) -> bool:
    """Whether the server cut a stream because its token expired or is no longer accepted
    (worth resuming with a fresh token)."""
    return _cut_saying(exc, (EXPIRED_DURING_STREAM, REFUSED_DURING_STREAM))


def is_stream_cut_at_its_expiry(exc: BaseException | None) -> bool:
    """Whether the server cut a stream at its token's ``exp``: with a token provider, a
    routine renewal rather than an outage."""
    return isinstance(exc, grpc.aio.AioRpcError) and _cut_saying(exc, (EXPIRED_DURING_STREAM,))


def is_refused_stream(exc: BaseException | None) -> bool:
    """Whether the server cut a stream because it no longer accepts its token."""
    return isinstance(exc, grpc.aio.AioRpcError) and _cut_saying(exc, (REFUSED_DURING_STREAM,))


def _cut_saying(exc: grpc.aio.AioRpcError, details: tuple[str, ...]) -> bool:
    """UNAUTHENTICATED with a detail that starts with one of `details`."""
    return exc.code() == grpc.StatusCode.UNAUTHENTICATED and (exc.details() or "").startswith(
        details
    )


def _claims(token: str) -> dict[str, Any]:
    """The token's payload, unverified; {} when it is not a readable JWT."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def token_as_sent(token: str) -> str:
    """The token without a "Bearer " prefix and surrounding whitespace (a file's line end);
    ValueError, naming where but never showing the token, when an HTTP/2 header cannot carry
    it (gRPC would fail the call with an error of its own internals)."""
    token = token.removeprefix("Bearer ").strip()
    for position, char in enumerate(token, start=1):
        if not " " <= char <= "~":
            raise ValueError(
                f"character {position} of the token is U+{ord(char):04X}, which a header cannot "
                "carry (printable ASCII only): is the token cut, or pasted with something else?"
            )
    return token


class TokenProviderError(UnauthenticatedError):
    """The token provider failed (raised, or gave no usable token) and no token it gave
    before is still valid: the SDK has no token to send."""


_RETRY_PROVIDER_SECONDS = 5.0
"""While the last token is still valid, how long to wait before asking a provider that
failed again."""


_PROVIDED: weakref.WeakSet[TokenSource] = weakref.WeakSet()
"""Every token source with a provider in this process (see :func:`ask_providers_again`)."""
_PROVIDED_LOCK = threading.Lock()
"""Clients may be made in several threads (each with its own event loop)."""


def ask_providers_again() -> None:
    """Makes every token source with a provider ask it before its next call.

    For a stream cut because the server no longer accepts its token: the error does not say
    which client's token that was, and asking a provider once more than needed costs one
    token, so every provider in the process is asked (rare: a key withdrawn)."""
    with _PROVIDED_LOCK:
        sources = list(_PROVIDED)
    for source in sources:
        source.ask_again()


class TokenSource:
    """A fixed token, or a provider's latest token, refreshed shortly before it expires.

    A refresh that fails (the provider raised: an identity provider out of reach, a token
    file being replaced) keeps the last token while it is valid, logs the failure once and
    asks again a few seconds later; with no valid token left, the call raises
    :class:`TokenProviderError`, never the provider's own exception."""

    def __init__(self, token: str | TokenProvider) -> None:
        self._fixed = token_as_sent(token) if isinstance(token, str) else None
        self._provider = None if isinstance(token, str) else token
        # A fixed token still valid now, by this machine's clock, expires while the client
        # works: from then on every call says so (see _expired_fixed_token). One stale from
        # the start goes to the server, whose refusal says how far off its clock it is.
        self._fixed_exp = _future_exp(self._fixed) if self._fixed is not None else None
        self._token: str | None = None
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self._failing = False
        if self._provider is not None:
            with _PROVIDED_LOCK:
                _PROVIDED.add(self)

    def ask_again(self) -> None:
        """The provider is asked before the next call, however long the last token has
        left (kept should the provider fail meanwhile)."""
        self._refresh_at = 0.0

    async def token(self) -> str:
        if self._fixed is not None:
            if self._fixed_exp is not None and time.time() >= self._fixed_exp:
                raise _expired_fixed_token(self._fixed_exp)
            return self._fixed
        now = time.time()
        if self._token is None or now >= self._refresh_at:
            try:
                self._token = await self._ask()
            except Exception as exc:  # the provider's failure, whatever it is
                reason = _provider_failure(exc)
                if self._token is None or now >= self._expires_at:
                    raise TokenProviderError(f"the token provider failed: {reason}") from None
                if not self._failing:
                    _log.warning(
                        "the token provider failed (%s); the last token is used while it is "
                        "valid, %.0f s more",
                        reason,
                        self._expires_at - now,
                    )
                self._failing = True
                self._refresh_at = now + min(_RETRY_PROVIDER_SECONDS, self._expires_at - now)
                return self._token
            self._failing = False
            self._refresh_at, self._expires_at = self._refresh_time(self._token)
        return self._token

    async def _ask(self) -> str:
        assert self._provider is not None
        value = self._provider()
        token = await value if inspect.isawaitable(value) else value
        if not isinstance(token, str) or not token:
            raise TypeError(f"it must return a non-empty str, not {type(token).__name__}")
        return token_as_sent(token)

    @staticmethod
    def _refresh_time(token: str) -> tuple[float, float]:
        """When to ask the provider again (a tenth of the lifetime, at most 30 s, before
        exp), and exp."""
        claims = _claims(token)
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float):
            return 0.0, 0.0  # unknown lifetime: ask the provider on every call
        lifetime = exp - iat if isinstance(iat, int | float) else 300.0
        return float(exp) - min(30.0, max(0.0, lifetime) / 10), float(exp)


def _future_exp(token: str) -> float | None:
    """The token's ``exp`` when it is still ahead of this machine's clock, else None."""
    exp = _claims(token).get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float) or exp <= time.time():
        return None
    return float(exp)


def _expired_fixed_token(exp: float) -> UnauthenticatedError:
    """What a call with a fixed token past its ``exp`` raises, instead of sending it.

    The server would refuse it with "token expired 0 s ago by this server's clock (exp);
    clocks out of sync?", and did so at the end of every watch, interaction and report that
    outlived its fixed token (found in review): the clocks were fine, the token was fixed.
    The reason is the server's, TOKEN_EXPIRED, for programs that compare it."""
    return UnauthenticatedError(
        f"the token expired {time.time() - exp:.0f} s ago (its exp, by this machine's clock); "
        "a token given as a string is never renewed: give a fresh one, or a function that "
        "returns one (connect(token=...)), which is asked again before each token's exp",
        details=ErrorDetails(reason="TOKEN_EXPIRED"),
    )


def _provider_failure(exc: Exception) -> str:
    """What went wrong, in one line; a provider's message says what it could not do (a file
    it could not read), and never holds the token the SDK has not received."""
    text = str(getattr(exc, "message", None) or exc).splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _details(details: aio.ClientCallDetails, token: str) -> aio.ClientCallDetails:
    metadata = aio.Metadata(*((k, v) for k, v in (details.metadata or ()) if k != "authorization"))
    metadata.add("authorization", f"Bearer {token}")
    return aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _UnaryUnary(aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, source: TokenSource) -> None:
        self._source = source

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_details(details, await self._source.token()), request)


class _UnaryStream(aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, source: TokenSource) -> None:
        self._source = source

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_details(details, await self._source.token()), request)


class _StreamUnary(aio.StreamUnaryClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, source: TokenSource) -> None:
        self._source = source

    async def intercept_stream_unary(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_details(details, await self._source.token()), request_iterator)


class _StreamStream(aio.StreamStreamClientInterceptor):  # type: ignore[type-arg]
    def __init__(self, source: TokenSource) -> None:
        self._source = source

    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_details(details, await self._source.token()), request_iterator)


def auth_interceptors(token: str | TokenProvider | None) -> list[Any]:
    """Channel interceptors that send the token on every call (none without a token)."""
    if token is None:
        return []
    source = TokenSource(token)
    return [_UnaryUnary(source), _UnaryStream(source), _StreamUnary(source), _StreamStream(source)]


def channel_credentials(
    ca_file: str | Path | None,
    client_cert: str | Path | None = None,
    client_key: str | Path | None = None,
) -> grpc.ChannelCredentials | None:
    """TLS credentials from PEM files: the CA to trust (None: the system's roots when a client
    certificate is given) and, for mutual TLS, a client certificate and its key."""
    if ca_file is None and client_cert is None:
        return None
    if (client_cert is None) != (client_key is None):
        raise ValueError("a client certificate needs its key, and a key its certificate")
    _check_tls_files(ca_file, client_cert, client_key)
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes() if ca_file else None,
        private_key=Path(client_key).read_bytes() if client_key else None,
        certificate_chain=Path(client_cert).read_bytes() if client_cert else None,
    )


def _check_tls_files(
    ca_file: str | Path | None, client_cert: str | Path | None, client_key: str | Path | None
) -> None:
    """Raises ValueError naming a file gRPC could not use. gRPC takes any bytes here and only
    fails at the handshake: each call then retries UNAVAILABLE for the reconnect timeout and
    ends with "Failed to create security handshaker", and its C core logs errors to stderr."""
    for path, what in (
        (ca_file, "CA file"),
        (client_cert, "client certificate"),
        (client_key, "client key"),
    ):
        _check_readable(path, what)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # any key strength, as gRPC takes them
    if ca_file:
        try:
            context.load_verify_locations(cadata=Path(ca_file).read_text(errors="replace"))
        except (ssl.SSLError, TypeError):  # TypeError: not text at all
            raise ValueError(f"the CA file {ca_file} holds no PEM certificate") from None
    if client_cert and client_key:
        try:
            context.load_cert_chain(client_cert, client_key, password=_no_password)
        except (ssl.SSLError, ValueError) as exc:
            if isinstance(exc, ssl.SSLError):
                reason = _SSL_REASONS.get(exc.reason or "", "unreadable as PEM")
            else:
                reason = str(exc)
            raise ValueError(
                f"the client certificate {client_cert} and key {client_key} are not a PEM "
                f"certificate and its unencrypted private key ({reason})"
            ) from None


def _check_readable(path: str | Path | None, what: str) -> None:
    """Raises ValueError naming a TLS file that cannot be read, as the other refusals of
    these files do: a missing CA file reached a command as Python's own FileNotFoundError,
    "[Errno 2] No such file or directory: '/etc/ca.pem'"."""
    if not path:
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path} ({exc.strerror or exc})") from None


def _no_password() -> bytes:
    raise ValueError("the key is encrypted")


_SSL_REASONS = {"KEY_VALUES_MISMATCH": "the key is not the certificate's"}


class PlaintextTokenError(ValueError):
    """A token (or an authorization header) would go in clear beyond this machine."""

    def __init__(self, target: str) -> None:
        super().__init__(
            f"refusing to send a token in clear to {target}: the channel is plaintext and "
            "the host is not loopback, so anyone on the path could read the token and replay "
            "it; give ca_file (TLS), connect through loopback (a local proxy that speaks TLS "
            "onwards), or pass insecure_token=True to send it in clear anyway"
        )
        self.target = target


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


def is_local_target(target: str) -> bool:
    """Whether a gRPC target stays on this machine: a unix socket, or loopback addresses only
    (127.0.0.0/8, ::1, "localhost").

    Other names are not resolved to decide: a name is how a remote host is usually given, and
    what it resolves to now says nothing certain about where gRPC connects later (its resolver
    asks again on every reconnect). So "runstream:50051" on a compose network or a
    Kubernetes Service name counts as remote, like any address beyond loopback.
    """
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    return all(_is_loopback_host(host) for host, _ in target_addresses(target))


def check_token_transport(
    target: str,
    *,
    secure: bool,
    token: str | TokenProvider | None,
    metadata: tuple[tuple[str, str], ...],
    insecure_token: bool,
) -> None:
    """Refuses (PlaintextTokenError, a ValueError) a token, or an ``authorization`` header in
    the client's metadata, on a plaintext channel to a target beyond this machine, unless
    `insecure_token`. Judged before anything connects, so a refused token never leaves."""
    sends_token = token is not None or any(k.lower() == "authorization" for k, _ in metadata)
    if sends_token and not secure and not insecure_token and not is_local_target(target):
        raise PlaintextTokenError(target)
