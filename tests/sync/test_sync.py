"""In-process replicas on the in-memory network: rounds stepped by hand, partitions, pages."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from vvstore.clock import VersionVector
from vvstore.codec import Write
from vvstore.config import NodeConfig
from vvstore.errors import MalformedPayload, RoundAbandoned, VVStoreError
from vvstore.harness.testing import Network, open_memory_node
from vvstore.node import Node
from vvstore.sync import TROUBLE_LOG_INTERVAL, PullRound, SyncLoop, pull_once
from vvstore.wire import Notice, Page, PullRequest

NAMES = ("A", "B", "C")
Cluster = tuple[Network, dict[str, Node]]


@pytest.fixture
async def cluster(make_config: Callable[..., NodeConfig]) -> AsyncIterator[Callable[..., Any]]:
    opened: list[Node] = []

    async def make(names: Sequence[str] = NAMES, **fields: Any) -> Cluster:
        network = Network(rng=random.Random(7))
        nodes = {}
        for i, name in enumerate(names):
            node = await open_memory_node(network, make_config(name, **fields), names, seed=i)
            nodes[name] = node
            opened.append(node)
        return network, nodes

    yield make
    for node in opened:
        await node.close()


def link(nodes: dict[str, Node], src: str, dst: str) -> Any:
    return next(x for x in nodes[src].sync.links if x.peer.url == f"memory://{dst}")


async def full_rounds(nodes: dict[str, Node]) -> None:
    """Two passes of pulls between every ordered pair: enough for any state to spread."""
    for _ in range(2):
        for src in nodes:
            for dst in nodes:
                if src != dst:
                    result = await nodes[src].sync.round(link(nodes, src, dst))
                    assert result is not None and result.complete


async def snapshot(node: Node) -> tuple[dict[str, Any], dict[str, int]]:
    counters, _ = await node.list_counters(prefix="", after=None, limit=1000)
    states = {
        key: [(e.actor, e.seq, e.total, dict(e.floors)) for e in sorted(s, key=lambda e: e.actor)]
        for key, s in counters
    }
    return states, (await node.store.vector()).to_dict()


async def test_three_nodes_converge_after_concurrent_writes(cluster: Any) -> None:
    _, nodes = await cluster()
    await asyncio.gather(
        *(nodes[name].increment(f"k{i % 3}", i + 1) for i in range(30) for name in NAMES)
    )
    await full_rounds(nodes)
    snaps = [await snapshot(n) for n in nodes.values()]
    assert snaps[0] == snaps[1] == snaps[2]
    expected = {f"k{j}": 3 * sum(i + 1 for i in range(30) if i % 3 == j) for j in range(3)}
    for node in nodes.values():
        for key, value in expected.items():
            assert (await node.read(key)).value() == value
    vector = VersionVector({n.store.actor: 30 for n in nodes.values()})
    assert (await nodes["A"].store.vector()) == vector


async def test_partition_diverges_then_heal_converges(cluster: Any) -> None:
    network, nodes = await cluster()
    network.partition(["A"], ["B", "C"])
    await nodes["A"].increment("likes", 5)
    await nodes["B"].increment("likes", 7)
    assert await nodes["A"].sync.round(link(nodes, "A", "B")) is None
    assert await nodes["B"].sync.round(link(nodes, "B", "C")) is not None
    a, b = await nodes["A"].read("likes"), await nodes["B"].read("likes")
    assert (a.value(), b.value()) == (5, 7)
    assert a.version().concurrent_with(b.version())
    assert link(nodes, "A", "B").reachable is False
    network.heal()
    await full_rounds(nodes)
    for node in nodes.values():
        assert (await node.read("likes")).value() == 12


async def test_concurrent_resets_and_increments(cluster: Any) -> None:
    network, nodes = await cluster()
    await nodes["A"].increment("k", 10)
    await full_rounds(nodes)
    network.partition(["A"], ["B"], ["C"])
    await nodes["A"].reset("k")
    await nodes["B"].reset("k")
    await nodes["C"].increment("k", 3)  # no reset saw it: it survives
    network.heal()
    await full_rounds(nodes)
    for node in nodes.values():
        assert (await node.read("k")).value() == 3


async def test_a_node_started_empty_catches_up_over_many_pages(cluster: Any) -> None:
    _, nodes = await cluster(("A", "B"), page_entries=2)
    await nodes["A"].batch([(f"key{i}", i + 1) for i in range(11)])
    round_ = PullRound(nodes["B"].store, link(nodes, "B", "A").peer, max_pages=100)
    await round_.start()
    while not await round_.next_page():
        pass
    result = await round_.finish()
    assert result.pages == 6 and result.entries == 11
    assert (await nodes["B"].store.vector()) == (await nodes["A"].store.vector())
    assert (await nodes["B"].read("key10")).value() == 11


async def test_an_idle_round_costs_bytes_per_actor_not_per_key(cluster: Any) -> None:
    network, nodes = await cluster(("A", "B"))
    await nodes["A"].batch([(f"key{i}", 1) for i in range(500)])
    await full_rounds(nodes)
    before = network.link_stats("B", "A").reply_bytes
    result = await nodes["B"].sync.round(link(nodes, "B", "A"))
    assert result is not None and result.entries == 0
    idle = network.link_stats("B", "A").reply_bytes - before
    assert idle < 200, idle  # node, actor and a two-actor vector: no entry, no key


async def test_a_round_ships_only_what_diverged(cluster: Any) -> None:
    network, nodes = await cluster(("A", "B"))
    await nodes["A"].batch([(f"key{i}", 1) for i in range(1000)])
    await full_rounds(nodes)
    await nodes["A"].batch([(f"key{i}", 1) for i in range(0, 1000, 100)])
    before = network.link_stats("B", "A").entries
    result = await nodes["B"].sync.round(link(nodes, "B", "A"))
    assert result is not None and result.entries == 10
    assert network.link_stats("B", "A").entries - before == 10


class _ChangingPeer:
    """Answers the first page honestly, then claims another vector: V must not be raised."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.url = inner.url
        self.calls = 0

    async def pull(self, request: PullRequest) -> Page:
        page: Page = await self.inner.pull(request)
        self.calls += 1
        if self.calls > 1:
            page = Page(
                page.node, page.actor, page.vector.increment(page.actor), page.entries, page.next
            )
        return page

    async def notify(self, notice: Notice) -> None:
        await self.inner.notify(notice)


