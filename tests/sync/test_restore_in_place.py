"""A database restored in place never reuses a dot (issue 10, part 1), on the in-process tier.

A backup copied back over the same file keeps the file's device and inode, so the node cannot
tell from its files that it went back in time: it resumes its actor at a counter below what
peers hold. The start-up fence holds local writes until every peer has answered a round (a
peer holding more of the actor switches the node to a new one), or begins a fresh actor when a
peer does not answer in time.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from vvstore.codec import Write
from vvstore.config import NodeConfig
from vvstore.harness.cluster import restore_in_place
from vvstore.harness.testing import Network, open_memory_node
from vvstore.node import Node
from vvstore.store import DB_FILE

MakeConfig = Callable[..., NodeConfig]
FAST = {"sync_interval": 0.05, "backoff_cap": 0.1}


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.01)


def backup(db: Path, to: Path) -> None:
    """A consistent copy of a live database (SQLite's online backup API)."""
    src, dst = sqlite3.connect(db), sqlite3.connect(to)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


@pytest.fixture
async def net(make_config: MakeConfig) -> AsyncIterator[Any]:
    network = Network(rng=random.Random(3))
    opened: list[Node] = []

    async def start(name: str, peers: tuple[str, ...] = ("A", "B"), **fields: Any) -> Node:
        node = await open_memory_node(
            network, make_config(name, **{**FAST, **fields}), peers, start_sync=True
        )
        opened.append(node)
        return node

    async def stop(node: Node) -> None:
        opened.remove(node)
        await node.close()
        network.nodes.pop(node.node_id)

    yield network, start, stop
    for node in opened:
        await node.close()


async def test_a_restore_in_place_takes_a_new_actor_and_loses_nothing_a_peer_held(
    net: Any, tmp_path: Path
) -> None:
    _, start, stop = net
    a, b = await start("A"), await start("B")
    for i in range(10):
        await a.write([Write(f"k{i}", 1)])
    db = Path(a.config.data_dir) / DB_FILE
    backup(db, tmp_path / "backup.sqlite3")
    for i in range(10, 15):
        await a.write([Write(f"k{i}", 1)])
    old = a.store.actor
    await until(lambda: _holds(b, old, 15), "B holds all of A's first actor")
    await stop(a)
    inode = db.stat().st_ino
    restore_in_place(tmp_path / "backup.sqlite3", db)
    assert db.stat().st_ino == inode

    a = await start("A")
    assert a.store.actor == old  # the file looks like the one A left: the actor is resumed
    [outcome] = await a.write([Write("after", 7)])  # at once, before any round could run
    assert a.store.actor != old, "a write under the resumed actor reuses a dot B holds"
    assert outcome.state.value() == 7
    status = await a.status()
    assert "of our actor beyond our" in status["incarnation"]["reason"]

    async def converged() -> bool:
        va, vb = await a.store.vector(), await b.store.vector()
        return va == vb

    await until(converged, "A and B converge")
    for key in [f"k{i}" for i in range(15)] + ["after"]:
        assert (await a.read(key)).value() == (await b.read(key)).value() > 0, key
    # Nothing B held was lost: A pulled back k10..k14, written after the backup.
    assert (await a.read("k14")).value() == 1


async def _holds(node: Node, actor: str, seq: int) -> bool:
    return (await node.store.vector()).get(actor) >= seq


async def test_a_peer_that_does_not_answer_means_a_fresh_actor_after_the_timeout(
    net: Any,
) -> None:
    _, start, stop = net
    a = await start("A", identity_confirm_timeout=0.3)
    await a.write([Write("k", 1)])
    first = a.store.actor
    await stop(a)
    # B never comes up: A cannot confirm its resumed actor.
    a = await start("A", identity_confirm_timeout=0.3)
    assert a.store.fenced
    loop = asyncio.get_running_loop()
    began = loop.time()
    [outcome] = await a.write([Write("k", 1)])
    assert loop.time() - began >= 0.25
    assert a.store.actor != first and not a.store.fenced
    assert outcome.state.value() == 2
    assert "not every peer answered" in (await a.status())["incarnation"]["reason"]


async def test_a_clean_restart_with_every_peer_up_keeps_the_actor(net: Any) -> None:
    _, start, stop = net
    a, b = await start("A"), await start("B")
    await a.write([Write("k", 1)])
    first = a.store.actor
    await until(lambda: _holds(b, first, 1), "B holds A's write")
    await stop(a)
    a = await start("A")
    [outcome] = await a.write([Write("k", 1)])
    assert a.store.actor == first, "no actor is added when every peer confirms"
    assert outcome.state.value() == 2
    assert (await a.status())["incarnation"] == {"reason": None, "writes_fenced": False}


async def test_a_node_without_peers_is_never_fenced(make_config: MakeConfig) -> None:
    network = Network()
    config = make_config("solo", **FAST)
    node = await open_memory_node(network, config, (), start_sync=True)
    await node.write([Write("k", 1)])
    actor = node.store.actor
    await node.close()
    node = await open_memory_node(Network(), config, (), start_sync=True)
    try:
        assert not node.store.fenced
        await node.write([Write("k", 1)])
        assert node.store.actor == actor
    finally:
        await node.close()
