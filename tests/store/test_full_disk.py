"""A real full disk: a node on a small tmpfs answers 503 and keeps every acknowledged write.

``vvstore serve`` runs with its data directory on a 3 MiB tmpfs that also holds a 1 MiB ballast
file. Batches of new keys fill it until SQLite reports the disk full. Then: every refusal is a
503 ``unavailable`` with ``Retry-After`` (never a 5xx of another kind, never a crash); every
acknowledged increment reads back; once the ballast is deleted, writes succeed again; and after a
restart every acknowledged increment is still there and ``PRAGMA integrity_check`` is ok.

Mounting a tmpfs needs root (CI runs as root); elsewhere the test is skipped with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from vvstore.harness.launcher import ServerProcess, free_port
from vvstore.store import DB_FILE

pytestmark = pytest.mark.slow

DISK = "3m"
BALLAST_BYTES = 1 << 20
BATCH = 100
MAX_BATCHES = 400  # 40,000 keys of ~150 bytes: far more than 3 MiB holds
FILL_DEADLINE_S = 120.0
KEY_PAD = "x" * 120


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("the full-disk test mounts a small tmpfs, which needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


@contextlib.asynccontextmanager
async def node_on(data_dir: Path, log: Path) -> AsyncIterator[ServerProcess]:
    node = ServerProcess("A", data_dir, free_port(), durability="full", log_path=log)
    node.start()
    try:
        await node.wait_ready()
        yield node
    finally:
        await node.stop()


async def all_values(session: aiohttp.ClientSession, url: str) -> dict[str, int]:
    values: dict[str, int] = {}
    after: str | None = None
    for _ in range(1000):  # pages of 1000: at most a million keys
        params = {"limit": "1000", **({"after": after} if after is not None else {})}
        async with session.get(f"{url}/counters", params=params) as response:
            assert response.status == 200, await response.text()
            page = await response.json()
        values.update({c["key"]: c["value"] for c in page["counters"]})
        after = page["next"]
        if after is None:
            return values
    raise AssertionError("listing did not end")


async def test_a_full_disk_refuses_with_503_and_loses_nothing_acknowledged(
    small_disk: Path, tmp_path: Path
) -> None:
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * BALLAST_BYTES)
    data_dir = small_disk / "A"
    acked: dict[str, int] = {}
    refusals: list[tuple[int, str, dict[str, object]]] = []
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        node_on(data_dir, tmp_path / "A.log") as node,
        aiohttp.ClientSession(timeout=timeout) as session,
    ):
        deadline = loop.time() + FILL_DEADLINE_S
        for n in range(MAX_BATCHES):
            if loop.time() > deadline or len(refusals) >= 3:
                break
            items = [{"key": f"{KEY_PAD}-{n}-{i}", "amount": 1 + i % 5} for i in range(BATCH)]
            async with session.post(f"{node.url}/batch", json={"increments": items}) as r:
                body = await r.json()
                if r.status == 200:
                    for item in items:
                        acked[item["key"]] = acked.get(item["key"], 0) + item["amount"]
                else:
                    refusals.append((r.status, r.headers.get("Retry-After", ""), body))
        assert refusals, f"the disk never filled after {len(acked)} keys:\n{node.log()}"
        assert acked, node.log()
        for status, retry_after, body in refusals:
            assert status == 503, (status, body, node.log())
            assert body["error"]["code"] == "unavailable", body  # type: ignore[index]
            assert int(retry_after) >= 1
        assert node.running(), node.log()
        # Reads still work, and show every acknowledged increment.
        assert await all_values(session, node.url) == acked
        # Room again: writes succeed without a restart.
        ballast.unlink()
        async with session.post(f"{node.url}/counters/after", json={"amount": 7}) as r:
            assert r.status == 200, await r.text()
        acked["after"] = 7
    assert node.process is not None and node.process.returncode == 0, node.log()
    async with (
        node_on(data_dir, tmp_path / "A.log") as node,
        aiohttp.ClientSession(timeout=timeout) as session,
    ):
        assert await all_values(session, node.url) == acked
    with contextlib.closing(sqlite3.connect(data_dir / DB_FILE)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