async def test_v_is_not_raised_when_the_responder_vector_changes_mid_round(cluster: Any) -> None:
    _, nodes = await cluster(("A", "B"), page_entries=1)
    await nodes["A"].batch([("x", 1), ("y", 1), ("z", 1)])
    peer = _ChangingPeer(link(nodes, "B", "A").peer)
    with pytest.raises(RoundAbandoned, match="vector changed"):
        await pull_once(nodes["B"].store, peer, max_pages=10)
    assert (await nodes["B"].store.vector()).get(nodes["A"].store.actor) == 0
    assert (await nodes["B"].read("x")).value() == 1  # the first page was applied, idempotently


async def test_a_round_over_its_page_budget_does_not_raise_v(cluster: Any) -> None:
    _, nodes = await cluster(("A", "B"), page_entries=1)
    await nodes["A"].batch([("x", 1), ("y", 1), ("z", 1)])
    with pytest.raises(RoundAbandoned, match="budget") as info:
        await pull_once(nodes["B"].store, link(nodes, "B", "A").peer, max_pages=2)
    assert not isinstance(info.value, MalformedPayload), "nothing the peer sent was malformed"
    assert (await nodes["B"].store.vector()) == VersionVector()
    assert (await nodes["B"].read("x")).value() == 1  # the pages taken stay applied


async def test_the_loop_records_an_abandoned_round_and_the_next_one_goes_on(cluster: Any) -> None:
    _, nodes = await cluster(("A", "B"), page_entries=1)
    await nodes["A"].batch([("x", 1), ("y", 1), ("z", 1)])
    loop, a = nodes["B"].sync, link(nodes, "B", "A")
    loop.max_pages = 2
    assert await loop.round(a) is None
    assert a.failures == 1 and a.last_error is not None
    assert a.last_error.startswith("RoundAbandoned: round exceeded its budget of 2 pages")
    loop.max_pages = 10
    result = await loop.round(a)
    assert result is not None and result.complete
    assert a.failures == 0 and a.node == "A"
    assert result.responder_actor == nodes["A"].store.actor
    # V was not raised, so the round asks again from {}: all three entries come, and only
    # the one the abandoned round did not reach changes anything (read through Applied).
    assert (result.entries, result.applied) == (3, 1)


def test_round_abandoned_is_in_the_error_tree_and_not_an_api_answer() -> None:
    assert issubclass(RoundAbandoned, VVStoreError)
    assert not issubclass(RoundAbandoned, MalformedPayload)
    assert RoundAbandoned("x").code == "round_abandoned"
    assert RoundAbandoned("x").definite is False


async def test_lost_replies_and_replayed_pages_change_nothing(cluster: Any) -> None:
    network, nodes = await cluster(("A", "B"), page_entries=2)
    await nodes["A"].batch([(f"k{i}", i + 1) for i in range(5)])
    network.drop("A", "B", 1.0)
    assert await nodes["B"].sync.round(link(nodes, "B", "A")) is None
    assert link(nodes, "B", "A").failures == 1
    network.heal()
    for _ in range(2):  # a whole round replayed
        assert await nodes["B"].sync.round(link(nodes, "B", "A")) is not None
    assert link(nodes, "B", "A").failures == 0
    for i in range(5):
        assert (await nodes["B"].read(f"k{i}")).value() == i + 1


async def test_status_says_behind_0_once_a_round_has_caught_up(cluster: Any) -> None:
    """Issue 13: /status said ``behind 1`` after convergence (the count from the round's start)."""
    _, nodes = await cluster(("A", "B"))
    await nodes["B"].write([Write("k", 1)])
    result = await nodes["A"].sync.round(link(nodes, "A", "B"))
    assert result is not None and result.entries == 1
    assert link(nodes, "A", "B").behind == 0
    assert (await nodes["A"].status())["peers"][0]["behind"] == 0


