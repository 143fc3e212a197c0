"""What the Redis store checks of Redis's own settings at start, on every master of a
cluster: that Redis never evicts the store's keys (``maxmemory-policy``), keeps what it
acknowledged across a restart (AOF), and has the replicas ``?wait=N`` counts on.

Read from ``INFO``, which managed Redis services answer where they refuse ``CONFIG GET``. An
evicting policy is refused: it deletes acknowledged events without a trace. The others are
warnings: AOF may be off on purpose (a provider that offers replicas instead), and a replica
may be reconnecting (after a failover the new primary has none until one rejoins), which
the server rides out, answering writes UNAVAILABLE meanwhile. What Redis does not show
(INFO refused to the user, a section or a field missing) is said in one warning.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions as rex

from runstream_server.store.base import StoreUnusable
from runstream_server.store.redis_errors import reply_of
from runstream_server.store.redis_url import RedisOptions

__all__ = ["StillLoading", "check_settings"]

log = logging.getLogger("runstream.store.redis")

_KEPT = "noeviction"
"""The policy under which a full Redis refuses writes rather than drop keys."""
_SAFE_PREFIX = "volatile-"
"""Policies that evict only keys with a TTL. The store's records, logs and indexes never
have one (only a replica's shared viewer counts and limit usage do, which the replica
writes again), and with no such key left Redis refuses writes as under noeviction: so the
default of several managed services (volatile-lru) keeps every acknowledged event."""
_EVICTING_PREFIX = "allkeys-"


@dataclass
class _Master:
    """What one master (the lone Redis: name "") said, and what it did not."""

    name: str
    said: dict[str, Any] = field(default_factory=dict)
    """Setting, as the operator writes it -> its value."""
    unread: dict[str, str] = field(default_factory=dict)
    """Setting -> why it could not be read."""

    def at(self, value: object) -> str:
        """`value`, and on a cluster the master that has it."""
        return f"{value} on {self.name}" if self.name else str(value)


_FIELDS = {
    # setting: (INFO section, field)
    "maxmemory-policy": ("memory", "maxmemory_policy"),
    "appendonly": ("persistence", "aof_enabled"),
    "replicas": ("replication", "connected_slaves"),
}


class StillLoading(Exception):
    """Redis is loading its data (a restart): its INFO does not show its settings yet (7.0
    says ``aof_enabled:0`` until the load ends, with AOF on)."""


async def check_settings(
    client: Any, options: RedisOptions, *, display: str, serving: bool = False
) -> str:
    """Refuses (:class:`StoreUnusable`, one line) a Redis that evicts keys when full; logs one
    WARNING each for AOF off, fewer replicas than ``?wait=N`` asks for, and what could not be
    checked. Returns what keeps acknowledged events across a restart of Redis, as the line
    saying what is in force puts it: "AOF on", "AOF off..." or "AOF unchecked".

    `serving`: checked again once Redis is back from an outage (it may have restarted with
    other settings), when refusing to start is too late: an evicting Redis is an ERROR, and a
    Redis still loading its data raises :class:`StillLoading`, to be checked once loaded."""
    wait = options.wait_replicas
    wanted = ["maxmemory-policy", "appendonly", *(["replicas"] if wait else [])]
    if options.cluster:
        nodes = client.get_primaries()
        masters = list(
            await asyncio.gather(*(_read(client, n, n.name, wanted, serving) for n in nodes))
        )
    else:
        masters = [await _read(client, None, "", wanted, serving)]

    evicting = [
        m.at(policy)
        for m in masters
        if str(policy := m.said.get("maxmemory-policy", "")).startswith(_EVICTING_PREFIX)
    ]
    if evicting:
        refusal = (
            f"the Redis store {display} evicts keys when its memory is full "
            f"(maxmemory-policy {', '.join(evicting)}), which would delete events this server "
            f"acknowledged as stored: set maxmemory-policy {_KEPT} (CONFIG SET, and in "
            "redis.conf or the provider's settings)"
        )
        if not serving:
            raise StoreUnusable(refusal)
        log.error("%s", refusal)
    if no_aof := [m.at("no") for m in masters if m.said.get("appendonly") == 0]:
        log.warning(
            "the Redis store %s runs with appendonly %s: a restart of Redis loses every event "
            "it acknowledged since its last RDB save; set appendonly yes (CONFIG SET, and in "
            "redis.conf)",
            display,
            ", ".join(no_aof),
        )
    if short := [m.at(m.said["replicas"]) for m in masters if m.said.get("replicas", wait) < wait]:
        log.warning(
            "the Redis store %s has fewer replicas than ?wait=%d asks for (connected: %s): "
            "writes are answered UNAVAILABLE until enough connect; check wait= and the "
            "replicas",
            display,
            wait,
            ", ".join(short),
        )
    _warn_unread(masters, display, wait)
    if off := [m.name for m in masters if m.said.get("appendonly") == 0]:
        where = f" on {', '.join(off)}" if options.cluster else ""
        return f"AOF off{where}: a restart of Redis keeps only its last RDB save"
    return "AOF on" if all(m.said.get("appendonly") for m in masters) else "AOF unchecked"


def _warn_unread(masters: list[_Master], display: str, wait: int) -> None:
    """One warning for every setting a master did not show."""
    unread = {
        setting: f"{m.name}: {why}" if m.name else why
        for m in masters
        for setting, why in m.unread.items()
    }
    if unread:
        needs = {
            "maxmemory-policy": f"maxmemory-policy {_KEPT}",
            "appendonly": "appendonly yes",
            "replicas": f"{wait} connected replica{'s' if wait > 1 else ''}",
        }
        log.warning(
            "could not check the %s of the Redis store %s (%s): make sure it runs with %s",
            _listed(list(unread)),
            display,
            next(iter(unread.values())),
            _listed([needs[setting] for setting in unread]),
        )


def _listed(items: list[str]) -> str:
    return " and ".join(items) if len(items) < 3 else f"{', '.join(items[:-1])} and {items[-1]}"


async def _read(client: Any, node: Any, name: str, wanted: list[str], serving: bool) -> _Master:
    """The settings `wanted` of one master (`node`; None: the lone Redis), one INFO section
    each; a policy Runstream does not know is unread, neither accepted nor refused. While
    `serving`, a failed INFO (Redis gone again) raises: it says nothing about the settings."""
    master = _Master(name)
    for setting in wanted:
        section, key = _FIELDS[setting]
        where = {} if node is None else {"target_nodes": node}
        try:
            info = await client.info(section, **where)
        except rex.ResponseError as exc:
            master.unread[setting] = f"INFO {section} refused: {reply_of(exc)[:120]}"
            continue
        except (rex.RedisError, OSError) as exc:
            if serving:
                raise
            master.unread[setting] = f"INFO {section} failed: {type(exc).__name__}"
            continue
        if info.get("loading"):  # INFO persistence, whose settings show once loaded
            if serving:
                raise StillLoading
            master.unread[setting] = "Redis is still loading its data"
            continue
        value = info.get(key)
        if value is None:
            master.unread[setting] = f"INFO {section} has no {key}"
        elif setting == "maxmemory-policy" and not _known(str(value)):
            master.unread[setting] = f"maxmemory-policy {value} is not one Runstream knows"
        else:
            master.said[setting] = value
    return master


def _known(policy: str) -> bool:
    return policy == _KEPT or policy.startswith((_SAFE_PREFIX, _EVICTING_PREFIX))
