"""The one line a starting server logs to say what is in force, secrets left out.

Four start-ups as different as no auth on loopback and JWT with TLS beyond it logged the same
two lines (found in review): nothing said whether tokens were checked, where the data was,
whether event logs were ever purged or the store copied, or which release was running. The
line says each, so an operator reads the server's posture in its log, and two replicas that
differ show it. The JWT issuer and audience are named: tokens carry them in clear, and a
mismatch between replicas is what an operator looks for. Keys, secrets and a Redis
password never appear (the store's URL is redacted as every other log line has it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runstream_server.app import ServerConfig

__all__ = ["in_force"]


def in_force(
    config: ServerConfig,
    *,
    target: str,
    version: str,
    algorithms: Sequence[str],
    store: str,
    persistence: str = "",
) -> str:
    """What `config` puts in force for a server serving on `target`, as one line: `store` is
    the store as logs show it, `algorithms` those the configured keys accept, `persistence`
    what a Redis store found keeps its events across a restart of Redis ("AOF on")."""
    parts = [
        f"serving on {target}: runstream {version}",
        _tls(config),
        _auth(config, algorithms),
        _store(config, store),
        _retention(config),
        "abandon-after: "
        + (
            "never (silent runs wait for their producer for ever)"
            if config.insight.abandon_after is None
            else _span(config.insight.abandon_after)
        ),
        _backups(config, persistence),
        _limits(config),
    ]
    return " | ".join(parts)


def _tls(config: ServerConfig) -> str:
    tls = config.security.tls
    if tls is None:
        return "TLS off"
    if tls.client_ca_file is None:
        return "TLS on, client certificates not asked for"
    return "TLS on, client certificates required"


def _auth(config: ServerConfig, algorithms: Sequence[str]) -> str:
    auth = config.security.auth
    if auth is None:
        beyond = " (--insecure-no-auth)" if config.security.insecure_no_auth else ""
        return f"auth none: every caller may do anything{beyond}"
    claims = ", ".join(
        f"{name} {value!r}" if value else f"any {name}"
        for name, value in (("issuer", auth.issuer), ("audience", auth.audience))
    )
    return f"auth JWT ({', '.join(algorithms) or 'no key'}), {claims}"


def _store(config: ServerConfig, store: str) -> str:
    if config.store_url:
        return f"store Redis {store}"
    path = Path(store).resolve()
    return f"store SQLite {path}, sync {config.sqlite_synchronous}"


def _retention(config: ServerConfig) -> str:
    retention = config.retention
    if retention.days is None and retention.runs is None:
        return "retention: event logs kept for ever"
    kept = []
    if retention.days is not None:
        kept.append(f"purged {_span(retention.days * 86400)} after their run ended")
    if retention.runs is not None:
        kept.append(f"kept for the newest {retention.runs} ended runs per tenant")
    return f"retention: event logs {' and '.join(kept)}, every {_span(retention.interval)}"


def _backups(config: ServerConfig, persistence: str) -> str:
    if config.store_url:
        return f"backups: Redis's own ({persistence})"
    backups = config.backups
    if backups is None:
        return "backups: off: the store cannot be copied while it serves; see --backup-dir"
    directory = backups.directory.resolve()
    return f"backups: every {_span(backups.interval)} into {directory}, {backups.keep} kept"


def _limits(config: ServerConfig) -> str:
    limits = config.security.limits
    per_run = _count(limits.watchers_per_run, "watchers per run")
    if config.security.auth is None:
        return f"limits: {per_run} (the per-principal ones need auth)"
    rate = (
        "append rate off"
        if not (limits.append_events_per_second and limits.append_burst)
        else f"{limits.append_events_per_second:g} events/s (bursts of {limits.append_burst}) "
        "per producer"
    )
    return (
        f"limits: {_count(limits.watch_streams_per_principal, 'watch streams')} and "
        f"{_count(limits.report_streams_per_principal, 'report streams')} per principal, "
        f"{_count(limits.active_runs_per_tenant, 'active runs')} per tenant, {rate}, {per_run}"
    )


def _count(limit: int, what: str) -> str:
    return f"{limit} {what}" if limit else f"no limit on {what}"


def _span(seconds: float) -> str:
    """90s, 30m, 1h, 7d: the largest unit that divides it, as the options take them."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
