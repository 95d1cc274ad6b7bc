"""``chaosproxy demo``: three supervised processes, one clean stop."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import requests

from tests.demo.conftest import DemoProcess
from tests.support import free_port, port_free, wait_until


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def demo_ports(demo: DemoProcess) -> list[int]:
    names = ["dashboard", "proxy", "control API", "upstream"]
    return [int(urlsplit(demo.url_of(n)).port or 0) for n in names]


def test_demo_serves_the_dashboard_and_stops_cleanly_on_sigterm(
    start_demo: Callable[..., DemoProcess],
) -> None:
    demo = start_demo().wait_ready()
    assert demo.url_of("dashboard") == f"{demo.url}/"
    kids = children(demo.proc.pid)
    assert len(kids) == 3
    page = requests.get(demo.url, timeout=5)
    assert page.status_code == 200 and "Circuit breaker" in page.text
    status = requests.get(f"{demo.url}/status", timeout=5).json()
    assert status["breaker"]["state"] == "closed"
    assert status["proxy"]["reachable"] is True
    assert status["proxy"]["scenario"] == "healthy"
    forecast = requests.get(f"{demo.url}/weather/berlin", timeout=10).json()
    assert forecast["source"] == "upstream"
    ports = demo_ports(demo)

    started = time.monotonic()
    assert demo.stop() == 0
    took = time.monotonic() - started
    assert took < 5, demo.output  # typically well under a second
    assert not [pid for pid in kids if alive(pid)]
    assert all(port_free(port) for port in ports), ports
    assert "chaosproxy demo: stopped in" in demo.output


def test_outage_trips_the_breaker_and_the_cache_answers_in_milliseconds(
    start_demo: Callable[..., DemoProcess],
) -> None:
    demo = start_demo().wait_ready()
    base = demo.url
    assert requests.get(f"{base}/weather/berlin", timeout=10).json()["source"] == "upstream"
    answer = requests.put(f"{base}/proxy/scenario", json={"name": "outage"}, timeout=10)
    assert answer.status_code == 200, answer.text
    requests.post(f"{base}/traffic", json={"running": True, "rate": 10}, timeout=5)
    switched = time.monotonic()
    wait_until(
        lambda: requests.get(f"{base}/status", timeout=5).json()["breaker"]["state"] == "open",
        timeout=30,
        interval=0.05,
    )
    status = requests.get(f"{base}/status", timeout=5).json()
    assert status["proxy"]["scenario"] == "outage"
    assert time.monotonic() - switched < 20
    with requests.Session() as session:
        session.get(f"{base}/weather/berlin", timeout=5)
        started = time.perf_counter()
        cached = session.get(f"{base}/weather/berlin", timeout=5)
        elapsed = time.perf_counter() - started
    assert cached.json()["source"] == "cache"
    assert elapsed < 0.5  # milliseconds when idle; generous for a loaded machine
    assert demo.stop() == 0


def test_one_part_dying_stops_the_others(start_demo: Callable[..., DemoProcess]) -> None:
    demo = start_demo().wait_ready()
    kids = children(demo.proc.pid)
    ports = demo_ports(demo)
    upstream_port = int(urlsplit(demo.url_of("upstream")).port or 0)
    victim = next(
        pid for pid in kids if "chaosproxy.demo_app.upstream" in Path(f"/proc/{pid}/cmdline").read_text()
    )
    os.kill(victim, signal.SIGKILL)
    assert demo.proc.wait(30) == 1
    assert "the upstream exited" in demo.output
    assert not [pid for pid in kids if alive(pid)]
    assert upstream_port in ports and all(port_free(port) for port in ports)


def test_a_named_scenario_and_a_bad_one(start_demo: Callable[..., DemoProcess]) -> None:
    bad = start_demo("--scenario", "no-such-scenario")
    assert bad.proc.wait(60) == 1
    assert "no-such-scenario" in bad.output
    assert "starting" not in bad.output  # nothing was started
    demo = start_demo("--scenario", "outage").wait_ready()
    status = requests.get(f"{demo.url}/status", timeout=5).json()
    assert status["proxy"]["scenario"] == "outage"
    kids = children(demo.proc.pid)
    demo.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert demo.proc.wait(30) == 0
    assert not [pid for pid in kids if alive(pid)]


def test_a_busy_port_is_a_clear_error(start_demo: Callable[..., DemoProcess]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        demo = start_demo(port=port)
        assert demo.proc.wait(60) == 1
    assert f"--port {port} is not free" in demo.output
    other = free_port()
    clash = start_demo("--proxy-port", str(other), port=other)
    assert clash.proc.wait(60) == 1
    assert "four different ports" in clash.output


def test_the_app_answers_only_once_the_proxy_serves(
    start_demo: Callable[..., DemoProcess],
) -> None:
    """A client polling the dashboard's port from the first moment gets, under ``healthy``,
    a first forecast straight from the upstream in one attempt (not "ok after retry" or a
    503 after three attempts against a proxy that was not listening yet)."""
    demo = start_demo()
    deadline = time.monotonic() + 90
    while True:
        assert demo.proc.poll() is None, demo.output
        assert time.monotonic() < deadline, demo.output
        try:
            first = requests.get(f"{demo.url}/weather/berlin", timeout=10)
            break
        except requests.ConnectionError:
            time.sleep(0.01)
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["outcome"], body["attempts"], body["source"]) == ("ok", 1, "upstream")
    assert demo.stop() == 0
