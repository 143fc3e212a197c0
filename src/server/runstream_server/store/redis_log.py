"""Reading a run's log from the Redis store: its stream ``P:{run}:log``, whose entry IDs are
``<seq>-0`` and whose fields are ``k`` (kind), ``i`` (idempotency key) and ``d`` (the
serialized RunEvent), in that order (the append script in :mod:`.redis` writes them).

A read of every kind walks the stream with XRANGE (or XREVRANGE) a page at a time. A read of
some kinds only filters in Redis, a page at a time too, with :data:`_FILTERED`: a run's log
may hold hundreds of thousands of events of which the caller wants a few (a watcher that
follows decisions only), and sending every page to the replica to be parsed and dropped there
cost some 25 us per event of the replica's core (13 s of it for 500,000 events). A read
bounded by bytes (``max_bytes``) goes through the same script, every kind wanted or some: the
replica cannot know an entry's size before it has it, so Redis counts them and sends no more
than the budget (and one entry), walking the page :data:`_STEP` entries at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from runstream_server.store.base import HeldKey, StoredEvent, stop_if_cancelled
from runstream_server.store.redis_keys import RedisKeys

__all__ = ["RunLog"]

_PAGE = 1000
"""Stream entries one read walks per round trip: about a millisecond of Redis's time."""
_STEP = 32
"""Stream entries the script asks of the stream at a time in a read bounded by bytes: what
Redis holds of entries past the budget (8 MiB at most, of 256 KiB events)."""

# KEYS: log. ARGV: XRANGE or XREVRANGE, its two bounds in that command's order, the page
# size, the most entries to return, the entries asked of the stream at a time, the bytes of
# data after which to stop (empty: no limit) once as many entries as the last argument before
# the kinds are found, then the kinds wanted (none: every kind). Returns the number of entries
# walked, the ID of the last one walked (or the last one returned, once the most are found),
# and the entries of the wanted kinds as [id, [k, kind, i, key, d, data]].
_FILTERED = """
local first, page, most = ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[5])
local step, room, fewest = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local every = #ARGV < 9
local wanted = {}
for i = 9, #ARGV do wanted[ARGV[i]] = true end
local found, walked, last, held = {}, 0, '', 0
while walked < page do
  local count = math.min(step, page - walked)
  local entries = redis.call(ARGV[1], KEYS[1], first, ARGV[3], 'COUNT', count)
  for _, entry in ipairs(entries) do
    walked = walked + 1
    last = entry[1]
    if every or wanted[entry[2][2]] then
      found[#found + 1] = entry
      held = held + #entry[2][6]
      if #found >= most or (room and held > room and #found >= fewest) then
        return {walked, last, found}
      end
    end
  end
  if #entries < count then break end
  first = '(' .. last
end
return {walked, last, found}
"""


def _stored(entry: tuple[bytes, dict[bytes, bytes]]) -> StoredEvent:
    """An entry as XRANGE's reply gives it: its ID and a dict of its fields."""
    entry_id, fields = entry
    return StoredEvent(
        int(entry_id.split(b"-", 1)[0]),
        int(fields[b"k"]),
        fields.get(b"i", b"").decode(),
        fields[b"d"],
    )


def _scripted(entry: list[Any]) -> StoredEvent:
    """An entry as a script's reply gives it: its ID and its fields in a flat list."""
    entry_id, fields = entry
    return StoredEvent(
        int(entry_id.split(b"-", 1)[0]), int(fields[1]), fields[3].decode(), fields[5]
    )


class RunLog:
    """Reads runs' logs (the events, by seq or kind, and the idempotency keys they hold)."""

    def __init__(self, keys: RedisKeys, client: Callable[[], Any]) -> None:
        self._keys = keys
        self._client = client
        self._script: Any = None
        self._script_client: Any = None

    def _filtered(self) -> Any:
        """The filtering script, registered with the client of now (the store's stand-in
        once it is closed, which refuses)."""
        client = self._client()
        if client is not self._script_client:
            self._script = client.register_script(_FILTERED)
            self._script_client = client
        return self._script

    async def find_keys(self, run_id: str, keys: Sequence[str]) -> dict[str, HeldKey]:
        wanted = [k for k in keys if k]
        if not wanted:
            return {}
        _, log_key, keys_key = self._keys.run(run_id)
        client = self._client()
        seqs = await client.hmget(keys_key, wanted)
        held = {k: int(s) for k, s in zip(wanted, seqs, strict=True) if s is not None}
        if not held:
            return {}
        pipe = client.pipeline(transaction=False)  # the kinds: one round trip for all
        for seq in held.values():
            pipe.xrange(log_key, f"{seq}-0", f"{seq}-0")
        entries = await pipe.execute()
        # Kind 0 (none known): the event went between the two reads (a purge of an ended
        # run, which takes its keys too), so there is nothing left to compare with.
        return {
            key: HeldKey(seq, _stored(found[0]).kind if found else 0)
            for (key, seq), found in zip(held.items(), entries, strict=True)
        }

    async def read(
        self,
        run_id: str,
        after_seq: int,
        before_seq: int | None,
        limit: int,
        kinds: Collection[int],
        *,
        newest_first: bool,
        max_bytes: int | None = None,
    ) -> list[StoredEvent]:
        """Up to `limit` events between the two seqs (both excluded), oldest or newest
        first, of the given kinds (every kind when none), and with `max_bytes` no more than
        :func:`~.base.within_bytes` keeps."""
        if before_seq is not None and before_seq <= after_seq + 1:
            return []  # nothing lies between (below seq 1: XREVRANGE refuses the end "(0-0")
        log_key = self._keys.run(run_id)[1]
        low = f"{after_seq + 1}-0"
        high = "+" if before_seq is None else f"({before_seq}-0"
        wanted = [str(kind) for kind in sorted(set(kinds))]
        found: list[StoredEvent] = []
        held = 0  # bytes of data found
        while len(found) < limit and (max_bytes is None or held <= max_bytes or len(found) < 2):
            # Each page: a caller that left (a deadline, a cancel) stops the scan, which on a
            # long log with a rare kind wanted walks it all; redis-py can swallow the cancel
            # (asyncio.wait_for in Python 3.11 returns a read that completed meanwhile).
            stop_if_cancelled()
            first, second = (high, low) if newest_first else (low, high)
            if wanted or max_bytes is not None:
                page = _PAGE
                walked, last, entries = await self._filtered()(
                    keys=[log_key],
                    args=[
                        "XREVRANGE" if newest_first else "XRANGE",
                        first,
                        second,
                        page,
                        limit - len(found),
                        page if max_bytes is None else _STEP,
                        "" if max_bytes is None else max_bytes - held,
                        max(1, 2 - len(found)),
                        *wanted,
                    ],
                )
                batch = [_scripted(entry) for entry in entries]
                found += batch
                held += sum(len(event.data) for event in batch)
                last = last.decode() if last else ""
            else:
                page = min(limit - len(found), _PAGE)
                client = self._client()
                read = client.xrevrange if newest_first else client.xrange
                replies = await read(log_key, first, second, count=page)
                walked = len(replies)
                found += (_stored(entry) for entry in replies)
                last = replies[-1][0].decode() if replies else ""
            if walked < page:
                break
            if newest_first:
                high = f"({last}"
            else:
                low = f"({last}"
        return found
