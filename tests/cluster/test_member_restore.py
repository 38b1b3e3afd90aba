"""Real processes: a member's database restored in place (same path, same inode) while its
peer keeps writing; the restored node's first write comes at once. Nothing a peer held is lost,
no dot is issued twice, and the nodes converge (issue 10, part 1)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from vvstore.harness.cluster import DB_FILE, Cluster, restore_in_place

pytestmark = pytest.mark.slow


async def add(url: str, key: str, amount: int = 1) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/counters/{key}", json={"amount": amount}) as response,
    ):
        assert response.status == 200, await response.text()


async def test_a_member_restored_in_place_converges_and_loses_nothing_a_peer_held(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path, ("A", "B"), "full", client_links=False)
    try:
        await cluster.start()
        a, b = cluster.client_urls["A"], cluster.client_urls["B"]
        for i in range(10):
            await add(a, f"a{i}")
        await cluster.backup("A", tmp_path / "backup")
        for i in range(10, 20):
            await add(a, f"a{i}")
        await cluster.wait_converged(20)
        before = await cluster.status("A")
        assert before is not None
        old_actor = before["actor"]

        assert await cluster.processes["A"].stop() == 0
        for i in range(5):
            await add(b, f"b{i}")  # the peer keeps writing meanwhile
        db = cluster.data_dir("A") / DB_FILE
        inode = db.stat().st_ino
        restore_in_place(tmp_path / "backup" / DB_FILE, db)
        assert db.stat().st_ino == inode
        await cluster.restart("A")
        await add(a, "after", 7)  # at once: before any round could have confirmed the actor

        after = await cluster.status("A")
        assert after is not None
        assert after["actor"] != old_actor, "the restored node wrote under its old actor"
        assert "of our actor beyond our" in after["incarnation"]["reason"]
        await cluster.wait_converged(20)
        values = await cluster.values("B")
        assert values == {
            **{f"a{i}": 1 for i in range(20)},
            **{f"b{i}": 1 for i in range(5)},
            "after": 7,
        }
    finally:
        await cluster.close()
