"""Real processes: node B redeployed with a wiped data directory many times while A stays.

Each cycle stops B (SIGTERM), wipes its data directory and starts it again with the same node
id, so every start is a new actor; B and A then write. Afterwards the two nodes must hold the
same vector and the same values in both directions, B's earlier actors must be retired on both
(same count, same retirement map: its digest is checked against the finals in the vector), and
idle sync traffic must cost no more bytes per round than before the churn: retired actors held
in full are not on the wire.

The default run churns 10 times. The soak version churns 300 times and prints its figures
(churn wall time, idle bytes per round before and after, actors in the vector and live ones)::

    python -m pytest -m soak tests/cluster/test_churn.py -s
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from vvstore.client import Client
from vvstore.harness.cluster import Cluster
from vvstore.retirement import Retirements
from vvstore.wire import FORMAT_VERSION

pytestmark = pytest.mark.slow

T = TypeVar("T")

NAMES = ("A", "B")
SYNC_INTERVAL_S = 0.2
BACKOFF_CAP_S = 0.5
CLIENT_TIMEOUT_S = 5.0
POLL_S = 0.05
# How long a write of B's may take to reach A, and the cluster to agree after the churn.
HELD_TIMEOUT_S = 20.0
CONVERGE_TIMEOUT_S = 60.0
# Successful pull rounds to let pass before measuring (each link adopts the agreed retirement
# map), and rounds per measuring window.
SETTLE_ROUNDS = 2
IDLE_ROUNDS = 8
ROUNDS_TIMEOUT_S = 20.0
# How many more bytes an idle round may carry after the churn than before it (a longer seq, the
# digest of a non-empty map): far less than one actor id per retired actor.
IDLE_SLACK_BYTES = 200


def logs(cluster: Cluster) -> str:
    return "\n".join(cluster.log_tail(name) for name in cluster.names)


async def poll(
    cluster: Cluster, what: str, check: Callable[[], Awaitable[T | None]], timeout: float
) -> T:
    """Poll ``check`` until it returns something; fail naming ``what`` with both nodes' logs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = await check()
        if found is not None:
            return found
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"{what}: not after {timeout} s\n{logs(cluster)}")


async def status(cluster: Cluster, name: str) -> dict[str, Any]:
    async def answer() -> dict[str, Any] | None:
        return await cluster.status(name)

    return await poll(cluster, f"node {name} answers /status", answer, CLIENT_TIMEOUT_S)


@dataclass(frozen=True, slots=True)
class LinkCounters:
    """A node's one peer link: bytes received in sync responses, successful pull rounds."""

    pulled_bytes: int
    rounds: int


async def link_counters(cluster: Cluster, name: str) -> LinkCounters | None:
    answer = await cluster.status(name)
    if answer is None:
        return None
    (peer,) = answer["peers"]
    assert peer["format_version"] == FORMAT_VERSION, peer
    return LinkCounters(int(peer["pulled_bytes"]), int(peer["rounds"]))


async def rounds_pass(
    cluster: Cluster, name: str, rounds: int
) -> tuple[LinkCounters, LinkCounters]:
    """The link counters of ``name`` now and once at least ``rounds`` more rounds completed."""

    async def now() -> LinkCounters | None:
        return await link_counters(cluster, name)

    first = await poll(cluster, f"{name}'s peer link", now, CLIENT_TIMEOUT_S)

    async def later() -> LinkCounters | None:
        counters = await link_counters(cluster, name)
        if counters is None or counters.rounds - first.rounds < rounds:
            return None
        return counters

    what = f"{rounds} pull rounds of {name}"
    return first, await poll(cluster, what, later, ROUNDS_TIMEOUT_S)


async def idle_bytes_per_round(cluster: Cluster) -> dict[str, float]:
    """Each node's bytes received per pull round with nobody writing, after a settling pause."""

    async def one(name: str) -> float:
        await rounds_pass(cluster, name, SETTLE_ROUNDS)
        first, last = await rounds_pass(cluster, name, IDLE_ROUNDS)
        assert last.rounds - first.rounds >= 3
        return (last.pulled_bytes - first.pulled_bytes) / (last.rounds - first.rounds)

    per_round = await asyncio.gather(*(one(name) for name in NAMES))
    return dict(zip(NAMES, per_round, strict=True))


async def held_by(cluster: Cluster, name: str, actor: str, seq: int) -> None:
    """Wait until ``name``'s vector holds ``actor`` up to ``seq``."""

    async def holds() -> bool | None:
        answer = await cluster.status(name)
        return True if answer is not None and answer["version"].get(actor, 0) >= seq else None

    await poll(cluster, f"{name} holds {actor} up to seq {seq}", holds, HELD_TIMEOUT_S)


