"""Why a connection to a server failed: one reading of gRPC's words that the SDK, the CLI and
the dashboard share, and a closer look of its own where those words are ambiguous.

gRPC names most failures of a TLS connection in its details: a TLS client at a port that
speaks plaintext (WRONG_VERSION_NUMBER), a certificate the client's CA did not sign, one that
names another host. Those are certain, and waiting does not change them: a caller says them at
once rather than retrying for its whole reconnect timeout and then asking whether a server
runs there at all. A server that closes the connection as it opens leaves gRPC only "Socket
closed" (or "Connection reset by peer", its first bytes unread): a TLS server reached in
plaintext, or one that wants a client certificate it was not given, but also a TCP proxy with
nothing behind it during a deploy. :func:`look_closer` tells
these apart with a TLS handshake of its own.

:class:`Diagnosis` is the SDK's use of both, for one client: its calls, reporters and watchers
raise a certain cause at once while the client has never reached a server, and say the likely
one when they give up.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import TypeVar, cast

import grpc

from runstream._errors import RunstreamError, UnavailableError, client_closed, raised_again
from runstream._target import is_ip_address, target_addresses

__all__ = ["Cause", "Diagnosis", "TlsSettings", "cause_of", "look_closer"]


@dataclass(frozen=True)
class TlsSettings:
    """How a caller connected (TLS or not, with a client certificate or not) and how its user
    names those settings, for the hint: an option of the CLI, a parameter of the SDK."""

    tls: bool
    client_cert: str | None = None
    client_key: str | None = None
    ca_option: str = "--ca-file"
    client_options: str = "--client-cert and --client-key"


SDK_NAMES = {"ca_option": "ca_file", "client_options": "client_cert and client_key"}
"""The SDK's names of the TLS settings, for TlsSettings(**SDK_NAMES)."""


@dataclass(frozen=True)
class Cause:
    """Why a server at a target did not answer: `text` says it; `certain` when waiting
    cannot change it (say it at once), else it is the likely reason."""

    text: str
    certain: bool


def cause_of(target: str, details: str, settings: TlsSettings) -> Cause | None:
    """The cause gRPC's `details` of a failed connection name, or None when nothing answered
    at all (refused, no route, no name, no answer in time)."""
    said = details.lower()
    if settings.tls and "wrong_version_number" in said:
        return Cause(
            f"a server at {target} answered without TLS: connect without {settings.ca_option}",
            certain=True,
        )
    if settings.tls and "hostname verification" in said:
        return Cause(
            f"a server at {target} answered over TLS with a certificate that does not name "
            f"{_host(target)}",
            certain=True,
        )
    if settings.tls and ("certificate_verify_failed" in said or "certificate signature" in said):
        return Cause(
            f"a server at {target} answered over TLS with a certificate the CA of "
            f"{settings.ca_option} did not sign",
            certain=True,
        )
    # A connection cut as it opens, in the TLS handshake or before it: no TLS verdict, and a
    # proxy with nothing behind it yet does it too. Reset: closed with the client's first
    # bytes unread.
    cut = any(words in said for words in _CUT) and not any(v in said for v in _VERDICTS)
    if settings.tls and not cut and ("handshake" in said or "ssl" in said):
        return Cause(f"the TLS handshake with a server at {target} failed", certain=True)
    if cut:
        return Cause(_closed(target, settings), certain=False)
    return None


_CUT = (
    "socket closed",
    "connection reset by peer",
    "handshake read failed",
    "handshake write failed",
    "ssl_error_syscall",
    "unexpected eof",
)
"""gRPC's words for a connection closed or reset as it opened, TLS or not."""
_VERDICTS = ("alert", "certificate", "wrong_version_number", "hostname")
"""Words of a TLS peer's verdict, which a cut connection does not carry."""


def _closed(target: str, settings: TlsSettings) -> str:
    """A server that took the connection and closed it at once: what it likely wants."""
    if not settings.tls:
        why = f"does it serve TLS (then give {settings.ca_option})?"
    elif settings.client_cert is None:
        why = f"does it want a client certificate ({settings.client_options})?"
    else:
        why = f"does it trust the CA that signed the client certificate {settings.client_cert}?"
    return f"a server at {target} closed the connection as it opened: {why}"


def _host(target: str) -> str:
    addresses = target_addresses(target)
    return addresses[0][0] if addresses else target


LOOK_FOR = 3.0
"""Seconds :func:`look_closer`'s handshake may take before it tells nothing."""
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


