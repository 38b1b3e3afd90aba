"""Rotating the cluster secret and the token on three real processes, one node at a time.

The procedure of docs/security.md: every node on secret S1 (token T1); each restarted in turn
with S2 current and S1 previous (T2 and T1); then each restarted again with S2 alone. After
every restart an increment on every node, old or new, must reach the other two, and /status
``peer_secrets`` must name the peers still signing with S1.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from vvstore.client import Client, ReplyError
from vvstore.harness.launcher import ServerProcess, free_port

pytestmark = pytest.mark.slow

NAMES = ("a", "b", "c")
KEY = "rotation"


def write_secret(path: Path) -> str:
    value = secrets.token_hex(32)
    path.write_text(value + "\n")
    return value


class Rotation:
    """Three nodes and the files of both secrets and both tokens."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.s1, self.s2 = root / "s1", root / "s2"
        self.t1_path, self.t2_path = root / "t1", root / "t2"
        for path in (self.s1, self.s2, self.t1_path, self.t2_path):
            write_secret(path)
        self.t1, self.t2 = (p.read_text().strip() for p in (self.t1_path, self.t2_path))
        ports = {name: free_port() for name in NAMES}
        self.nodes = {
            name: ServerProcess(
                name,
                root / name,
                ports[name],
                peers=[f"http://127.0.0.1:{ports[p]}" for p in NAMES if p != name],
                durability="normal",
            )
            for name in NAMES
        }
        self.expected = 0

    def configure(self, name: str, phase: str) -> None:
        """Flags for ``phase``: "old" (S1, T1), "rotating" (S2 + S1, T2 + T1), "new" (S2, T2)."""
        node = self.nodes[name]
        files = {
            "old": (self.s1, None, self.t1_path, None, self.t1),
            "rotating": (self.s2, self.s1, self.t2_path, self.t1_path, self.t2),
            "new": (self.s2, None, self.t2_path, None, self.t2),
        }
        secret, previous, token, previous_token, node.token = files[phase]
        args = ["--sync-interval", "0.2", "--backoff-cap", "0.5"]
        args += ["--cluster-secret-file", str(secret), "--token-file", str(token)]
        if previous is not None:
            args += ["--previous-cluster-secret-file", str(previous)]
        if previous_token is not None:
            args += ["--previous-token-file", str(previous_token)]
        node.extra_args = args

    async def restart(self, name: str, phase: str) -> None:
        node = self.nodes[name]
        if node.running():
            assert await node.stop() == 0, node.log()[-3000:]
        self.configure(name, phase)
        node.start()
        await node.wait_ready()

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{p.log()[-3000:]}" for n, p in self.nodes.items())

    async def wait_for(self, check: Callable[[], Awaitable[bool]], what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while loop.time() < deadline:
            if await check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what} not seen within 20 s\n{self.logs()}")

    async def increment_everywhere_and_converge(self) -> None:
        """One increment on every node, then every node must count all of them."""
        for step, node in enumerate(self.nodes.values(), start=1):
            async with Client(node.url, token=node.token) as client:
                await client.increment(KEY, step)
            self.expected += step

        async def converged() -> bool:
            values = []
            for node in self.nodes.values():
                async with Client(node.url, token=node.token) as client:
                    values.append((await client.get(KEY)).value)
            return values == [self.expected] * len(values)

        await self.wait_for(converged, f"every node at {self.expected}")

    async def status_field(self, name: str, key: str) -> object:
        node = self.nodes[name]
        async with Client(node.url, token=node.token) as client:
            return (await client.status()).raw[key]

    async def wait_peer_secrets(self, name: str, expected: dict[str, str]) -> None:
        async def shown() -> bool:
            return await self.status_field(name, "peer_secrets") == expected

        await self.wait_for(shown, f"{name}'s /status peer_secrets == {expected}")


@pytest.fixture
async def rotation(tmp_path: Path) -> AsyncIterator[Rotation]:
    setup = Rotation(tmp_path)
    try:
        for name in NAMES:
            setup.configure(name, "old")
            setup.nodes[name].start()
        for node in setup.nodes.values():
            await node.wait_ready()
        yield setup
    finally:
        await asyncio.gather(*(node.stop() for node in setup.nodes.values()))


async def test_rotating_the_secret_one_node_at_a_time_never_stops_replication(
    rotation: Rotation,
) -> None:
    await rotation.increment_everywhere_and_converge()
    await rotation.wait_peer_secrets("a", {"b": "current", "c": "current"})

    rotated: list[str] = []
    for name in NAMES:
        await rotation.restart(name, "rotating")
        rotated.append(name)
        await rotation.increment_everywhere_and_converge()
        # A rotated node sees its rotated peers sign with S2, the others still with S1.
        for here in rotated:
            expected = {
                peer: "current" if peer in rotated else "previous" for peer in NAMES if peer != here
            }
            await rotation.wait_peer_secrets(here, expected)
        # Both tokens open a rotated node; an old node knows only T1.
        for node in rotation.nodes.values():
            tokens = (rotation.t1, rotation.t2) if node.node_id in rotated else (rotation.t1,)
            for token in tokens:
                async with Client(node.url, token=token) as client:
                    assert (await client.get(KEY)).value == rotation.expected
        for here in rotated:
            # Each rotated node has just been read with T1: /status counts it.
            assert await rotation.status_field(here, "previous_token_uses") >= 1

    for name in NAMES:
        await rotation.restart(name, "new")
        await rotation.increment_everywhere_and_converge()
    for name in NAMES:
        await rotation.wait_peer_secrets(name, {p: "current" for p in NAMES if p != name})
        async with Client(rotation.nodes[name].url, token=rotation.t1) as client:
            with pytest.raises(ReplyError) as refused:
                await client.get(KEY)
        assert (refused.value.status, refused.value.code) == (401, "wrong_token")
        assert await rotation.status_field(name, "previous_token_uses") == 0
