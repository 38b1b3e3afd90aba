"""Two replication halts on real processes: pages of four-byte keys, and a slow link.

Each test runs nodes A and B whose sync traffic goes through a :class:`FaultProxy` (node X
reaches Y at the port of link ``(X, Y)``), writes a large state on A alone, and waits until B
holds every key with its value. The observer talks to the nodes directly: faults never cut it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vvstore.client import Client
from vvstore.harness.cluster import Cluster
from vvstore.harness.launcher import ServerProcess
from vvstore.harness.proxy import FaultProxy

pytestmark = pytest.mark.slow

NAMES = ("A", "B")
KEYS = 6000
BATCH = 500  # items per POST /batch (the route takes at most 1,000, and 1 MiB of body)
LIST_PAGE = 1000
POLL_S = 0.2
# Loopback carries a few MB in well under a second; the deadlines only bound a halt.
FOUR_BYTE_DEADLINE_S = 60.0
SLOW_LINK_DEADLINE_S = 90.0
# 2 Mbit/s and 40 ms of latency each way: a modest WAN link.
SLOW_LINK_BYTES_PER_S = 250_000
SLOW_LINK_LATENCY_S = 0.04


@dataclass
class Pair:
    proxy: FaultProxy
    nodes: dict[str, ServerProcess]

    def url(self, name: str) -> str:
        return self.nodes[name].url

    def logs(self) -> str:
        return "\n".join(f"--- {n.node_id} ---\n{n.log()[-3000:]}" for n in self.nodes.values())


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    cluster = Cluster(
        tmp_path, NAMES, "normal", client_links=False, sync_interval=0.2, backoff_cap=0.5
    )
    try:
        await cluster.start()
        yield Pair(cluster.proxy, cluster.processes)
    finally:
        await cluster.close()


async def write_on(url: str, values: dict[str, int]) -> None:
    items = list(values.items())
    async with Client(url, timeout=30) as client:
        for start in range(0, len(items), BATCH):
            await client.batch(items[start : start + BATCH])


async def counters(url: str) -> dict[str, int]:
    """Every counter a node holds, read a page at a time."""
    out: dict[str, int] = {}
    after: str | None = None
    async with Client(url, timeout=10) as client:
        while True:
            listing = await client.list(after=after, limit=LIST_PAGE)
            out.update((c.key, c.value) for c in listing.counters)
            after = listing.next
            if after is None:
                return out


async def peer_entry(url: str) -> Sequence[dict[str, Any]] | str:
    try:
        async with Client(url, timeout=5) as client:
            return [peer.raw for peer in (await client.status()).peers]
    except Exception as exc:
        return f"no status: {exc!r}"


async def wait_until_b_holds(pair: Pair, expected: dict[str, int], timeout: float) -> float:
    """Poll until B holds exactly ``expected``; the seconds it took. On timeout, fail with the
    time, what B has, B's view of its peer (last_error) and both nodes' logs."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    held = 0
    async with Client(pair.url("A"), timeout=5) as a, Client(pair.url("B"), timeout=5) as b:
        while loop.time() - start < timeout:
            # The vectors are cheap to compare; the full listing only once they agree.
            if (await a.status()).version == (await b.status()).version:
                got = await counters(pair.url("B"))
                held = len(got)
                if got == expected:
                    return loop.time() - start
            await asyncio.sleep(POLL_S)
        version = (await b.status()).version
    if not held:
        held = len(await counters(pair.url("B")))
    raise AssertionError(
        f"B holds {held} of {len(expected)} keys after {loop.time() - start:.1f} s "
        f"(B's version {version}); B's peers: {await peer_entry(pair.url('B'))}\n{pair.logs()}"
    )


def four_byte_key(i: int) -> str:
    """A distinct key of 64 four-byte UTF-8 characters (256 bytes, the key limit): a CJK
    Extension B character naming it, then emoji."""
    key = chr(0x20000 + i) + "".join(chr(0x1F600 + (i + j) % 80) for j in range(63))
    assert len(key.encode()) == 256
    return key


async def test_four_byte_keys_converge(pair: Pair) -> None:
    expected = {four_byte_key(i): 1 + i % 7 for i in range(KEYS)}
    pair.proxy.partition({"A"}, {"B"})
    await write_on(pair.url("A"), expected)

    pair.proxy.heal()

    took = await wait_until_b_holds(pair, expected, FOUR_BYTE_DEADLINE_S)
    print(f"B converged on {KEYS} four-byte keys {took:.1f} s after the heal")


async def test_slow_link_converges(pair: Pair) -> None:
    expected = {f"slow/{i:05d}/".ljust(250, "x"): 1 + i % 5 for i in range(KEYS)}
    pair.proxy.partition({"A"}, {"B"})
    await write_on(pair.url("A"), expected)

    # Straight from drop to the slow link, never through an unlimited pass. A's replies to
    # B's pulls travel A -> B (backward on link (B, A)): that is the direction limited.
    pair.proxy.limit("A", "B", SLOW_LINK_BYTES_PER_S, delay=SLOW_LINK_LATENCY_S)
    pair.proxy.set_direction("B", "A", "delay", delay=SLOW_LINK_LATENCY_S)

    took = await wait_until_b_holds(pair, expected, SLOW_LINK_DEADLINE_S)
    carried = pair.proxy.bytes_carried("A", "B")
    print(f"B converged over the slow link in {took:.1f} s ({carried} bytes A -> B)")
    assert carried / took <= SLOW_LINK_BYTES_PER_S * 1.05, "the link was not limited"
