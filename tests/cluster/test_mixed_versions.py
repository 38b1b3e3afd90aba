"""Real processes, mixed versions: node ``a`` runs today's release (commit :data:`RELEASE`,
extracted with git), ``b`` and ``c`` run the working tree, and they sync both ways.

What a change to the sync wire format must keep working with a node that does not know it:
increments, resets and idempotency keys written on either side reach every node, exactly; a
partition between the old node and the new ones heals; a new node restarts among them; every
pull link (old -> new, new -> old, new -> new) completes rounds, so data carried around a
broken link by a third node cannot hide it; and a notice alone (the sync interval is long)
wakes the old node to pull from a new one, and the reverse.

The old node really runs the release: the extracted tree's ``openapi.yaml`` gets a comment
line, and ``GET /openapi.yaml`` (the package's own copy, read when it is asked for) must carry
it on ``a`` and not on ``b`` or ``c``. Without git, or without the commit in the history (a
shallow clone), the tests are skipped, naming what is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from vvstore.client import Client
from vvstore.harness.cluster import SYNC_INTERVAL_S, Cluster
from vvstore.harness.release import ReleaseUnavailable, materialise

pytestmark = pytest.mark.slow

#: Today's release: the commit whose nodes must keep syncing with the working tree's.
RELEASE = "d40bdcc885598a9412d9194d53b4b7ee42ddc48f"
REPO = Path(__file__).resolve().parents[2]
OLD = "a"
NAMES = ("a", "b", "c")
#: Appended to the release's openapi.yaml (a YAML comment): served only by a node running it.
STAMP = f"\n# mixed-version test: the copy of release {RELEASE}\n".encode()
SECRET = b"mixed-version-test-cluster-secret-0123456789"
CONVERGE_S = 10.0
ROUNDS_S = 10.0
POLL_S = 0.05
#: The sync interval of the notice test: a node's next round after a success comes at least
#: 0.8 times this later, so anything that arrives within NOTICE_CONVERGE_S came by a notice.
NOTICE_INTERVAL_S = 60.0
NOTICE_CONVERGE_S = 8.0


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release's source tree (to put on the old node's PYTHONPATH), stamped."""
    try:
        tree = materialise(REPO, RELEASE, tmp_path_factory.mktemp("release"))
    except ReleaseUnavailable as exc:
        pytest.skip(f"the release {RELEASE[:7]} for the mixed-version test is unavailable: {exc}")
    spec = tree / "vvstore" / "openapi.yaml"
    spec.write_bytes(spec.read_bytes() + STAMP)
    return tree


@pytest.fixture
async def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, release: Path
) -> AsyncIterator[Cluster]:
    """a on the release, b and c on the working tree, signed sync; closed after the test."""
    secret = tmp_path / "cluster-secret"
    secret.write_bytes(SECRET)
    interval: float = getattr(request, "param", SYNC_INTERVAL_S)
    nodes = Cluster(
        tmp_path,
        NAMES,
        extra_args=["--cluster-secret-file", str(secret)],
        sync_interval=interval,
        releases={OLD: release},
    )
    try:
        await nodes.start()
        await check_who_runs_what(nodes)
        yield nodes
    finally:
        codes = await nodes.close()
    assert codes == dict.fromkeys(NAMES, 0), codes


async def check_who_runs_what(cluster: Cluster) -> None:
    """The old node serves the release's (stamped) spec, the new ones the working tree's."""
    async with aiohttp.ClientSession() as session:
        for name in cluster.names:
            async with session.get(cluster.url(name) + "/openapi.yaml") as response:
                assert response.status == 200, await response.text()
                spec = await response.read()
            runs_release = spec.endswith(STAMP)
            assert runs_release == (name == OLD), (
                f"node {name} runs {'the release' if runs_release else 'the working tree'}"
                f"\n{cluster.log_tail(name)}"
            )


async def add(
    cluster: Cluster, name: str, key: str, amount: int, *, idem: str | None = None
) -> int:
    async with Client(cluster.client_urls[name], timeout=5) as client:
        return (await client.increment(key, amount, idempotency_key=idem)).value


async def reset(cluster: Cluster, name: str, key: str) -> int:
    async with Client(cluster.client_urls[name], timeout=5) as client:
        return (await client.reset(key)).value


