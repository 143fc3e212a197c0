"""What an Envoy configuration for the dashboard refuses before Envoy ever reads it, and the
Host names it answers (EnvoyConfig, and `python -m runstream.dashboard.envoy`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from runstream.dashboard.envoy import EnvoyConfig, main, render_config

PAGE = "http://localhost:8080"


def config(**fields: Any) -> EnvoyConfig:
    fields.setdefault("upstream", "127.0.0.1:50051")
    fields.setdefault("listen_port", 8081)
    fields.setdefault("allowed_origins", (PAGE,))
    return EnvoyConfig(**fields)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"upstream": "127.0.0.1:port"}, "upstream must be HOST:PORT"),
        ({"upstream": "my host:50051"}, "upstream must be HOST:PORT"),
        ({"listen_address": "0.0.0.0; rm"}, "not a listen address"),
        ({"listen_address": "localhost"}, r"not a listen address \(an IPv4 or IPv6 address\)"),
        ({"listen_port": 65536}, "not a port: 65536"),
        ({"upstream": "127.0.0.1:65536"}, "not a port: 65536"),
        # Envoy started its admin there, then said its grpc-web port was in use.
        ({"admin_port": 8081}, "the listen port and the admin port are both 8081"),
        ({"admin_port": 8081, "listen_address": "::"}, "are both 8081"),
        ({"tls_cert": Path("c.pem")}, "tls_cert and tls_key go together"),
        ({"upstream_client_key": Path("k.pem")}, "go together"),
        (
            {"upstream_client_cert": Path("c.pem"), "upstream_client_key": Path("k.pem")},
            "needs upstream_ca",
        ),
        ({"allowed_origins": ()}, "at least one allowed origin"),
        ({"allowed_origins": ("localhost:8080",)}, "an origin is scheme://host"),
        ({"allowed_hosts": ("evil example",)}, "an allowed host is a name or an IP address"),
    ],
)
def test_a_config_that_would_break_or_widen_envoy_is_refused(
    fields: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        config(**fields)


def test_one_port_for_the_listener_and_the_admin_is_taken_on_another_interface() -> None:
    assert config(admin_port=8081, listen_address="10.0.0.5").admin_port == 8081


def test_envoy_answers_this_machine_the_origins_hosts_and_the_allowed_names_only() -> None:
    named = config(
        allowed_origins=(PAGE, "https://ops.example.com"),
        allowed_hosts=("*.corp.example", "fd00::1", "Runs.Example.org:443"),
    )
    assert named.domains == [
        "localhost", "*.localhost", "127.0.0.1", "[::1]",
        "*.corp.example", "corp.example", "[fd00::1]", "runs.example.org", "ops.example.com",
    ]  # fmt: skip
    rendered = render_config(named)
    assert "name: other_hosts" in rendered and "status: 403" in rendered
    anyone = config(allowed_hosts=("*",))
    assert anyone.domains == ["*"]
    assert "name: other_hosts" not in render_config(anyone)


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--listen-port", "65536"], "not a port (0-65535): '65536'"),
        (["--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
        (
            ["--upstream-client-cert", "c.pem", "--upstream-client-key", "k.pem"],
            "--upstream-client-cert needs --upstream-ca-file",
        ),
        (["--upstream-ca-file", "/no/such/ca.pem"], "argument --upstream-ca-file: cannot read"),
    ],
)
def test_the_deployment_command_refuses_a_bad_option_naming_it(
    options: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(options)
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def test_the_deployment_command_admits_both_local_page_origins_by_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main([])
    printed = capsys.readouterr().out
    assert '{"exact": "http://localhost:8080"}, {"exact": "http://127.0.0.1:8080"}' in printed


def test_the_deployment_command_takes_an_origin_as_a_browser_sends_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--origin http://dash.example:8080/`, as copied from the address bar, was refused while
    `runstream dashboard --origin` took it (found in review); both give Envoy what browsers
    send."""
    main(["--origin", "HTTP://Dash.Example:8080/", "--origin", "https://ops.example:443"])
    printed = capsys.readouterr().out
    assert '{"exact": "http://dash.example:8080"}, {"exact": "https://ops.example"}' in printed
