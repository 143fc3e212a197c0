"""Server addresses: a target is checked before anything connects.

gRPC takes any string as a target and only fails when it connects: a URL, an address with a
space or without a host is retried as UNAVAILABLE for the whole reconnect timeout, a port
past 65535 wraps around (99999 dials 34463), and an empty target makes gRPC's C core log
errors to stderr. :func:`check_target` says what is wrong at once instead.

Also the names a request's ``Host`` header gives, and those a user allows there: the AG-UI
bridge and the dashboard's Envoy answer only names they know, against DNS rebinding.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

__all__ = [
    "allowed_host_name",
    "allowed_origin",
    "check_target",
    "checked_allowed_host",
    "host_header_name",
    "is_ip_address",
    "is_ipv6",
    "target_addresses",
    "with_default_port",
]

_SCHEMES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:", "vsock:")
_URI_SCHEME = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.\-]*://+)?")


def check_target(value: str) -> str:
    """The target, stripped, as gRPC takes it: HOST, HOST:PORT, [IPV6]:PORT, a bare IPv6
    address, or a gRPC URI (``unix:``, ``dns:``, ...); ValueError saying what is wrong."""
    target = value.strip()
    if not target:
        raise ValueError("an empty address; give HOST or HOST:PORT")
    if any(c.isspace() for c in target):
        raise ValueError(f"{value!r} has a space; give HOST or HOST:PORT")
    if "@" in target and not target.startswith(("unix:", "unix-abstract:")):
        # A user or password no gRPC target takes, repeated in every error after it (gRPC's
        # resolver's too): said without it.
        head, _, host = target.rpartition("@")
        scheme = _URI_SCHEME.match(head)[0]  # type: ignore[index]  # matches any text
        raise ValueError(
            f"'{scheme}***@{host}' has a user or password, which a gRPC target does not take "
            "(a token goes with the call); give HOST:PORT"
        )
    if target.startswith(_SCHEMES):
        scheme, _, rest = target.partition(":")
        if not rest.strip("/"):  # gRPC retried "unix:" for the whole reconnect timeout
            raise ValueError(f"{value!r} names no address after {scheme}:")
        return target
    if "://" in target:
        scheme = target.split("://", 1)[0]
        raise ValueError(f"{scheme}:// is not a gRPC address; give HOST:PORT (or dns:///HOST:PORT)")
    if target.startswith("["):
        host, closed, number = target[1:].partition("]")
        if not closed or (number and not number.startswith(":")):
            raise ValueError(f"{value!r} is not [IPV6]:PORT")
        if not is_ipv6(host):
            raise ValueError(f"{value!r}: {host!r} in brackets is not an IPv6 address")
        colon, number = number[:1], number[1:]
    elif target.count(":") > 1:  # a bare IPv6 address
        if not is_ipv6(target):
            several = " (several addresses: ipv4:HOST:PORT,HOST:PORT)" if "," in target else ""
            raise ValueError(f"{value!r} is neither HOST:PORT nor an IPv6 address{several}")
        return target
    else:
        host, colon, number = target.partition(":")
    if not host:
        raise ValueError(f"{value!r} has no host; give HOST or HOST:PORT")
    if colon and not number:
        raise ValueError(f"{value!r} has no port after its colon; give HOST or HOST:PORT")
    if number and not (number.isascii() and number.isdigit()):  # not "²", not "٣"
        raise ValueError(f"{value!r}: not a port: {number!r}")
    if number and int(number) == 0:  # dialled, and refused, for the whole reconnect timeout
        raise ValueError(
            f"{value!r}: port 0 is no server's port (a server told 0 picks a free one and "
            "says which)"
        )
    if number and int(number) > 65535:
        raise ValueError(f"{value!r}: a port is 1 to 65535")
    return target


def with_default_port(target: str, port: int) -> str:
    """A checked target, with ``port`` when it names a host without one."""
    if target.startswith(_SCHEMES):
        return target
    if target.startswith("["):
        return target if "]:" in target else f"{target}:{port}"
    if target.count(":") > 1:
        return f"[{target}]:{port}"
    host, colon, number = target.partition(":")
    return target if colon and number else f"{host}:{port}"


def target_addresses(target: str) -> list[tuple[str, int | None]]:
    """The (host, port) pairs a gRPC target names (port None when it names none): "ipv4:"
    and "ipv6:" list several, and "dns:" may name its DNS server first
    ("dns://8.8.8.8/host:port"). A unix socket names none."""
    if target.startswith(("unix:", "unix-abstract:")):
        return []
    if target.startswith(("ipv4:", "ipv6:")):
        addresses = target.partition(":")[2].split(",")
    elif target.startswith("dns:"):
        rest = target.removeprefix("dns:")
        addresses = [rest[2:].partition("/")[2] if rest.startswith("//") else rest]
    else:
        addresses = [target]
    return [_host_and_port(address.strip()) for address in addresses]


def _host_and_port(address: str) -> tuple[str, int | None]:
    """HOST:PORT, [IPV6]:PORT, a bare IPv6 address or a bare host, apart."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        number = rest.removeprefix(":")
    elif address.count(":") > 1:
        host, number = address, ""
    else:
        host, _, number = address.partition(":")
    return host, int(number) if number.isascii() and number.isdigit() else None


