"""Where `runstream dashboard` points Envoy: the `--target` a user gives, as gRPC reads it
(one server, or replicas: ``ipv4:10.0.0.1:50051,10.0.0.2:50051``, ``dns:///HOST:PORT``)
or as a list of replicas (``HOST:PORT,HOST:PORT``), turned into Envoy's upstreams, which
Envoy balances over, and into the one gRPC target the command itself checks and reports to.
"""

from __future__ import annotations

import ipaddress

from .._target import check_target
from ..cli.args import target_address

__all__ = ["dashboard_target", "envoy_upstream", "grpc_target"]

_SCHEMES = ("ipv4:", "ipv6:", "dns:")
_NOT_TCP = ("unix:", "unix-abstract:", "vsock:")


def dashboard_target(value: str) -> str:
    """`--target` (an argparse type): a server address as gRPC takes it, or replicas'
    ``HOST[:PORT],...`` (each without a port gets Runstream's 50051)."""
    target = value.strip()
    if "," in target and not target.startswith(_SCHEMES + _NOT_TCP):
        return ",".join(target_address(address) for address in target.split(","))
    return target_address(target)


def envoy_upstream(target: str) -> str:
    """The ``HOST:PORT[,HOST:PORT...]`` Envoy forwards to; ValueError for a target Envoy
    cannot reach (not over TCP, or an address without its port)."""
    if target.startswith(_NOT_TCP):
        raise ValueError(f"Envoy reaches the server over TCP: give HOST:PORT, not {target!r}")
    scheme, _, rest = target.partition(":")
    if scheme in ("ipv4", "ipv6"):
        addresses = rest.split(",")
    elif scheme == "dns":  # dns:HOST:PORT, dns:///HOST:PORT, dns://AUTHORITY/HOST:PORT
        addresses = [rest.rpartition("/")[2] if rest.startswith("//") else rest]
    else:
        addresses = target.split(",")
    for address in addresses:
        host, _, port = check_target(address).rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{address!r} in --target {target!r} needs its port, HOST:PORT")
    return ",".join(addresses)


def grpc_target(target: str) -> str:
    """One target gRPC takes for `target`: replicas listed by IP address as ``ipv4:`` (or
    ``ipv6:``), so that gRPC moves to another when one dies; listed by name, the first
    (gRPC lists only addresses)."""
    if "," not in target or target.startswith(_SCHEMES + _NOT_TCP):
        return target
    addresses = target.split(",")
    try:
        versions = {
            ipaddress.ip_address(address.rpartition(":")[0].strip("[]")).version
            for address in addresses
        }
    except ValueError:
        return addresses[0]
    return f"ipv{versions.pop()}:{target}" if len(versions) == 1 else addresses[0]
