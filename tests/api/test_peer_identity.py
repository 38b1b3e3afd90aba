"""Which node answers at a peer's address: real apps over HTTP on 127.0.0.1, the real HttpPeer.

A peer's node id comes from a signed hello, never from the open /health; every signed call
proves it again, and a failed call forgets it, so an address reused by another node is
noticed on the next call instead of being refused until a restart. A peer named for its
address (``--peer b=http://...``) refuses any other node there, says so, and takes the named
node back as soon as it answers there again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from vvstore.api import create_app
from vvstore.clock import VersionVector
from vvstore.config import NodeConfig
from vvstore.errors import PeerMismatch, Unauthorized, VVStoreError
from vvstore.node import Node
from vvstore.peer import HttpPeer
from vvstore.signing import ClusterAuth
from vvstore.wire import Page, PullRequest

SECRET = b"peer-identity-cluster-secret-0123456789abcdef"
#: How long a test waits for a peer to be taken back (polled, not slept).
DEADLINE = 10.0


@asynccontextmanager
async def serving(node: Node, port: int = 0, *, signed: bool = True) -> AsyncIterator[int]:
    """Serve ``node`` on 127.0.0.1:``port`` (0: a free one) and yield the port."""
    cluster = ClusterAuth(SECRET, node.node_id) if signed else None
    runner = web.AppRunner(create_app(node, cluster=cluster))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.fixture
async def nodes(make_config: Callable[..., NodeConfig]) -> AsyncIterator[dict[str, Node]]:
    """Nodes b and c, opened, not serving."""
    opened = {
        name: await Node.open(make_config(name), rng=random.Random(i))
        for i, name in enumerate("bc")
    }
    try:
        yield opened
    finally:
        for node in opened.values():
            await node.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def peer_at(
    session: aiohttp.ClientSession, port: int, *, expected: str | None, signed: bool = True
) -> HttpPeer:
    return HttpPeer(
        f"http://127.0.0.1:{port}",
        session,
        connect_timeout=2,
        read_timeout=2,
        cluster=ClusterAuth(SECRET, "a") if signed else None,
        expected_node=expected,
    )


async def pull(peer: HttpPeer) -> Page:
    return await peer.pull(PullRequest(VersionVector()))


async def first_pull(peer: HttpPeer) -> Page:
    """The first pull that succeeds, polled until DEADLINE; fails naming the last error."""
    loop = asyncio.get_running_loop()
    deadline, last = loop.time() + DEADLINE, "none"
    while loop.time() < deadline:
        try:
            return await pull(peer)
        except VVStoreError as exc:
            last = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(0.05)
    raise AssertionError(f"no pull from {peer.url} succeeded within {DEADLINE} s: {last}")


async def test_an_address_reused_by_another_node_is_followed_not_refused_until_restart(
    nodes: dict[str, Node], session: aiohttp.ClientSession
) -> None:
    async with serving(nodes["c"]) as port:
        peer = peer_at(session, port, expected=None)
        assert (await pull(peer)).node == "c"
    async with serving(nodes["b"], port):
        # The first call made for c is refused by b; the next one asks again and finds b.
        assert (await first_pull(peer)).node == "b"
        assert peer.node_id == "b" and peer.identity_error is None


async def test_a_named_peer_refuses_another_node_at_its_address_then_takes_it_back(
    nodes: dict[str, Node], session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vvstore.peer")
    async with serving(nodes["c"]) as port:
        peer = peer_at(session, port, expected="b")
        for _ in range(3):
            with pytest.raises(PeerMismatch, match=r"node 'c' answers at .* where node 'b' is"):
                await pull(peer)
        assert peer.node_id is None
        assert peer.identity_error is not None and "'c'" in peer.identity_error
        # Said once per change, not once per round.
        mismatches = [r for r in caplog.records if "peer mismatch" in r.getMessage()]
        assert len(mismatches) == 1, [r.getMessage() for r in caplog.records]
        # Nothing but hellos reached c: it served no page.
        assert peer.bytes_received == 3 * len(b'{"node":"c"}')
    async with serving(nodes["b"], port):
        assert (await first_pull(peer)).node == "b"
        assert peer.identity_error is None


async def test_without_a_cluster_secret_a_named_peer_is_checked_too(
    nodes: dict[str, Node], session: aiohttp.ClientSession
) -> None:
    async with serving(nodes["c"], signed=False) as port:
        peer = peer_at(session, port, expected="b", signed=False)
        with pytest.raises(PeerMismatch):
            await pull(peer)
    async with serving(nodes["b"], port, signed=False):
        assert (await first_pull(peer)).node == "b"


class Outsider:
    """Answers on a member's port without the cluster secret: claims to be node b."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.answer)
        return app

    async def answer(self, request: web.Request) -> web.Response:
        self.asked.append(f"{request.method} {request.path}")
        await request.read()
        return web.json_response({"status": "ok", "node": "b"})


async def test_an_outsider_cannot_claim_a_name_neither_by_health_nor_by_an_unsigned_hello(
    session: aiohttp.ClientSession,
) -> None:
    outsider = Outsider()
    runner = web.AppRunner(outsider.app())
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        peer = peer_at(session, runner.addresses[0][1], expected=None)
        for _ in range(2):
            with pytest.raises(Unauthorized) as refused:
                await pull(peer)
            assert refused.value.code == "unsigned_response"
            assert peer.node_id is None
    finally:
        await runner.cleanup()
    # Only hellos were asked (unanswerable without the secret); never /health, never a pull.
    assert outsider.asked == ["POST /sync/hello", "POST /sync/hello"]
