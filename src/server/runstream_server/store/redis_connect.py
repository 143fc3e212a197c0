"""How the Redis store reaches Redis: the client it opens on its URL (one server or a
cluster), the direct connections to a cluster's masters, and the checks made once at start."""

from __future__ import annotations

import inspect
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.asyncio.cluster import ClusterNode, RedisCluster

from runstream_server.store.base import StoreUnusable
from runstream_server.store.redis_errors import not_permitted, reply_of
from runstream_server.store.redis_keys import RedisKeys
from runstream_server.store.redis_notices import PROBE_NOTICE, commits_channel, notice_channel
from runstream_server.store.redis_url import RedisOptions

__all__ = ["check_usable", "connect", "master_client", "open_client", "said"]

BLOCKING_POOL: dict[str, Any] = {"max_connections": 128, "timeout": 10}
"""At most this many connections to one Redis; a call that finds them all busy waits up to
`timeout` seconds for one (redis-py's default pool refuses it at once, MaxConnectionsError,
which reached clients as UNAVAILABLE when a thousand calls came at once)."""
CLUSTER_CONNECTIONS = 1024
"""Connections to each node of a cluster (its client cannot wait for one: it refuses)."""


def _fresh_connections() -> dict[str, Any]:
    """Pool options under which the pool replaces a connection Redis closed (a restart)
    before handing it out, instead of sending the next command on it.

    redis-py 8.1's asyncio pools skip that check while maintenance notifications are on,
    which they are by default over RESP3 (a readable connection may hold a pending notice
    rather than be dirty), so after a Redis restart each pooled connection failed one call
    with ConnectionError: UNAVAILABLE to clients of a server already SERVING again (redis-py
    PR 4260 fixes it upstream). Those notices come from Redis Enterprise and Redis Cloud; a
    Redis server refuses CLIENT MAINT_NOTIFICATIONS, one refused command per connection.

    Checking before sending rather than retrying after a failure: a command that failed on
    a broken connection may still have run, and a resent append would be refused as
    HeadMoved (or a resent create as AlreadyExists) although it was stored, and the ledger
    would then fold the batch again and store its events without idempotency keys twice.
    """
    if "maint_notifications_config" not in inspect.signature(aioredis.ConnectionPool).parameters:
        return {}  # redis-py before 8.1: its asyncio pools have no such notices, and check
    from redis.maint_notifications import MaintNotificationsConfig

    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


SOCKET_TIMEOUT = 8
"""Seconds a Redis that stopped answering holds a command: shorter than the clients' default
deadline (the SDK's and the CLI's 10 s), so that they get the store's UNAVAILABLE, which says
a change may still be applied, rather than a bare DEADLINE_EXCEEDED of their own."""


def connect(options: RedisOptions) -> Any:
    """A client for the store's URL: a blocking pool on one Redis, or a cluster client."""
    common: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": 3,
        "decode_responses": False,
    }
    if options.cluster:
        # The cluster client has no blocking pool: connections per node are many, so that
        # calls at once reach what Redis itself allows before they are refused.
        seeds = [ClusterNode(host, port) for host, port in options.nodes]
        return RedisCluster.from_url(
            options.url, max_connections=CLUSTER_CONNECTIONS, startup_nodes=seeds, **common
        )
    pool = aioredis.BlockingConnectionPool.from_url(
        options.url,
        health_check_interval=10,
        **BLOCKING_POOL,
        **_fresh_connections(),
        **common,
    )
    return aioredis.Redis.from_pool(pool)


