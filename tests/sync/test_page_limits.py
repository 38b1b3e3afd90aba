"""Sync limits in bytes, one definition on both sides (issue 8, items 1 to 3).

- Every page a sender builds is accepted by a receiver, whatever the keys' scripts, their
  length, the floors and siblings an entry carries or the vector's size (Hypothesis, pure).
- Over real HTTP in one process: 6,000 keys of 4-byte characters, a key with 5,000 siblings
  reset (an entry with 5,000 floors, vectors of 5,001 actors), and a peer whose reply trickles
  for longer than the read timeout all replicate.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpServer

from vvstore.api import create_app
from vvstore.clock import VersionVector
from vvstore.codec import MAX_KEY_BYTES, Write
from vvstore.config import NodeConfig
from vvstore.counter import INT64_MAX, INT64_MIN, Entry, Floor
from vvstore.errors import Overflow
from vvstore.idempotency import Record
from vvstore.node import Node
from vvstore.paging import PageBuilder
from vvstore.peer import HttpPeer
from vvstore.sync import pull_once
from vvstore.wire import (
    MAX_FLOORS_BYTES,
    MAX_PAGE_BODY_BYTES,
    MAX_PAGE_BYTES,
    Page,
    PullRequest,
    decode_page,
    encode_page,
    floors_bytes,
)

MakeConfig = Callable[..., NodeConfig]

#: Key alphabets: 1- to 4-byte UTF-8 (no control characters), JSON-escaped ones, and a mix.
ALPHABETS = {
    "ascii": st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    "escaped": st.sampled_from('"\\/'),
    "2-byte": st.characters(min_codepoint=0xA0, max_codepoint=0x7FF),
    "3-byte": st.characters(min_codepoint=0x800, max_codepoint=0xFFFF, categories=["L", "S"]),
    "4-byte": st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, categories=["L", "S"]),
}
ALPHABETS["mixed"] = st.one_of(*ALPHABETS.values())


def long_actor(i: int) -> str:
    """An actor id of the longest legal form (a 40-character node id)."""
    return f"{i:040d}~{i:016x}"


def fit_key(text: str) -> str:
    """``text`` cut to at most MAX_KEY_BYTES of UTF-8 (at a character boundary)."""
    while len(text.encode()) > MAX_KEY_BYTES:
        text = text[:-1]
    return text if text not in ("", ".", "..") else "k"


@st.composite
def streams(draw: Any) -> tuple[list[tuple[str, bool]], int]:
    """A page stream's shape (kept small, so a failure prints readably): each seq's key and
    whether it carries a record, and how many floors the actor's entries carry."""
    chars = ALPHABETS[draw(st.sampled_from(sorted(ALPHABETS)))]
    at_limit = draw(st.booleans())
    floors_count = draw(st.sampled_from([0, 1, 256, 257, 5000]))
    keys = []
    # Entries with 5,000 floors take half a megabyte each: a few make the point.
    for _ in range(draw(st.integers(1, 60 if floors_count < 5000 else 5))):
        size = MAX_KEY_BYTES if at_limit else draw(st.integers(1, MAX_KEY_BYTES))
        keys.append(
            (fit_key(draw(st.text(chars, min_size=size, max_size=size))), draw(st.booleans()))
        )
    return keys, floors_count


def build(shape: tuple[list[tuple[str, bool]], int]) -> list[Any]:
    """Per seq of one actor: ``(dot, [(key, entry)], [record])``, from a stream's shape."""
    keys, floors_count = shape
    # The entry of the actor's reset carries every floor; later ones carry them forward.
    floors = {long_actor(i): Floor(INT64_MAX, INT64_MIN) for i in range(floors_count)}
    actor = long_actor(10**6)
    out = []
    for seq, (key, with_record) in enumerate(keys, start=1):
        entry = Entry(actor, seq, INT64_MIN if seq % 2 else INT64_MAX, floors)
        records = [Record(actor, seq, b"\xff" * 16, b"\xee" * 8, key, INT64_MIN)] * with_record
        out.append(((actor, seq), [(key, entry)], records))
    return out


