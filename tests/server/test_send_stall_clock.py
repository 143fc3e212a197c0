"""The send timeout counts one send's time, not the stream's: a send that stands still for
less than the timeout never ends its stream, however old the stream, and one that stands
still for the timeout does.

Over a real connection gRPC's buffers let a slow reader's sends finish at once after the
first few (test_send_stalls), so a send held for most of a timeout at a precise moment is
made here by the writer's own count of its sends (:class:`Sends`), which is all the
heartbeat clock looks at.
"""

from __future__ import annotations

import asyncio

from runstream_server.domain.hub import Hub, Sends

TIMEOUT = 0.5


async def test_only_a_send_standing_still_for_the_timeout_ends_its_stream() -> None:
    hub = Hub(send_timeout=TIMEOUT)
    sends = Sends()
    sends.task = None  # the clock's cancel would reach this test's own task
    sub = hub.subscribe("run", heartbeat_interval=300.0, sends=sends)
    try:
        await asyncio.sleep(1.2 * TIMEOUT)  # the stream is older than the timeout
        sends.started = 1  # a send under way for half the timeout: seen by two looks
        await asyncio.sleep(0.5 * TIMEOUT)
        assert sub.closed_reason is None
        sends.finished = 1
        sends.started = 2  # the next stands still
        await asyncio.sleep(1.6 * TIMEOUT)  # ended between one and 1.5 timeouts on
        assert (sub.closed_code, sub.stalled) == ("SEND_STALLED", TIMEOUT)
        assert sub.closed_reason == "a message waited 0.5s to be sent"
    finally:
        hub.unsubscribe(sub)
        hub.close("done")
