"""Writes that wait for Redis's replicas (``?wait=N``): the write and ``WAIT`` on one
connection to the Redis that owns the run.

``WAIT`` counts the replicas that have this connection's writes, so it must follow the write
on the same connection, which a pipeline guarantees. On a cluster that connection is to the
run's master, reached directly: the cluster client would send ``WAIT`` to every node, on
connections that wrote nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import redis.exceptions as rex

from runstream_server.errors import Unavailable
from runstream_server.store.redis_connect import master_client
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_url import RedisOptions

__all__ = ["ReplicaWaits"]


class ReplicaWaits:
    """The store's writes that wait for `options.wait_replicas` replicas to hold them."""

    def __init__(
        self, options: RedisOptions, keys: RedisKeys, client: Callable[[], Any], script: str
    ) -> None:
        """`client`: the store's client now; `script`: the source of the append script, loaded
        again on an owner that lost it."""
        self._options = options
        self._keys = keys
        self._client = client
        self._script = script
        self._masters: dict[str, Any] = {}  # on a cluster: a client per master

    async def write(self, run_id: str, write: Callable[[Any], Awaitable[None]]) -> Any:
        """`write` queued on a pipeline, then WAIT, both on one connection to the Redis that
        owns the run; the pipeline's answers (the last is how many replicas acknowledged)."""
        for attempt in (1, 2, 3):
            pipe = self._owner(run_id).pipeline(transaction=False)
            await write(pipe)
            pipe.execute_command("WAIT", self._options.wait_replicas, self._options.wait_timeout_ms)
            try:
                return await pipe.execute()
            except rex.MovedError:
                # The run's slot is on another master now, and nothing ran here.
                if attempt == 3:
                    raise
                await self._client().nodes_manager.initialize()
            except rex.NoScriptError:
                # The owner lost its scripts (a restart, a failover, SCRIPT FLUSH) and the
                # append script did not run: load it there and send again.
                if attempt == 3:
                    raise
                await self._owner(run_id).script_load(self._script)
        raise AssertionError("unreachable")

    async def confirm(self, run_id: str) -> None:
        """Returns once the replicas hold everything of the run's log stored so far."""

        # A write of ours, then WAIT: replication is in order, so once a replica has this
        # write it has everything the run's log held before it.
        async def write(pipe: Any) -> None:
            pipe.hincrby(self._keys.meta(run_id), "confirms", 1)

        _, acked = await self.write(run_id, write)
        self.check_acked(acked)

    def check_acked(self, acked: int) -> None:
        """UNAVAILABLE when fewer replicas than asked for acknowledged a write in time."""
        if int(acked) < self._options.wait_replicas:
            raise Unavailable(
                f"only {acked} of {self._options.wait_replicas} Redis replicas acknowledged "
                "the write in time; it is stored on the primary, retry to confirm"
            )

    async def close(self) -> None:
        """Closes the direct connections to a cluster's masters."""
        for master in self._masters.values():
            with contextlib.suppress(rex.RedisError, OSError):
                await master.aclose(close_connection_pool=True)
        self._masters.clear()

    def _owner(self, run_id: str) -> Any:
        """The client whose connections reach the Redis that owns the run's keys."""
        client = self._client()
        if not self._options.cluster:
            return client
        node = client.get_node_from_key(self._keys.meta(run_id))
        owner = self._masters.get(node.name)
        if owner is None:
            owner = self._masters[node.name] = master_client(node)
        return owner
