"""Retired actors on the in-memory network: they replicate, and then leave the wire.

A node redeployed without its volume starts a new actor each time. Its earlier actors will
issue no more dots: they are retired, the retirement spreads, and once every member holds a
retired actor in full, sync messages name the retirement map by its digest instead of listing
the actor. These tests churn a node many times and check that the cluster still syncs, that
values stay exact, and that idle traffic does not grow with the number of incarnations.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from vvstore.config import NodeConfig
from vvstore.harness.testing import Network, open_memory_node
from vvstore.node import Node
from vvstore.sync import PeerLink
from vvstore.wire import floors_bytes, vector_bytes


def link(node: Node, dst: str) -> PeerLink:
    return next(x for x in node.sync.links if x.peer.url == f"memory://{dst}")


class Churn:
    """Node A stays; node B is wiped and reopened (a new actor) as often as asked."""

    def __init__(self, make_config: Callable[..., NodeConfig], tmp: Path) -> None:
        self.make_config = make_config
        self.tmp = tmp
        self.network = Network(rng=random.Random(3))
        self.nodes: dict[str, Node] = {}
        self.seed = 0

    async def open(self, name: str) -> Node:
        self.seed += 1
        node = await open_memory_node(
            self.network, self.make_config(name), ("A", "B"), seed=self.seed
        )
        self.nodes[name] = node
        return node

    async def rounds(self, passes: int = 2) -> None:
        """``passes`` pulls each way: each must complete."""
        for _ in range(passes):
            for src, dst in (("A", "B"), ("B", "A")):
                result = await self.nodes[src].sync.round(link(self.nodes[src], dst))
                assert result is not None and result.complete, link(self.nodes[src], dst)

    async def redeploy_wiped(self, name: str) -> Node:
        await self.nodes.pop(name).close()
        self.network.nodes.pop(name, None)
        shutil.rmtree(self.tmp / name)
        return await self.open(name)

    async def idle_bytes(self) -> int:
        """Bytes of one idle round each way (request and reply)."""
        before = self._total()
        await self.rounds(passes=1)
        return self._total() - before

    def _total(self) -> int:
        return sum(s.request_bytes + s.reply_bytes for s in self.network.stats.values())

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.close()


@pytest.fixture
async def churn(make_config: Callable[..., NodeConfig], tmp_path: Path) -> AsyncIterator[Churn]:
    made = Churn(make_config, tmp_path)
    await made.open("A")
    await made.open("B")
    try:
        yield made
    finally:
        await made.close()


async def churn_cycles(churn: Churn, cycles: int) -> None:
    """Wipe and redeploy B ``cycles`` times; each incarnation writes once and syncs both ways."""
    for i in range(cycles):
        b = await churn.redeploy_wiped("B")
        await b.increment("k", 1)
        await b.increment(f"own{i % 7}", 2)
        await churn.rounds()


async def test_a_wiped_node_retires_its_earlier_actor_everywhere(churn: Churn) -> None:
    first = churn.nodes["B"].store.actor
    await churn.nodes["B"].increment("k", 4)
    await churn.rounds()
    b = await churn.redeploy_wiped("B")
    assert b.store.actor != first
    await churn.rounds()
    for node in churn.nodes.values():
        assert dict(node.store.retirements) == {first: 1}, node.node_id
        assert (await node.read("k")).value() == 4
    # Held in full everywhere: no sync message lists it any more.
    assert first not in churn.nodes["A"].store.retirements.compact(
        await churn.nodes["A"].store.vector()
    )


async def test_a_retired_final_is_the_highest_seq_any_member_holds(churn: Churn) -> None:
    """B's old actor wrote 3 dots; B is restored from a backup holding 1: the final is 3."""
    a, b = churn.nodes["A"], churn.nodes["B"]
    old = b.store.actor
    await b.increment("k", 1)
    await churn.rounds()
    backup = churn.tmp / "backup"
    shutil.copytree(churn.tmp / "B", backup)  # B idle: a copy at rest (new inode on restore)
    await b.increment("k", 1)
    await b.increment("j", 1)
    await churn.rounds()
    await churn.nodes.pop("B").close()
    churn.network.nodes.pop("B")
    shutil.rmtree(churn.tmp / "B")
    shutil.copytree(backup, churn.tmp / "B")
    b = await churn.open("B")
    await churn.rounds()
    # A new file gets a new actor at open; should the inode be reused, the start-up fence
    # finds A holding more of the old actor and switches: either way, not the old one.
    assert b.store.actor != old and not b.store.fenced
    for node in (a, b):
        assert node.store.retirements[old] == 3, node.node_id
        assert (await node.read("k")).value() == 2 and (await node.read("j")).value() == 1


async def test_churn_keeps_idle_traffic_flat_and_values_exact(churn: Churn) -> None:
    """60 incarnations of B (the soak test runs 1,000): idle bytes as for a fresh pair."""
    fresh = await churn.idle_bytes()
    await churn_cycles(churn, 60)
    await churn.rounds()
    after = await churn.idle_bytes()
    a, b = churn.nodes["A"], churn.nodes["B"]
    # The first B never wrote (in no vector); the last is live: 59 retired.
    assert len(a.store.retirements) == 59 and a.store.retirements == b.store.retirements
    # A fresh pair lists two actors; after churn the same two (A's, B's current) and a digest.
    assert after <= fresh + 200, (fresh, after)
    for node in (a, b):
        assert (await node.read("k")).value() == 60
        assert sum([(await node.read(f"own{j}")).value() for j in range(7)]) == 120


async def test_a_reset_of_a_key_with_siblings_from_every_incarnation_syncs(churn: Churn) -> None:
    await churn_cycles(churn, 60)
    a = churn.nodes["A"]
    state = await a.reset("k")
    (entry,) = [e for e in state if e.actor == a.store.actor]
    assert len(entry.floors) == 60
    await churn.nodes["B"].increment("k", 5)
    await churn.rounds()
    for node in churn.nodes.values():
        assert (await node.read("k")).value() == 5


@pytest.mark.soak
async def test_a_thousand_incarnations_then_sync_both_ways(churn: Churn) -> None:
    """The issue's figure: 1,000 wiped redeploys of B, then a reset of a key with 1,000 siblings.

    Prints the churn time and the idle sync bytes against a fresh pair's (the closing note's
    figures): ``python -m pytest -m soak tests/sync/test_retirement.py -s``.
    """
    fresh = await churn.idle_bytes()
    started = time.monotonic()
    await churn_cycles(churn, 1000)
    took = time.monotonic() - started
    a, b = churn.nodes["A"], churn.nodes["B"]
    state = await a.reset("k")
    (entry,) = [e for e in state if e.actor == a.store.actor]
    assert len(entry.floors) == 1000
    await b.increment("k", 5)
    await churn.rounds()
    after = await churn.idle_bytes()
    whole = await a.store.vector()
    print(
        f"\n1,000 incarnations in {took:.1f} s; idle round bytes {after} (fresh pair {fresh});"
        f" whole vector {len(whole)} actors, {vector_bytes(whole.to_dict())} bytes if listed;"
        f" reset floors {floors_bytes(entry.floors)} bytes"
    )
    assert len(a.store.retirements) == 999 and a.store.retirements == b.store.retirements
    assert after <= fresh + 200
    for node in (a, b):
        assert (await node.read("k")).value() == 5