@settings(max_examples=40)
@given(
    shape=streams(),
    vector_actors=st.sampled_from([0, 257, 5000]),
    budget=st.sampled_from([1024, 64 * 1024, MAX_PAGE_BYTES]),
    limit=st.sampled_from([1, 100, 5000]),
)
def test_every_page_a_sender_builds_is_accepted_by_a_receiver(
    shape: tuple[list[tuple[str, bool]], int], vector_actors: int, budget: int, limit: int
) -> None:
    items = build(shape)
    vector = VersionVector({long_actor(i): 2**63 - 1 for i in range(vector_actors)})
    pending = list(items)
    received: list[tuple[str, Entry]] = []
    while pending:
        builder = PageBuilder(limit, budget)
        taken = 0
        for dot, entries, records in pending:
            if not builder.add(dot, entries, records):
                break
            taken += 1
        assert taken >= 1, "a page must always take its first seq"
        pending = pending[taken:]
        page = builder.page("n" * 40, long_actor(7), vector, last=not pending)
        body = encode_page(page)
        assert len(body) <= MAX_PAGE_BODY_BYTES, (len(body), builder.size, budget)
        if taken > 1:
            assert builder.size <= min(budget, MAX_PAGE_BYTES), (builder.size, budget)
        decoded = decode_page(body)
        assert decoded == page
        received.extend(decoded.entries)
    assert received == [entry for _, entries, _ in items for entry in entries]


def test_the_byte_measure_is_the_encoded_one() -> None:
    """The sender's measure adds up to the encoded page: the receiver's measure, exactly."""
    key = "\U0001f600" * 64  # 256 bytes, 64 characters
    entry = Entry(long_actor(1), 1, 5, {long_actor(2): Floor(3, 4)})
    builder = PageBuilder(10, MAX_PAGE_BYTES)
    assert builder.add((entry.actor, 1), [(key, entry)])
    empty = encode_page(Page("n", long_actor(1), VersionVector(), (), None))
    full = encode_page(builder.page("n", long_actor(1), VersionVector(), last=True))
    # The first item needs no comma: the builder counts one per item, one byte too many here.
    assert len(full) - len(empty) == builder.size - 1


# --- over HTTP, in one process ------------------------------------------------------------


@pytest.fixture
async def served(
    make_config: MakeConfig, aiohttp_server: AiohttpServer
) -> AsyncIterator[Callable[..., Any]]:
    """Open nodes; serve one over HTTP; give a peer that pulls from it with HttpPeer."""
    nodes: list[Node] = []
    sessions: list[aiohttp.ClientSession] = []

    async def node(name: str, **fields: Any) -> Node:
        opened = await Node.open(make_config(name, **fields), rng=random.Random(len(nodes)))
        nodes.append(opened)
        return opened

    async def peer_of(target: Node, read_timeout: float = 5.0) -> HttpPeer:
        server = await aiohttp_server(create_app(target))
        session = aiohttp.ClientSession()
        sessions.append(session)
        return HttpPeer(
            str(server.make_url("")), session, connect_timeout=5, read_timeout=read_timeout
        )

    async def make(kind: str, *args: Any, **fields: Any) -> Any:
        return await (node if kind == "node" else peer_of)(*args, **fields)

    yield make
    for session in sessions:
        await session.close()
    for opened in nodes:
        await opened.close()


async def same_values(a: Node, b: Node, keys: list[str]) -> None:
    for key in keys:
        assert (await b.read(key)).value() == (await a.read(key)).value(), key


