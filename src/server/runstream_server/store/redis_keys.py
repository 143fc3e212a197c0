"""The names of the Redis store's keys, all in one place (what each holds: :mod:`.redis`)."""

from __future__ import annotations

from urllib.parse import quote


class RedisKeys:
    """Every key of one store, under its prefix ``P``.

    A run's own keys share the hash tag ``{run_id}``, so a Redis Cluster keeps them on one
    shard and one script may touch them all; the run indexes live outside the runs' slots.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.runs = f"{prefix}:runs"
        """Every run, by create time."""
        self.active = f"{prefix}:active"
        """Runs not ended, by create time."""
        self.ended = f"{prefix}:ended"
        """Ended runs whose logs are kept, by when their ends were stored (for retention)."""
        self.ended_tenants = f"{prefix}:ended:tenants"
        """The tenant of each run in ``ended``, for retention's newest N of each tenant (a
        run ended by a release before it is looked up once, in its snapshot)."""
        self.moved = f"{prefix}:moved"
        """Runs that ended in the last hour, by when the end was stored (the server's time,
        not the run's end time, which a producer may set in the past): what a replica that
        missed notices reads again."""
        self.usage = f"{prefix}:limits:usage"
        """Each replica's callers' use of the per-caller limits."""
        self.filters = f"{prefix}:filters"
        """How far the filter indexes are built (:mod:`.redis_filters`), and the ended runs'
        indexes by status (``statuses``, ``statuses_upto``: :mod:`.redis_statuses`)."""

    def run(self, run_id: str) -> list[str]:
        """The run's meta hash, its log stream and its idempotency keys, in that order (the
        order of the scripts' KEYS)."""
        p = self.prefix
        return [f"{p}:{{{run_id}}}:meta", f"{p}:{{{run_id}}}:log", f"{p}:{{{run_id}}}:keys"]

    def meta(self, run_id: str) -> str:
        return f"{self.prefix}:{{{run_id}}}:meta"

    def viewers(self, run_id: str) -> str:
        return f"{self.prefix}:{{{run_id}}}:viewers"

    def tenant_runs(self, tenant: str) -> str:
        """The index of one tenant's runs (quoted: a tenant name may hold any character)."""
        return f"{self.prefix}:tenant:{quote(tenant, safe='')}:runs"

    def workflow_runs(self, workflow: str) -> str:
        """The runs of one workflow, by create time (names quoted, as above)."""
        return f"{self.prefix}:wf:{quote(workflow, safe='')}:runs"

    def label_runs(self, key: str, value: str) -> str:
        """The runs with one label, by create time (quoted: neither part holds a colon)."""
        return f"{self.prefix}:label:{quote(key, safe='')}:{quote(value, safe='')}:runs"

    def ended_runs(self, status: int) -> str:
        """The ended runs of one status (SUCCEEDED, FAILED or CANCELLED), scored as ``runs``
        is: what ListRuns by that status reads (:mod:`.redis_statuses`)."""
        return f"{self.prefix}:status:{status}:runs"

    def succeeded(self, tenant: str, workflow: str) -> str:
        """The newest runs of one tenant's workflow that succeeded, by create time: where a
        workflow's history (ETA, stalls) is learned from (names quoted, as above)."""
        return f"{self.prefix}:tenant:{quote(tenant, safe='')}:wf:{quote(workflow, safe='')}:ok"
