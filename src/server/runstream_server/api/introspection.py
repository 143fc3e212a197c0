"""What ops tools ask a server about itself: grpc.health.v1 and server reflection.

Both come from their gRPC packages, with six gaps filled: the health servicer answers
``List`` (reflection lists the method; the package's async servicer answered UNIMPLEMENTED);
its ``Check`` of an unknown service says which name it did not find;
its ``Watch`` streams end at shutdown once they have sent NOT_SERVING (the package's waited
for the next change for good, so one open Watch, a load balancer's or a probe's, held the
server's stop for its whole grace); ``Watch`` streams are capped per server (health needs no
token, and each open stream held about 30 KB: 10,000 of them with made-up service names grew
the server by 90 MB); reflection finds the file of a method name (``grpcurl
describe runstream.v1.RunService.GetRun``), which protobuf's upb descriptor pool does not
resolve; and reflection is served as ``grpc.reflection.v1`` as well as ``v1alpha``, the only
version grpcio-reflection ships (newer grpcurl, grpcui and Postman ask for v1 first).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import _async as reflection_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from runstream_server.api.methods import MethodTable
from runstream_server.errors import ResourceExhausted

__all__ = ["MAX_HEALTH_WATCHES", "HealthService", "serve_health", "serve_reflection"]

MAX_HEALTH_WATCHES = 1_000
"""Health ``Watch`` streams open at once on one server, any caller's and any service's; past
it a new one is RESOURCE_EXHAUSTED (probes and load balancers open one or a few; gRPC's
client-side health checking one per connection)."""
WATCH_RETRY_AFTER = 5.0
"""The RetryInfo delay past the cap (a stream may close by then)."""

_REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


class HealthService(health_aio.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1 with ``List``: every service's status, "" the server's own; and with
    at most `max_watches` ``Watch`` streams at once, which end at shutdown."""

    def __init__(self, max_watches: int = MAX_HEALTH_WATCHES) -> None:
        super().__init__()
        self.max_watches = max_watches
        self._watches = 0

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Any
    ) -> health_pb2.HealthCheckResponse:
        """The service's status; NOT_FOUND naming the service for one never set (the
        package's NOT_FOUND said nothing, so a misspelt name read like a broken server)."""
        status = self._server_status.get(request.service)
        if status is None:
            name = request.service
            shown = repr(name if len(name) <= 100 else name[:100] + "...")  # no token needed
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"service: no service {shown} on this server; Health/List names them",
            )
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        """The service's status, then each change of it, as the package's ``Watch`` sends
        them (on its conditions, so its ``set`` wakes this one); from the graceful shutdown
        on, the status (NOT_SERVING) and then the end of the stream (OK), so the watcher
        looks again elsewhere and the server's stop does not wait for it.

        A service never set gets SERVICE_UNKNOWN and an open stream, as the protocol asks;
        its condition goes with its last watcher, so made-up names hold nothing once their
        streams close, and the cap bounds what they hold while open.
        """
        if self._watches >= self.max_watches:
            raise ResourceExhausted(
                f"{self.max_watches} health Watch streams are open on this server, the most "
                "allowed; close one, or ask with Check",
                reason="HEALTH_WATCH_LIMIT",
                retry_after=WATCH_RETRY_AFTER,
            )
        self._watches += 1
        service = request.service
        condition = self._server_watchers[service]
        self._watcher_count_by_service[service] += 1
        sent = None
        try:
            async with condition:
                while True:
                    status = self._server_status.get(
                        service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
                    )
                    if self._gracefully_shutting_down and service in self._server_status:
                        # The package raises its flag before it sets NOT_SERVING, which waits
                        # for this stream's lock: a write in progress must not end it unsaid.
                        status = health_pb2.HealthCheckResponse.NOT_SERVING
                    if status != sent:
                        await context.write(health_pb2.HealthCheckResponse(status=status))
                        sent = status
                        continue  # look again: the status may have moved during the write
                    if self._gracefully_shutting_down:
                        return
                    await condition.wait()
        finally:
            self._watches -= 1
            self._watcher_count_by_service[service] -= 1
            if self._watcher_count_by_service[service] == 0:
                del self._server_watchers[service]
                del self._watcher_count_by_service[service]

    async def enter_graceful_shutdown(self) -> None:
        """NOT_SERVING for every service from now on (later ``set`` calls are ignored), and
        every Watch stream ends, also those of a service never set (SERVICE_UNKNOWN), whose
        watchers the package's shutdown does not wake."""
        await super().enter_graceful_shutdown()
        for condition in list(self._server_watchers.values()):
            async with condition:
                condition.notify_all()

    async def List(
        self, request: health_pb2.HealthListRequest, context: Any
    ) -> health_pb2.HealthListResponse:
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in self._server_status.items()
            }
        )


def serve_health(server: MethodTable, max_watches: int = MAX_HEALTH_WATCHES) -> HealthService:
    service = HealthService(max_watches)
    health_pb2_grpc.add_HealthServicer_to_server(service, server)
    return service


def serve_reflection(server: MethodTable, service_names: Iterable[str]) -> None:
    """Reflection for `service_names`, health and reflection itself, as grpc.reflection.v1
    and v1alpha.

    v1's messages are v1alpha's field for field (only the proto package differs), so v1 is
    the same servicer with the same message classes under v1's method path. The services
    listed are those the descriptor pool has the files of: v1alpha's reflection, not v1's
    (listing it without its file would fail a ``grpcurl describe`` of every service).
    """
    names = (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME)
    pool = cast(descriptor_pool.DescriptorPool, _MethodsToo(descriptor_pool.Default()))
    servicer = reflection_aio.ReflectionServicer(names, pool=pool)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
    }
    server.add_registered_method_handlers(_REFLECTION_V1, v1)


class _MethodsToo:
    """A descriptor pool as reflection reads it, that also finds the file of a method."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            service = self._pool.FindServiceByName(service_name)  # KeyError: not one either
            if method not in service.methods_by_name:
                raise
            return service.file
