"""Per-principal and per-tenant limits, checked at the gRPC edge before a call does any work.

- open watch streams (WatchRun, WatchRuns, Interact) per principal;
- open Report streams per principal (on this server);
- watchers per run (every caller, auth or not);
- active (not ended) runs per tenant, checked on CreateRun (creates in flight count too);
- events appended per second per producer: a token bucket on AppendEvents and Report.

On a shared store the per-principal limits count a principal's use on every replica: each
replica exchanges its callers' open streams and appended events with the others every
``share_interval`` (one store round trip), and checks against its own counts plus the others'
as last exchanged, so checks never wait for the store. Between exchanges a principal can go
over by what it takes on other replicas in one interval; a replica that cannot reach the
store goes on with the others' streams as last exchanged and no more of their appends.

Over a limit the call gets RESOURCE_EXHAUSTED with a ``google.rpc.RetryInfo`` detail saying
when to try again; the SDK waits that long and retries. A refused append stores nothing, and
what was acknowledged before stays acknowledged. Per-principal and per-tenant limits need a
principal, so with auth off only the watchers-per-run limit applies.

A limit judges only well-formed requests: a malformed one gets its INVALID_ARGUMENT (naming
the field) whatever the limits say, and takes no place in them. A request that does not
decode, or breaks a field rule, passes straight on to its error; CreateRun and the watch
streams are checked (:mod:`runstream_server.api.checks`) before they are counted. A batch of
events is checked only when the bucket would refuse it, so that an admitted batch is checked
once, by its handler (a second check would add about 6 us of CPU to every event appended);
the tokens of an AppendEvents batch its handler refuses as malformed are given back. A Report
stream that sends a malformed batch ends with its INVALID_ARGUMENT, and what its batches took
stays taken.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from grpc import aio
from runstream.v1 import run_pb2

from runstream_server.errors import InvalidArgument, ResourceExhausted, RunstreamError
from runstream_server.principal import Principal, current
from runstream_server.rpc.handlers import Behavior, Handler, HandlerRewriter, replace_behavior
from runstream_server.store.base import EventStore, RunFilter, Usage, stop_if_cancelled

__all__ = ["CallerLimits", "LimitInterceptor", "LimitSharing", "RequestCheck", "TokenBucket"]

Context = aio.ServicerContext[Any, Any]
RequestCheck = Callable[[Any, str], None]
"""Raises the error a malformed request gets from its handler (see
:mod:`runstream_server.api.checks`); the second argument is the run of a Report stream."""

log = logging.getLogger("runstream.limits")

REFUSALS_WARNED_EVERY = 60.0
"""Seconds between two WARNINGs about one principal refused by one limit: the first refusal
is the news; the client waits and tries again, and each try would be a line."""

_RUN = "/runstream.v1.RunService/"
_STREAMS = {_RUN + "WatchRun", _RUN + "WatchRuns", "/runstream.v1.DecisionService/Interact"}
_APPEND = "/runstream.v1.ReportService/AppendEvents"
_REPORT = "/runstream.v1.ReportService/Report"
_ACTIVE = frozenset(
    {
        run_pb2.RUN_STATUS_PENDING,
        run_pb2.RUN_STATUS_RUNNING,
        run_pb2.RUN_STATUS_PAUSED,
        run_pb2.RUN_STATUS_WAITING_FOR_INPUT,
    }
)


@dataclass(frozen=True)
class CallerLimits:
    """Limits per caller; the defaults keep one 2-core server responsive. 0 turns one off."""

    watch_streams_per_principal: int = 200
    """WatchRun, WatchRuns and Interact streams one principal may hold open at once."""
    watchers_per_run: int = 5000
    """Watch streams open on one run at once (on this server)."""
    report_streams_per_principal: int = 1000
    """Report streams one producer principal may hold open at once on this server (each
    holds some 40 KiB: 20,000 of one token's took a server from 70 to 842 MiB)."""
    active_runs_per_tenant: int = 2000
    """Runs not yet ended that one tenant may have."""
    append_events_per_second: float = 2000.0
    """Sustained events per second one producer principal may append."""
    append_burst: int = 10000
    """Events a producer may append at once above the sustained rate (0, like a rate of 0,
    turns the append limit off)."""
    stream_retry_after: float = 5.0
    """The RetryInfo delay when a stream limit is reached (a stream may close by then)."""
    runs_retry_after: float = 10.0
    """The RetryInfo delay when a tenant has too many active runs."""
    share_interval: float = 1.0
    """On a shared store, how often replicas exchange their callers' usage (seconds)."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, int) and not 0 <= value <= MAX_COUNT:
                raise ValueError(f"{name} must be 0 to {MAX_COUNT}, got {value}")
            if isinstance(value, float) and not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number of 0 or more, got {value}")


BUCKETS_KEPT = 10_000
"""Append buckets kept before the full ones (idle principals) are dropped."""

MAX_COUNT = 2**31 - 1
"""The largest count limit: far beyond any real one, and one the stores hold (a limit of
2**63 - 1 overflowed SQLite's integers: every CreateRun was INTERNAL)."""


class TokenBucket:
    """`rate` tokens per second up to `burst`. A take larger than the burst passes when the
    bucket is full and leaves it in debt, so big batches are slowed, never refused forever."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self, n: int) -> float:
        """Takes `n` tokens and returns 0, or takes none and returns the seconds to wait."""
        self._refill()
        need = min(n, self.burst)
        if self._tokens >= need:
            self._tokens -= n
            return 0.0
        return (need - self._tokens) / self.rate

    def charge(self, n: int) -> None:
        """Takes `n` tokens spent elsewhere (another replica), into debt if need be."""
        self._refill()
        self._tokens -= n

    def give_back(self, n: int) -> None:
        """Returns `n` tokens taken for what was not done after all (up to the burst)."""
        self._refill()
        self._tokens = min(float(self.burst), self._tokens + n)

    def full(self) -> bool:
        self._refill()
        return self._tokens >= self.burst

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now


class _ActiveRuns:
    """One tenant's active runs as this replica knows them (see `_admit_run`)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.count = 0
        """Active runs in the store when last counted, plus the creates done since."""
        self.counted_at = -math.inf
        self.creating = 0
        """Creates admitted and not yet done."""
        self.settled = asyncio.Event()
        """Set while no create is in flight."""
        self.settled.set()

    @property
    def taken(self) -> int:
        return self.count + self.creating

    def begin(self) -> None:
        self.creating += 1
        self.settled.clear()

    def settle(self, created: bool) -> None:
        self.creating -= 1
        self.count += created
        if not self.creating:
            self.settled.set()


def _unchecked(request: Any, run_id: str) -> None:
    """The check of a method without one (Interact: no request when its stream opens)."""


def _who(principal: Principal) -> str:
    """The principal's key in the counts: the tenant's length first, so that no other
    tenant and subject make the same key ("x/y" and "y" against "x" and "y/z")."""
    return f"{len(principal.tenant)}:{principal.tenant}/{principal.subject}"


class LimitInterceptor(HandlerRewriter):
    """Applies :class:`CallerLimits` (see module); sits after the auth interceptor.

    Its checks run when a call starts, so the handlers it builds (once per method) call the
    method's own and return what it returns: a stream gains no layer from it.
    """

    def __init__(
        self,
        limits: CallerLimits,
        store: EventStore,
        checks: dict[str, RequestCheck] | None = None,
        counted: Callable[[str], None] | None = None,
    ) -> None:
        """`checks`: the request checks of the methods limited (without them a limit judges
        any request that decodes); `counted`: told the reason of every refusal (the
        ``runstream_limit_refusals_total`` counter)."""
        super().__init__()
        self._limits = limits
        self._counted = counted
        self._warned: dict[tuple[str, str], float] = {}  # (who, reason) -> when last warned
        self._store = store
        self._checks = checks or {}
        self._streams: defaultdict[str, int] = defaultdict(int)
        self._reports: defaultdict[str, int] = defaultdict(int)  # Report streams, this server
        self._watchers: defaultdict[tuple[str, str], int] = defaultdict(int)  # (tenant, run)
        self._buckets: dict[str, TokenBucket] = {}
        self._prune_at = BUCKETS_KEPT
        self._active: dict[str, _ActiveRuns] = {}
        self.sharing = LimitSharing(store, limits.share_interval, self._streams, self._bucket)
        """The exchange with other replicas, started with the server's background work."""

    def rewrite(self, method: str, handler: Handler) -> Handler:
        check = self._checks.get(method, _unchecked)
        # A request that did not decode, or broke a field rule, arrives as the InvalidArgument
        # DecodingInterceptor answers with: it goes on to it, judged by no limit.
        if method in _STREAMS:

            def wrap(_kind: str, behavior: Behavior) -> Behavior:
                def opened(request: Any, context: Context) -> Any:
                    if not isinstance(request, InvalidArgument):
                        self._open_stream(current(), method, request, context, check)
                    return behavior(request, context)

                return opened

        elif method == _REPORT:

            def wrap(_kind: str, behavior: Behavior) -> Behavior:
                def metered(requests: Any, context: Context) -> Any:
                    principal = current()
                    if principal is not None:
                        self._open_report(principal, context)
                        requests = self._metered_stream(principal, requests, check)
                    return behavior(requests, context)

                return metered

        elif method == _APPEND:

            def wrap(_kind: str, behavior: Behavior) -> Behavior:
                async def metered(request: Any, context: Context) -> Any:
                    principal = current()
                    if principal is None or isinstance(request, InvalidArgument):
                        return await behavior(request, context)
                    taken = self._take(principal, request, "", check)
                    try:
                        return await behavior(request, context)
                    except InvalidArgument:  # malformed after all: it takes nothing
                        self._give_back(principal, taken)
                        raise

                return metered

        elif method == _RUN + "CreateRun":

            def wrap(_kind: str, behavior: Behavior) -> Behavior:
                async def counted(request: Any, context: Context) -> Any:
                    principal = current()
                    if (
                        principal is None
                        or self._limits.active_runs_per_tenant <= 0
                        or isinstance(request, InvalidArgument)
                    ):
                        return await behavior(request, context)
                    check(request, "")
                    runs = await self._admit_run(principal.tenant)
                    created = False
                    try:
                        response = await behavior(request, context)
                        created = True
                        return response
                    finally:
                        runs.settle(created)

                return counted

        else:
            return handler
        return replace_behavior(handler, wrap)

    # --- streams --------------------------------------------------------------------------

    def _open_stream(
        self,
        principal: Principal | None,
        method_name: str,
        request: Any,
        context: Context,
        check: RequestCheck,
    ) -> None:
        limits = self._limits
        who = _who(principal) if principal is not None else None
        run_id = request.run_id if method_name == _RUN + "WatchRun" else None
        if who is None and not run_id:
            return  # counted nowhere
        check(request, "")  # a malformed request is neither judged nor counted
        # Counted by the caller's tenant too: a run only its tenant sees must look the same,
        # limit or not, to every other tenant (NOT_FOUND, from the handler).
        watched = (principal.tenant if principal else "", run_id or "")
        if who is not None and 0 < limits.watch_streams_per_principal <= self._open_streams(who):
            most = limits.watch_streams_per_principal
            raise self._refused(
                principal,
                ResourceExhausted(
                    f"{most} watch {'streams are' if most != 1 else 'stream is'} open for "
                    f"{principal.subject if principal else who}; close one first",
                    reason="WATCH_STREAM_LIMIT",
                    retry_after=limits.stream_retry_after,
                ),
            )
        if run_id and 0 < limits.watchers_per_run <= self._watchers[watched]:
            # A limit of the run's, not the caller's: counted, never warned about.
            raise self._refused(
                None,
                ResourceExhausted(
                    f"run {run_id!r} has {limits.watchers_per_run} "
                    f"watcher{'s' if limits.watchers_per_run != 1 else ''}, the most allowed",
                    reason="RUN_WATCHER_LIMIT",
                    retry_after=limits.stream_retry_after,
                ),
            )
        if who is not None:
            self._streams[who] += 1
        if run_id:
            self._watchers[watched] += 1

        def closed(_: Any) -> None:
            if who is not None:
                self._release(self._streams, who)
            if run_id:
                self._release(self._watchers, watched)

        context.add_done_callback(closed)  # type: ignore[arg-type]

    def _open_report(self, principal: Principal, context: Context) -> None:
        """Counts a Report stream of `principal` on this server, or refuses it past the
        limit (RESOURCE_EXHAUSTED, as a watch stream past its own)."""
        limit = self._limits.report_streams_per_principal
        if limit <= 0:
            return
        who = _who(principal)
        if self._reports.get(who, 0) >= limit:
            raise self._refused(
                principal,
                ResourceExhausted(
                    f"{limit} Report streams are open for {principal.subject}; close one first",
                    reason="REPORT_STREAM_LIMIT",
                    retry_after=self._limits.stream_retry_after,
                ),
            )
        self._reports[who] += 1
        context.add_done_callback(lambda _: self._release(self._reports, who))  # type: ignore[arg-type]

    def _open_streams(self, who: str) -> int:
        """The principal's open streams, here and (as last exchanged) on other replicas."""
        return self._streams.get(who, 0) + self.sharing.streams_elsewhere(who)

    @staticmethod
    def _release(counts: defaultdict[Any, int], key: Any) -> None:
        counts[key] -= 1
        if counts[key] <= 0:
            del counts[key]

    # --- appends --------------------------------------------------------------------------

    def _take(self, principal: Principal, request: Any, run_id: str, check: RequestCheck) -> int:
        """Takes the tokens of the request's events and returns how many, or refuses it:
        with its own error if it is malformed (`check`, the stream's `run_id`), else with
        RESOURCE_EXHAUSTED."""
        limits = self._limits
        events = len(request.events)
        if events <= 0 or limits.append_events_per_second <= 0 or limits.append_burst <= 0:
            return 0
        who = _who(principal)
        wait = self._bucket(who).take(events)
        if wait > 0:
            check(request, run_id)
            raise self._refused(
                principal,
                ResourceExhausted(
                    f"events: {principal.subject} may append "
                    f"{limits.append_events_per_second:g} events per second (bursts of "
                    f"{limits.append_burst}); this batch of {events} is over it, and nothing of "
                    "it was stored",
                    reason="RATE_LIMITED",
                    retry_after=wait,
                ),
            )
        if self.sharing.on:  # else nobody reads the count, and it would only grow
            self.sharing.count_appended(who, events)
        return events

    def _give_back(self, principal: Principal, events: int) -> None:
        # To this replica's bucket only: the count other replicas learn only grows (they
        # take a smaller one for a restart), and they may have charged these events already.
        if events > 0:
            self._bucket(_who(principal)).give_back(events)

    def _bucket(self, who: str) -> TokenBucket:
        bucket = self._buckets.get(who)
        if bucket is None:
            if len(self._buckets) >= self._prune_at:
                self._forget_full_buckets()
            limits = self._limits
            bucket = self._buckets[who] = TokenBucket(
                limits.append_events_per_second, limits.append_burst
            )
        return bucket

    def _forget_full_buckets(self) -> None:
        """Drops the buckets that are full again, which a new one would be just the same:
        one per principal that ever appended grew without end (a subject per CI job).
        Scanned again once there are twice as many left, so each new principal costs O(1)."""
        for who in [who for who, bucket in self._buckets.items() if bucket.full()]:
            if not self.sharing.untold(who):  # else still to be told to the other replicas
                del self._buckets[who]
        self._prune_at = max(BUCKETS_KEPT, 2 * len(self._buckets))

    async def _metered_stream(
        self, principal: Principal, requests: Any, check: RequestCheck
    ) -> AsyncIterator[Any]:
        run_id = ""  # the stream's, named by its first message
        async for request in requests:
            if not isinstance(request, InvalidArgument):
                run_id = run_id or request.run_id
                # One naming another run is refused by the handler when its turn comes.
                if not request.run_id or request.run_id == run_id:
                    self._take(principal, request, run_id, check)
            yield request

    # --- runs per tenant ----------------------------------------------------------------------

    # --- refusals -------------------------------------------------------------------------

    def _refused(
        self, principal: Principal | None, refusal: ResourceExhausted
    ) -> ResourceExhausted:
        """Counts `refusal` and returns it to raise. The first refusal of a principal by a
        limit in each :data:`REFUSALS_WARNED_EVERY` is a WARNING naming its subject (never its
        token), for the client only waits and tries again, in silence."""
        if self._counted is not None:
            self._counted(refusal.reason)
        if principal is None:
            return refusal
        now = time.monotonic()
        key = (_who(principal), refusal.reason)
        if now - self._warned.get(key, -math.inf) < REFUSALS_WARNED_EVERY:
            return refusal
        if len(self._warned) >= BUCKETS_KEPT:  # one per principal ever refused, else
            self._warned = {
                k: at for k, at in self._warned.items() if now - at < REFUSALS_WARNED_EVERY
            }
        self._warned[key] = now
        tenant = f" of tenant {principal.tenant[:100]!r}" if principal.tenant else ""
        log.warning(
            "principal %r%s refused by %s: %s (said once a minute per principal and limit; "
            "runstream_limit_refusals_total counts every refusal)",
            principal.subject[:100],
            tenant,
            refusal.reason,
            refusal.message,
        )
        return refusal

    async def _admit_run(self, tenant: str) -> _ActiveRuns:
        """Admits one CreateRun of `tenant`, or refuses it with RESOURCE_EXHAUSTED.

        Alone on its store, a replica reads the count at most once a second and bumps it by
        each create in between; with other replicas, which create runs it would not see, at
        each create. Creates admitted and not yet done count too, so creates at once cannot
        pass the limit together (on replicas, creates at once on different ones can each take
        the last place). A refusal is always checked against a fresh count taken once the
        creates in flight are done, so a run that ended frees its place at once."""
        limit = self._limits.active_runs_per_tenant
        runs = self._active.setdefault(tenant, _ActiveRuns())
        async with runs.lock:
            stale = time.monotonic() - runs.counted_at > 1.0
            if self.sharing.on and runs.taken < limit and not stale:
                # The count may hold creates still in flight here twice: trusted to admit,
                # checked again below before it refuses.
                runs.count = await self._count_active(tenant, limit)
            if runs.taken >= limit or stale:
                await runs.settled.wait()
                runs.count = await self._count_active(tenant, limit)
                runs.counted_at = time.monotonic()
            if runs.taken >= limit:
                raise self._refused(
                    current(),
                    ResourceExhausted(
                        f"tenant {tenant!r} has {limit} active run{'s' if limit != 1 else ''}, "
                        "the most allowed; "
                        "finish or cancel one first",
                        reason="TENANT_RUN_LIMIT",
                        retry_after=self._limits.runs_retry_after,
                    ),
                )
            runs.begin()
        return runs

    async def _count_active(self, tenant: str, limit: int) -> int:
        page = await self._store.list_runs(RunFilter(_ACTIVE, tenant=tenant), limit, None)
        return len(page.runs)


class LimitSharing:
    """A replica's side of the per-principal limits on a shared store (see module): every
    ``share_interval`` it tells the store its callers' open streams and appended events, and
    learns the other replicas'. The counts and buckets it reads and charges are the
    :class:`LimitInterceptor`'s that holds it; it starts with the server's background work
    (:meth:`share_forever`), and until then this replica counts nothing for the others."""

    def __init__(
        self,
        store: EventStore,
        interval: float,
        streams: Mapping[str, int],
        bucket: Callable[[str], TokenBucket],
    ) -> None:
        """`streams`: this replica's open watch streams by principal; `bucket`: the append
        bucket of a principal (made if need be)."""
        self._store = store
        self._interval = interval
        self._streams = streams
        self._bucket = bucket
        self.on = False
        """Whether it shares with other replicas: only then are appends counted."""
        self._appended: dict[str, int] = {}  # who -> events appended here since counted
        self._elsewhere: dict[str, int] = {}  # who -> streams open on other replicas
        self._seen: dict[str, dict[str, int]] = {}  # replica -> who -> appended, last exchange

    def streams_elsewhere(self, who: str) -> int:
        """The principal's streams open on the other replicas, as last exchanged."""
        return self._elsewhere.get(who, 0)

    def count_appended(self, who: str, events: int) -> None:
        """Counts `events` the principal appended on this replica, to tell the others."""
        self._appended[who] = self._appended.get(who, 0) + events

    def untold(self, who: str) -> bool:
        """Whether the principal appended here what the others are still to be told."""
        return who in self._appended

    async def share_forever(self) -> None:
        """Exchanges usage with the other replicas every ``share_interval``, until cancelled."""
        failing, first = False, True
        self.on = True
        while True:
            stop_if_cancelled()
            if not first or failing:  # a failed first exchange too: never a busy loop
                await asyncio.sleep(self._interval)
            try:
                others = await self._store.share_usage(self._usage())
            except (RunstreamError, OSError) as exc:  # out of reach: the last exchange holds
                if not failing:
                    log.warning("cannot share limit usage with the other replicas: %s", exc)
                failing = True
                continue
            except Exception:  # a bug: said with its traceback, and tried again
                if not failing:
                    log.exception("cannot share limit usage with the other replicas")
                failing = True
                continue
            if failing:
                log.info("sharing limit usage with the other replicas again")
            failing = False
            self._learn(others, first=first)
            first = False

    def _usage(self) -> dict[str, Usage]:
        """This replica's use by principal; an idle one (no stream, a full bucket) is
        forgotten, and counted again from 0 when it comes back."""
        for who in list(self._appended):
            if who not in self._streams and self._bucket(who).full():
                del self._appended[who]
        return {
            who: Usage(self._streams.get(who, 0), self._appended.get(who, 0))
            for who in self._streams.keys() | self._appended.keys()
        }

    def _learn(self, others: dict[str, dict[str, Usage]], *, first: bool) -> None:
        """Takes the others' streams as they are, and charges what they appended since the
        last exchange to this replica's buckets. At this replica's `first` exchange their
        counts are history; a replica that appears later has just started, and all it
        counted is news."""
        elsewhere: defaultdict[str, int] = defaultdict(int)
        for replica, use in others.items():
            before = self._seen.get(replica)
            for who, usage in use.items():
                elsewhere[who] += usage.streams
                if first:
                    continue
                last = (before or {}).get(who, 0)  # absent: counted from 0 since then
                spent = usage.appended - last if usage.appended >= last else usage.appended
                if spent > 0:
                    self._bucket(who).charge(spent)
        self._seen = {r: {w: u.appended for w, u in use.items()} for r, use in others.items()}
        self._elsewhere = {who: n for who, n in elsewhere.items() if n}
