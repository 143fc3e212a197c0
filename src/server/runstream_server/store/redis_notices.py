"""Notices between replicas on Redis: what one replica tells the others, and how each
process follows them.

An append (and a purge, and a change in a replica's viewer count) publishes a notice in the
same script that writes: a commit notice names the run and the seqs (with the events when
small), and starts with the run id; the other notices start with ``*``. On one Redis they go
out on one classic pub/sub channel, ``P:commits`` (``P:dbN:commits`` for database N > 0: a
Redis's databases share their channels); on a cluster, with SPUBLISH on the channel
of the run's slot (``P:notices:{TAG}``), so a notice stays within the shard of its run.

:class:`NoticeFollower` is each process's one reader: one subscription (on a cluster, one per
master), on a connection of its own that never reconnects silently, so a lost connection, or
one that went silent (:class:`Liveness`), is reported to the handler as a gap (``None``) and
the replica resyncs from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS as SLOTS
from redis.crc import key_slot

from runstream_server.store.base import (
    CommitNotice,
    Notice,
    NoticeHandler,
    PurgedNotice,
    StoredEvent,
    ViewersNotice,
    stop_if_cancelled,
)
from runstream_server.store.redis_url import RedisOptions

T = TypeVar("T")

log = logging.getLogger("runstream.store.redis")

VIEWERS_NOTICE = b"*viewers\n"
"""Starts a viewers notice (then the replica and the run, a line each); a commit notice
starts with a run id, which has no '*'."""
PURGED_NOTICE = b"*purged\n"
"""Starts a purge notice (then the run)."""
PROBE_NOTICE = VIEWERS_NOTICE + b"*probe\nrunstream-probe"
"""What a starting server publishes to try its rights on the notice channel; followers
ignore it. It reads as a viewers notice of a replica that is none and a run that is none,
which every earlier release takes in its stride (at most it reads that run's viewer
counts): the releases before 2026-12-02 read anything else as a commit notice, and a
``*probe`` they could not read ended their notice reader, for good, in a rolling upgrade."""

RESUBSCRIBE_FIRST = 0.5
RESUBSCRIBE_MAX = 5.0
"""Seconds between attempts to subscribe again once the subscription is lost: the first
wait, doubled after each failed attempt up to the max, so an outage costs a few attempts
(and log lines) a minute rather than two a second, and a replica follows again within
seconds of Redis coming back."""
STILL_DOWN_EVERY = 60.0
"""While an outage lasts, a warning again this often (seconds), not on every attempt."""
PING_EVERY = 1.0
"""Seconds without a word from Redis after which a subscription sends PING."""
ANSWER_WITHIN = 3.0
"""Seconds within which Redis must answer that PING (or send anything) before the
subscription counts as lost. Over a link that went silent without a reset, nothing else
finds out: the unanswered bytes keep TCP keepalive from probing, and the connection crawls
on TCP's retransmission schedule (up to two minutes between attempts) after the link is
back, while watchers hear other replicas' commits only at their heartbeats (found in
review: 15 s gaps for half a minute after an outage)."""


def notice_channel(options: RedisOptions, run_id: str) -> str:
    """Where notices about the run are published: on a cluster, the channel of the slot
    the run's keys are in, so the append script may publish there (SPUBLISH)."""
    if options.cluster:
        return shard_channel(options, slot_tags()[key_slot(f"{{{run_id}}}".encode())])
    return commits_channel(options)


def commits_channel(options: RedisOptions) -> str:
    """The one channel of every notice on a single Redis. Its databases share their pub/sub
    channels, so deployments on two databases of one Redis need channels of their own even
    with the same prefix (``/0`` keeps the name it always had)."""
    if options.db:
        return f"{options.prefix}:db{options.db}:commits"
    return f"{options.prefix}:commits"


def publish_command(options: RedisOptions) -> str:
    return "SPUBLISH" if options.cluster else "PUBLISH"