async def open_client(options: RedisOptions, display: str) -> Any:
    """The client of :func:`connect`, once Redis answered it: a Redis it cannot reach or
    log in to is refused in one line that says what to change (`display`: the redacted URL)."""
    try:
        client = connect(options)
    except ValueError as exc:  # an option value redis-py cannot read (?db=x)
        raise StoreUnusable(f"the Redis store URL {display}: {exc}") from None
    try:
        await client.ping()
    except (rex.RedisError, rex.RedisClusterException, OSError, TypeError) as exc:
        await client.aclose()
        # ?bogus=1, an option redis-py does not take, is a TypeError when connecting.
        if options.cluster and "Cluster mode is not enabled" in str(exc):
            raise StoreUnusable(  # reached: it is just not a cluster
                f"the Redis store {display} is not a Redis Cluster: remove ?cluster=1 from the URL"
            ) from None
        if isinstance(exc, rex.ResponseError) and "DB index is out of range" in str(exc):
            raise StoreUnusable(  # reached: it has fewer databases (16 unless set)
                f"the Redis store {display} has no database {options.db} ({said(exc)}): "
                "Redis has as many as its `databases` setting, 16 by default, numbered from 0"
            ) from None
        if isinstance(exc, rex.AuthenticationError):
            raise StoreUnusable(  # reached: it refused the login
                f"the Redis store {display} refused this server's login ({said(exc)}): give "
                "its password in a file named by ?password_file= (and its user as "
                "redis://USER@HOST, when it has ACL users)"
            ) from None
        raise StoreUnusable(f"cannot reach the Redis store {display}: {said(exc)}") from None
    return client


def said(exc: BaseException) -> str:
    """A redis-py error in one line for a message: its type and its first line. redis-py's
    messages name the host and the failure (refused, TLS, wrong password, not a cluster),
    never the password itself."""
    line = (str(exc).splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def master_client(node: Any) -> Any:
    """A client whose connections reach one node of a cluster directly (a cluster client
    sends WAIT to every node, on connections that wrote nothing)."""
    pool = aioredis.BlockingConnectionPool(
        connection_class=node.connection_class, **BLOCKING_POOL, **node.connection_kwargs
    )
    return aioredis.Redis(connection_pool=pool)


async def check_usable(
    client: Any, options: RedisOptions, keys: RedisKeys, *, publish: str, display: str
) -> None:
    """Refuses, in one line, a Redis this server could reach but not work with: keys of
    the store's own names holding something else (another program's data under the
    prefix), or a user the ACL does not allow scripts or publishing (every write would
    fail). Found at start rather than as each call's failure."""
    if not options.cluster and await _is_cluster_node(client):
        raise StoreUnusable(_not_said_cluster(display))
    want = {
        keys.runs: b"zset",
        keys.active: b"zset",
        keys.ended: b"zset",
        keys.ended_tenants: b"hash",
        keys.usage: b"hash",
        keys.filters: b"hash",
    }
    try:
        for key, kind in want.items():
            found = await client.type(key)
            found = found if isinstance(found, bytes) else str(found).encode()
            if found not in (b"none", kind):
                raise StoreUnusable(
                    f"the Redis store {display}: its key {key} holds a "
                    f"{found.decode()}, where Runstream keeps a {kind.decode()}: another "
                    f"program's data under the prefix {options.prefix!r}? (another "
                    "prefix: ?prefix=NAME)"
                )
        # What every append does besides writing: run a script that publishes on the
        # notice channel (on a cluster, the channel of the probe key's slot), which the
        # ACL may restrict to Runstream's channels; followers ignore the probe.
        await client.eval(
            "return redis.call(ARGV[1], ARGV[2], ARGV[3])",
            1,
            f"{options.prefix}:{{probe}}:probe",
            publish,
            notice_channel(options, "probe"),
            PROBE_NOTICE,
        )
    except rex.ResponseError as exc:
        if isinstance(exc, rex.MovedError) and not options.cluster:
            raise StoreUnusable(_not_said_cluster(display)) from None  # INFO was refused
        reply = reply_of(exc)
        if not not_permitted(exc, reply):
            raise
        subscribe = "SSUBSCRIBE" if options.cluster else "SUBSCRIBE"
        channels = f"{options.prefix}:notices:*" if options.cluster else commits_channel(options)
        raise StoreUnusable(
            f"the Redis store {display} refuses this server's user: {reply[:160]} "
            f"(it needs every command on ~{options.prefix}:*, and scripts, {publish} and "
            f"{subscribe} on &{channels})"
        ) from None


def _not_said_cluster(display: str) -> str:
    return f"the Redis store {display} is a node of a Redis Cluster: add ?cluster=1 to the URL"


async def _is_cluster_node(client: Any) -> bool:
    """Whether Redis says it runs in cluster mode; False when the ACL refuses INFO (a MOVED
    reply to the first key then tells)."""
    try:
        info = await client.info("cluster")
    except rex.ResponseError:
        return False
    return bool(info.get("cluster_enabled"))
