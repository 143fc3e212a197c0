"""Maps domain errors to gRPC status codes, on every RPC, in one interceptor.

Servicers just let :class:`~runstream_server.errors.RunstreamError` propagate. Anything else
is a bug: it is logged with its traceback and the client gets INTERNAL with no internals
leaked, never UNKNOWN.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import grpc
from grpc import aio
from grpc_interceptor.exception_to_status import AsyncExceptionToStatusInterceptor
from grpc_interceptor.exceptions import GrpcException
from grpc_interceptor.server import AsyncServerInterceptor

from runstream_server.errors import RunstreamError

log = logging.getLogger("runstream.api")

__all__ = ["AsyncServerInterceptor", "ErrorInterceptor"]


class ErrorInterceptor(AsyncExceptionToStatusInterceptor):
    """Turns domain errors into their gRPC status, unexpected errors into logged INTERNAL."""

    def __init__(self) -> None:
        super().__init__(status_on_unknown_exception=grpc.StatusCode.INTERNAL)

    async def handle_exception(
        self,
        ex: Exception,
        request_or_iterator: Any,
        context: aio.ServicerContext[Any, Any],
        method_name: str,
    ) -> NoReturn:
        if isinstance(ex, RunstreamError):
            await context.abort(grpc.StatusCode[ex.kind.value], ex.message)
        if isinstance(ex, GrpcException):
            await context.abort(ex.status_code, ex.details)
        if context.code() is None:
            log.exception("unexpected error in %s", method_name, exc_info=ex)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see server logs")
        raise ex
