"""What a ``redis://`` or ``rediss://`` store URL says: redis-py's part, and Runstream's own
options (``prefix``, ``cluster``, ``nodes``, ``wait``, ``wait_timeout_ms``, ``password_file``),
and the URL as logs may show it, without its password."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote_plus, urlencode, urlsplit, urlunsplit


@dataclass(frozen=True)
class RedisOptions:
    """What a ``redis://`` store URL says beyond the connection itself."""

    url: str = field(repr=False)
    """The URL redis-py connects with (without Runstream's own query parameters)."""
    prefix: str = "runstream"
    """Prefix of every key, so several deployments (or tests) can share one Redis."""
    cluster: bool = False
    """Connect to a Redis Cluster (keys of a run share a hash tag, so scripts stay in one slot)."""
    wait_replicas: int = 0
    """After each append, WAIT until this many Redis replicas have it (0: do not wait)."""
    wait_timeout_ms: int = 1000
    db: int = 0
    """The database number; pub/sub channels are shared by every database of a Redis, so the
    notices' channel names it (see :mod:`.redis_notices`)."""
    nodes: tuple[tuple[str, int], ...] = ()
    """More nodes of a cluster to start from (``?nodes=HOST:PORT,HOST:PORT``) beside the
    URL's own, so a replica starts while that one is down."""


def parse_url(url: str) -> RedisOptions:
    """Splits a store URL: redis-py's part, and Runstream's ``prefix``, ``cluster``, ``nodes``
    (a cluster's other nodes to start from), ``wait`` (replica acknowledgements),
    ``wait_timeout_ms`` and ``password_file``."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis:// or rediss:// URL: {parts.scheme}://")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
        misplaced = "@" in parts.path + parts.query + parts.fragment
    except ValueError:
        misplaced = True
    if misplaced:
        # A password with '/', '?' or '#' splits the URL in the wrong place; neither this
        # message nor any log may echo a piece of it.
        raise ValueError(
            "the URL's credentials or port are malformed: percent-encode '/', '?' and '#' "
            "in a password, or use ?password_file="
        )
    _check_database_path(parts.path)
    # Blank values are kept so that ``?prefix=`` is refused rather than dropped unseen.
    query = parse_qs(parts.query, keep_blank_values=True)
    _check_given_once(query)
    own = {k: query.pop(k)[0] for k in list(query) if k in _OWN_PARAMS}
    netloc = parts.netloc
    if "password_file" in own:
        try:
            secret = Path(own["password_file"]).read_text().strip()
        except OSError as exc:
            raise ValueError(
                f"password_file: cannot read {own['password_file']} ({exc.strerror})"
            ) from None
        if not secret:  # Redis would answer "Authentication required", as with no file
            raise ValueError(f"password_file: {own['password_file']} is empty")
        host = netloc.rsplit("@", 1)[-1]
        user = netloc.rsplit("@", 1)[0].split(":", 1)[0] if "@" in netloc else ""
        if parts.password is not None or "password" in query:  # one would be ignored unseen
            raise ValueError("a password in the URL and a password_file: give one of them")
        netloc = f"{user}:{quote(secret, safe='')}@{host}"
    if parts.password and "password" in query:  # redis-py takes the URL's, unseen
        raise ValueError("a password in the URL and ?password=: give one of them")
    rest = urlunsplit(
        (parts.scheme, netloc, parts.path, urlencode(query, doseq=True), parts.fragment)
    )
    cluster = _switch(own, "cluster")
    nodes = _nodes(own.get("nodes"), cluster=cluster)
    db = _check_redis_options(rest, sorted(query), tls=parts.scheme == "rediss", cluster=cluster)
    if parts.path.strip("/") and "db" in query:  # redis-py reads ?db= and drops the path's
        raise ValueError(
            f"the database is given twice, as the path {parts.path!r} and as ?db=: give one of them"
        )
    options = RedisOptions(
        url=rest,
        prefix=own.get("prefix", "runstream"),
        cluster=cluster,
        wait_replicas=_count(own, "wait", 0),
        # Redis reads WAIT's timeout 0 as "block forever": every append would hang.
        wait_timeout_ms=_count(own, "wait_timeout_ms", 1000, least=1),
        db=db,
        nodes=nodes,
    )
    return options


def _nodes(text: str | None, *, cluster: bool) -> tuple[tuple[str, int], ...]:
    """The ``nodes`` option: HOST:PORT pairs, comma-separated, of a cluster only."""
    if text is None:
        return ()
    if not cluster:
        raise ValueError("nodes= names more nodes of a Redis Cluster: add ?cluster=1")
    nodes = []
    for node in text.split(","):
        host, _, port = node.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"nodes: {node.strip()!r} is not HOST:PORT")
        nodes.append((host.strip("[]"), int(port)))
    return tuple(nodes)


def _check_database_path(path: str) -> None:
    """Refuses a path that is not a database number, which redis-py would take for database
    0 (``/1O``) or read as another one (``/1/2`` is 12). It holds no credentials: those
    are refused before when they spill into it."""
    if not re.fullmatch(r"/?[0-9]*", path):
        raise ValueError(
            f"the URL's database path {path!r} is not a database number: "
            "give redis://HOST:PORT/0 (or /1, /2, ...)"
        )


def _check_given_once(query: dict[str, list[str]]) -> None:
    """Refuses an option given twice (only one of the values would count) and one of
    Runstream's own options given empty (``?prefix=`` would quietly mean the default)."""
    for name, values in query.items():
        if len(values) > 1:
            raise ValueError(f"option {name!r} is given {len(values)} times: give it once")
        if name in _OWN_PARAMS and not values[0]:
            raise ValueError(f"option {name!r} is empty: give it a value or leave it out")


