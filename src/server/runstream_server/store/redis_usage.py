"""What each replica's callers use of the per-caller limits, kept in Redis so every replica
counts a caller's use on all of them: one hash ``P:limits:usage`` from replica id to
``expiry|{caller: [open streams, events appended]}``. Each replica rewrites its own entry
and reads the others' in one script; a dead replica's entry expires, and the script drops it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from runstream_server.store.base import Usage
from runstream_server.store.redis_keys import RedisKeys

USAGE_TTL_MS = 10_000
"""A replica's usage stops counting this long after it last shared it (it died)."""

# KEYS: usage. ARGV: replica, its entry, now (ms), the hash's ttl (ms). Writes the entry,
# drops expired ones, and returns the other live replicas' as replica, entry, replica, ...
_SHARE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local now = tonumber(ARGV[3])
local entries = redis.call('HGETALL', KEYS[1])
local others = {}
for i = 1, #entries, 2 do
  local expires = tonumber(string.match(entries[i + 1], '^(%d+)|'))
  if expires == nil or expires <= now then
    redis.call('HDEL', KEYS[1], entries[i])
  elseif entries[i] ~= ARGV[1] then
    others[#others + 1] = entries[i]
    others[#others + 1] = entries[i + 1]
  end
end
return others
"""


class UsageShare:
    """This replica's side of the shared usage, on the client `client` returns at each call."""

    def __init__(
        self,
        keys: RedisKeys,
        replica_id: str,
        client: Callable[[], Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock`: the replicas' shared clock (seconds), which the entries' expiries are on."""
        self._clock = clock
        self._key = keys.usage
        self._replica_id = replica_id
        self._client = client
        self._script: Any = None

    def start(self) -> None:
        self._script = self._client().register_script(_SHARE)

    async def share(self, mine: Mapping[str, Usage]) -> dict[str, dict[str, Usage]]:
        now = int(self._clock() * 1000)
        # Written even when empty, so the others know this replica from its start on:
        # whatever it counts later is news to them.
        use = {who: [u.streams, u.appended] for who, u in mine.items()}
        entry = f"{now + USAGE_TTL_MS}|{json.dumps(use, separators=(',', ':'))}"
        flat = await self._script(
            keys=[self._key],
            args=[self._replica_id, entry, now, USAGE_TTL_MS * 2],
            client=self._client(),
        )
        others: dict[str, dict[str, Usage]] = {}
        for replica, raw in zip(flat[::2], flat[1::2], strict=True):
            use = json.loads(raw.split(b"|", 1)[1])
            others[replica.decode()] = {who: Usage(s, a) for who, (s, a) in use.items()}
        return others
