"""The console script's lean start for ``chaosproxy run`` (proxy_addons/launch.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from proxy_addons import launch


def _python(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_lean_start_imports_only_the_addons_the_proxy_runs() -> None:
    out = _python(
        """
        import sys
        from proxy_addons import launch
        launch.lean()
        import proxy_addons.runner
        print(sorted(m for m in sys.modules if m.startswith("mitmproxy.addons.")))
        print("onboarding" in repr(sys.modules), "ldap3" in sys.modules)
        import mitmproxy.addons
        print(len(mitmproxy.addons.default_addons()) > 20, "mitmproxy.addons.onboarding" in sys.modules)
        """
    )
    imported, skipped, full = out.splitlines()
    assert "'mitmproxy.addons.proxyserver'" in imported
    assert "'mitmproxy.addons.onboarding'" not in imported
    assert skipped == "False False"
    assert full == "True True"  # the first other use loads the package whole


def test_lean_start_skips_mitmproxys_debug_type_checks_only() -> None:
    out = _python(
        """
        from mitmproxy import http
        def build():
            try:
                http.Request("h", 80, b"GET", b"http", b"h", b"/", b"HTTP/1.1", http.Headers(), None, None, "not a float", None)
                return "built"
            except TypeError:
                return "checked"
        before = build()
        from proxy_addons import launch
        print(before, launch.skip_debug_typechecks(), build(), launch.skip_debug_typechecks())
        r = http.Request.make("GET", "http://example.com/x", b"body")
        print(r.pretty_url, r.content)
        """
    )
    checks, request = out.splitlines()
    assert checks == "checked True built False"
    assert request == "http://example.com/x b'body'"


def test_only_run_is_made_lean() -> None:
    assert launch._is_run(["run", "--upstream", "http://x"])
    assert not launch._is_run(["run", "--help"])
    assert not launch._is_run(["validate", "x.yaml"])
    assert not launch._is_run([])
