"""Exactly-once as a join: duplicate copies are excluded by a rule over merged state.

In-process, on the in-memory network. Each scenario drives pull rounds link by link, so the
interleaving is exact; docs/design.md ("Exactly-once increments") states the rules tested here.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from vvstore.clock import VersionVector
from vvstore.codec import Write
from vvstore.config import NodeConfig
from vvstore.harness.testing import Network, open_memory_node
from vvstore.node import Node
from vvstore.sync import PullRound

NAMES = ("A", "B", "C")


@pytest.fixture
async def cluster(
    make_config: Callable[..., NodeConfig],
) -> AsyncIterator[Callable[..., Any]]:
    network = Network(rng=random.Random(5))
    configs: dict[str, NodeConfig] = {}

    async def make(names: Sequence[str] = NAMES, **fields: Any) -> tuple[Network, dict[str, Node]]:
        nodes = {}
        for name in names:
            configs[name] = make_config(name, **fields)
            nodes[name] = await open_memory_node(network, configs[name], names)
        return network, nodes

    async def reopen(name: str) -> Node:
        return await open_memory_node(network, configs[name], list(configs))

    make.reopen = reopen  # type: ignore[attr-defined]
    yield make
    for node in network.nodes.values():
        if node.store._db is not None:
            await node.close()


async def pull(nodes: dict[str, Node], dst: str, src: str) -> None:
    """One complete pull round: ``dst`` pulls from ``src``."""
    [link] = [link for link in nodes[dst].sync.links if link.peer.url == f"memory://{src}"]
    result = await nodes[dst].sync.round(link)
    assert result is not None, f"{dst} could not pull from {src}: {link.last_error}"


async def sync_all(nodes: dict[str, Node], rounds: int = 3) -> None:
    for _ in range(rounds):
        for node in nodes.values():
            for link in node.sync.links:
                await node.sync.round(link)


async def values(nodes: dict[str, Node], key: str) -> list[int]:
    return [(await node.read(key)).value() for node in nodes.values()]


async def incr(node: Node, key: str, amount: int, idem: str | None = None) -> None:
    await node.write([Write(key, amount, idem)])


async def test_a_reset_racing_the_resolution_of_a_duplicate_cancels_it_once(
    cluster: Any,
) -> None:
    """The regression: a counter that only ever received +5 converged to -5 on every node.

    A applies K, its retry lands on C while A and C cannot talk. B pulls both copies and resets
    the key, seeing each. Only then does C learn of A's copy. The reset saw K, so K is cancelled
    once: every node converges to 0, never below.
    """
    _, nodes = await cluster()
    for name in NAMES:  # everyone has spoken to everyone once: all run this release
        for other in NAMES:
            if other != name:
                await pull(nodes, name, other)
    await incr(nodes["A"], "k", 5, "K")
    await incr(nodes["C"], "k", 5, "K")  # the retry, on a node that has not seen A's copy
    await pull(nodes, "B", "A")
    await pull(nodes, "B", "C")
    assert (await nodes["B"].reset("k")).value() == 0
    await pull(nodes, "C", "A")  # C now knows both copies
    await sync_all(nodes)
    assert await values(nodes, "k") == [0, 0, 0]


async def meet(nodes: dict[str, Node]) -> None:
    """A complete round on every link: every node has heard every peer speak format 3."""
    for dst in nodes:
        for src in nodes:
            if src != dst:
                await pull(nodes, dst, src)
    assert all(node.store.sets_rule for node in nodes.values())


async def duplicate(network: Network, nodes: dict[str, Node], idem: str, amount: int) -> None:
    """K applied on A, and retried on C while A is cut off: two copies."""
    network.isolate("A")
    await incr(nodes["A"], "k", amount, idem)
    await incr(nodes["C"], "k", amount, idem)
    network.heal()


async def test_a_duplicate_counts_once_and_its_set_reaches_every_node(cluster: Any) -> None:
    network, nodes = await cluster()
    await meet(nodes)
    await duplicate(network, nodes, "K", 5)
    await sync_all(nodes)
    assert await values(nodes, "k") == [5, 5, 5]
    for node in nodes.values():
        state = await node.read("k")
        [copies] = state.duplicates.values()
        assert len(copies) == 2
        assert (await node.status())["exactly_once"]["rule"] == "duplicate sets"
    # Nothing was written to cancel a copy: every entry's total is a sum of positive amounts.
    assert all(e.total == 5 for e in (await nodes["B"].read("k")).entries.values())


@pytest.mark.parametrize("reset_first", [True, False])
async def test_a_reset_that_saw_one_copy_cancels_the_key_whatever_the_order(
    cluster: Any, reset_first: bool
) -> None:
    """B's reset saw only C's copy. Whether A's copy reaches B before or after the reset, K is
    cancelled once (a reset observed it), and a later +1 on B survives: 1 everywhere."""
    network, nodes = await cluster()
    await meet(nodes)
    network.isolate("A")
    await incr(nodes["A"], "k", 5, "K")
    await incr(nodes["C"], "k", 5, "K")
    await pull(nodes, "B", "C")
    network.heal()
    if reset_first:
        await nodes["B"].reset("k")
        await pull(nodes, "B", "A")
    else:
        await pull(nodes, "B", "A")
        assert (await nodes["B"].read("k")).value() == 5  # both copies held: once
        await nodes["B"].reset("k")
    await incr(nodes["B"], "k", 1)
    await sync_all(nodes)
    assert await values(nodes, "k") == [1, 1, 1]


async def test_a_reset_that_saw_no_copy_leaves_the_key_counted_once(cluster: Any) -> None:
    network, nodes = await cluster()
    await meet(nodes)
    await incr(nodes["B"], "k", 2)
    await nodes["B"].reset("k")  # saw only its own +2
    await duplicate(network, nodes, "K", 5)
    await sync_all(nodes)
    assert await values(nodes, "k") == [5, 5, 5]


async def test_purged_records_do_not_bring_a_duplicate_back(cluster: Any) -> None:
    """Records go after the retention period; the set stays, so K still counts once, across
    restarts, and a late retry anywhere is a replay."""
    network, nodes = await cluster()
    await meet(nodes)
    await duplicate(network, nodes, "K", 5)
    await sync_all(nodes)
    for node in nodes.values():  # a day later: every record is past the retention period
        vectors = [link.vector or VersionVector() for link in node.sync.links]
        await node.store.purge(vectors, time.time() + 2 * node.config.idempotency_retention)
        assert (await node.status())["records"] == 0
    for name in NAMES:
        await nodes[name].close()
        network.nodes.pop(name)
    reopened = {}
    for name in NAMES:
        reopened[name] = await cluster.reopen(name)
    assert all(node.store.sets_rule for node in reopened.values())
    assert await values(reopened, "k") == [5, 5, 5]
    [outcome] = await reopened["B"].write([Write("k", 5, "K")])
    assert outcome.replayed
    await sync_all(reopened)
    assert await values(reopened, "k") == [5, 5, 5]


async def test_a_page_with_the_set_but_not_the_smaller_copy_never_shows_less_than_once(
    cluster: Any,
) -> None:
    """Pages of one item: B holds C's copy and the set before A's copy arrives; at every page
    B shows K once (C's copy stands until A's smaller one is held)."""
    network, nodes = await cluster(page_entries=1)
    await meet(nodes)
    network.isolate("A")
    await incr(nodes["A"], "k", 5, "K")
    await nodes["A"].batch([(f"filler{i}", 1) for i in range(3)])
    await incr(nodes["A"], "k", 1)  # A's entry for k moves on: its copy is held only then
    await incr(nodes["C"], "k", 5, "K")
    network.heal()
    await pull(nodes, "C", "A")  # C publishes the set
    await pull(nodes, "B", "C")
    assert (await nodes["B"].read("k")).value() == 6

    round_ = PullRound(nodes["B"].store, network.peer("B", "A"), max_pages=50)
    await round_.start()
    seen = []
    for _ in range(50):
        done = await round_.next_page()
        seen.append((await nodes["B"].read("k")).value())
        if done:
            break
    assert min(seen) == 6 and seen[-1] == 6, seen
    await sync_all(nodes)
    assert await values(nodes, "k") == [6, 6, 6]


async def set_counts(nodes: dict[str, Node]) -> list[int]:
    return [(await node.status())["exactly_once"]["duplicate_sets"] for node in nodes.values()]


def speak(nodes: dict[str, Node], version: int) -> None:
    """Make every link speak ``version`` (an older release's) until told otherwise."""
    for node in nodes.values():
        for link in node.sync.links:
            link.version, link.version_retry_at = version, float("inf")


async def test_until_every_peer_speaks_format_3_a_node_compensates_then_upgrades_cleanly(
    cluster: Any,
) -> None:
    """A mixed cluster keeps the release before's behaviour (a compensating write and a mark);
    once every link speaks format 3, sets rule and the compensated copy counts as an exclusion
    already applied: the values do not move."""
    network, nodes = await cluster()
    speak(nodes, 2)
    await sync_all(nodes, rounds=1)
    await duplicate(network, nodes, "K", 5)
    await sync_all(nodes)
    assert not any(node.store.sets_rule for node in nodes.values())
    assert await values(nodes, "k") == [5, 5, 5]
    entries = (await nodes["B"].read("k")).entries
    assert sorted(e.total for e in entries.values()) == [0, 5]  # the later copy compensated
    assert await set_counts(nodes) == [0, 0, 0]

    speak(nodes, 3)
    await sync_all(nodes)
    assert all(node.store.sets_rule for node in nodes.values())
    assert await values(nodes, "k") == [5, 5, 5]
    # The set published at the switch lists the compensated copy with its mark: left out.
    assert min(await set_counts(nodes)) >= 1
    # A new duplicate is now excluded, not compensated: no negative write.
    await duplicate(network, nodes, "K2", 3)
    await sync_all(nodes)
    assert await values(nodes, "k") == [8, 8, 8]
    totals = sorted(e.total for e in (await nodes["B"].read("k")).entries.values())
    assert totals == [3, 8]  # C's entry holds its compensated 5 - 5 and its excluded copy 3


async def test_one_node_on_format_2_keeps_the_others_compensating(cluster: Any) -> None:
    _, nodes = await cluster()
    for link in nodes["A"].sync.links:  # A answers and asks as an older release would
        link.version, link.version_retry_at = 2, float("inf")
    for name in ("B", "C"):
        [link] = [link for link in nodes[name].sync.links if link.peer.url == "memory://A"]
        link.version, link.version_retry_at = 2, float("inf")
    await sync_all(nodes)
    assert not any(node.store.sets_rule for node in nodes.values())
