"""What a caller without a credential can cost a node: raw sockets on 127.0.0.1.

A sync request's signature covers the body's hash (``X-VV-Content-SHA256``) and is checked
before the body is read; without that header at most 64 KiB is read first. A connection that
presents no valid credential is closed ``unauthenticated_timeout`` after it opened, whatever
it is doing (headers sent slowly, a body trickled, idling), and only so many may be open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from vvstore.api import GUARD, GuardedSite, create_app
from vvstore.auth import TokenAuth
from vvstore.clock import VersionVector
from vvstore.node import Node
from vvstore.signing import ClusterAuth
from vvstore.wire import PullRequest, encode_pull_request

SECRET = b"verify-before-reading-secret-0123456789abcdef"
TOKEN = b"verify-before-reading-token-0123456789abcdef"
#: A sync body below the route's limit (1,114,112 bytes) but far above 64 KiB.
BIG = 1_000_000
#: Seconds any answer or close may take here, against the 10 s an unverified body could take.
PROMPT = 3.0


@asynccontextmanager
async def listening(
    node: Node, *, guarded: bool, timeout: float = 30.0, limit: int = 256
) -> AsyncIterator[tuple[int, web.Application]]:
    app = create_app(
        node,
        token=TokenAuth(TOKEN),
        cluster=ClusterAuth(SECRET, node.node_id),
        unauthenticated_timeout=timeout,
        unauthenticated_connections=limit,
    )
    runner = web.AppRunner(app, lingering_time=timeout)  # as serve() makes it
    await runner.setup()
    try:
        site = GuardedSite(runner, "127.0.0.1", 0) if guarded else web.TCPSite(runner, "127.0.0.1")
        await site.start()
        yield runner.addresses[0][1], app
    finally:
        await runner.cleanup()


def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def status_line(reader: asyncio.StreamReader, within: float = PROMPT) -> bytes:
    try:
        return await asyncio.wait_for(reader.readline(), within)
    except TimeoutError:
        raise AssertionError(f"no answer within {within} s") from None


async def closed_after(reader: asyncio.StreamReader, started: float, within: float) -> float:
    """Seconds from ``started`` until the node closed the connection (reading what it sent)."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {within} s") from None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


async def refused_before_the_body(port: int, headers: dict[str, str]) -> bytes:
    """Send a sync request's head and 100 KiB of a 1 MB body, then stall: the status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head("POST", "/sync/pull", {"Content-Length": str(BIG), **headers}))
        writer.write(b" " * 100_000)
        await writer.drain()
        return await status_line(reader)
    finally:
        writer.transport.abort()  # the unsent rest of the body goes too


def forged(node_id: str) -> dict[str, str]:
    """Well-formed signing headers for a 1 MB body, signed with another secret."""
    other = ClusterAuth(b"not-the-cluster-secret-0123456789abcdef", "intruder")
    return other.sign_request(
        "POST", "/sync/pull", b" " * BIG, recipient=node_id, now=time.time(), nonce="ab" * 16
    )


@pytest.mark.parametrize(
    ("make_headers", "status"),
    [
        (lambda node_id: {}, b" 413 "),
        (forged, b" 401 "),
    ],
    ids=["unsigned", "wrong-secret"],
)
async def test_an_unauthenticated_sync_request_is_refused_before_its_body_is_read(
    node: Node, make_headers: Callable[[str], dict[str, str]], status: bytes
) -> None:
    """Before the fix the node read (and held) the body for up to 10 s before checking."""
    async with listening(node, guarded=False, timeout=1.0) as (port, _):
        line = await refused_before_the_body(port, make_headers(node.node_id))
    assert status in line, line


async def test_a_verified_request_whose_body_arrives_late_is_served(node: Node) -> None:
    body = encode_pull_request(PullRequest(VersionVector()))
    peer = ClusterAuth(SECRET, "peer")
    headers = peer.sign_request(
        "POST", "/sync/pull", body, recipient=node.node_id, now=time.time(), nonce="cd" * 16
    )
    async with listening(node, guarded=True) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head("POST", "/sync/pull", {"Content-Length": str(len(body)), **headers}))
            writer.write(body[:5])
            await writer.drain()
            await asyncio.sleep(0.2)  # the body's rest arrives after the check
            writer.write(body[5:])
            assert b" 200 " in await status_line(reader)
        finally:
            writer.close()


async def test_a_body_other_than_the_signed_one_is_refused(node: Node) -> None:
    body = encode_pull_request(PullRequest(VersionVector()))
    headers = ClusterAuth(SECRET, "peer").sign_request(
        "POST", "/sync/pull", body, recipient=node.node_id, now=time.time(), nonce="ef" * 16
    )
    other = body.replace(b"{", b"{ ", 1)
    headers["Content-Length"] = str(len(other))
    async with listening(node, guarded=True) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head("POST", "/sync/pull", headers) + other)
            assert b" 401 " in await status_line(reader)
            answer = await reader.read(65536)
        finally:
            writer.close()
    assert b'"bad_signature"' in answer


@pytest.mark.parametrize("what", ["slow headers", "slow body after a refusal", "slow sync body"])
async def test_an_unauthenticated_connection_is_closed_after_the_timeout(
    node: Node, what: str
) -> None:
    timeout = 1.0
    async with listening(node, guarded=True, timeout=timeout) as (port, app):
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if what == "slow headers":
            writer.write(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        elif what == "slow body after a refusal":
            writer.write(head("POST", "/counters/k", {"Content-Length": "60000"}))
        else:  # small enough to be read before verification, but never finished
            writer.write(head("POST", "/sync/pull", {"Content-Length": "60000"}))
        trickle = asyncio.create_task(
            _trickle(writer, b"X-Slow: a\r\n" if "headers" in what else b"1")
        )
        try:
            elapsed = await closed_after(reader, started, within=timeout + PROMPT)
        finally:
            trickle.cancel()
            writer.close()
    assert timeout * 0.9 <= elapsed < timeout + PROMPT
    assert app[GUARD].unauthenticated == 0


async def _trickle(writer: asyncio.StreamWriter, chunk: bytes) -> None:
    """A few bytes every 0.1 s (at most 100 times) until the node closes the connection."""
    for _ in range(100):
        try:
            writer.write(chunk)
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(0.1)


async def _health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """Ask GET /health on an open connection, leaving it open: the status line and body."""
    writer.write(head("GET", "/health", {}))
    line = await status_line(reader)
    length = 0
    while header := (await reader.readline()).strip():
        name, _, value = header.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return line + await reader.readexactly(length)


async def test_unauthenticated_connections_are_capped_and_trusted_ones_not_counted(
    node: Node,
) -> None:
    async with listening(node, guarded=True, limit=2) as (port, app):
        guard = app[GUARD]
        trusted = await asyncio.open_connection("127.0.0.1", port)
        trusted[1].write(head("GET", "/status", {"Authorization": "Bearer " + TOKEN.decode()}))
        assert b" 200 " in await status_line(trusted[0])
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        # /health proves nothing: both stay unauthenticated, and both are served.
        for reader, writer in idle:
            assert b" 200 " in await _health(reader, writer)
        assert guard.unauthenticated == 2
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_after(reader, started, within=PROMPT) < PROMPT
        writer.close()
        assert guard.refused == 1
        for _, idle_writer in idle:
            idle_writer.close()
        # Once they are gone, a new connection is served again.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROMPT
        while guard.unauthenticated and loop.time() < deadline:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert b" 200 " in await _health(reader, writer)
        writer.close()
        trusted[1].close()