def is_ipv6(host: str) -> bool:
    """Whether `host` (no brackets, no port) is an IPv6 address."""
    return _parses(ipaddress.IPv6Address, host)


def is_ip_address(host: str) -> bool:
    """Whether `host` (no brackets, no port) is an IPv4 or IPv6 address rather than a name."""
    return _parses(ipaddress.ip_address, host)


def _parses(parse: Callable[[str], object], host: str) -> bool:
    try:
        parse(host)
    except ValueError:
        return False
    return True


def host_header_name(host: str) -> str | None:
    """The name of a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), lower case and
    without a trailing dot; None when it is not one."""
    host = host.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name
    name, colon, port = host.partition(":")
    if colon and not port.isdigit():
        return None
    return name.rstrip(".") or None


def allowed_host_name(name: str) -> str:
    """An allowed host as matched: lower case, no trailing dot or port, and ``*.example.com``
    (how certificates and proxies spell a wildcard) as ``.example.com``; either never matched
    as given, and every request through that name got 403."""
    if name.strip() == "*":
        return "*"
    host = host_header_name(name) or name.strip().lower()
    return "." + host[2:] if host.startswith("*.") else host


_HOST_NAME = re.compile(r"^\.?[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*\Z")  # lower case, as matched


def checked_allowed_host(name: str) -> str:
    """:func:`allowed_host_name`, or ValueError for what no ``Host`` header can give: a URL
    (``https://agui.example.com``) or nothing. Taken as given, it matched no request, and every
    one through the proxy that forwards that name got 403."""
    host = allowed_host_name(name)
    if host != "*" and not _HOST_NAME.match(host) and not is_ip_address(host):
        raise ValueError(
            "an allowed host is a name or an IP address (.example.com for a domain, * for "
            f"any), not {name!r}"
        )
    return host


_DEFAULT_PORTS = {"http": 80, "https": 443}


def allowed_origin(value: str) -> str:
    """An allowed browser origin as a browser sends it in ``Origin``: ``scheme://host[:port]``,
    lower case, without the scheme's default port or a trailing ``/`` (``*`` and ``null`` as
    they are). ``http://localhost:3000/``, copied from the address bar, was matched as given
    and never equal to what the browser sends, so every response was blocked by CORS.

    Raises ValueError for what is no origin: no scheme (``localhost:3000``), a path, a query.
    """
    origin = value.strip()
    if origin in ("*", "null"):
        return origin
    parts = urlsplit(origin)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        not parts.scheme
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or port == -1
    ):
        raise ValueError(
            "an origin is scheme://host[:port] with no path, e.g. http://localhost:3000; "
            f"got {value!r}"
        )
    scheme, host = parts.scheme.lower(), parts.hostname
    if is_ipv6(host):
        host = f"[{host}]"
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"
