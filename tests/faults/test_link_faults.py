"""Link faults and non-ASCII keys without node processes: proxy policies, composition, keys."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from vvstore.codec import MAX_KEY_BYTES, decode_key, validate_key
from vvstore.errors import InvalidRequest
from vvstore.harness.checker import History
from vvstore.harness.cluster import CLIENT
from vvstore.harness.faults.nemesis import Nemesis, Network
from vvstore.harness.faults.schedule import Fault, Schedule, link_options
from vvstore.harness.faults.workload import WorkloadOptions, unicode_key_names
from vvstore.harness.proxy import FaultProxy, Policy

DEADLINE_S = 5.0
SLOW = Policy("delay", 0.04, 250_000.0)


def test_unicode_keys_are_valid_distinct_and_reach_the_limit() -> None:
    keys = WorkloadOptions(keys=12, key_alphabet="unicode").key_names()
    assert keys == unicode_key_names(12)
    assert len(set(keys)) == 12
    assert not any(key.isascii() for key in keys)
    for key in keys:
        assert validate_key(key) == key
        assert decode_key(quote(key, safe="")) == key  # as the workload's URLs carry it
    sizes = [len(key.encode("utf-8")) for key in keys]
    at_limit = [key for key, size in zip(keys, sizes, strict=True) if size == MAX_KEY_BYTES]
    assert len(at_limit) == 3  # keys 0, 5 and 10
    assert all(len(ch.encode("utf-8")) == 4 for key in at_limit for ch in key)
    # One more four-byte character is over the limit the server measures.
    with pytest.raises(InvalidRequest, match=f"1 to {MAX_KEY_BYTES} bytes"):
        validate_key(at_limit[0] + "\U0001f34e")
    # The same letter precomposed and decomposed: two keys, and nothing may merge them.
    assert keys[1] == "cl\u00e9-000" and keys[2] == "cle\u0301-000"
    assert any(" " in key and "/" in key for key in keys)


def test_ascii_keys_stay_the_default() -> None:
    assert WorkloadOptions().key_names()[:2] == ["k000", "k001"]
    with pytest.raises(ValueError, match="key_alphabet"):
        WorkloadOptions(key_alphabet="latin-1")


class FakeProxy:
    def __init__(self) -> None:
        self.policies: dict[tuple[str, str], Policy] = {}

    def set_direction(
        self,
        a: str,
        b: str,
        mode: str,
        delay: float = 0.0,
        bandwidth: float = 0.0,
        *,
        loss: float = 0.0,
    ) -> None:
        policy = Policy(mode, delay, bandwidth, loss)  # type: ignore[arg-type]
        if policy == Policy():
            self.policies.pop((a, b), None)
        else:
            self.policies[(a, b)] = policy


def test_slow_and_lossy_compose_and_a_cut_wins() -> None:
    proxy = FakeProxy()
    network = Network(proxy)  # type: ignore[arg-type]
    slow = network.add({("A", "B"): SLOW})
    lossy = network.add(
        {("A", "B"): Policy("pass", loss=0.1), ("B", "A"): Policy("pass", loss=0.1)}
    )
    assert proxy.policies == {
        ("A", "B"): Policy("delay", 0.04, 250_000.0, 0.1),
        ("B", "A"): Policy("pass", loss=0.1),
    }
    narrower = network.add({("A", "B"): Policy("pass", bandwidth=100_000.0)})
    assert proxy.policies[("A", "B")] == Policy("delay", 0.04, 100_000.0, 0.1)
    cut = network.add({("A", "B"): "drop"})
    assert proxy.policies[("A", "B")] == Policy("drop")
    network.remove(cut)
    network.remove(narrower)
    network.remove(lossy)
    assert proxy.policies == {("A", "B"): SLOW}  # one ending never heals another
    network.remove(slow)
    assert proxy.policies == {}


async def test_the_nemesis_slows_and_degrades_links_then_heals_them() -> None:
    async with FaultProxy() as proxy:
        cluster = SimpleNamespace(names=("A", "B", "C"), proxy=proxy)
        loop = asyncio.get_running_loop()
        nemesis = Nemesis(cluster, None, History(), loop.time)  # type: ignore[arg-type]
        options = link_options()
        schedule = Schedule(
            5,
            options,
            (
                Fault(0.0, "slow", 0.3, ("A",)),
                Fault(0.4, "slow_one_way", 0.3, ("B", "C")),
                Fault(0.8, "lossy", 0.3, ("C",)),
            ),
        )
        began = loop.time()
        run = asyncio.create_task(nemesis.run(schedule, began, began + 10.0))
        seen: list[dict[tuple[str, str], Policy]] = []
        deadline = began + DEADLINE_S
        while not run.done() and loop.time() < deadline:
            if proxy.policies() and proxy.policies() not in seen:
                seen.append(proxy.policies())
            await asyncio.sleep(0.01)
        await asyncio.wait_for(run, DEADLINE_S)

    assert seen[0] == {d: SLOW for d in _links_of("A")}
    assert seen[1] == {("B", "C"): SLOW}
    assert seen[2] == {d: Policy("pass", loss=options.loss) for d in _links_of("C")}
    assert len(seen) == 3
    assert proxy.policies() == {}
    assert [e.what for e in nemesis.events if e.kind == "lossy"] == ["start", "end", "losses"]
    assert nemesis.problems == []


def _links_of(node: str) -> set[tuple[str, str]]:
    others = [n for n in ("A", "B", "C", CLIENT) if n != node]
    return {d for o in others for d in ((node, o), (o, node))}
