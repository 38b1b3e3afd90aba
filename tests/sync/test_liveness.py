"""Replication that keeps making progress: independent peers, resumable rounds, page sizes.

In-process, on the in-memory network, rounds stepped by hand (docs/design.md, "The sync loop").
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from vvstore.codec import Write
from vvstore.config import SETTINGS, NodeConfig
from vvstore.errors import PeerTimeout, PeerUnreachable
from vvstore.harness.testing import MemoryPeer, Network, open_memory_node
from vvstore.node import Node
from vvstore.store import _Switch
from vvstore.sync import PeerLink, PullRound
from vvstore.wire import Notice, Page, PullRequest

MIN_PAGE_BYTES = next(row.default for row in SETTINGS if row.name == "min_page_bytes")


@pytest.fixture
async def cluster(make_config: Callable[..., NodeConfig]) -> AsyncIterator[Callable[..., Any]]:
    opened: list[Node] = []

    async def make(names: Sequence[str] = ("A", "B"), **fields: Any) -> dict[str, Node]:
        network = Network(rng=random.Random(11))
        nodes = {}
        for i, name in enumerate(names):
            node = await open_memory_node(network, make_config(name, **fields), names, seed=i)
            nodes[name] = node
            opened.append(node)
        return nodes

    yield make
    for node in opened:
        await node.close()


def link(nodes: dict[str, Node], src: str, dst: str) -> PeerLink:
    return next(x for x in nodes[src].sync.links if x.peer.url == f"memory://{dst}")


class Flaky:
    """A peer whose pull fails at the given call numbers (1-based), with ``error``; it counts
    the entries its pages carried."""

    def __init__(self, inner: MemoryPeer, fail_at: set[int], error: Exception) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.error = error
        self.calls = 0
        self.entries = 0
        self.requests: list[PullRequest] = []

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def bytes_received(self) -> int:
        return self.inner.bytes_received

    @property
    def bytes_sent(self) -> int:
        return getattr(self.inner, "bytes_sent", 0)

    async def pull(self, request: PullRequest) -> Page:
        self.calls += 1
        self.requests.append(request)
        if self.calls in self.fail_at:
            raise self.error
        page = await self.inner.pull(request)
        self.entries += len(page.entries)
        return page

    async def notify(self, notice: Notice) -> None:
        await self.inner.notify(notice)

    async def retired(self, request: Any) -> Any:
        return await self.inner.retired(request)


class Hanging(Flaky):
    """A blackholed peer: a pull never answers (until cancelled)."""

    async def pull(self, request: PullRequest) -> Page:
        self.calls += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_an_interrupted_round_resumes_from_its_cursor(cluster: Any) -> None:
    nodes = await cluster(page_entries=10)
    await nodes["A"].batch([(f"k{i}", 1) for i in range(100)])  # 10 pages
    lk = link(nodes, "B", "A")
    flaky = Flaky(lk.peer, {5}, PeerUnreachable("connection reset"))  # type: ignore[arg-type]
    lk.peer = flaky  # type: ignore[assignment]
    assert await nodes["B"].sync.round(lk) is None
    assert lk.pending is not None and flaky.entries == 40
    result = await nodes["B"].sync.round(lk)
    assert result is not None and result.complete
    assert lk.resumed == 1 and lk.pending is None
    assert flaky.entries == 100  # nothing shipped twice
    assert (await nodes["B"].read("k99")).value() == 1
    assert (await nodes["B"].store.vector()) == (await nodes["A"].store.vector())


async def test_a_resumed_round_whose_responder_changed_starts_afresh(cluster: Any) -> None:
    nodes = await cluster(page_entries=10)
    await nodes["A"].batch([(f"k{i}", 1) for i in range(50)])
    lk = link(nodes, "B", "A")
    flaky = Flaky(lk.peer, {3}, PeerUnreachable("connection reset"))  # type: ignore[arg-type]
    lk.peer = flaky  # type: ignore[assignment]
    assert await nodes["B"].sync.round(lk) is None
    # The responder restarts under a new actor (its round's S no longer names its actor).
    store = nodes["A"].store
    await store._submit(_Switch(store._future(), "a test"))
    await nodes["A"].increment("after", 1)
    result = await nodes["B"].sync.round(lk)
    assert result is not None and result.complete and lk.pending is None
    assert (await nodes["B"].store.vector()) == (await nodes["A"].store.vector())
    assert (await nodes["B"].read("after")).value() == 1


async def test_entries_written_during_a_round_are_not_shipped_again(cluster: Any) -> None:
    """The responder writes between two pages; the next round ships nothing."""
    nodes = await cluster(page_entries=10)
    await nodes["A"].batch([(f"k{i}", 1) for i in range(30)])
    lk = link(nodes, "B", "A")
    round_ = PullRound(nodes["B"].store, lk.peer, max_pages=100)
    await round_.start()
    assert not await round_.next_page()
    await nodes["A"].batch([(f"new{i}", 1) for i in range(20)])  # during the round
    while not await round_.next_page():
        pass
    result = await round_.finish()
    assert result.entries == 50
    again = await nodes["B"].sync.round(lk)
    assert again is not None and again.entries == 0


async def test_a_dead_peer_delays_no_round_with_a_live_one(cluster: Any) -> None:
    """The regression: one round lock served every peer, so a blackholed peer held rounds with
    live ones for a whole call timeout."""
    nodes = await cluster(("A", "B", "C"))
    await nodes["B"].increment("k", 1)
    dead = link(nodes, "A", "C")
    dead.peer = Hanging(dead.peer, set(), PeerTimeout("x"))  # type: ignore[arg-type,assignment]
    stuck = asyncio.ensure_future(nodes["A"].sync.round(dead))
    await asyncio.sleep(0)  # the dead round is waiting on its call now
    result = await asyncio.wait_for(nodes["A"].sync.round(link(nodes, "A", "B")), 1.0)
    assert result is not None and result.complete
    assert (await nodes["A"].read("k")).value() == 1
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck


async def test_a_page_that_times_out_is_asked_again_at_half_the_size(cluster: Any) -> None:
    nodes = await cluster(page_entries=5000)
    await nodes["A"].batch([(f"key-{i:04d}", 1) for i in range(400)])
    lk = link(nodes, "B", "A")
    flaky = Flaky(lk.peer, {1, 2}, PeerTimeout("no byte for 2 s"))  # type: ignore[arg-type]
    lk.peer = flaky  # type: ignore[assignment]
    full = nodes["B"].config.page_bytes
    assert await nodes["B"].sync.round(lk) is None
    assert lk.page_bytes == full // 2
    assert await nodes["B"].sync.round(lk) is None
    assert lk.page_bytes == full // 4
    # Halving stops at the floor.
    lk.page_bytes = MIN_PAGE_BYTES
    flaky.fail_at = {3}
    assert await nodes["B"].sync.round(lk) is None
    assert lk.page_bytes == MIN_PAGE_BYTES
    result = await nodes["B"].sync.round(lk)  # the requests ask for small pages; they get them
    assert result is not None and result.complete and result.pages > 1
    assert all(r.page_bytes == MIN_PAGE_BYTES for r in flaky.requests[3:4])
    assert lk.page_bytes == 2 * MIN_PAGE_BYTES  # a complete round doubles it back
    assert (await nodes["B"].store.vector()) == (await nodes["A"].store.vector())


async def test_a_later_page_asks_with_v_as_it_stands_then(cluster: Any) -> None:
    """Another round that completed meanwhile raised V: the next page skips what it brought."""
    nodes = await cluster(("A", "B", "C"), page_entries=10)
    await nodes["A"].batch([(f"k{i}", 1) for i in range(50)])
    await nodes["C"].sync.round(link(nodes, "C", "A"))  # C holds A's 50 entries
    slow = PullRound(nodes["B"].store, link(nodes, "B", "A").peer, max_pages=100)
    await slow.start()
    assert not await slow.next_page()  # 10 of A's entries
    quick = await nodes["B"].sync.round(link(nodes, "B", "C"))  # the other 40, and V raised
    assert quick is not None and quick.complete
    while not await slow.next_page():
        pass
    assert slow.result.entries == 10  # nothing the other round brought
    await slow.finish()


async def test_two_rounds_at_once_do_not_both_fetch_what_both_peers_hold(cluster: Any) -> None:
    """C pulls from A and B at once, and both hold the same 3,000 entries (a heal): the round
    that began second waits for the first and then fetches almost nothing."""
    nodes = await cluster(("A", "B", "C"))
    for start in range(0, 3000, 1000):
        await nodes["A"].batch([(f"k{i}", 1) for i in range(start, start + 1000)])
    assert await nodes["B"].sync.round(link(nodes, "B", "A")) is not None
    results = await asyncio.gather(
        nodes["C"].sync.round(link(nodes, "C", "A")),
        nodes["C"].sync.round(link(nodes, "C", "B")),
    )
    assert all(r is not None and r.complete for r in results)
    shipped = sum(r.entries for r in results if r is not None)
    assert 3000 <= shipped <= 3300, [r.entries for r in results if r is not None]
    assert (await nodes["C"].store.vector()) == (await nodes["A"].store.vector())


async def test_a_write_committed_between_two_streams_of_a_page_is_not_skipped(
    cluster: Any,
) -> None:
    """The responder commits an increment with an idempotency key after a page read its
    entries and before it read its records: the page carries the record, not the entry. V must
    not be raised past that entry (it was, when the highest seq of the responder's actor was
    taken from any stream, and the entry was never fetched: a divergence for good)."""
    nodes = await cluster()
    await nodes["A"].increment("before", 1)
    store = nodes["A"].store
    original = store._query
    armed = True

    async def query(sql: str, params: Sequence[Any] = ()) -> list[Any]:
        nonlocal armed
        if armed and "FROM records" in sql:
            armed = False
            await nodes["A"].write([Write("late", 1, "K-late")])  # commits now
        return await original(sql, params)

    store._query = query  # type: ignore[method-assign]
    result = await nodes["B"].sync.round(link(nodes, "B", "A"))
    assert result is not None and result.complete and not armed
    store._query = original  # type: ignore[method-assign]
    again = await nodes["B"].sync.round(link(nodes, "B", "A"))
    assert again is not None and again.complete
    assert (await nodes["B"].read("late")).value() == 1
    assert (await nodes["B"].store.vector()) == (await store.vector())
