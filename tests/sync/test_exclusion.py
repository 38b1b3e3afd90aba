"""Exactly-once as a join: duplicate copies are excluded by a rule over merged state.

In-process, on the in-memory network. Each scenario drives pull rounds link by link, so the
interleaving is exact; docs/design.md ("Exactly-once increments") states the rules tested here.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from vvstore.codec import Write
from vvstore.config import NodeConfig
from vvstore.harness.testing import Network, open_memory_node
from vvstore.node import Node

NAMES = ("A", "B", "C")


@pytest.fixture
async def cluster(
    make_config: Callable[..., NodeConfig],
) -> AsyncIterator[Callable[..., Any]]:
    network = Network(rng=random.Random(5))

    async def make(names: Sequence[str] = NAMES, **fields: Any) -> tuple[Network, dict[str, Node]]:
        nodes = {}
        for name in names:
            nodes[name] = await open_memory_node(network, make_config(name, **fields), names)
        return network, nodes

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
