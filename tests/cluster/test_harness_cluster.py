"""vvstore.harness.cluster.Cluster, the one fixture for real-process clusters: start N nodes on
free ports behind the proxy, wait ready by node id and PID, partition, heal, wait converged,
close; and refuse busy ports before starting anything."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest

from vvstore.harness.cluster import Cluster, PortsBusy

pytestmark = pytest.mark.slow


async def add(url: str, key: str, amount: int) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/counters/{key}", json={"amount": amount}) as response,
    ):
        assert response.status == 200, await response.text()


async def test_partition_heal_and_converge(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, ("A", "B", "C"), client_links=False)
    try:
        await cluster.start()
        statuses = [await cluster.status(name) for name in cluster.names]
        assert [s["node"] for s in statuses if s] == ["A", "B", "C"]
        assert {s["pid"] for s in statuses if s} == {p.pid for p in cluster.processes.values()}
        cluster.partition(["A"], ["B", "C"])
        await add(cluster.client_urls["A"], "k", 5)
        await add(cluster.client_urls["B"], "k", 7)
        await cluster.wait_converged(10, names=["B", "C"])
        assert (await cluster.values("A")) == {"k": 5}
        assert (await cluster.values("C")) == {"k": 7}
        cluster.heal()
        await cluster.wait_converged(10)
        assert (await cluster.values("C")) == {"k": 12}
    finally:
        codes = await cluster.close()
    assert codes == {"A": 0, "B": 0, "C": 0}


async def test_busy_ports_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        cluster = Cluster(tmp_path, ("A", "B"), ports={"B": busy})
        with pytest.raises(PortsBusy, match=rf"^port {busy} \(node B\) is already in use"):
            await cluster.start()
        assert cluster.processes == {}
        await cluster.close()