async def converged(
    cluster: Cluster, expected: Mapping[str, int], names: tuple[str, ...] = NAMES
) -> None:
    """Wait until ``names`` converge; each must then read exactly ``expected``."""
    await cluster.wait_converged(CONVERGE_S, names=names)
    for name in names:
        assert await cluster.values(name) == expected, f"node {name}\n{cluster.log_tail(name)}"


async def rounds(cluster: Cluster) -> dict[tuple[str, str], dict[str, Any]]:
    """(node, peer URL) -> what the node's /status says of that pull link."""
    links: dict[tuple[str, str], dict[str, Any]] = {}
    for name in cluster.names:
        status = await cluster.status(name)
        assert status is not None, f"node {name} has no status\n{cluster.log_tail(name)}"
        for peer in status["peers"]:
            links[(name, str(peer["url"]))] = peer
    return links


async def every_link_completes_a_round(
    cluster: Cluster, before: Mapping[tuple[str, str], dict[str, Any]]
) -> None:
    """Poll until every node has completed a pull round with each peer since ``before``.

    Convergence alone would not show it: a node can get the old node's entries through the
    other new node while its own link to the old node fails.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ROUNDS_S
    waiting: dict[tuple[str, str], dict[str, Any]] = {}
    while loop.time() < deadline:
        now = await rounds(cluster)
        assert len(now) == len(NAMES) * (len(NAMES) - 1), now
        waiting = {
            link: peer
            for link, peer in now.items()
            if peer["rounds"] <= before.get(link, {}).get("rounds", 0)
        }
        if not waiting:
            return
        await asyncio.sleep(POLL_S)
    stuck = "\n".join(
        f"{name} pulling from {peer['node'] or url}: last_error {peer['last_error']}"
        for (name, url), peer in waiting.items()
    )
    tails = "\n".join(cluster.log_tail(name) for name in cluster.names)
    raise AssertionError(f"no pull round completed in {ROUNDS_S} s on:\n{stuck}\n{tails}")


async def test_old_and_new_nodes_converge_through_writes_resets_a_restart_and_a_partition(
    cluster: Cluster,
) -> None:
    await every_link_completes_a_round(cluster, {})

    # Increments on every node, and one key written on all three.
    assert await add(cluster, "a", "x", 5) == 5
    await add(cluster, "b", "x", 7)
    await add(cluster, "c", "x", 11)
    await add(cluster, "a", "y", 2)
    await add(cluster, "c", "y", 3)
    await add(cluster, "b", "z", 10)
    await add(cluster, "a", "r", 8)
    # An idempotency key applied on the old node, retried on a new one once it holds the copy:
    # a replay, counted once.
    assert await add(cluster, "a", "k", 6, idem="mixed-k1") == 6
    await converged(cluster, {"x": 23, "y": 5, "z": 10, "r": 8, "k": 6})
    assert await add(cluster, "b", "k", 6, idem="mixed-k1") == 6
    # Resets: the old node cancels a key a new node wrote, a new node one the old node wrote;
    # then each key is written again on the other side.
    assert await reset(cluster, "a", "z") == 0
    assert await reset(cluster, "c", "r") == 0
    await converged(cluster, {"x": 23, "y": 5, "z": 0, "r": 0, "k": 6})
    await add(cluster, "c", "z", 4)
    await add(cluster, "a", "r", 1)
    expected = {"x": 23, "y": 5, "z": 4, "r": 1, "k": 6}
    await converged(cluster, expected)

    # A new node restarts (SIGTERM, then the same data directory) and writes at once.
    b = cluster.processes["b"]
    old_pid = b.pid
    assert await b.stop() == 0
    await add(cluster, "a", "x", 1)  # the old node writes while b is down
    await cluster.restart("b")
    assert b.pid != old_pid
    await check_who_runs_what(cluster)
    await add(cluster, "b", "x", 2)
    expected["x"] += 3
    await converged(cluster, expected)

    # The old node alone on one side; both sides write, reset, and apply the same
    # idempotency key (a retry elsewhere that the partition hides).
    cluster.partition(["a"], ["b", "c"])
    await add(cluster, "a", "x", 100)
    assert await reset(cluster, "a", "y") == 0  # cancels the 5 it has seen, not c's +1 below
    assert await add(cluster, "a", "k2", 4, idem="mixed-k2") == 4
    await add(cluster, "a", "p", 1)
    await add(cluster, "b", "x", 20)
    await add(cluster, "c", "y", 1)
    assert await add(cluster, "c", "k2", 4, idem="mixed-k2") == 4
    await add(cluster, "c", "q", 9)
    assert await reset(cluster, "b", "z") == 0
    await converged(cluster, {**expected, "x": 46, "y": 6, "z": 0, "k2": 4, "q": 9}, ("b", "c"))
    assert await cluster.values("a") == {**expected, "x": 126, "y": 0, "k2": 4, "p": 1}

    before_heal = await rounds(cluster)
    cluster.heal()
    expected.update(x=146, y=1, z=0, k2=4, p=1, q=9)
    await converged(cluster, expected)
    await every_link_completes_a_round(cluster, before_heal)
    # The duplicate copy of mixed-k2 was compensated: both copies are known, counted once.
    assert await add(cluster, "b", "k2", 4, idem="mixed-k2") == 4
    await converged(cluster, expected)
    # With the old node among them, the new nodes kept the release's rule: a compensating
    # write, no duplicate set.
    for name in ("b", "c"):
        assert await exactly_once(cluster, name) == {"rule": "compensation", "duplicate_sets": 0}
    assert await sibling_values(cluster, "b", "k2") == [0, 4]

    # The old node is upgraded (stopped, started on the working tree with the same directory):
    # every link now speaks format 3, and duplicate sets rule on every node; the values stay.
    assert await cluster.processes[OLD].stop() == 0
    cluster.processes[OLD].pythonpath = None
    await cluster.restart(OLD)
    # Its first write's notice tells the others it speaks format 3 now.
    await add(cluster, OLD, "x", 1)
    expected["x"] += 1
    await poll(lambda: all_rule(cluster, "duplicate sets"), "every node to switch to sets")
    await converged(cluster, expected)
    # A new duplicate, now on the old node's side: excluded, not compensated.
    cluster.partition(["a"], ["b", "c"])
    assert await add(cluster, "a", "k3", 6, idem="mixed-k3") == 6
    assert await add(cluster, "b", "k3", 6, idem="mixed-k3") == 6
    cluster.heal()
    expected["k3"] = 6
    await converged(cluster, expected)
    await poll(lambda: all_have_a_set(cluster), "the duplicate set to reach every node")
    assert await sibling_values(cluster, "c", "k3") == [0, 6]  # one copy excluded


async def sibling_values(cluster: Cluster, name: str, key: str) -> list[int]:
    async with Client(cluster.client_urls[name], timeout=5) as client:
        return sorted(s.value for s in (await client.get(key)).siblings)


async def exactly_once(cluster: Cluster, name: str) -> dict[str, Any]:
    status = await cluster.status(name)
    assert status is not None, cluster.log_tail(name)
    return dict(status["exactly_once"])


async def all_rule(cluster: Cluster, rule: str) -> bool:
    return [(await exactly_once(cluster, n))["rule"] for n in NAMES] == [rule] * len(NAMES)


async def all_have_a_set(cluster: Cluster) -> bool:
    return min([(await exactly_once(cluster, n))["duplicate_sets"] for n in NAMES]) >= 1


async def poll(check: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONVERGE_S
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("cluster", [NOTICE_INTERVAL_S], indirect=True)
async def test_a_notice_wakes_old_and_new_nodes_alike(cluster: Cluster) -> None:
    # Every link has had its first round (at start); the next is NOTICE_INTERVAL_S away.
    await every_link_completes_a_round(cluster, {})
    loop = asyncio.get_running_loop()
    began = loop.time()
    # b and c hear of a's write from the old node; then a (and c) of b's, a (and b) of c's.
    for writer, key, amount in (("a", "from-old", 3), ("b", "from-new", 4), ("c", "from-new", 5)):
        await add(cluster, writer, key, amount)
        try:
            await cluster.wait_converged(NOTICE_CONVERGE_S)
        except TimeoutError as exc:
            raise AssertionError(
                f"a write on {writer} did not reach every node within {NOTICE_CONVERGE_S} s: "
                f"its notice did not wake a peer to pull (notice failures are logged at DEBUG "
                f"only)\n{exc}"
            ) from None
    assert loop.time() - began < 0.8 * NOTICE_INTERVAL_S  # no scheduled round took part
    for name in NAMES:
        assert await cluster.values(name) == {"from-old": 3, "from-new": 9}, name