async def write_on_b(cluster: Cluster, key: str) -> tuple[str, int]:
    """Increment "k" and ``key`` on B; the actor that wrote them and its seq after both."""
    async with Client(cluster.url("B"), timeout=CLIENT_TIMEOUT_S) as client:
        total = await client.increment("k")
        own = await client.increment(key)
    (actor,) = own.version  # a key only this write touched: one actor, the writer
    return actor, max(total.version[actor], own.version[actor])


async def retirements_agree(cluster: Cluster, retired: int) -> list[dict[str, Any]] | None:
    """Both statuses once both report ``retired`` retired actors under one digest, else None."""
    answers = await asyncio.gather(*(cluster.status(name) for name in NAMES))
    if any(answer is None for answer in answers):
        return None
    statuses = [answer for answer in answers if answer is not None]
    actors = [answer["actors"] for answer in statuses]
    if any(a["retired"] != retired for a in actors):
        return None
    if actors[0]["retired_digest"] != actors[1]["retired_digest"]:
        return None
    return statuses


async def churn(tmp_path: Path, cycles: int, budget: float) -> None:
    """Write on both nodes, churn B ``cycles`` times (within ``budget`` seconds), and check."""
    cluster = Cluster(
        tmp_path,
        NAMES,
        "normal",
        client_links=False,
        sync_interval=SYNC_INTERVAL_S,
        backoff_cap=BACKOFF_CAP_S,
    )
    loop = asyncio.get_running_loop()
    try:
        await cluster.start()
        async with Client(cluster.url("A"), timeout=CLIENT_TIMEOUT_S) as a:
            await a.increment("k")
            async with Client(cluster.url("B"), timeout=CLIENT_TIMEOUT_S) as b:
                first = await b.increment("k")
            b_actors = [(await status(cluster, "B"))["actor"]]
            assert first.version.get(b_actors[0]) == 1, first
            await cluster.wait_converged(CONVERGE_TIMEOUT_S)
            before = await idle_bytes_per_round(cluster)

            began = loop.time()
            for i in range(cycles):
                spent = loop.time() - began
                assert spent < budget, f"only {i} of {cycles} cycles in {spent:.0f} s"
                assert await cluster.processes["B"].stop() == 0, logs(cluster)
                cluster.replace_data("B", None)
                started = (await cluster.restart("B"))["actor"]
                assert started.startswith("B~"), started
                assert started not in b_actors, f"cycle {i}: B started as {started} again"
                actor, seq = await write_on_b(cluster, f"b{i}")
                assert actor == started, f"cycle {i}: B started as {started}, wrote as {actor}"
                b_actors.append(actor)
                await a.increment("k")
                # B's writes must be on A before B's directory is wiped again.
                await held_by(cluster, "A", actor, seq)
            took = loop.time() - began

        await cluster.wait_converged(CONVERGE_TIMEOUT_S)
        values = await cluster.values("A")
        assert values is not None
        assert values == await cluster.values("B")
        assert values["k"] == 2 * cycles + 2
        assert sum(values[f"b{i}"] for i in range(cycles)) == cycles
        assert set(values) == {"k", *(f"b{i}" for i in range(cycles))}

        retired = len(b_actors) - 1  # every incarnation of B wrote; the last one is live

        async def agreed() -> list[dict[str, Any]] | None:
            return await retirements_agree(cluster, retired)

        what = f"both nodes report {retired} retired actors under one digest"
        statuses = await poll(cluster, what, agreed, CONVERGE_TIMEOUT_S)
        version = statuses[0]["version"]
        assert statuses[1]["version"] == version
        assert set(version) == {statuses[0]["actor"], *b_actors}
        assert statuses[1]["actor"] == b_actors[-1]
        finals = Retirements({actor: version[actor] for actor in b_actors[:-1]})
        for answer in statuses:
            assert answer["actors"] == {
                "live": 2,
                "retired": retired,
                "retired_digest": finals.digest,
            }, answer["actors"]

        after = await idle_bytes_per_round(cluster)
        print(
            f"\n{cycles} wiped restarts of B in {took:.1f} s ({took / cycles:.2f} s per cycle)"
            f"\nidle bytes per pull round, before -> after: "
            + ", ".join(f"{n} {before[n]:.0f} -> {after[n]:.0f}" for n in NAMES)
            + f"\nactors: {len(version)} in the vector, "
            f"{statuses[0]['actors']['live']} live, {retired} retired"
        )
        for name in NAMES:
            assert after[name] <= before[name] + IDLE_SLACK_BYTES, (name, before, after)
    finally:
        codes = await cluster.close()
    assert codes == {"A": 0, "B": 0}, codes


async def test_wiped_restarts_then_sync_both_ways(tmp_path: Path) -> None:
    await churn(tmp_path, cycles=10, budget=60)


@pytest.mark.soak
async def test_many_wiped_restarts_then_sync_both_ways(tmp_path: Path) -> None:
    await churn(tmp_path, cycles=300, budget=1200)