async def test_six_thousand_keys_of_four_byte_characters_replicate(served: Any) -> None:
    """Issue 8.1: pages were bounded by characters, refused by bytes, forever."""
    a, b = await served("node", "A"), await served("node", "B")
    keys = [f"{i:06d}" + chr(0x20000 + i) * 62 for i in range(6000)]
    assert {len(k.encode()) for k in keys} == {6 + 62 * 4}
    for start in range(0, len(keys), 1000):
        await a.write([Write(key, 1) for key in keys[start : start + 1000]])
    result = await pull_once(b.store, await served("peer", a), max_pages=100)
    assert result.complete
    assert await b.store.vector() == await a.store.vector()
    await same_values(a, b, keys[:: len(keys) // 50] + keys[-1:])


@pytest.mark.parametrize(
    ("key", "count"),
    [("k" * MAX_KEY_BYTES, 300), ("\U00020000" * (MAX_KEY_BYTES // 4), 5000)],
    ids=["300-ascii", "5000-four-byte"],
)
async def test_a_reset_of_a_key_with_many_siblings_replicates(
    served: Any, key: str, count: int
) -> None:
    """Issue 8.3: vectors over 256 actors and entries over 256 floors were refused by everyone.

    The largest legal entry (the longest key in 4-byte characters, 5,000 floors of the
    longest actor ids) goes on one page, beside vectors of 5,001 actors.
    """
    a, b = await served("node", "A"), await served("node", "B")
    siblings = [(key, Entry(long_actor(i), 2**40 + i, 2**62, {})) for i in range(count)]
    for start in range(0, len(siblings), 1000):
        await a.store.apply(siblings[start : start + 1000])
    await a.store.raise_vector(VersionVector({e.actor: e.seq for _, e in siblings}))
    await a.write([Write(key, reset=True)])
    state = await a.read(key)
    assert state.value() == 0 and len(state.entries[a.store.actor].floors) == count
    await a.write([Write(key, 3)])
    result = await pull_once(b.store, await served("peer", a), max_pages=100)
    assert result.complete
    assert (await b.read(key)).value() == 3
    assert await b.store.vector() == await a.store.vector()
    assert len(await b.store.vector()) == count + 1


class TricklingResponder:
    """A peer whose page arrives slowly: 16 KiB every 50 ms, steady progress, no long gap."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_post("/sync/pull", self.pull)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "node": "slow"})

    async def pull(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(self.body)
        await response.prepare(request)
        for start in range(0, len(self.body), 16 * 1024):
            await asyncio.sleep(0.05)  # the link's pace, not a wait for anything
            await response.write(self.body[start : start + 16 * 1024])
        await response.write_eof()
        return response


async def test_a_page_slower_than_the_read_timeout_in_total_completes(
    aiohttp_server: AiohttpServer,
) -> None:
    """Issue 8.2: a call had a total timeout, so a large page over a slow link never arrived.

    Here the page takes about 2 s in all, four times the read timeout, with no gap between
    bytes near it: it must arrive.
    """
    entries = tuple(
        (f"key-{i:05d}-" + "x" * 200, Entry(long_actor(1), i, i, {})) for i in range(1, 2001)
    )
    vector = VersionVector({long_actor(1): 2000})
    body = encode_page(Page("slow", long_actor(1), vector, entries, None))
    assert len(body) > 500_000
    server = await aiohttp_server(TricklingResponder(body).app())
    async with aiohttp.ClientSession() as session:
        peer = HttpPeer(str(server.make_url("")), session, connect_timeout=2, read_timeout=0.5)
        loop = asyncio.get_running_loop()
        began = loop.time()
        page = await peer.pull(PullRequest(VersionVector()))
        took = loop.time() - began
    assert page.entries == entries
    assert took > 1.0, f"the responder did not trickle ({took:.2f} s): the test proves nothing"


def test_the_largest_legal_seq_fits_one_page() -> None:
    """An entry with floors at their limit and a key escaping to twice its bytes, with its
    record, is within MAX_PAGE_BYTES: the sender can always ship it, alone."""
    key = '"' * MAX_KEY_BYTES  # each escapes to two bytes
    one = floors_bytes({long_actor(0): Floor(INT64_MAX, INT64_MIN)}) - 2  # ids are one length
    count = (MAX_FLOORS_BYTES - 2 + 1) // (one + 1)  # n floors take 2 + n * one + (n - 1)
    floors = {long_actor(i): Floor(INT64_MAX, INT64_MIN) for i in range(count)}
    entry = Entry(long_actor(10**6), INT64_MAX, INT64_MIN, floors)
    record = Record(entry.actor, entry.seq, b"\xff" * 16, b"\xee" * 8, key, INT64_MIN)
    builder = PageBuilder(5000, 1024)
    assert builder.add(entry.dot, [(key, entry)], [record])
    assert MAX_FLOORS_BYTES - 200 < floors_bytes(floors) <= MAX_FLOORS_BYTES
    assert builder.size <= MAX_PAGE_BYTES
    body = encode_page(builder.page("n" * 40, entry.actor, VersionVector(), last=True))
    assert decode_page(body).entries == ((key, entry),)


async def test_a_reset_whose_floors_no_peer_would_accept_is_refused(served: Any) -> None:
    """Rather than make an entry every receiver refuses: 422, and nothing changes."""
    a = await served("node", "A")
    key = "k"
    siblings = [(key, Entry(long_actor(i), 2**62, -(2**62), {})) for i in range(8000)]
    for start in range(0, len(siblings), 2000):
        await a.store.apply(siblings[start : start + 2000])
    before = await a.read(key)
    with pytest.raises(Overflow, match="bytes of floors"):
        await a.write([Write(key, reset=True)])
    after = await a.read(key)
    assert after.value() == before.value() == -(2**62) * 8000
    assert a.store.actor not in after.entries
