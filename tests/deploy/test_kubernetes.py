"""deploy/kubernetes, checked offline: every overlay renders with kustomize (``kubectl
kustomize``) and each object validates strictly against the Kubernetes schemas shipped in
kubernetes-validate; the wiring (ports, probes, mounts, the Secret, the state store) is
asserted on the rendered objects, and the sidecar's command line is run for real in
tests/deploy/test_sidecar_run.py."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from chaosproxy.cli.main import build_parser
from chaosproxy.core import scenario as scenario_mod
from tests.support import require_tool

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
#: native sidecars (an init container with restartPolicy: Always) need Kubernetes 1.29
OLDEST_KUBERNETES = "1.29.0"


def kubectl() -> str:
    exe = require_tool("kubectl")
    version = subprocess.run(
        [exe, "version", "--client"], capture_output=True, text=True, timeout=60
    ).stdout
    found = re.search(r"Kustomize Version: v(\d+)", version)
    if found is None or int(found.group(1)) < 4:
        pytest.skip(f"kubectl's kustomize is too old for the overlays (needs v4+): {version!r}")
    return exe


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def find(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def pod(docs: tuple[dict[str, Any], ...], name: str = "app") -> dict[str, Any]:
    spec: dict[str, Any] = find(docs, "Deployment", name)["spec"]["template"]["spec"]
    return spec


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name]
    return found


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def sidecar_args(spec: dict[str, Any]) -> Any:
    args = container(spec, "chaosproxy")["args"]
    assert args[:2] == ["chaosproxy", "run"]
    return build_parser().parse_args(args[1:])  # chaosproxy's own parser accepts them


def port_of(address: str | tuple[str, int]) -> int:
    """The port of ``HOST:PORT`` (as given) or of a parsed ``(host, port)``."""
    return address[1] if isinstance(address, tuple) else int(address.rsplit(":", 1)[1])


def test_there_are_the_documented_overlays() -> None:
    assert OVERLAYS == ["egress", "one-proxy", "shared-state"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, "latest"])
def test_every_object_validates_strictly(overlay: str, version: str) -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    k8s = latest_version() if version == "latest" else version
    docs = render(overlay)
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap"}
    for doc in docs:
        kubernetes_validate.validate(doc, k8s, strict=True)  # raises on any error


def test_strict_validation_catches_a_misspelt_field() -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    broken = yaml.safe_load(yaml.safe_dump(find(render("one-proxy"), "Deployment", "app")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, latest_version(), strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_their_pods_and_name_their_ports(overlay: str) -> None:
    docs = render(overlay)
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        [deployment] = [
            d
            for d in docs
            if d["kind"] == "Deployment"
            and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        containers = pod(docs, deployment["metadata"]["name"])
        named = {
            p["name"]
            for c in containers.get("initContainers", []) + containers["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in named, (service["metadata"]["name"], port)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_sidecar_starts_first_and_is_probed_on_its_health_endpoint(overlay: str) -> None:
    spec = pod(render(overlay))
    proxy = container(spec, "chaosproxy")
    assert proxy in spec["initContainers"] and proxy["restartPolicy"] == "Always"
    args = sidecar_args(spec)
    admin_port = port_of(args.admin)
    assert {p["name"]: p["containerPort"] for p in proxy["ports"]} == {"admin": admin_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert proxy[probe]["httpGet"] == {"path": "/healthz", "port": "admin"}, probe
    # beyond loopback the control API needs the token: both containers take it from the
    # Secret, and no token is committed
    for name in ("chaosproxy", "app"):
        assert env(container(spec, name))["CHAOSPROXY_ADMIN_TOKEN"] == {
            "secretKeyRef": {"name": "chaosproxy-admin", "key": "token"}
        }
    assert not any(d["kind"] == "Secret" for d in render(overlay))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_scenario_comes_from_the_configmap_and_is_watched(overlay: str) -> None:
    docs = render(overlay)
    spec = pod(docs)
    args = sidecar_args(spec)
    assert args.watch
    mounts = {m["name"]: m for m in container(spec, "chaosproxy")["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    scenario = Path(args.scenario)
    [(volume, mount)] = [
        (volumes[name], m) for name, m in mounts.items() if scenario.parent == Path(m["mountPath"])
    ]
    assert mount["readOnly"] is True
    configmap = find(docs, "ConfigMap", volume["configMap"]["name"])  # no hash suffix
    text = configmap["data"][scenario.name]
    loaded = scenario_mod.load_text(text, f"ConfigMap {scenario.name}")  # valid as shipped
    assert loaded.rules
    # every path the proxy writes is a volume: its root file system is read-only
    proxy = container(spec, "chaosproxy")
    assert proxy["securityContext"]["readOnlyRootFilesystem"] is True
    writable = {m["mountPath"] for m in mounts.values() if not m.get("readOnly")}
    assert {args.confdir, "/tmp"} <= writable


def test_reverse_mode_the_app_calls_the_sidecar_on_loopback() -> None:
    for overlay in ("one-proxy", "shared-state"):
        docs = render(overlay)
        spec = pod(docs)
        args = sidecar_args(spec)
        assert args.listen[0] == "127.0.0.1"  # only the pod reaches the proxy
        app_env = env(container(spec, "app"))
        target = urlsplit(app_env["DEMO_UPSTREAM_URL"])
        assert (target.hostname, target.port) == ("127.0.0.1", port_of(args.listen))
        admin = urlsplit(app_env["DEMO_PROXY_ADMIN_URL"])
        assert admin.port == port_of(args.admin)
        [upstream] = args.upstream
        real = urlsplit(upstream)
        service = find(docs, "Service", str(real.hostname))
        assert real.port in [p["port"] for p in service["spec"]["ports"]]


def test_shared_state_replicas_point_at_the_redis_service() -> None:
    docs = render("shared-state")
    assert find(docs, "Deployment", "app")["spec"]["replicas"] == 3
    store = urlsplit(env(container(pod(docs), "chaosproxy"))["CHAOSPROXY_STATE"])
    assert store.scheme == "redis" and store.path == "/0"
    service = find(docs, "Service", str(store.hostname))
    assert [p["port"] for p in service["spec"]["ports"]] == [store.port]
    redis = container(pod(docs, str(store.hostname)), "redis")
    assert redis["args"] == ["--save", "", "--appendonly", "no"]
    # the single-proxy overlay has no store
    assert "CHAOSPROXY_STATE" not in env(container(pod(render("one-proxy")), "chaosproxy"))


def test_egress_mode_routes_the_app_through_the_sidecar_and_trusts_its_ca() -> None:
    spec = pod(render("egress"))
    args = sidecar_args(spec)
    assert args.forward and not args.upstream
    app = container(spec, "app")
    app_env = env(app)
    for name in ("HTTP_PROXY", "HTTPS_PROXY"):
        proxy = urlsplit(app_env[name])
        assert (proxy.hostname, proxy.port) == ("127.0.0.1", port_of(args.listen))
    assert {"127.0.0.1", "localhost"} <= set(app_env["NO_PROXY"].split(","))
    assert urlsplit(app_env["DEMO_UPSTREAM_URL"]).hostname == "upstream"  # the real name
    ca = Path(app_env["SSL_CERT_FILE"])
    assert app_env["REQUESTS_CA_BUNDLE"] == str(ca) and ca.name == "mitmproxy-ca-cert.pem"
    [shared] = [m for m in app["volumeMounts"] if Path(m["mountPath"]) == ca.parent]
    assert shared["readOnly"] is True and Path(args.confdir) == ca.parent


def test_the_kustomization_files_name_only_files_that_exist() -> None:
    for path in DEPLOY.rglob("kustomization.yaml"):
        doc = yaml.safe_load(path.read_text())
        named = list(doc.get("resources", [])) + [p["path"] for p in doc.get("patches", [])]
        for generator in doc.get("configMapGenerator", []):
            named += generator.get("files", [])
        for entry in named:
            assert (path.parent / entry).exists(), (path, entry)