def _count(own: dict[str, str], name: str, default: int, *, least: int = 0) -> int:
    """A whole number option of the URL, at least ``least``."""
    text = own.get(name, str(default))
    if not text.isdigit() or int(text) < least:
        raise ValueError(f"{name}={text!r} must be a whole number of at least {least}")
    return int(text)


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _switch(own: dict[str, str], name: str) -> bool:
    """An on/off option of the URL (``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/
    ``off``, in any case); anything else is refused rather than read as off."""
    text = own.get(name, "0")
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"{name}={text!r} must be 1, true, yes or on, or 0, false, no or off")


_OWN_PARAMS = frozenset({"prefix", "cluster", "nodes", "wait", "wait_timeout_ms", "password_file"})


def _check_redis_options(url: str, names: list[str], *, tls: bool, cluster: bool) -> int:
    """Refuses the options left for redis-py that it cannot read (``?db=x``) or does not
    take at all (``?bogus=1``), which it would otherwise only find when connecting; returns
    the database number."""
    try:
        from redis.asyncio import cluster as redis_cluster
        from redis.asyncio import connection
    except ImportError:  # pragma: no cover - the store says redis is missing when it opens
        return 0
    # ValueError naming an option whose value it cannot read:
    db = int(connection.parse_url(url).get("db") or 0)
    kinds: list[type] = [
        connection.SSLConnection if tls else connection.Connection,
        connection.BlockingConnectionPool,
    ]
    if cluster:
        kinds.append(redis_cluster.RedisCluster)
    taken = {
        name
        for kind in kinds
        for base in kind.__mro__
        if "__init__" in vars(base)
        for name in inspect.signature(vars(base)["__init__"]).parameters
    }
    unknown = [name for name in names if name not in taken]
    if unknown and unknown[0].startswith("ssl_") and not tls:
        raise ValueError(f"option {unknown[0]!r} is for TLS: use a rediss:// URL")
    if unknown:
        raise ValueError(
            f"unknown option {unknown[0]!r}: Runstream takes {', '.join(sorted(_OWN_PARAMS))}, "
            "and redis-py the arguments of its connections"
        )
    return db


def redact(url: str) -> str:
    """The URL without its secrets, for logs and error messages: the password of its
    credentials, and the value of every parameter whose name, decoded as redis-py decodes
    it (``pass%77ord`` is ``password``), holds "password" (``ssl_password``, the passphrase
    of the client's TLS key, too), but for ``password_file``, a path."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        creds, host = netloc.rsplit("@", 1)
        # user:password keeps the user; a lone part is hidden whole: redis://TOKEN@host (a
        # password where the user goes, a provider's URL copied as is) showed it in the log.
        user, colon, _ = creds.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    query = [
        f"{name}=***" if _secret(name) else f"{name}={value}"
        for name, _, value in (pair.partition("=") for pair in parts.query.split("&") if pair)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(query), ""))


def _secret(name: str) -> bool:
    decoded = unquote_plus(name).lower()
    return "password" in decoded and decoded != "password_file"
