"""Who is calling: the principal a verified token names, and the roles it grants.

The auth interceptor binds the caller's :class:`Principal` to the handling task (a context
variable), so the domain can ask "who is this, which tenant may they see" without knowing
anything of gRPC or tokens. With auth off nothing is bound and every helper here answers as
the server always did: the name the request gives, every run visible, runs in tenant "".

It sits beside :mod:`~runstream_server.errors`, outside every layer: auth binds it, and the
domain, the servicers and the logs read it, while it imports none of them.
"""

from __future__ import annotations

import contextvars
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "EXPIRED_DURING_STREAM",
    "REFUSED_DURING_STREAM",
    "ExpiryHook",
    "Principal",
    "Role",
    "acting_as",
    "bind",
    "can_see",
    "current",
    "end_at_expiry",
    "new_run_tenant",
    "visible_tenant",
]


class Role(enum.StrEnum):
    """What a token's `roles` claim can grant."""

    PRODUCER = "producer"
    """Creates runs, reports their events, asks questions."""
    VIEWER = "viewer"
    """Reads runs: get, list, watch, their events and decisions."""
    OPERATOR = "operator"
    """A viewer who also answers questions, pauses, resumes and cancels runs."""
    ADMIN = "admin"
    """Everything, in every tenant."""


# The roles each role includes; a missing entry includes only itself.
_INCLUDES: dict[Role, frozenset[Role]] = {
    Role.OPERATOR: frozenset({Role.OPERATOR, Role.VIEWER}),
    Role.ADMIN: frozenset(Role),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller: subject, tenant, granted roles and when the token expires."""

    subject: str
    tenant: str
    roles: frozenset[Role]
    expires_at: float | None = None
    """The token's `exp` (epoch seconds); long streams end there."""

    @classmethod
    def of(
        cls, subject: str, tenant: str, roles: Iterable[str], expires_at: float | None = None
    ) -> Principal:
        """A principal from claim values; unknown role names are ignored."""
        known = {r.value for r in Role}
        granted = frozenset(Role(r) for r in roles if r in known)
        return cls(subject, tenant, granted, expires_at)

    def has(self, role: Role) -> bool:
        """Whether one of the granted roles includes `role`."""
        return any(role in _INCLUDES.get(granted, frozenset({granted})) for granted in self.roles)

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "runstream_principal", default=None
)


def bind(principal: Principal | None) -> contextvars.Token[Principal | None]:
    """Makes `principal` the caller for the current task (and the tasks it starts)."""
    return _current.set(principal)


def current() -> Principal | None:
    """The verified caller, or None when auth is off (or for the server's own work)."""
    return _current.get()


EXPIRED_DURING_STREAM = "token expired during the stream; reconnect with a fresh token"
"""The status detail of a stream cut at its token's expiry (clients resume on it)."""

REFUSED_DURING_STREAM = "token no longer accepted during the stream"
"""The start of the status detail of a stream cut because its token stopped verifying (the
key that signed it was taken out of the key files); the reason follows (clients resume on it
with a fresh token)."""


class ExpiryHook:
    """What a stream asked to be done when its token ends (at its expiry, or its key taken
    out) instead of being cut there."""

    __slots__ = ("stop",)

    def __init__(self) -> None:
        self.stop: Callable[[str], None] | None = None


_expiry: contextvars.ContextVar[ExpiryHook | None] = contextvars.ContextVar(
    "runstream_expiry", default=None
)


def watch_expiry(hook: ExpiryHook) -> None:
    """Set by the auth interceptor for a stream whose token expires (its task's own)."""
    _expiry.set(hook)


def end_at_expiry(stop: Callable[[str], None]) -> None:
    """Asks that `stop` be called, with the status detail to end with, when the token ends
    instead of the stream being cut there.

    The auth interceptor cuts a stream at ``exp`` (or once its token no longer verifies) by
    cancelling its handler while it waits. A handler that also waits in the middle of work
    it must answer (a Report stream, for its commits) calls this; it then ends the stream
    itself, UNAUTHENTICATED with that detail (:data:`EXPIRED_DURING_STREAM`, or
    :data:`REFUSED_DURING_STREAM` and why), once what it was doing is answered. Nothing with
    auth off.
    """
    hook = _expiry.get()
    if hook is not None:
        hook.stop = stop


def acting_as(claimed: str) -> str:
    """Who did it: the token's subject when auth is on, else the name the request gave."""
    principal = _current.get()
    return claimed if principal is None else principal.subject


def new_run_tenant() -> str:
    """The tenant a run created now belongs to: the caller's, or "" with auth off."""
    principal = _current.get()
    return "" if principal is None else principal.tenant


def visible_tenant() -> str | None:
    """The only tenant the caller may see, or None when every tenant is visible."""
    principal = _current.get()
    if principal is None or principal.is_admin:
        return None
    return principal.tenant


def reaches(created_by: str, *, writing: bool) -> bool:
    """Whether the caller may report to (`writing`) or read a run of its tenant that
    `created_by` created. A producer reports to the runs its own subject created, and reads
    only those unless it is a viewer too; operators (who may cancel any run) and admins
    report to any. Everyone, with auth off."""
    principal = _current.get()
    if principal is None or principal.subject == created_by or principal.is_admin:
        return True
    return principal.has(Role.OPERATOR if writing else Role.VIEWER)


def can_see(run_tenant: str) -> bool:
    """Whether the caller may see a run of `run_tenant` (else it is NOT_FOUND to them)."""
    tenant = visible_tenant()
    return tenant is None or tenant == run_tenant
