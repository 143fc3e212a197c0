"""What the Redis store's callers get when Redis fails: each failure of Redis, redis-py or
the network mapped to the status a client can act on (UNAVAILABLE, which producers retry;
DATA_LOSS for another program's keys), never INTERNAL."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
import redis.exceptions as rex

from runstream_server.errors import DataLoss, Unavailable

__all__ = ["not_permitted", "reply_of", "unavailable", "unavailable_read"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


def closed_store() -> Unavailable:
    """The refusal of work that reaches a closed store: the server is shutting down."""
    return Unavailable(
        "the Redis store is closed; the server is shutting down", reason="SHUTTING_DOWN"
    )


_TIMED_OUT = "the Redis store is unreachable (TimeoutError: no answer in time)"


def unavailable(
    fn: Callable[_P, Coroutine[Any, Any, _T]],
) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """Maps Redis being unreachable (or loading, or a cluster failing over) to UNAVAILABLE,
    for a method of a store (its first argument) that writes, which refuses at once once
    `closed`."""
    # Redis may hold the command and run it when it answers again: say so, since a change
    # (a pause, a cancel) may then be applied after all.
    return _mapped(
        fn,
        f"{_TIMED_OUT}; a change it already received may still be applied when it answers, "
        "so read the run before repeating one",
    )


def unavailable_read(
    fn: Callable[_P, Coroutine[Any, Any, _T]],
) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """:func:`unavailable` for a method that only reads: its timeout says that nothing was
    changed (a call that writes after it reads had not written yet), not that a change may
    still be applied, which would send a reader (``runstream runs``) looking for one."""
    return _mapped(fn, f"{_TIMED_OUT} on a read, which changed nothing: try again once it answers")


def _mapped(
    fn: Callable[_P, Coroutine[Any, Any, _T]], timed_out: str
) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """`fn` with Redis's failures mapped as :func:`unavailable` says, its timeouts as
    `timed_out` says."""

    @functools.wraps(fn)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        if getattr(args[0], "closed", False):
            # Work that outlived the server (a shielded write) must not reopen connections.
            raise closed_store()
        try:
            return await fn(*args, **kwargs)
        except rex.TimeoutError as exc:
            raise Unavailable(timed_out) from exc
        except (rex.ConnectionError, rex.BusyLoadingError, OSError) as exc:
            raise Unavailable(f"the Redis store is unreachable ({type(exc).__name__})") from exc
        except rex.RedisClusterException as exc:
            raise Unavailable(f"the Redis cluster cannot serve ({type(exc).__name__})") from exc
        except rex.ClusterDownError as exc:  # before ClusterError, which it is too
            raise Unavailable(
                "the Redis cluster is down (CLUSTERDOWN: a slot has no master serving it)"
            ) from exc
        except (rex.AskError, rex.TryAgainError, rex.ClusterError) as exc:
            # A slot moving or a shard failing over: nothing ran, the client retries. Plain
            # ClusterError is redis-py giving up on redirections ("TTL exhausted"), as it
            # does while a run's keys are split between two masters in the middle of a move.
            raise Unavailable(f"the Redis cluster is moving ({type(exc).__name__})") from exc
        except rex.ResponseError as exc:
            reply = reply_of(exc)
            if reply.startswith(("TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "LOADING", "BUSY")):
                raise Unavailable(f"the Redis store is not ready ({reply[:40]})") from exc
            refusal = _refusal(exc, reply)
            if refusal is not None:
                raise Unavailable(f"the Redis store refuses writes: {refusal}") from exc
            if not_permitted(exc, reply):
                # Checked at start (open): a user whose rights were taken away since.
                raise Unavailable(
                    f"the Redis store refuses this server's user ({reply[:160]}); an operator "
                    f"must give it back {_rights(args[0])}"
                ) from exc
            if reply.startswith("WRONGTYPE"):
                raise DataLoss(
                    "the Redis store holds a key of another type than Runstream's "
                    "(WRONGTYPE): another program writes under this store's prefix",
                    reason="STORE_DAMAGED",
                ) from exc
            raise
        except (AttributeError, RuntimeError) as exc:
            # redis-py (8.1) fails this way when a connection closes under a command it already
            # checked, as a cluster master failing over does to every replica's connections:
            # AttributeError ('NoneType' ... 'writelines'), RuntimeError (transport closed).
            # Only from inside redis-py; the same errors from this code stay bugs.
            if not _raised_in_redis_py(exc):
                raise
            raise Unavailable(
                f"the Redis store is unreachable (a connection broke: {type(exc).__name__})"
            ) from exc

    return wrapper


def reply_of(exc: rex.ResponseError) -> str:
    """The error Redis replied, without what redis-py adds to it for a pipeline's command
    ("Command # 1 (ZADD ...) of pipeline caused error: ", which quotes the command)."""
    return str(exc).rpartition("caused error: ")[2]


def _refusal(exc: rex.ResponseError, reply: str) -> str | None:
    """Why Redis refused a write it was able to receive, or None for another error. Each is
    refused before the command (or, in a script, its first write) ran, and lasts until an
    operator acts: clients get UNAVAILABLE, which producers retry, never INTERNAL."""
    if isinstance(exc, rex.OutOfMemoryError) or reply.startswith("OOM"):
        return "it is out of memory (maxmemory reached, with a policy that evicts nothing)"
    if isinstance(exc, rex.ReadOnlyError) or reply.startswith("READONLY"):
        return "it is a read-only replica (after a failover, the store URL must name the primary)"
    if reply.startswith("MISCONF"):
        return "it cannot save to its disk (MISCONF; see the Redis log)"
    if reply.startswith("NOREPLICAS"):
        return "too few of its replicas are connected (min-replicas-to-write)"
    return None


def not_permitted(exc: rex.ResponseError, reply: str) -> bool:
    """Whether Redis refused a command to this server's ACL user (NOPERM; a command of a
    script is refused with the script's own error)."""
    return (
        isinstance(exc, rex.NoPermissionError)
        or reply.startswith("NOPERM")
        or "can't run this command" in reply
        or "can't publish to the channel" in reply
        or "can't access at least one of the keys" in reply
        or "No permissions" in reply
    )


_REDIS_PY = os.path.dirname(os.path.dirname(aioredis.__file__)) + os.sep  # redis/


def _raised_in_redis_py(exc: BaseException) -> bool:
    """Whether `exc` was raised by redis-py's own code (asyncio's, under it, counts too)."""
    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    for filename in reversed(frames):
        if filename.startswith(_REDIS_PY):
            return True
        if os.sep + "asyncio" + os.sep not in filename:
            return False  # raised in other code (ours), not on redis-py's behalf
    return False


def _rights(store: object) -> str:
    """What a store's Redis user needs, named with its key prefix when the store has one."""
    prefix = getattr(getattr(store, "options", None), "prefix", None)
    keys = f"~{prefix}:*" if prefix else "its keys"
    return f"every command on {keys} and its notice channel"