async def look_closer(target: str, settings: TlsSettings) -> Cause | None:
    """Why a server at `target` closed the connection as it opened ("Socket closed"), found
    by a TLS handshake of its own (the server's certificate unchecked, the client's presented
    as gRPC did), when it is certain: a server that completes the handshake and then speaks
    HTTP/2 serves TLS (a plaintext client needs a CA); one that completes it and closes the
    connection before a word of HTTP/2 refuses the client without a certificate it trusts.
    None when it tells nothing (no TLS, no answer, a unix socket)."""
    addresses = target_addresses(target)
    if not addresses:
        return None
    host, port = addresses[0]
    try:
        async with asyncio.timeout(LOOK_FOR):
            spoke = await _handshake(host, port or 443, settings)
    except (OSError, ValueError, TimeoutError):  # no TLS, nothing there, a key it cannot read
        return None
    if spoke and not settings.tls:
        return Cause(f"a server at {target} serves TLS: give {settings.ca_option}", certain=True)
    if spoke:
        return None
    if not settings.tls:
        wants = f"serves TLS and wants a client certificate: give {settings.ca_option} with "
        wants += settings.client_options
    elif settings.client_cert is None:
        wants = f"wants a client certificate: give {settings.client_options}"
    else:
        wants = (
            f"refused the client certificate {settings.client_cert}: is it signed by a CA "
            "the server trusts, and still valid?"
        )
    return Cause(f"a server at {target} {wants}", certain=True)


async def _handshake(host: str, port: int, settings: TlsSettings) -> bool:
    """Whether a TLS server at host:port, once the handshake is done, speaks HTTP/2 (True)
    or closes the connection (False); OSError when there is no TLS handshake to do.

    On the event loop, not in a thread: a look the client's close cancels ends at once,
    where a thread ran on for its timeouts and held up the program's exit (asyncio.run
    waits for the default executor's threads)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # which server, not whether to trust it
    context.set_alpn_protocols(["h2"])
    if settings.client_cert and settings.client_key:
        context.load_cert_chain(settings.client_cert, settings.client_key)
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname="" if is_ip_address(host) else host
    )
    try:
        writer.write(_HTTP2_PREFACE)
        return bool(await reader.read(9))  # the server's SETTINGS frame
    except (ConnectionError, ssl.SSLError):  # closed as it read the client's certificate
        return False
    finally:
        writer.transport.abort()  # no TLS goodbye to wait for: the look has what it needs


_Error = TypeVar("_Error", bound=RunstreamError)


class Diagnosis:
    """What the failed connections of one SDK client mean, in the SDK's words (``ca_file``,
    ``client_cert`` and ``client_key``), for its retry loops.

    Until the client first reaches a server, a cause that is certain is raised at once
    (:meth:`at_once`) rather than retried for the whole reconnect timeout: TLS settings that
    do not fit the server never start to. A "Socket closed" is looked at closer once, as the
    CLI does, and is retried when that tells nothing (a proxy during a deploy). Once the
    client has reached a server its settings fit it, and every failure is retried as before;
    the error the retries give up with then says the likely cause (:meth:`given_up`).
    `settings` None: the caller gave its own credentials, whose contents the SDK does not
    know, so only what gRPC's words name for certain is said.
    """

    def __init__(self, target: str, settings: TlsSettings | None) -> None:
        self._target = target
        self._settings = settings
        self._reached = False
        self._first_look: asyncio.Future[Cause | None] | None = None

    def reached(self) -> None:
        """A server accepted a call or a stream of this client."""
        self._reached = True

    def close(self) -> None:
        """The client closed: a closer look under way is not waited for any more."""
        if self._first_look is not None:
            self._first_look.cancel()

    async def at_once(self, exc: BaseException) -> RunstreamError | None:
        """The error to raise instead of retrying `exc`: why the client cannot connect, when
        that is certain and it never reached a server, or that it closed while a closer look
        at that was under way; None: retry."""
        if self._reached or not isinstance(exc, grpc.aio.AioRpcError):
            return None
        cause = self._named(exc)
        if cause is not None and not cause.certain and self._settings is not None:
            if self._first_look is None:  # one look for all the client's loops
                self._first_look = asyncio.ensure_future(look_closer(self._target, self._settings))
            try:
                cause = await asyncio.shield(self._first_look) or cause
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not self._first_look.cancelled() or (task is not None and task.cancelling()):
                    raise  # the caller was cancelled, not the look
                closed = client_closed()
                closed.__cause__ = exc
                return closed
        if cause is None or not cause.certain:
            return None
        error = UnavailableError(cause.text)
        error.__cause__ = exc
        return error

    async def given_up(self, error: _Error, exc: BaseException | None) -> _Error:
        """`error`, which the retries of `exc` give up with, saying the likely cause when
        gRPC's words or a closer look name one."""
        if not isinstance(exc, grpc.aio.AioRpcError) or (cause := self._named(exc)) is None:
            return error
        if not cause.certain and self._settings is not None:
            # A client that reached a server was not refused for its settings: a server that
            # closes connections as they open is then a proxy with nothing behind it.
            cause = await look_closer(self._target, self._settings) or (
                None if self._reached else cause
            )
        if cause is None:
            return error
        said = cast(_Error, raised_again(error))
        said.message = f"{error.message}; likely cause: {cause.text}"
        said.args = (said.message,)
        said.__cause__ = error.__cause__ or exc
        return said

    def _named(self, exc: grpc.aio.AioRpcError) -> Cause | None:
        settings = self._settings or TlsSettings(tls=True, **SDK_NAMES)
        cause = cause_of(self._target, exc.details() or "", settings)
        if cause is not None and not cause.certain and self._settings is None:
            return None  # "does it want a client certificate?": the credentials may hold one
        return cause
