"""The peer figures of a scrape, on in-process nodes of the in-memory network, rounds stepped
by hand: up, behind (from a round's S and from notices), seconds since the last sync, rounds by
outcome and bytes by direction."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vvstore.config import NodeConfig
from vvstore.harness.testing import Network, open_memory_node
from vvstore.node import Node
from vvstore.store import Store
from vvstore.sync import PeerLink
from vvstore.wire import Notice

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(node: Node) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families((await node.scrape()).decode())
        for sample in family.samples
    }


def peer_value(seen: Samples, name: str, peer: str, **labels: str) -> float:
    return seen[(name, frozenset({"peer": f"memory://{peer}", **labels}.items()))]


def link(node: Node, peer: str) -> PeerLink:
    return next(x for x in node.sync.links if x.peer.url == f"memory://{peer}")


async def first_sync(a: Node, b: Node) -> Samples:
    """Write on A, let B pull it in one round, and scrape B."""
    await a.increment("k", 1)
    assert await b.sync.round(link(b, "A")) is not None
    return await scrape(b)


class Clock:
    """A clock the test moves by hand (the node's seconds since sync read it)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def pair(
    make_config: Callable[..., NodeConfig],
) -> AsyncIterator[tuple[Network, Node, Node, Clock]]:
    network, clock = Network(rng=random.Random(3)), Clock()
    a = await open_memory_node(network, make_config("A"), ["A", "B"], seed=1)
    config = make_config("B")
    peers = [network.peer("B", "A")]
    b = Node(config, await Store.open(config), peers, rng=random.Random(2), clock=clock)
    network.register("B", b)
    try:
        yield network, a, b, clock
    finally:
        await a.close()
        await b.close()


async def test_a_peer_never_synced_is_down_and_infinitely_stale(
    pair: tuple[Network, Node, Node, Clock],
) -> None:
    _, _, b, _ = pair
    seen = await scrape(b)
    assert peer_value(seen, "vvstore_peer_up", "A") == 0
    assert math.isinf(peer_value(seen, "vvstore_peer_seconds_since_sync", "A"))
    assert peer_value(seen, "vvstore_sync_rounds_total", "A", outcome="complete") == 0


async def test_behind_comes_from_notices_and_falls_to_zero_after_a_round(
    pair: tuple[Network, Node, Node, Clock],
) -> None:
    network, a, b, clock = pair
    seen = await first_sync(a, b)
    assert peer_value(seen, "vvstore_peer_up", "A") == 1
    assert peer_value(seen, "vvstore_peer_behind", "A") == 0
    assert peer_value(seen, "vvstore_peer_seconds_since_sync", "A") == 0
    for i in range(4):
        await a.increment(f"k{i}", 1)
    # A tells B of its four new writes: B knows it lacks them before it pulls.
    await network.peer("A", "B").notify(Notice("A", a.store.actor, await a.store.vector()))
    clock.now += 7.5
    seen = await scrape(b)
    assert peer_value(seen, "vvstore_peer_behind", "A") == 4
    assert peer_value(seen, "vvstore_peer_seconds_since_sync", "A") == 7.5
    assert await b.sync.round(link(b, "A")) is not None
    seen = await scrape(b)
    assert peer_value(seen, "vvstore_peer_behind", "A") == 0
    assert peer_value(seen, "vvstore_peer_seconds_since_sync", "A") == 0
    assert peer_value(seen, "vvstore_sync_rounds_total", "A", outcome="complete") == 2
    assert seen[("vvstore_keys", frozenset())] == 5


async def test_failed_rounds_and_bytes_are_counted(
    pair: tuple[Network, Node, Node, Clock],
) -> None:
    network, a, b, _ = pair
    first = await first_sync(a, b)
    received = peer_value(first, "vvstore_sync_bytes_total", "A", direction="received")
    sent = peer_value(first, "vvstore_sync_bytes_total", "A", direction="sent")
    assert received > 0 and sent > 0
    network.partition(["A"], ["B"])
    for _ in range(3):
        assert await b.sync.round(link(b, "A")) is None
    seen = await scrape(b)
    assert peer_value(seen, "vvstore_peer_up", "A") == 0
    assert peer_value(seen, "vvstore_sync_rounds_total", "A", outcome="failed") == 3
    assert peer_value(seen, "vvstore_sync_rounds_total", "A", outcome="complete") == 1
    # Nothing came back across the partition; what was sent before it stays counted.
    assert peer_value(seen, "vvstore_sync_bytes_total", "A", direction="received") == received
    network.heal()
    assert await b.sync.round(link(b, "A")) is not None
    seen = await scrape(b)
    assert peer_value(seen, "vvstore_peer_up", "A") == 1
    # A success resets the backoff's count of failures, not the counter of failed rounds.
    assert peer_value(seen, "vvstore_sync_rounds_total", "A", outcome="failed") == 3
    assert peer_value(seen, "vvstore_sync_bytes_total", "A", direction="received") > received
