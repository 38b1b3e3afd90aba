"""Exactly-once increments across nodes, in-process on the in-memory network."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from vvstore.codec import Write
from vvstore.config import NodeConfig
from vvstore.errors import IdempotencyKeyReused
from vvstore.harness.testing import Network, crash, open_memory_node
from vvstore.node import Node

NAMES = ("A", "B", "C")
Cluster = tuple[Network, dict[str, Node]]


@pytest.fixture
async def cluster(make_config: Callable[..., NodeConfig]) -> AsyncIterator[Callable[..., Any]]:
    opened: dict[str, Node] = {}
    configs: dict[str, NodeConfig] = {}
    network = Network(rng=random.Random(3))

    async def make(names: Sequence[str] = NAMES, **fields: Any) -> Cluster:
        for name in names:
            configs[name] = make_config(name, **fields)
            opened[name] = await open_memory_node(network, configs[name], names)
        return network, opened

    make.reopen = lambda name: _reopen(network, opened, configs, name)  # type: ignore[attr-defined]
    yield make
    for node in network.nodes.values():
        if node.store._db is not None:
            await node.close()


async def _reopen(
    network: Network, opened: dict[str, Node], configs: dict[str, NodeConfig], name: str
) -> Node:
    opened[name] = await open_memory_node(network, configs[name], list(configs))
    return opened[name]


async def sync_all(nodes: dict[str, Node], rounds: int = 3) -> None:
    for _ in range(rounds):
        for node in nodes.values():
            for link in node.sync.links:
                await node.sync.round(link)


async def values(nodes: dict[str, Node], key: str) -> list[int]:
    return [(await n.read(key)).value() for n in nodes.values()]


async def incr(node: Node, key: str, amount: int, idem: str) -> Any:
    [outcome] = await node.write([Write(key, amount, idem)])
    return outcome


async def test_a_retry_on_the_same_node_replays_the_original_reply(cluster: Any) -> None:
    _, nodes = await cluster(("A",))
    first = await incr(nodes["A"], "k", 5, "req-1")
    await incr(nodes["A"], "k", 1, "req-2")
    again = await incr(nodes["A"], "k", 5, '"req-1"')  # the quoted form is the same key
    assert again.replayed and not first.replayed
    assert again.body == first.body
    assert (await nodes["A"].read("k")).value() == 6
    with pytest.raises(IdempotencyKeyReused):
        await incr(nodes["A"], "k", 6, "req-1")
    with pytest.raises(IdempotencyKeyReused):
        await incr(nodes["A"], "other", 5, "req-1")


async def test_a_retry_elsewhere_after_sync_is_a_replay(cluster: Any) -> None:
    _, nodes = await cluster(("A", "B"))
    await incr(nodes["A"], "k", 5, "req-1")
    await sync_all(nodes)
    replay = await incr(nodes["B"], "k", 5, "req-1")
    assert replay.replayed and replay.body["value"] == 5
    assert await values(nodes, "k") == [5, 5]


async def test_a_retry_elsewhere_during_a_partition_counts_once_after_heal(cluster: Any) -> None:
    network, nodes = await cluster()
    network.partition(["A"], ["B", "C"])
    await incr(nodes["A"], "k", 5, "req-1")  # the reply is "lost"; the client retries on B
    await incr(nodes["B"], "k", 5, "req-1")
    await incr(nodes["C"], "k", 2, "req-2")
    await sync_all({n: nodes[n] for n in ("B", "C")})
    assert await values(nodes, "k") == [5, 7, 7]  # both copies count for now
    network.heal()
    await sync_all(nodes)
    assert await values(nodes, "k") == [7, 7, 7]
    states = [(await n.read("k")).version() for n in nodes.values()]
    assert states[0] == states[1] == states[2]


async def test_three_copies_of_one_key_count_once(cluster: Any) -> None:
    network, nodes = await cluster()
    network.partition(["A"], ["B"], ["C"])
    for name in NAMES:
        await incr(nodes[name], "k", 4, "triple")
    network.heal()
    await sync_all(nodes)
    assert await values(nodes, "k") == [4, 4, 4]


async def test_records_arriving_before_their_entries_wait(cluster: Any) -> None:
    network, nodes = await cluster(("A", "B"), page_entries=1)
    network.partition(["A"], ["B"])
    await incr(nodes["A"], "k", 5, "req-1")  # record (A, 1)
    await nodes["A"].batch([(f"filler{i}", 1) for i in range(3)])
    await nodes["A"].increment("k", 1)  # A's entry for k moves on to seq 5
    await incr(nodes["B"], "k", 5, "req-1")
    network.heal()
    # Pull page by page: B sees A's record (seq 1) pages before A's entry for k (seq 5), and
    # must not compensate its own copy until it holds the entry that counts A's.
    from vvstore.sync import PullRound

    b_to_a = next(link for link in nodes["B"].sync.links if link.peer.url.endswith("A"))
    round_ = PullRound(nodes["B"].store, b_to_a.peer, max_pages=100)
    await round_.start()
    seen = []
    while not await round_.next_page():
        seen.append((await nodes["B"].read("k")).value())
    await round_.finish()
    assert len(seen) >= 4 and all(v >= 5 for v in seen), seen  # never below one application
    await sync_all(nodes)
    assert await values(nodes, "k") == [6, 6]


async def test_a_losing_copy_whose_node_is_wiped_before_sync_counts_nowhere(
    cluster: Any,
) -> None:
    network, nodes = await cluster(("A", "B"))
    network.partition(["A"], ["B"])
    await incr(nodes["A"], "k", 5, "req-1")
    await incr(nodes["B"], "k", 5, "req-1")
    await crash(nodes["B"])
    import shutil

    shutil.rmtree(nodes["B"].config.data_dir)
    network.heal()
    b = await cluster.reopen("B")
    nodes["B"] = b
    await sync_all(nodes)
    assert await values(nodes, "k") == [5, 5]


async def test_a_wiped_node_compensates_its_old_copy_through_its_new_incarnation(
    cluster: Any,
) -> None:
    network, nodes = await cluster()
    network.partition(["A"], ["B", "C"])
    await incr(nodes["A"], "k", 5, "req-1")
    await incr(nodes["B"], "k", 5, "req-1")
    await sync_all({n: nodes[n] for n in ("B", "C")})  # C holds B's copy
    await crash(nodes["B"])
    import shutil

    shutil.rmtree(nodes["B"].config.data_dir)
    nodes["B"] = await cluster.reopen("B")
    network.heal()
    await sync_all(nodes)
    assert await values(nodes, "k") == [5, 5, 5]


async def test_mismatched_fingerprints_let_the_first_copy_stand(cluster: Any) -> None:
    network, nodes = await cluster(("A", "B"))
    network.partition(["A"], ["B"])
    await incr(nodes["A"], "k", 5, "req-1")
    await incr(nodes["B"], "other", 9, "req-1")  # a buggy client reused the key
    network.heal()
    await sync_all(nodes)
    assert await values(nodes, "k") == [5, 5]
    assert await values(nodes, "other") == [0, 0]


async def test_a_batch_mixes_replays_and_new_items(cluster: Any) -> None:
    _, nodes = await cluster(("A",))
    await incr(nodes["A"], "a", 1, "one")
    outcomes = await nodes["A"].write([Write("a", 1, "one"), Write("b", 2, "two")])
    assert [o.replayed for o in outcomes] == [True, False]
    assert (await nodes["A"].read("a")).value() == 1
    assert (await nodes["A"].read("b")).value() == 2


async def test_retention_at_a_cap_of_100_with_a_partition(cluster: Any) -> None:
    """300 keyed increments on A while B is cut off, with a cap of 100 records.

    Documented outcome: A cannot purge records B has not seen, so at the cap it evicts the
    oldest anyway and counts them as unsafe; a retry of an evicted key on B after the heal is
    applied again (it counts twice), a retry of a retained key is a replay.
    """
    network, nodes = await cluster(("A", "B"), idempotency_cap=100)
    network.partition(["A"], ["B"])
    for i in range(300):
        await incr(nodes["A"], f"k{i % 7}", 1, f"req-{i}")
    result = await nodes["A"].purge()
    assert (result.purged, result.unsafe_evictions, result.remaining) == (200, 200, 100)
    status = await nodes["A"].status()
    assert status["idempotency_unsafe_evictions"] == 200 and status["records"] == 100
    assert status["oldest_record_age"] is not None and status["oldest_record_age"] >= 0
    network.heal()
    await sync_all(nodes)
    before = [(await nodes["B"].read(f"k{i}")).value() for i in range(7)]
    assert sum(before) == 300
    evicted = await incr(nodes["B"], "k0", 1, "req-0")  # its record is gone everywhere
    retained = await incr(nodes["B"], f"k{299 % 7}", 1, "req-299")
    assert not evicted.replayed and retained.replayed
    assert (await nodes["B"].read("k0")).value() == before[0] + 1


async def test_records_covered_by_every_peer_are_purged_after_retention(cluster: Any) -> None:
    _, nodes = await cluster(("A", "B"), idempotency_retention=0.001)
    for i in range(10):
        await incr(nodes["A"], "k", 1, f"req-{i}")
    nothing = await nodes["A"].purge()  # B has not been heard from: nothing is covered
    assert nothing.purged == 0 and nothing.remaining == 10
    await sync_all(nodes)
    done = await nodes["A"].purge()
    assert (done.purged, done.unsafe_evictions, done.remaining) == (10, 0, 0)
    # A redelivery after the purge counts again: the documented limit.
    again = await incr(nodes["A"], "k", 1, "req-0")
    assert not again.replayed
    assert (await nodes["A"].read("k")).value() == 11
