"""Bearer tokens and TLS for the SDK: a token or a token provider, sent on every call.

A provider (a function, sync or async, returning a JWT) is asked for a token on the first
call and again whenever the one it gave is close to its ``exp``; the SDK reads ``exp`` from
the token's payload without verifying it (verifying is the server's job). When the server
ends a stream because the token expired, the watcher or reporter reconnects: the new call
carries a fresh token from the provider and resumes from the stream's cursor, so nothing is
lost or repeated. A fixed token cannot be refreshed: that reconnect fails UNAUTHENTICATED.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

__all__ = ["TokenProvider", "auth_interceptors", "channel_credentials", "is_expired_stream"]

TokenProvider = Callable[[], "str | Awaitable[str]"]
"""A function that returns a bearer JWT (without the "Bearer " prefix), possibly async."""

EXPIRED_DURING_STREAM = "token expired during the stream"
"""The start of the status detail the server ends a stream with at its token's expiry."""


def is_expired_stream(exc: grpc.aio.AioRpcError) -> bool:
    """Whether the server cut a stream because its token expired (worth resuming)."""
    return exc.code() == grpc.StatusCode.UNAUTHENTICATED and (exc.details() or "").startswith(
        EXPIRED_DURING_STREAM
    )


def _claims(token: str) -> dict[str, Any]:
    """The token's payload, unverified; {} when it is not a readable JWT."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


class TokenSource:
    """A fixed token, or a provider's latest token, refreshed shortly before it expires."""

    def __init__(self, token: str | TokenProvider) -> None:
        self._fixed = token if isinstance(token, str) else None
        self._provider = None if isinstance(token, str) else token
        self._token: str | None = None
        self._refresh_at = 0.0

    async def token(self) -> str:
        if self._fixed is not None:
            return self._fixed
        assert self._provider is not None
        if self._token is None or time.time() >= self._refresh_at:
            value = self._provider()
            token = await value if inspect.isawaitable(value) else value
            if not isinstance(token, str) or not token:
                raise TypeError("the token provider must return a non-empty str")
            self._token = token.removeprefix("Bearer ").strip()
            self._refresh_at = self._refresh_time(self._token)
        return self._token

    @staticmethod
    def _refresh_time(token: str) -> float:
        """When to ask the provider again: a tenth of the lifetime (at most 30 s) before exp."""
        claims = _claims(token)
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float):
            return 0.0  # unknown lifetime: ask the provider on every call
        lifetime = exp - iat if isinstance(iat, int | float) else 300.0
        return float(exp) - min(30.0, max(0.0, lifetime) / 10)


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
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes() if ca_file else None,
        private_key=Path(client_key).read_bytes() if client_key else None,
        certificate_chain=Path(client_cert).read_bytes() if client_cert else None,
    )
