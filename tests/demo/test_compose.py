"""docker-compose.yml and the Dockerfile, checked without a Docker engine: Debian's
``docker-compose config`` parses, validates and resolves the file; the wiring is asserted
on its output."""

from __future__ import annotations

import fnmatch
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support import require_tool

ROOT = Path(__file__).parents[2]


#: the token the tests give compose (it has no default: see test_the_admin_token_is_required)
TOKEN = "t0ken-for-the-tests"


def run_compose_config(
    env: dict[str, str], profiles: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` with only ``env`` of the CHAOSPROXY_* / DEMO_* variables."""
    exe = require_tool("docker-compose")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CHAOSPROXY_", "DEMO_"))}
    chosen = [arg for name in profiles for arg in ("--profile", name)]
    return subprocess.run(
        [exe, "-f", str(ROOT / "docker-compose.yml"), *chosen, "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**clean, **env},
    )


def compose_config(**env: str) -> dict[str, Any]:
    out = run_compose_config({"CHAOSPROXY_ADMIN_TOKEN": TOKEN, **env})
    assert out.returncode == 0, out.stderr
    config: dict[str, Any] = yaml.safe_load(out.stdout)
    return config


def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """The service's ports as (host address, published port, container port).

    docker-compose 1.29 prints a port with a host address in the short syntax
    (``127.0.0.1:5000:5000/tcp``) and one without it as a mapping.
    """
    ports = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.append(
                (str(entry.get("host_ip", "")), int(entry["published"]), int(entry["target"]))
            )
        else:
            host, public, target = str(entry).split("/")[0].rsplit(":", 2)
            ports.append((host, int(public), int(target)))
    return ports


def argv(service: dict[str, Any]) -> list[str]:
    """The service's command, with ``sh -c`` scripts split and $$VAR taken from its env."""
    command = service["command"]
    if command[:2] == ["sh", "-c"]:
        script = command[2].replace("$$", "$")
        for name, value in service.get("environment", {}).items():
            script = script.replace(f'"${name}"', shlex.quote(str(value)))
        assert "$" not in script, f"unresolved variable in {script!r}"
        command = shlex.split(script.removeprefix("exec "))
    return [str(part) for part in command]


def option(args: list[str], name: str) -> str:
    assert name in args, f"{name} missing from {args}"
    return args[args.index(name) + 1]


def default_services(config: dict[str, Any]) -> dict[str, Any]:
    """The services ``docker compose up`` starts: those in no profile (1.29's ``config``
    prints every service, whatever the profiles)."""
    return {name: s for name, s in config["services"].items() if not s.get("profiles")}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return default_services(compose_config())


def test_three_services_from_one_image_all_with_healthchecks(services: dict[str, Any]) -> None:
    assert set(services) == {"upstream", "proxy", "app"}
    for name, service in services.items():
        assert service["build"]["context"] == str(ROOT), name
        assert service["image"] == "chaosproxy-demo"
        assert "/healthz" in " ".join(service["healthcheck"]["test"]), name
    assert services["proxy"]["depends_on"]["upstream"]["condition"] == "service_healthy"
    assert services["app"]["depends_on"]["proxy"]["condition"] == "service_healthy"


def test_the_proxy_forwards_to_the_upstream_service(services: dict[str, Any]) -> None:
    upstream_args = argv(services["upstream"])
    assert upstream_args[:3] == ["python", "-m", "chaosproxy.demo_app.upstream"]
    proxy_args = argv(services["proxy"])
    assert proxy_args[:2] == ["chaosproxy", "run"]
    target = urlsplit(option(proxy_args, "--upstream"))
    assert (target.scheme, target.hostname) == ("http", "upstream")
    assert target.port == int(option(upstream_args, "--port"))
    assert option(proxy_args, "--scenario") == "healthy"


def test_the_app_calls_the_proxy_and_its_control_api(services: dict[str, Any]) -> None:
    proxy_args = argv(services["proxy"])
    env = services["app"]["environment"]
    app_upstream = urlsplit(env["DEMO_UPSTREAM_URL"])
    admin = urlsplit(env["DEMO_PROXY_ADMIN_URL"])
    assert (app_upstream.hostname, admin.hostname) == ("proxy", "proxy")
    assert app_upstream.port == int(option(proxy_args, "--listen").rsplit(":", 1)[1])
    assert admin.port == int(option(proxy_args, "--admin").rsplit(":", 1)[1])
    assert services["proxy"]["environment"]["CHAOSPROXY_ADMIN_TOKEN"] == TOKEN
    assert env["CHAOSPROXY_ADMIN_TOKEN"] == TOKEN
    # the dashboard's assessment goes to the real upstream, past the demo's proxy
    assessed = urlsplit(env["DEMO_ASSESS_UPSTREAM_URL"])
    assert (assessed.hostname, assessed.port) == ("upstream", 5001)
    assert str(assessed.port) == option(argv(services["upstream"]), "--port")


@pytest.mark.parametrize("env", [{}, {"CHAOSPROXY_ADMIN_TOKEN": ""}], ids=["unset", "empty"])
def test_the_admin_token_is_required(env: dict[str, str]) -> None:
    out = run_compose_config(env)
    assert out.returncode != 0
    assert "set CHAOSPROXY_ADMIN_TOKEN" in out.stderr
    assert "change-me" not in (ROOT / "docker-compose.yml").read_text()


def test_the_dashboard_port_is_published_and_scenarios_mounted(services: dict[str, Any]) -> None:
    app_args = argv(services["app"])
    [(_, public, target)] = published(services["app"])
    assert target == int(option(app_args, "--port"))
    assert public == 5000
    volumes = services["proxy"]["volumes"]
    assert any(v.startswith(f"{ROOT / 'scenarios'}:/app/scenarios") for v in volumes), volumes


def test_variables_override_the_defaults() -> None:
    services = default_services(
        compose_config(
            DEMO_PORT="5099", CHAOSPROXY_SCENARIO="outage", CHAOSPROXY_ADMIN_TOKEN="s3cret"
        )
    )
    assert published(services["app"])[0][1] == 5099
    assert option(argv(services["proxy"]), "--scenario") == "outage"
    assert services["app"]["environment"]["CHAOSPROXY_ADMIN_TOKEN"] == "s3cret"


def test_every_port_is_published_on_loopback_by_default(services: dict[str, Any]) -> None:
    ports = {name: published(service) for name, service in services.items()}
    assert ports["app"] and ports["proxy"], ports
    for name, entries in ports.items():
        for host, _, _ in entries:
            assert host == "127.0.0.1", (name, entries)


def test_the_publish_address_can_be_opened_on_purpose() -> None:
    services = compose_config(DEMO_PUBLISH_HOST="0.0.0.0")["services"]  # profiles too
    hosts = {host for service in services.values() for host, _, _ in published(service)}
    assert hosts == {"0.0.0.0"}


def test_the_scale_profile_adds_two_replicas_sharing_one_redis() -> None:
    out = run_compose_config({"CHAOSPROXY_ADMIN_TOKEN": TOKEN}, profiles=("scale",))
    assert out.returncode == 0, out.stderr
    every = yaml.safe_load(out.stdout)["services"]
    scale = {name for name, s in every.items() if "scale" in s.get("profiles", [])}
    assert scale == {"state", "replica-1", "replica-2"}
    proxy_args = argv(every["proxy"])
    state_args = every["state"]["command"]
    assert state_args[0] == "redis-server" and "--port" not in state_args  # 6379
    fronts = [published(every["proxy"])]
    for name in ("replica-1", "replica-2"):
        replica = every[name]
        args = argv(replica)
        # the same proxy as the single one, pointed at the same upstream and scenario ...
        for flag in ("--upstream", "--listen", "--admin", "--scenario"):
            assert option(args, flag) == option(proxy_args, flag), (name, flag)
        # ... with its state in the shared Redis, started (healthy) before it
        store = urlsplit(replica["environment"]["CHAOSPROXY_STATE"])
        assert (store.scheme, store.hostname, store.port, store.path) == (
            "redis", "state", 6379, "/0"
        )
        assert replica["depends_on"]["state"]["condition"] == "service_healthy"
        assert replica["environment"]["CHAOSPROXY_ADMIN_TOKEN"] == TOKEN
        assert "/healthz" in " ".join(replica["healthcheck"]["test"])
        assert replica["image"] == every["proxy"]["image"]
        fronts.append(published(replica))
    public = [port for ports in fronts for _, port, _ in ports]
    assert len(public) == len(set(public)) == 6, fronts  # each replica reachable on its own
    assert {host for ports in fronts for host, _, _ in ports} == {"127.0.0.1"}


def test_the_dockerfile_installs_what_the_services_run() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [
        part
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for part in line.split()[1:-1]
    ]
    assert {"chaosproxy", "proxy_addons", "demo_app", "scenarios", "pyproject.toml"} <= set(copied)
    for path in copied:
        assert (ROOT / path).exists(), path
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), path
    assert "pip install -e ." in dockerfile  # /app/scenarios is where shipped scenarios load
    assert "WORKDIR /app" in dockerfile