def shard_channel(options: RedisOptions, tag: str) -> str:
    return f"{options.prefix}:notices:{{{tag}}}"


def pass_on(handler: NoticeHandler, data: bytes, mine: bytes) -> None:
    """Decodes a notice and hands it on, unless it is this replica's own viewer count; one
    it cannot read counts as missed (a gap: the replica resyncs from the store)."""
    if data == PROBE_NOTICE:
        return
    try:
        if data.startswith(VIEWERS_NOTICE):
            replica, run_id = data[len(VIEWERS_NOTICE) :].split(b"\n", 1)
            notice: Notice = None if replica == mine else ViewersNotice(run_id.decode())
        else:
            notice = decode_notice(data)
    except (ValueError, IndexError) as exc:  # UnicodeDecodeError is a ValueError
        log.warning("an unreadable Redis notice (%s): resyncing from the store", exc)
        handler(None)
        return
    if notice is not None:
        handler(notice)


def decode_notice(data: bytes) -> CommitNotice | PurgedNotice:
    if data.startswith(PURGED_NOTICE):
        return PurgedNotice(data[len(PURGED_NOTICE) :].decode())
    run_id, first, last, rest = data.split(b"\n", 3)
    events: list[StoredEvent] = []
    seq, pos = int(first), 0
    while pos < len(rest):
        end = rest.index(b"\n", pos)
        kind, key_len, data_len = (int(x) for x in rest[pos:end].split(b" "))
        pos = end + 1
        key = rest[pos : pos + key_len].decode()
        pos += key_len
        events.append(StoredEvent(seq, kind, key, rest[pos : pos + data_len]))
        pos += data_len
        seq += 1
    return CommitNotice(run_id.decode(), int(first), int(last), tuple(events))


@functools.cache
def slot_tags() -> tuple[str, ...]:
    """For each of the 16,384 cluster slots, a short hash tag whose keys land in it.

    A sharded channel lives in one slot, and a script may publish only to the slot of its
    keys, so notices go out on one channel per slot, named with the slot's tag. Found by
    trying hex numbers (about 300,000, 0.1 s), once per process.
    """
    tags: list[str] = [""] * SLOTS
    missing, n = SLOTS, 0
    while missing:
        tag = f"{n:x}"
        slot = key_slot(tag.encode())
        if not tags[slot]:
            tags[slot] = tag
            missing -= 1
        n += 1
    return tuple(tags)


async def confirmed(pubsub: Any, channels: int, handler: NoticeHandler, mine: bytes) -> bool:
    """Waits until Redis confirmed that many subscriptions; passes on notices meanwhile.
    False when a slot moved meanwhile (Redis unsubscribed its channel): subscribe again."""
    while channels:
        message = await pubsub.get_message(timeout=5.0)
        if message is None:
            raise rex.TimeoutError("Redis did not confirm the notice subscriptions")
        if message["type"] == "ssubscribe":
            channels -= 1
        elif message["type"] == "smessage":
            pass_on(handler, message["data"], mine)
        elif message["type"] == "sunsubscribe":
            return False
    return True


class Liveness:
    """Whether a subscription still hears from Redis: a PING after PING_EVERY seconds of
    quiet, and a lost subscription when ANSWER_WITHIN seconds pass without an answer."""

    def __init__(self) -> None:
        self._heard = time.monotonic()  # the last message of any kind, a PONG too
        self._pinged: float | None = None  # when the PING awaiting an answer went out

    async def next_message(self, pubsub: Any) -> dict[str, Any] | None:
        """The next message, or None after a second at most without one; raises
        TimeoutError once Redis has not answered the PING in time."""
        now = time.monotonic()
        if self._pinged is None and now - self._heard >= PING_EVERY:
            await pubsub.ping()
            self._pinged = now
        if self._pinged is None:
            wait = self._heard + PING_EVERY - now
        else:
            wait = self._pinged + ANSWER_WITHIN - now
            if wait <= 0:
                raise rex.TimeoutError(
                    f"Redis did not answer the subscription's PING within {ANSWER_WITHIN:g} s"
                )
        message: dict[str, Any] | None = await pubsub.get_message(timeout=min(wait, 1.0))
        if message is not None:
            self._heard, self._pinged = time.monotonic(), None
        return message


