"""A peer restarted at another node's address is refused, then recovered: real processes.

Node a names its peer (``--peer b=http://127.0.0.1:<port of b>``). b stops and c, another
member with the same cluster secret, starts on b's port: a refuses it (a WARNING line, the
peer's /status ``identity_error``), and replicates nothing from it. c stops and b comes back
on its port: a takes it back without a restart, and b's writes reach a again.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from vvstore.client import Client
from vvstore.harness.launcher import ServerProcess, free_port

pytestmark = pytest.mark.slow

DEADLINE = 20.0


class Cluster:
    def __init__(self, root: Path) -> None:
        secret = root / "secret"
        secret.write_text(secrets.token_hex(32) + "\n")
        self.token = secrets.token_hex(32)
        token = root / "token"
        token.write_text(self.token + "\n")
        args = ["--sync-interval", "0.2", "--backoff-cap", "0.5"]
        args += ["--cluster-secret-file", str(secret), "--token-file", str(token)]
        port_a, self.port_b = free_port(), free_port()
        self.a = ServerProcess(
            "a", root / "a", port_a, peers=[f"b=http://127.0.0.1:{self.port_b}"], extra_args=args
        )
        others = [f"a=http://127.0.0.1:{port_a}"]
        self.b = ServerProcess("b", root / "b", self.port_b, peers=others, extra_args=args)
        # c starts on b's port: the address a names b at.
        self.c = ServerProcess("c", root / "c", self.port_b, peers=others, extra_args=args)
        for node in (self.a, self.b, self.c):
            node.token = self.token

    def logs(self) -> str:
        return "\n".join(
            f"--- {n.node_id} ---\n{n.log()[-3000:]}" for n in (self.a, self.b, self.c)
        )

    async def wait_for(self, check: Callable[[], Awaitable[bool]], what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while loop.time() < deadline:
            if await check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what} not seen within {DEADLINE} s\n{self.logs()}")

    async def peer_of_a(self) -> dict[str, object]:
        async with Client(self.a.url, token=self.token) as client:
            [peer] = (await client.status()).peers
        return peer.raw

    async def value(self, node: ServerProcess, key: str) -> int:
        async with Client(node.url, token=self.token) as client:
            return (await client.get(key)).value

    async def increment(self, node: ServerProcess, key: str, amount: int) -> None:
        async with Client(node.url, token=self.token) as client:
            await client.increment(key, amount)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    setup = Cluster(tmp_path)
    try:
        setup.a.start()
        setup.b.start()
        await setup.a.wait_ready()
        await setup.b.wait_ready()
        yield setup
    finally:
        await asyncio.gather(*(n.stop() for n in (setup.a, setup.b, setup.c) if n.running()))


async def test_a_peer_restarted_at_another_nodes_address_is_refused_then_recovered(
    cluster: Cluster,
) -> None:
    await cluster.increment(cluster.b, "k", 1)

    async def a_has(total: int) -> bool:
        return await cluster.value(cluster.a, "k") == total

    await cluster.wait_for(lambda: a_has(1), "b's first write on a")
    peer = await cluster.peer_of_a()
    assert (peer["expected_node"], peer["node"], peer["identity_error"]) == ("b", "b", None)

    assert await cluster.b.stop() == 0, cluster.logs()
    cluster.c.start()
    await cluster.c.wait_ready()
    await cluster.increment(cluster.c, "k", 10)

    async def refused() -> bool:
        error = (await cluster.peer_of_a())["identity_error"]
        return isinstance(error, str) and "node 'c' answers" in error

    await cluster.wait_for(refused, "a refusing c at b's address in /status")
    peer = await cluster.peer_of_a()
    assert str(peer["last_error"]).startswith("PeerMismatch: "), peer
    assert "peer mismatch: node 'c' answers at" in cluster.a.log()
    # The refusal was seen after c's write: a took nothing from c.
    assert await cluster.value(cluster.a, "k") == 1

    assert await cluster.c.stop() == 0, cluster.logs()
    cluster.b.start()
    await cluster.b.wait_ready()
    await cluster.increment(cluster.b, "k", 100)
    await cluster.wait_for(lambda: a_has(101), "b's write on a once b is back at its address")
    peer = await cluster.peer_of_a()
    assert (peer["node"], peer["identity_error"], peer["reachable"]) == ("b", None, True)