async def test_a_notice_wakes_a_pull_only_when_the_sender_has_news(cluster: Any) -> None:
    _, nodes = await cluster(("A", "B"))
    b_link = link(nodes, "B", "A")
    b_link.node = "A"
    ours = await nodes["B"].store.vector()
    nodes["B"].sync.notice_received(Notice("A", nodes["A"].store.actor, ours), ours)
    assert not b_link.wake.is_set()
    await nodes["A"].increment("k", 1)
    news = await nodes["A"].store.vector()
    nodes["B"].sync.notice_received(Notice("A", nodes["A"].store.actor, news), ours)
    assert b_link.wake.is_set()


async def test_running_loops_converge_quickly(cluster: Any) -> None:
    _, nodes = await cluster(sync_interval=5.0, notice_delay=0.01)
    for node in nodes.values():
        node.start()
    await nodes["A"].increment("fast", 1)
    await nodes["C"].increment("fast", 2)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3.0  # notices, not the 5 s interval, must do it
    while loop.time() < deadline:
        values = [(await n.read("fast")).value() for n in nodes.values()]
        if values == [3, 3, 3]:
            break
        await asyncio.sleep(0.01)
    assert values == [3, 3, 3]


async def test_a_failing_peer_backs_off_up_to_the_cap(cluster: Any) -> None:
    network, nodes = await cluster(("A", "B"), sync_interval=0.5, backoff_cap=2.0)
    network.isolate("A")
    b_link = link(nodes, "B", "A")
    delays = []
    for _ in range(4):
        assert await nodes["B"].sync.round(b_link) is None
        delays.append(nodes["B"].sync._delay(b_link))
    assert 0.8 <= delays[0] <= 1.2  # 0.5 * 2, jittered
    assert all(1.6 <= d <= 2.4 for d in delays[2:])  # capped at 2 s, jittered
    network.heal()
    assert await nodes["B"].sync.round(b_link) is not None
    assert 0.4 <= nodes["B"].sync._delay(b_link) <= 0.6
    assert "PeerUnreachable" not in (b_link.last_error or "")


async def test_nodes_close_cleanly_while_their_loops_pull_from_each_other(cluster: Any) -> None:
    # Closing A while B's loop is mid-pull from A must neither raise in B's close nor leave
    # B's store open (the conftest fails a test that leaks a connection).
    _, nodes = await cluster(sync_interval=0.01, notice_delay=0.0, page_entries=20)
    await nodes["A"].batch([(f"k{i}", 1) for i in range(1_000)])
    for node in nodes.values():
        node.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while loop.time() < deadline and not any(
        x.pulled_pages for n in ("B", "C") for x in nodes[n].sync.links
    ):
        await asyncio.sleep(0.005)
    for node in nodes.values():
        await node.close()
    assert all(node.store._reader is None for node in nodes.values())


async def test_an_unexpected_error_in_a_round_is_counted_and_the_loop_goes_on(
    cluster: Any,
) -> None:
    _, nodes = await cluster(("A", "B"))
    b_link = link(nodes, "B", "A")

    async def broken(request: PullRequest) -> Page:
        raise ValueError("a bug in the peer client")

    real = b_link.peer.pull
    b_link.peer.pull = broken
    assert await nodes["B"].sync.round(b_link) is None
    assert b_link.failures == 1 and "ValueError" in (b_link.last_error or "")
    b_link.peer.pull = real
    assert await nodes["B"].sync.round(b_link) is not None
    assert b_link.failures == 0


async def test_peer_trouble_is_logged_when_it_starts_changes_or_a_minute_passed(
    cluster: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A dead peer is one WARNING, then one a minute (with the count of those left out), and
    one when it answers again: not a line per backoff."""
    network, nodes = await cluster(("A", "B"))
    now = [1000.0]
    loop = SyncLoop(
        nodes["A"].store,
        [network.peer("A", "B")],
        node_id="A",
        actor=lambda: nodes["A"].store.actor,
        interval=1.0,
        backoff_cap=1.0,
        round_timeout=5.0,
        max_pages=10,
        notice_delay=0.1,
        rng=random.Random(1),
        clock=lambda: now[0],
    )
    (only,) = loop.links

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "vvstore.sync"]

    network.isolate("B")
    with caplog.at_level(logging.WARNING, logger="vvstore.sync"):
        for _ in range(10):
            assert await loop.round(only) is None
            now[0] += 2.0
        assert len(lines()) == 1 and "failed (attempt 1" in lines()[0]
        now[0] += TROUBLE_LOG_INTERVAL
        assert await loop.round(only) is None
        assert len(lines()) == 2 and "(9 more failures like it" in lines()[1]
        network.heal()
        assert await loop.round(only) is not None
        assert len(lines()) == 3 and "works again after 11 failed attempts" in lines()[2]
        network.isolate("B")
        assert await loop.round(only) is None  # new trouble after a success: logged at once
        assert len(lines()) == 4 and "failed (attempt 1" in lines()[3]
    assert only.failures == 1
