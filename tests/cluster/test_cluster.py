"""Real ``vvstore serve`` processes on loopback: convergence, restart, an empty node catching up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from vvstore.client import Client
from vvstore.harness.cluster import Cluster
from vvstore.harness.launcher import ServerProcess, free_port

pytestmark = pytest.mark.slow

NAMES = ("A", "B", "C")


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[dict[str, ServerProcess]]:
    nodes = Cluster(
        tmp_path, NAMES, "normal", client_links=False, sync_interval=0.3, backoff_cap=0.6
    )
    try:
        await nodes.start()
        yield nodes.processes
    finally:
        await nodes.close()


def logs(nodes: dict[str, ServerProcess]) -> str:
    return "\n".join(f"--- {n.node_id} ---\n{n.log()[-4000:]}" for n in nodes.values())


async def wait_for(
    check: Callable[[], Awaitable[bool]], nodes: dict[str, ServerProcess], timeout: float = 20
) -> float:
    """Poll ``check`` until true; return the seconds it took; fail with every node's log."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < timeout:
        if await check():
            return loop.time() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"not converged after {timeout} s\n{logs(nodes)}")


async def states(nodes: dict[str, ServerProcess], keys: list[str]) -> list[Any]:
    out = []
    for node in nodes.values():
        if not node.running():
            continue
        async with Client(node.url) as client:
            status = await client.status()
            out.append((status.version, [(await client.get(k)).value for k in keys]))
    return out


async def test_three_processes_converge_after_concurrent_writes(
    cluster: dict[str, ServerProcess],
) -> None:
    keys = [f"page/{i}" for i in range(5)]

    async def writer(node: ServerProcess, offset: int) -> None:
        async with Client(node.url) as client:
            for i in range(60):
                await client.increment(keys[(i + offset) % 5], 1 + i % 3)

    await asyncio.gather(*(writer(n, i) for i, n in enumerate(cluster.values())))

    async def converged() -> bool:
        snap = await states(cluster, keys)
        return all(s == snap[0] for s in snap)

    await wait_for(converged, cluster)
    snap = await states(cluster, keys)
    total = sum(snap[0][1])
    assert total == 3 * sum(1 + i % 3 for i in range(60))
    assert len(snap[0][0]) == 3  # one actor per node in the merged vector


async def test_a_restarted_node_catches_up(cluster: dict[str, ServerProcess]) -> None:
    a, b = cluster["A"], cluster["B"]
    async with Client(a.url) as client:
        await client.increment("k", 1)
    assert await a.stop() == 0
    async with Client(b.url) as client:
        for _ in range(20):
            await client.increment("k", 2)
    a.start()
    await a.wait_ready()

    async def caught_up() -> bool:
        async with Client(a.url) as client:
            return (await client.get("k")).value == 41

    await wait_for(caught_up, cluster)


async def test_a_node_started_empty_catches_up_over_pages(
    cluster: dict[str, ServerProcess], tmp_path: Path
) -> None:
    async with Client(cluster["A"].url) as client:
        for start in range(0, 6000, 1000):
            await client.batch([(f"key{i:05d}", 1) for i in range(start, start + 1000)])
    port = free_port()
    fresh = ServerProcess(
        "D",
        tmp_path / "D",
        port,
        peers=[cluster["A"].url],
        durability="normal",
        extra_args=["--sync-interval", "0.3"],
    )
    fresh.start()
    try:
        await fresh.wait_ready()

        async def caught_up() -> bool:
            async with Client(fresh.url) as client:
                listing = await client.list(prefix="key", after="key05990", limit=100)
                return [c.key for c in listing.counters][-1:] == ["key05999"]

        both = {**cluster, "D": fresh}
        await wait_for(caught_up, both)

        async def complete() -> bool:
            async with Client(fresh.url) as client, Client(cluster["A"].url) as source:
                return (await client.status()).version == (await source.status()).version

        await wait_for(complete, both)
        async with Client(fresh.url) as client:
            peer = (await client.status()).peers[0]
            assert peer.pulled_pages > 1, peer
            assert peer.pulled_entries >= 6000, peer
            assert (await client.get("key00000")).value == 1
    finally:
        await fresh.stop()


async def test_sigterm_exits_zero_quickly(cluster: dict[str, ServerProcess]) -> None:
    node = cluster["C"]
    node.signal(15)
    assert await node.wait_exit(5.0) == 0, node.log()
