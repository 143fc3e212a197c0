"""What `runstream dashboard --target` makes of a server address or a list of replicas: the
upstreams its Envoy balances over, and the one target the command itself reaches."""

from __future__ import annotations

import re

import pytest
from runstream.dashboard.upstreams import dashboard_target, envoy_upstream, grpc_target


def test_replicas_listed_without_a_port_get_runstreams_port() -> None:
    assert dashboard_target(" a,b:7000 ") == "a:50051,b:7000"
    assert dashboard_target("ipv4:10.0.0.1:1,10.0.0.2:2") == "ipv4:10.0.0.1:1,10.0.0.2:2"


def test_envoy_gets_every_replica_a_target_names_and_refuses_what_it_cannot_reach() -> None:
    assert envoy_upstream("a:1,b:2") == "a:1,b:2"
    assert envoy_upstream("ipv4:10.0.0.1:1,10.0.0.2:2") == "10.0.0.1:1,10.0.0.2:2"
    assert envoy_upstream("ipv6:[::1]:1,[::2]:2") == "[::1]:1,[::2]:2"
    assert envoy_upstream("dns:///runstream:50051") == "runstream:50051"
    assert envoy_upstream("dns://8.8.8.8/runstream:50051") == "runstream:50051"
    with pytest.raises(ValueError, match="Envoy reaches the server over TCP"):
        envoy_upstream("unix:/tmp/runstream.sock")
    with pytest.raises(ValueError, match=re.escape("'[::1]' in --target 'ipv6:[::1]' needs")):
        envoy_upstream("ipv6:[::1]")


def test_the_command_reaches_replicas_by_address_through_grpcs_own_list() -> None:
    assert grpc_target("10.0.0.1:1,10.0.0.2:2") == "ipv4:10.0.0.1:1,10.0.0.2:2"
    assert grpc_target("[::1]:1,[::2]:2") == "ipv6:[::1]:1,[::2]:2"
    assert grpc_target("a:1,b:2") == "a:1"  # gRPC lists only addresses: the first name
    assert grpc_target("10.0.0.1:1,b:2") == "10.0.0.1:1"
    assert grpc_target("10.0.0.1:1,[::1]:2") == "10.0.0.1:1"  # no one list holds both
    assert grpc_target("ipv4:10.0.0.1:1,10.0.0.2:2") == "ipv4:10.0.0.1:1,10.0.0.2:2"
