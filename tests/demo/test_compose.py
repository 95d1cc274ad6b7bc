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


def compose_config(**env: str) -> dict[str, Any]:
    exe = require_tool("docker-compose")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CHAOSPROXY_", "DEMO_"))}
    out = subprocess.run(
        [exe, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**clean, **env},
    )
    assert out.returncode == 0, out.stderr
    config: dict[str, Any] = yaml.safe_load(out.stdout)
    return config


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


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return dict(compose_config()["services"])


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
    token = services["proxy"]["environment"]["CHAOSPROXY_ADMIN_TOKEN"]
    assert token and env["CHAOSPROXY_ADMIN_TOKEN"] == token


def test_the_dashboard_port_is_published_and_scenarios_mounted(services: dict[str, Any]) -> None:
    app_args = argv(services["app"])
    published = services["app"]["ports"][0]
    assert int(published["target"]) == int(option(app_args, "--port"))
    assert int(published["published"]) == 5000
    volumes = services["proxy"]["volumes"]
    assert any(v.startswith(f"{ROOT / 'scenarios'}:/app/scenarios") for v in volumes), volumes


def test_variables_override_the_defaults() -> None:
    services = compose_config(
        DEMO_PORT="5099", CHAOSPROXY_SCENARIO="outage", CHAOSPROXY_ADMIN_TOKEN="s3cret"
    )["services"]
    assert int(services["app"]["ports"][0]["published"]) == 5099
    assert option(argv(services["proxy"]), "--scenario") == "outage"
    assert services["app"]["environment"]["CHAOSPROXY_ADMIN_TOKEN"] == "s3cret"


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
