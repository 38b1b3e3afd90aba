"""Retries on real processes through the fault proxy: a lost reply, a retry elsewhere, a heal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vvstore.client import Client
from vvstore.harness.cluster import Cluster
from vvstore.harness.proxy import FaultProxy

pytestmark = pytest.mark.slow

NAMES = ("A", "B")


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[FaultProxy, dict[str, Any]]]:
    nodes = Cluster(tmp_path, NAMES, "normal", sync_interval=0.2, backoff_cap=0.4)
    try:
        await nodes.start()
        yield nodes.proxy, {"nodes": nodes.processes, "urls": nodes.client_urls}
    finally:
        await nodes.close()


async def wait_for_values(urls: dict[str, str], key: str, expected: int, logs: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    seen: list[int] = []
    while loop.time() < deadline:
        seen = []
        for url in urls.values():
            async with Client(url, timeout=2) as client:
                seen.append((await client.get(key)).value)
        if seen == [expected] * len(urls):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"values {seen}, expected {expected} everywhere\n{logs}")


async def test_a_lost_reply_retried_elsewhere_during_a_partition_counts_once(
    cluster: tuple[FaultProxy, dict[str, Any]],
) -> None:
    proxy, parts = cluster
    nodes, urls = parts["nodes"], parts["urls"]
    logs = "\n".join(n.log()[-3000:] for n in nodes.values())
    proxy.partition(["A"], ["B"], ["client"])
    proxy.set_direction("A", "client", "pass")
    proxy.set_direction("B", "client", "pass")
    proxy.set_direction("client", "A", "pass")
    proxy.set_direction("client", "B", "pass")
    proxy.cut("A", "client")  # A applies the request, its reply never arrives
    async with Client([urls["A"], urls["B"]], timeout=1.0, attempts=4) as client:
        reply = await client.increment("likes", 7, idempotency_key="retry-me")
    assert reply.value == 7
    # Both nodes applied the key: A (reply lost) and B (the retry). The partition hides it.
    proxy.heal()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    seen: list[Any] = []
    while loop.time() < deadline:  # until both copies are everywhere and compensated
        seen = []
        for url in urls.values():
            async with Client(url, timeout=2) as client:
                status, got = await client.status(), await client.get("likes")
            seen.append((status.records, len(got.version), got.value))
        if seen == [(2, 2, 7), (2, 2, 7)]:
            break
        await asyncio.sleep(0.05)
    assert seen == [(2, 2, 7), (2, 2, 7)], (seen, logs)
    async with Client(urls["A"], timeout=2) as client:
        again = await client.increment("likes", 7, idempotency_key="retry-me")
    assert again.value == 7  # a later retry is a replay


async def test_the_client_fails_over_to_a_live_node(
    cluster: tuple[FaultProxy, dict[str, Any]],
) -> None:
    proxy, parts = cluster
    urls = parts["urls"]
    proxy.cut("client", "A", "refuse")
    async with Client([urls["A"], urls["B"]], timeout=1.0, attempts=3) as client:
        reply = await client.increment("k", 2)
    assert reply.value == 2
    proxy.heal()
    await wait_for_values(urls, "k", 2, "")
