"""Probes: increments on keys of their own, replayed once on another node, verified one by one.

The workload runs here against one in-process node behind two names, so that every deliberate
replay "on another node" reaches a node that already holds the idempotency key and must answer
with a replay; the real-process short tier runs probes under every nemesis.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from vvstore.api import create_app
from vvstore.codec import MAX_KEY_BYTES, decode_key, validate_key
from vvstore.harness.checker import History, check_faults
from vvstore.harness.faults.run import RunOptions
from vvstore.harness.faults.workload import (
    KEY_ALPHABETS,
    Workload,
    WorkloadOptions,
    probe_key,
)
from vvstore.node import Node

SECONDS = 1.0
DEADLINE_S = 10.0


@pytest.mark.parametrize("alphabet", KEY_ALPHABETS)
def test_probe_keys_are_valid_and_apart_from_the_shared_keys(alphabet: str) -> None:
    ik = "s2147483647-c63-999999"  # as long as the workload's idempotency keys get
    key = probe_key(ik, alphabet)
    assert validate_key(key) == key
    assert decode_key(quote(key, safe="")) == key
    assert len(key.encode("utf-8")) < MAX_KEY_BYTES
    assert key.isascii() == (alphabet == "ascii")
    assert key not in WorkloadOptions(keys=1000, key_alphabet=alphabet).key_names()
    assert probe_key("s1-c0-1", alphabet) != probe_key("s1-c0-10", alphabet)


def test_probe_share_is_validated_and_recorded_in_the_run_options() -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="probe_share"):
            WorkloadOptions(probe_share=bad)
    options = RunOptions(workload=WorkloadOptions(probe_share=0.5))
    assert options.to_dict()["workload"]["probe_share"] == 0.5
    assert RunOptions.from_dict(options.to_dict()) == options
    # A document written before probes existed loads with the default share.
    older = options.to_dict()
    del older["workload"]["probe_share"]
    assert RunOptions.from_dict(older).workload.probe_share == 0.25


@pytest.fixture
async def url(aiohttp_client: AiohttpClient, node: Node) -> str:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(node))
    return str(client.make_url("")).rstrip("/")


async def _run(url: str, options: WorkloadOptions) -> Workload:
    history = History()
    loop = asyncio.get_running_loop()
    start = loop.time()
    workload = Workload(7, options, history, {"A": url, "B": url}, lambda: loop.time() - start)
    await asyncio.wait_for(workload.run(SECONDS), DEADLINE_S)
    return workload


@pytest.mark.parametrize("alphabet", KEY_ALPHABETS)
async def test_every_probe_is_replayed_on_another_node_and_counted_once(
    url: str, node: Node, alphabet: str
) -> None:
    options = WorkloadOptions(
        clients=2, rate=40.0, read_ratio=0.0, probe_share=1.0, key_alphabet=alphabet
    )
    workload = await _run(url, options)
    adds = [op for op in workload.history.ops if op.f == "add" and op.type == "invoke"]
    by_ik: dict[str, list[tuple[str, str]]] = {}
    for op in adds:
        assert op.idempotency_key is not None
        by_ik.setdefault(op.idempotency_key, []).append((op.key, op.node))

    assert workload.probes == len(by_ik) >= 10
    for ik, attempts in by_ik.items():
        assert {key for key, _ in attempts} == {probe_key(ik, alphabet)}
        assert len(attempts) >= 2 and attempts[-1][1] != attempts[-2][1]  # the replay moved
    # One store behind both names: every replay finds the key applied already.
    assert workload.probe_replays == Counter({"replayed": len(by_ik)})
    keys = [probe_key(ik, alphabet) for ik in by_ik]
    values = {key: (await node.read(key)).value() for key in keys}
    verdict = check_faults(workload.history.ops, {"A": values})
    assert verdict.valid, verdict.errors
    assert verdict.verified_individually == len(by_ik)


async def test_without_probes_every_increment_goes_to_the_shared_keys(url: str) -> None:
    options = WorkloadOptions(clients=2, rate=40.0, read_ratio=0.0, probe_share=0.0)
    workload = await _run(url, options)
    keys = {op.key for op in workload.history.ops if op.f == "add"}
    assert keys and keys <= set(options.key_names())
    assert workload.probes == 0 and not workload.probe_replays
