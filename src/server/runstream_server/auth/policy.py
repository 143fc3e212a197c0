"""Which role each RPC needs. One table, so a reader sees the whole access policy at once.

An RPC missing from the table needs ``admin``: a method added later is closed until someone
decides who may call it (tests/server/test_auth.py checks every RPC of the contract is here).
Health checks and reflection need no token: load balancers and grpcurl must reach them.
"""

from __future__ import annotations

from runstream_server.principal import Role

__all__ = ["PRODUCER_READS", "PUBLIC_SERVICES", "ROLE_BY_METHOD", "allowed", "required_role"]

PUBLIC_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

_RUN = "/runstream.v1.RunService/"
_REPORT = "/runstream.v1.ReportService/"
_DECISION = "/runstream.v1.DecisionService/"
_STATS = "/runstream.v1.StatsService/"

ROLE_BY_METHOD: dict[str, Role] = {
    _RUN + "CreateRun": Role.PRODUCER,
    _REPORT + "Report": Role.PRODUCER,
    _REPORT + "AppendEvents": Role.PRODUCER,
    _RUN + "GetRun": Role.VIEWER,
    _RUN + "ListRuns": Role.VIEWER,
    _RUN + "ListSteps": Role.VIEWER,
    _RUN + "ListEvents": Role.VIEWER,
    _RUN + "WatchRun": Role.VIEWER,
    _RUN + "WatchRuns": Role.VIEWER,
    _DECISION + "ListDecisions": Role.VIEWER,
    _DECISION + "GetDecision": Role.VIEWER,
    _RUN + "CancelRun": Role.OPERATOR,
    _RUN + "PauseRun": Role.OPERATOR,
    _RUN + "ResumeRun": Role.OPERATOR,
    _DECISION + "SubmitDecision": Role.OPERATOR,
    _DECISION + "Interact": Role.OPERATOR,
    # Server-wide figures count every tenant's runs: admins only.
    _STATS + "GetStats": Role.ADMIN,
}


PRODUCER_READS = frozenset(
    {_RUN + "GetRun", _DECISION + "GetDecision", _DECISION + "ListDecisions"}
)
"""Viewer reads a producer may make too: what its own reporting needs to read back (the
SDK's attach_run reads the run and the questions asked before, and after a reconnect the
answers and the pause it may have missed). They show no more than the producer reported:
a producer reaches only the runs its subject created (``principal.reaches``)."""


def is_public(method: str) -> bool:
    """Whether `method` ("/package.Service/Method") may be called without a token."""
    return method.startswith(PUBLIC_SERVICES)


def required_role(method: str) -> Role:
    """The role a caller needs for `method`; admin for methods the table does not know."""
    return ROLE_BY_METHOD.get(method, Role.ADMIN)


def allowed(method: str) -> tuple[Role, ...]:
    """The roles that may call `method`, each of them (or a role including it) enough."""
    role = required_role(method)
    return (role, Role.PRODUCER) if method in PRODUCER_READS else (role,)