def never_again() -> Retry:
    """No retry, and no reconnect: redis-py's retry handler connects a failed connection
    again before it gives up, even with no retries left, and a pub/sub then subscribes
    again by itself, behind the follower's back (a connection it did not know of, left
    open after a stop). Catching no error, it lets a failure end the read as it is."""
    return Retry(NoBackoff(), 0, supported_errors=())


async def finish(work: Awaitable[T]) -> T:
    """Awaits cleanup to its end: a cancellation arriving meanwhile (a shutdown's second
    one) waits for it too, then is raised again, rather than leave it half done."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return task.result()


async def close_all(*closes: Callable[[], Awaitable[Any]]) -> None:
    """Closes each in turn, every one to its end: a failed close of a pub/sub (its
    connection already broken) must not leave its pool's sockets open, nor a cancellation
    arriving meanwhile the closes after it (it is raised again once all are done)."""
    cancelled = False
    for close in closes:
        try:
            await finish(close())
        except asyncio.CancelledError:
            cancelled = True
        except Exception:  # closing what may be broken already
            pass
    if cancelled:
        raise asyncio.CancelledError


class NoticeFollower:
    """The one reader of other replicas' notices in a process."""

    def __init__(
        self, options: RedisOptions, replica_id: str, *, back: Callable[[], None] = lambda: None
    ) -> None:
        """`back` is called when the subscription is back after an outage."""
        self.options = options
        self.replica_id = replica_id
        self._back = back
        self._mine = replica_id.encode()  # this replica's own notices are skipped
        self._closed = asyncio.Event()
        self._followers: set[Any] = set()  # open pub/sub connections, closed on close()
        self._down_since: float | None = None  # when the subscription was lost (monotonic)
        self._warned_at = 0.0  # when the outage was last logged as a warning
        self._wait = RESUBSCRIBE_FIRST  # before the next attempt to subscribe again
        self._retry = asyncio.Event()  # Redis answered meanwhile: try again now

    async def close(self) -> None:
        self._closed.set()
        for pubsub in list(self._followers):
            with contextlib.suppress(rex.RedisError, OSError):
                await pubsub.aclose()

    async def follow(self, handler: NoticeHandler, client: Any) -> None:
        """One subscription per process (on a cluster, one per shard); reconnects, and
        reports each gap as None."""
        while not self._closed.is_set():
            stop_if_cancelled()
            try:
                if self.options.cluster:
                    await self._follow_shards(handler, client)
                else:
                    await self._follow_channel(handler)
            except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
                wait = self._lost(exc)
                self._retry.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry.wait(), wait)

    def reachable(self) -> None:
        """Redis answered (the health check's ping, every half second): a lost subscription
        tries again now rather than at the end of its wait, up to 5 s later, while the
        replica already said SERVING and its watchers heard nothing of other replicas."""
        if self._down_since is not None:
            self._retry.set()

    def _lost(self, exc: BaseException) -> float:
        """Logs a failed subscription, once per outage (then every STILL_DOWN_EVERY
        seconds); returns how long to wait before the next attempt."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = self._warned_at = now
            self._wait = RESUBSCRIBE_FIRST
            log.warning("lost the Redis notice subscription (%s); subscribing again", exc)
        elif now - self._warned_at >= STILL_DOWN_EVERY:
            self._warned_at = now
            log.warning(
                "the Redis notice subscription is still lost after %.0f s (%s); subscribing again",
                now - self._down_since,
                exc,
            )
        else:
            log.debug("cannot subscribe to Redis notices yet (%s)", exc)
        wait, self._wait = self._wait, min(self._wait * 2, RESUBSCRIBE_MAX)
        return wait

    def _subscribed(self) -> None:
        """Ends an outage: says so once; the next loss starts again at the first wait."""
        if self._down_since is not None:
            log.info(
                "the Redis notice subscription is back after %.1f s; resyncing from the store",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
            self._back()

    async def _follow_channel(self, handler: NoticeHandler) -> None:
        """One Redis: classic pub/sub on one channel (any Redis version has it).

        Its own connection, which never reconnects by itself: redis-py would subscribe again
        silently, and the notices sent meanwhile would be lost without a gap to resync from.
        Here a lost connection ends the subscription; the caller subscribes again and resyncs.
        So does a silent one (Liveness): redis-py's own health check sends PINGs but never
        waits for their answers. The socket timeout bounds the connection's handshake and
        writes (a frozen Redis accepts connections but answers nothing).
        """
        client: Any = aioredis.from_url(
            self.options.url,
            retry=never_again(),
            socket_connect_timeout=3,
            socket_timeout=ANSWER_WITHIN,
        )
        pubsub = client.pubsub()
        self._followers.add(pubsub)
        try:
            await pubsub.subscribe(commits_channel(self.options))
            # Sending SUBSCRIBE is not being subscribed: Redis may refuse it (a user without
            # @pubsub), and its refusal arrives as the reply, read here.
            message = await pubsub.get_message(timeout=5.0)
            if message is None or message["type"] != "subscribe":
                raise rex.TimeoutError("Redis did not confirm the notice subscription")
            self._subscribed()
            handler(None)  # notices before the subscription were missed: resync
            liveness = Liveness()
            while not self._closed.is_set():
                stop_if_cancelled()
                message = await liveness.next_message(pubsub)
                if message is not None and message.get("type") == "message":
                    pass_on(handler, message["data"], self._mine)
        finally:
            self._followers.discard(pubsub)
            await close_all(pubsub.aclose, client.aclose)

    async def _follow_shards(self, handler: NoticeHandler, client: Any) -> None:
        """A cluster: sharded pub/sub, one connection per master, subscribed to the channels
        of the slots it owns. A notice then travels only within the shard of its run, where
        classic PUBLISH would be copied to every node. Returns when a slot moved (Redis
        unsubscribes its channel), so the caller subscribes again where the slots are now.

        A master that cannot be reached does not hold up the others: their notices are
        followed meanwhile (the gap of the lost shard is resynced from the store, as any
        gap), and the whole subscription is made again once that master answers or its
        slots moved to another (a failover)."""
        nodes = client.nodes_manager
        await nodes.initialize()  # where the slots are now
        started = time.monotonic()
        tags = slot_tags()
        owned: dict[str, tuple[Any, list[str]]] = {}
        for slot, tag in enumerate(tags):
            node = nodes.get_node_from_slot(slot)
            owned.setdefault(node.name, (node, []))[1].append(shard_channel(self.options, tag))
        pubsubs: list[Any] = []
        followed: list[Any] = []
        missing: list[tuple[Any, BaseException]] = []
        readers: list[asyncio.Task[None]] = []
        try:
            for node, channels in owned.values():
                kwargs = {**node.connection_kwargs, "retry": never_again()}
                pool = aioredis.ConnectionPool(connection_class=node.connection_class, **kwargs)
                pubsub = aioredis.Redis(connection_pool=pool).pubsub()
                pubsubs.append(pubsub)
                self._followers.add(pubsub)
                try:
                    await pubsub.ssubscribe(channels[0])  # connects and sets the pubsub up
                    # One SSUBSCRIBE per slot (several channels in one would be CROSSSLOT),
                    # sent in a few writes rather than thousands of round trips.
                    connection = pubsub.connection
                    assert connection is not None  # set by the first SSUBSCRIBE
                    for i in range(1, len(channels), 1000):
                        commands = [("SSUBSCRIBE", c) for c in channels[i : i + 1000]]
                        await connection.send_packed_command(connection.pack_commands(commands))
                    if not await confirmed(pubsub, len(channels), handler, self._mine):
                        log.info("a slot moved to another Redis node; subscribing again")
                        return
                except (rex.RedisError, OSError) as exc:
                    if len(owned) == 1:
                        raise
                    missing.append((node, exc))
                    continue
                followed.append(pubsub)
            if not followed:
                raise missing[0][1]
            if missing:
                if self._down_since is None:
                    self._down_since = self._warned_at = time.monotonic()
                log.warning(
                    "following notices on %d of %d Redis shards; %s cannot be reached (%s): "
                    "its runs are resynced from the store, and it is subscribed again once "
                    "it answers or its slots move",
                    len(followed),
                    len(owned),
                    ", ".join(node.name for node, _ in missing),
                    missing[0][1],
                )
            else:
                log.info(
                    "following notices on %d Redis shards (%.2f s to subscribe)",
                    len(owned),
                    time.monotonic() - started,
                )
                self._subscribed()
            handler(None)  # notices before the subscriptions were missed: resync
            readers = [asyncio.create_task(self._read_shard(p, handler)) for p in followed]
            if missing:
                readers.append(
                    asyncio.create_task(
                        self._until_back(
                            nodes,
                            [n for n, _ in missing],
                            [n for n, _ in owned.values() if n not in [m for m, _ in missing]],
                        )
                    )
                )
            done, _ = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
            for reader in done:
                reader.result()  # a lost connection raises here
        finally:
            for reader in readers:
                reader.cancel()
            self._followers.difference_update(pubsubs)
            # The readers end before their connections close (a reader still reading could
            # open one again), and a second cancellation (a hurried stop) skips no close.
            await close_all(
                lambda: asyncio.gather(*readers, return_exceptions=True),
                *[close for p in pubsubs for close in (p.aclose, p.connection_pool.disconnect)],
            )

    async def _until_back(self, nodes: Any, missing: list[Any], live: list[Any]) -> None:
        """Returns once a master this process could not subscribe to answers again, or one
        of its slots is served by another node (a replica took over), as a live master
        says: time to subscribe again, where the slots are now."""
        names = {node.name for node in missing}
        slots = {s for s in range(SLOTS) if nodes.get_node_from_slot(s).name in names}
        wait = RESUBSCRIBE_FIRST
        while not self._closed.is_set():
            await asyncio.sleep(wait)
            wait = min(wait * 2, RESUBSCRIBE_MAX)
            for node in [*missing, *live]:
                kwargs = {
                    **node.connection_kwargs,
                    "retry": never_again(),
                    "socket_connect_timeout": 1.0,
                    "socket_timeout": 2.0,
                }
                pool = aioredis.ConnectionPool(connection_class=node.connection_class, **kwargs)
                probe: Any = aioredis.Redis(connection_pool=pool)
                try:
                    if node in missing:
                        if await probe.ping():
                            return  # it is back
                        continue
                    for first, last, master, *_ in await probe.execute_command("CLUSTER SLOTS"):
                        host, port = master[0], master[1]
                        host = host.decode() if isinstance(host, bytes) else host
                        if f"{host}:{port}" not in names and any(
                            s in slots for s in range(int(first), int(last) + 1)
                        ):
                            return  # another node serves its slots now
                    break  # one live master's view is enough
                except (rex.RedisError, OSError, ValueError, IndexError):
                    continue
                finally:
                    await close_all(probe.aclose, pool.disconnect)

    async def _read_shard(self, pubsub: Any, handler: NoticeHandler) -> None:
        liveness = Liveness()
        while not self._closed.is_set():
            stop_if_cancelled()
            message = await liveness.next_message(pubsub)
            if message is None:
                continue
            if message["type"] == "smessage":
                pass_on(handler, message["data"], self._mine)
            elif message["type"] == "sunsubscribe":
                log.info("a slot moved to another Redis node; subscribing again")
                return
