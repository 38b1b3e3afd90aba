"""Both clients against live in-process nodes and scripted fake nodes: the blocking client has
the async one's methods and reply types, reads fail over across the URLs, writes carrying an
idempotency key are retried on the next node with the same key, refusals are not retried.

Every test runs with each client: the async :class:`Client` on the test's event loop, the
:class:`BlockingClient` on a worker thread (it would otherwise block the loop that serves it).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from vvstore import errors
from vvstore.api import create_app
from vvstore.blocking_client import BlockingClient
from vvstore.client import (
    Client,
    Counter,
    CounterPage,
    Health,
    ListedCounter,
    Sibling,
    Status,
)
from vvstore.node import Node


def closed_url() -> str:
    """A loopback URL nothing listens on (the port was bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Either:
    """One of the two clients, called the same way from the event loop."""

    def __init__(self, kind: str, urls: list[str], **options: Any) -> None:
        self.client: Client | BlockingClient = (
            Client(urls, **options) if kind == "async" else BlockingClient(urls, **options)
        )

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        bound = getattr(self.client, method)
        if isinstance(self.client, Client):
            return await bound(*args, **kwargs)
        return await asyncio.to_thread(bound, *args, **kwargs)

    @property
    def url(self) -> str:
        return str(self.client.url)

    async def close(self) -> None:
        if isinstance(self.client, Client):
            await self.client.close()
        else:
            self.client.close()


Connect = Callable[..., Awaitable[Either]]


@pytest.fixture(params=["async", "blocking"])
async def connect(request: pytest.FixtureRequest) -> AsyncIterator[Connect]:
    opened: list[Either] = []

    async def make(*urls: str, **options: Any) -> Either:
        options.setdefault("retry_delay", 0)
        client = Either(request.param, list(urls), **options)
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.close()


class Scripted:
    """A fake node answering every request with one status and JSON body; it records the
    method, path (with query) and Idempotency-Key of each request."""

    def __init__(self, status: int, body: object) -> None:
        self.status = status
        self.body = json.dumps(body).encode()
        self.seen: list[tuple[str, str, str | None]] = []

    def app(self) -> web.Application:
        async def answer(request: web.Request) -> web.Response:
            self.seen.append(
                (request.method, request.path_qs, request.headers.get("Idempotency-Key"))
            )
            return web.Response(status=self.status, body=self.body, content_type="application/json")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        return app


UNAVAILABLE = (503, {"error": {"code": "unavailable", "message": "queue full"}})
REFUSED = (400, {"error": {"code": "invalid_request", "message": "no"}})


@pytest.fixture
async def live(aiohttp_server: AiohttpServer, node: Node) -> str:
    return str((await aiohttp_server(create_app(node))).make_url("")).rstrip("/")


@pytest.fixture
def scripted(aiohttp_server: AiohttpServer) -> Callable[..., Awaitable[tuple[Scripted, str]]]:
    async def start(status: int, body: object) -> tuple[Scripted, str]:
        fake = Scripted(status, body)
        server = await aiohttp_server(fake.app())
        return fake, str(server.make_url("")).rstrip("/")

    return start


# --- the same methods and types --------------------------------------------------------------


async def test_every_method_returns_its_type_from_a_live_node(
    connect: Connect, live: str, node: Node
) -> None:
    client = await connect(live)
    written = await client("increment", "a/b c", 5)
    assert isinstance(written, Counter) and (written.key, written.value) == ("a/b c", 5)
    status = await client("status")
    assert isinstance(status, Status) and status.node == node.node_id
    read = await client("get", "a/b c")
    assert read.siblings == (Sibling(status.actor, 1, 5, raw={}),)
    first, second = await client("batch", [("a/b c", 2), ("x+y", -1)])
    assert (first.value, second.key, second.value) == (7, "x+y", -1)
    page = await client("list", prefix="a/", limit=1)
    assert isinstance(page, CounterPage)
    assert page.counters == (ListedCounter("a/b c", 7, raw={}),) and page.next is None
    assert (await client("list", prefix="x+")).counters == (ListedCounter("x+y", -1, raw={}),)
    reset = await client("reset", "a/b c", idempotency_key="r1")
    assert reset.value == 0
    assert await client("reset", "a/b c", idempotency_key="r1") == reset  # replayed
    assert await client("health") == Health("ok", node.node_id, raw={})


def test_the_two_clients_have_the_same_public_methods() -> None:
    def public(cls: type) -> set[str]:
        return {name for name in vars(cls) if not name.startswith("_")}

    assert public(BlockingClient) == public(Client)


# --- reads fail over -------------------------------------------------------------------------


async def test_a_read_fails_over_from_a_closed_port(connect: Connect, live: str) -> None:
    client = await connect(closed_url(), live)
    await client("increment", "k", 3)  # the write fails over too: it carries a key
    assert (await client("get", "k")).value == 3
    assert client.url == live  # it stays on the node that answered


async def test_a_read_fails_over_from_a_5xx(connect: Connect, live: str, scripted: Any) -> None:
    fake, down = await scripted(*UNAVAILABLE)
    client = await connect(down, live)
    assert (await client("get", "k")).value == 0
    assert [(m, p) for m, p, _ in fake.seen] == [("GET", "/counters/k")]


async def test_a_read_tries_each_node_once_then_raises(connect: Connect, scripted: Any) -> None:
    one, first = await scripted(*UNAVAILABLE)
    two, second = await scripted(*UNAVAILABLE)
    client = await connect(first, second, attempts=5)
    with pytest.raises(errors.Unavailable):
        await client("status")
    assert (len(one.seen), len(two.seen)) == (1, 1)


async def test_a_refused_read_is_not_failed_over(
    connect: Connect, live: str, scripted: Any
) -> None:
    fake, refusing = await scripted(*REFUSED)
    client = await connect(refusing, live)
    with pytest.raises(errors.InvalidRequest):
        await client("get", "k")
    assert len(fake.seen) == 1 and client.url == refusing


# --- writes are retried with their key -------------------------------------------------------


async def test_a_write_is_retried_on_the_next_node_with_the_same_key(
    connect: Connect, live: str, scripted: Any
) -> None:
    fake, down = await scripted(*UNAVAILABLE)
    client = await connect(down, live)
    written = await client("increment", "k", 4, idempotency_key="once")
    assert written.value == 4
    assert fake.seen == [("POST", "/counters/k", "once")]
    # The same key again is the same increment: answered, not applied.
    assert (await client("increment", "k", 4, idempotency_key="once")).value == 4
    assert (await client("get", "k")).value == 4


async def test_every_retry_of_a_write_carries_its_first_key(
    connect: Connect, scripted: Any
) -> None:
    one, first = await scripted(*UNAVAILABLE)
    two, second = await scripted(*UNAVAILABLE)
    client = await connect(first, second, attempts=3)
    with pytest.raises(errors.Unavailable):
        await client("reset", "k")
    sent = one.seen + two.seen
    assert len(sent) == 3 and (len(one.seen), len(two.seen)) == (2, 1)
    [key] = {k for _, _, k in sent}
    assert key is not None and len(key) == 32  # a fresh random key, the same on every try


async def test_a_refused_write_is_not_retried(connect: Connect, scripted: Any) -> None:
    fake, refusing = await scripted(*REFUSED)
    client = await connect(refusing, closed_url(), attempts=5)
    with pytest.raises(errors.InvalidRequest):
        await client("increment", "k")
    assert len(fake.seen) == 1


async def test_a_batch_under_one_key_is_counted_once(connect: Connect, live: str) -> None:
    client = await connect(live)
    items = [("a", 1), ("b", 2), ("a", 3)]
    first = await client("batch", items, idempotency_key="nightly-42")
    again = await client("batch", items, idempotency_key="nightly-42")
    assert [c.value for c in first] == [c.value for c in again] == [1, 2, 4]
    assert (await client("get", "a")).value == 4


async def test_a_batch_key_too_long_for_its_items_is_refused_before_sending(
    connect: Connect, scripted: Any
) -> None:
    fake, url = await scripted(200, {"results": []})
    client = await connect(url)
    with pytest.raises(errors.InvalidRequest, match="at most 126 characters for 10 items"):
        await client("batch", [("k", 1)] * 10, idempotency_key="x" * 127)
    assert fake.seen == []
