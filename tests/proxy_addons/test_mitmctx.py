"""mitmproxy's ctx is per thread once chaosproxy's runner is imported."""

from __future__ import annotations

import threading

from mitmproxy import ctx

from chaosproxy.proxy_addons._internals import mitmctx


def test_each_thread_sees_the_master_it_set_and_others_the_last_one() -> None:
    mitmctx.install()
    mitmctx.install()  # idempotent
    before = dict(mitmctx._last)
    # this thread must not have set a master of its own (another test may have made one)
    own = {n: mitmctx._local.__dict__.pop(n) for n in list(vars(mitmctx._local))}
    seen: dict[str, object] = {}
    ready = threading.Barrier(2)

    def proxy_thread(name: str) -> None:
        ctx.master = f"master-{name}"  # type: ignore[assignment]
        ready.wait()  # both have set theirs before either reads
        seen[name] = ctx.master

    threads = [threading.Thread(target=proxy_thread, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert seen == {"a": "master-a", "b": "master-b"}
        assert ctx.master in ("master-a", "master-b")  # this thread: the last one set
    finally:
        mitmctx._last.clear()
        mitmctx._last.update(before)
        vars(mitmctx._local).update(own)
