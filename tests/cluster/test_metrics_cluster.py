"""GET /metrics on real ``vvstore serve`` processes: a converged three-node cluster says so.

Every node's scrape must show each of its two configured peers up and nothing behind, its
increments and its keys; the figures are read with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from vvstore.client import Client
from vvstore.harness.cluster import Cluster

pytestmark = pytest.mark.slow

NAMES = ("A", "B", "C")
KEYS = ("likes", "views/home", "clicks")
#: Seconds the scrapes may take to show what the vectors already show.
SCRAPE_DEADLINE = 20.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    nodes = Cluster(tmp_path, NAMES, "normal", client_links=False, sync_interval=0.3)
    try:
        await nodes.start()
        yield nodes
    finally:
        await nodes.close()


async def scrape(session: aiohttp.ClientSession, url: str) -> tuple[str, Samples]:
    async with session.get(url + "/metrics") as response:
        assert response.status == 200, await response.text()
        text = await response.text()
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def per_peer(samples: Samples, name: str) -> dict[str, float]:
    return {
        dict(labels)["peer"]: value for (metric, labels), value in samples.items() if metric == name
    }


async def test_a_converged_cluster_scrapes_as_converged(cluster: Cluster) -> None:
    increments = 0
    for i, name in enumerate(NAMES):
        async with Client(cluster.url(name)) as client:
            for key in KEYS[: i + 1]:
                await client.increment(key, i + 1)
                increments += 1
    await cluster.wait_converged(30)
    peers = {
        name: {peer["url"] for peer in (await cluster.status(name) or {}).get("peers", [])}
        for name in NAMES
    }
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SCRAPE_DEADLINE
    texts: dict[str, str] = {}
    scraped: dict[str, Samples] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            for name in NAMES:
                texts[name], scraped[name] = await scrape(session, cluster.url(name))
            settled = all(
                set(per_peer(scraped[n], "vvstore_peer_up").values()) == {1.0}
                and set(per_peer(scraped[n], "vvstore_peer_behind").values()) == {0.0}
                for n in NAMES
            )
            if settled or loop.time() > deadline:
                break
            await asyncio.sleep(0.1)
    state = ("vvstore_peer", "vvstore_sync", "vvstore_actors", "vvstore_keys", "vvstore_incr")
    print("\n".join(line for line in texts["A"].splitlines() if line.startswith(state)))
    logs = "\n".join(cluster.log_tail(name) for name in NAMES)
    for name in NAMES:
        samples = scraped[name]
        assert len(peers[name]) == 2
        # Labelled by the configured peer URLs, two of them, each up and with nothing behind.
        assert per_peer(samples, "vvstore_peer_up") == dict.fromkeys(peers[name], 1.0), logs
        assert per_peer(samples, "vvstore_peer_behind") == dict.fromkeys(peers[name], 0.0), logs
        rounds = {
            labels: value
            for (metric, labels), value in samples.items()
            if metric == "vvstore_sync_rounds_total" and ("outcome", "complete") in labels
        }
        assert len(rounds) == 2 and all(value >= 1 for value in rounds.values())
        assert samples[("vvstore_keys", frozenset())] == len(KEYS)
        assert samples[("vvstore_actors", frozenset({("state", "live")}))] == len(NAMES)
        for key in KEYS:
            assert key not in texts[name]
    total = sum(scraped[name][("vvstore_increments_total", frozenset())] for name in NAMES)
    assert total == increments
