"""The lean start of ``chaosproxy run``: the seam's LEAN patches (proxy_addons/_internals)
each give mitmproxy's own answers, cheaper."""

from __future__ import annotations

from tests.support import run_python


def test_lean_start_imports_only_the_addons_the_proxy_runs() -> None:
    out = run_python(
        """
        import sys
        from chaosproxy.proxy_addons import _internals
        _internals.lean_start()
        import chaosproxy.proxy_addons.runner
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
    out = run_python(
        """
        from mitmproxy import http
        def build():
            try:
                http.Request("h", 80, b"GET", b"http", b"h", b"/", b"HTTP/1.1", http.Headers(), None, None, "not a float", None)
                return "built"
            except TypeError:
                return "checked"
        before = build()
        from chaosproxy.proxy_addons import _internals
        from chaosproxy.proxy_addons._internals import typechecks
        first = typechecks.applied(), _internals.apply(["no_debug_typechecks"])
        print(before, first, build(), _internals.apply(["no_debug_typechecks"]), typechecks.applied())
        r = http.Request.make("GET", "http://example.com/x", b"body")
        print(r.pretty_url, r.content)
        """
    )
    checks, request = out.splitlines()
    assert checks == "checked (False, ['no_debug_typechecks']) built ['no_debug_typechecks'] True"
    assert request == "http://example.com/x b'body'"


def test_only_run_is_made_lean() -> None:
    """Other commands, and ``run --help``, leave mitmproxy as it is."""
    out = run_python(
        """
        import contextlib, io
        from chaosproxy.cli.main import main
        from chaosproxy.proxy_addons import _internals
        with contextlib.redirect_stdout(io.StringIO()):
            codes = [main(["list"]), main(["schema"])]
            try:
                main(["run", "--help"])
            except SystemExit as exc:
                codes.append(exc.code)
        print(codes, _internals.active())
        """
    )
    assert out.strip() == "[0, 0, 0] []"


def test_direct_header_lookups_answer_exactly_as_mitmproxys_own() -> None:
    """Every look-up on a spread of headers (case, repeats, bytes keys, non-UTF-8 values,
    missing names, a bad key type) gives the same value or the same exception type."""
    out = run_python(
        r"""
        from mitmproxy import http

        def cases():
            h = http.Headers(
                [
                    (b"Host", b"example.com"),
                    (b"Set-Cookie", b"a=1"),
                    (b"set-cookie", b"b=2"),
                    (b"X-Raw", b"\xff\xfe bytes"),
                    (b"Content-Length", b"0"),
                    (b"EMPTY", b""),
                ]
            )
            names = ["host", "HOST", b"host", "set-cookie", b"Set-Cookie", "x-raw", "empty",
                     "missing", b"missing", "content-length", "", 42]
            out = []
            for name in names:
                for op in ("get_all", "get", "getitem", "contains"):
                    try:
                        if op == "get_all":
                            value = h.get_all(name)
                        elif op == "get":
                            value = h.get(name, "default")
                        elif op == "getitem":
                            value = h[name]
                        else:
                            value = name in h
                        out.append((op, repr(name), "=", value))
                    except Exception as exc:
                        out.append((op, repr(name), "raises", type(exc).__name__))
            return out

        before = cases()
        from chaosproxy.proxy_addons import _internals
        from chaosproxy.proxy_addons._internals import headers
        was = headers.applied()
        first = _internals.apply(["header_lookups"])
        patched = http.Headers.get_all
        again = _internals.apply(["header_lookups"])  # once: not wrapped twice
        after = cases()
        print(was, first, again, http.Headers.get_all is patched, len(before))
        for b, a in zip(before, after):
            if b != a:
                print("DIFF", b, a)
        """
    )
    lines = out.splitlines()
    assert lines[0] == "False ['header_lookups'] ['header_lookups'] True 48"
    assert lines[1:] == []


def test_plain_option_reads_give_the_same_values_and_still_copy_mutable_ones() -> None:
    out = run_python(
        """
        from mitmproxy import options
        from chaosproxy.proxy_addons import _internals
        from chaosproxy.proxy_addons._internals import options as option_reads

        def snapshot(o):
            return {name: getattr(o, name) for name in sorted(o._options)}

        o = options.Options()
        o.update(listen_host="127.0.0.1", confdir="/tmp/c", mode=["reverse:http://x"])
        before = snapshot(o)
        was = option_reads.applied()
        _internals.apply(["option_reads"])
        patched = options.optmanager._Option.current
        _internals.apply(["option_reads"])  # once: not wrapped twice
        first = not was and option_reads.applied()
        again = options.optmanager._Option.current is not patched
        after = snapshot(o)
        print(first, again, before == after, len(after) > 10)
        modes = o.mode
        modes.append("regular")  # a copy: the option keeps its value
        print(o.mode, o.listen_host, o.confdir, o.ssl_insecure)
        """
    )
    flags, values = out.splitlines()
    assert flags == "True False True True"
    assert values == "['reverse:http://x'] 127.0.0.1 /tmp/c False"


_STREAMS = """
    import gc, sys, weakref
    import requests
    from chaosproxy.proxy_addons import _internals
    if sys.argv[1] == "lean":
        _internals.lean_start()
    from mitmproxy.proxy.layers import http as layers_http
    from chaosproxy.testing.api import ChaosProxy
    from tests.support import free_port, running_upstream, wait_until

    streams = weakref.WeakSet()
    init = layers_http.HttpStream.__init__
    def tracked(self, *args, **kwargs):
        init(self, *args, **kwargs)
        streams.add(self)
    layers_http.HttpStream.__init__ = tracked

    scenario = {"name": "s", "rules": [
        {"name": "slow", "match": {"path": "/slow"}, "fault": {"type": "latency", "delay": "10ms"}},
        {"name": "boom", "match": {"path": "/boom"}, "fault": {"type": "error", "status": 503}},
    ]}
    gc.collect()
    gc.disable()  # only reference counting frees anything from here on
    statuses = []
    with running_upstream() as up:
        with ChaosProxy(upstream=up.url, scenario=scenario) as proxy, requests.Session() as s:
            for path in ["/a", "/slow", "/boom"] * 5:
                statuses.append(s.get(proxy.url + path, timeout=10).status_code)
            # a refused upstream: mitmproxy ends these streams through its error path
            with ChaosProxy(upstream=f"http://127.0.0.1:{free_port()}") as down:
                for _ in range(3):
                    statuses.append(s.get(down.url + "/x", timeout=10).status_code)
            made = len(streams)  # every stream ever made is still counted while alive
            freed = wait_until(lambda: len(streams) == 0, timeout=2) if sys.argv[1] == "lean" else False
            print(sorted(set(statuses)), statuses.count(502), len(streams), bool(freed))
"""


def test_finished_streams_are_freed_by_reference_counting_alone() -> None:
    """With the lean start, no request leaves its stream (flow, request, response, ...) to
    the garbage collector; without it, every one waits for a full collection."""

    def run(mode: str) -> str:
        return run_python(_STREAMS, mode).strip()

    assert run("lean") == "[200, 502, 503] 3 0 True"
    statuses, refused, alive, _ = run("plain").rsplit(" ", 3)
    assert statuses == "[200, 502, 503]" and refused == "3"
    assert int(alive) >= 18  # the control: mitmproxy's own streams outlive their requests


def test_heap_is_settled_only_in_a_lean_process() -> None:
    out = run_python(
        """
        import gc
        from chaosproxy.proxy_addons import _internals
        frozen = gc.get_freeze_count()  # Python 3.12 starts with a few hundred
        plain = _internals.settle_heap(), gc.get_freeze_count() == frozen
        _internals.lean_start()
        import chaosproxy.proxy_addons.runner
        lean = _internals.settle_heap(), gc.get_freeze_count() > frozen + 10000, gc.isenabled()
        print(plain, lean)
        """
    )
    assert out.strip() == "(False, True) (True, True, True)"
