"""WebSocket passthrough: N messages echoed through a proxy (the ``websocket`` section).

``python -m bench.websocket serve PORT`` runs the echo server (the ``websockets`` library,
in its own process so it does not share the client's CPU time); :func:`echo_run` sends N
text messages through one socket while reading the N echoes back, and times it from the
first send to the last echo. Messages are pipelined (the client never waits for an echo
before sending the next), so the time is the proxy's relaying cost in both directions.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

#: the text of each message (64 characters with the number in front), about a chat line
PAD = "x" * 56


async def _echo(conn: Any) -> None:
    async for message in conn:
        await conn.send(message)


async def _serve(port: int) -> None:
    from websockets.asyncio.server import serve

    async with serve(_echo, "127.0.0.1", port, max_queue=None) as server:
        await server.serve_forever()


async def _run(url: str, n: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    async with connect(url, open_timeout=20, max_queue=None, compression=None) as conn:
        got = 0
        lost = False

        async def read() -> None:
            nonlocal got, lost
            while got < n:
                try:
                    await asyncio.wait_for(conn.recv(), 30)
                except (TimeoutError, OSError):
                    lost = True
                    return
                got += 1

        started = time.perf_counter()
        reader = asyncio.create_task(read())
        for i in range(n):
            await conn.send(f"{i:08d}{PAD}")
        await reader
        seconds = time.perf_counter() - started
    return {
        "messages": n,
        "echoed": got,
        "errors": int(lost) + (n - got),
        "seconds": round(seconds, 3),
        "messages_per_s": round(2 * got / seconds, 1) if seconds else 0.0,
    }


def echo_run(url: str, n: int) -> dict[str, Any]:
    """Send ``n`` messages to the echo server at ``url`` (``ws://...``), read the echoes."""
    return asyncio.run(_run(url, n))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "serve":
        sys.exit("usage: python -m bench.websocket serve PORT")
    try:
        asyncio.run(_serve(int(sys.argv[2])))
    except KeyboardInterrupt:
        pass
