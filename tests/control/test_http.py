"""The shared HTTP/1.1 server plumbing (control API and relay), on real loopback sockets."""

from __future__ import annotations

import asyncio

import h11
import pytest

from chaosproxy.control.http import Exchange, H11Server


async def echo_path(exchange: Exchange, request: h11.Request) -> None:
    while not isinstance(await exchange.next_event(), h11.EndOfMessage):
        pass
    await exchange.respond(200, request.target, [("content-type", "text/plain")])


async def stop(server: H11Server) -> None:
    server.close()
    while server.active:
        await asyncio.sleep(0.01)


async def talk(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async def go() -> bytes:
        server = H11Server(echo_path)
        port = await server.start()
        try:
            return await talk(
                port,
                b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
        finally:
            await stop(server)

    answer = asyncio.run(go())
    assert answer.count(b"HTTP/1.1 200") == 2
    assert answer.index(b"/one") < answer.index(b"/two")


@pytest.mark.parametrize(
    ("bad_request", "expected"),
    [
        (lambda status, why: ("text/plain", f"{status}: {why}".encode()), b"HTTP/1.1 400"),
        (None, b""),
    ],
)
def test_a_request_h11_cannot_parse_is_answered_or_closed(bad_request, expected) -> None:
    async def go() -> bytes:
        server = H11Server(echo_path, bad_request=bad_request)
        port = await server.start()
        try:
            return await talk(port, b"NOT HTTP AT ALL\r\n\r\n")
        finally:
            await stop(server)

    answer = asyncio.run(go())
    assert answer.startswith(expected)
    if expected:
        assert b"bad request" in answer and b"connection: close" in answer.lower()


def test_close_ends_open_connections_and_a_restart_binds_a_fresh_port() -> None:
    async def hang(exchange: Exchange, request: h11.Request) -> None:
        await asyncio.sleep(60)

    async def go() -> tuple[int, bytes, int]:
        server = H11Server(hang)
        port = await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        while server.active == 0:
            await asyncio.sleep(0.01)
        server.close()
        try:
            rest = await asyncio.wait_for(reader.read(), 5)  # closed, no answer
        except ConnectionResetError:
            rest = b""
        writer.close()
        while server.active:
            await asyncio.sleep(0.01)
        again = await server.start()
        await stop(server)
        return server.active, rest, again

    active, rest, again = asyncio.run(go())
    assert active == 0 and rest == b"" and again > 0


def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    async def go() -> bytes:
        server = H11Server(echo_path, idle_timeout=0.1)
        port = await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return data
        finally:
            await stop(server)

    assert asyncio.run(go()) == b""
