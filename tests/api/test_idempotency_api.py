"""Idempotency keys through the HTTP API of one node."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from vvstore.api import create_app
from vvstore.node import Node
from vvstore.store import DB_FILE

Client = TestClient[Any, Any]


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, node: Node) -> Client:
    return await aiohttp_client(create_app(node))


async def post(
    client: Client, key: str, amount: int | None, idem: str | None
) -> tuple[int, dict[str, Any], bool]:
    headers = {"Idempotency-Key": idem} if idem is not None else {}
    body = {} if amount is None else {"amount": amount}
    response = await client.post(f"/counters/{key}", json=body, headers=headers)
    replayed = response.headers.get("Idempotent-Replayed") == "true"
    return response.status, await response.json(), replayed


async def test_a_retry_returns_the_original_reply_and_applies_nothing(client: Client) -> None:
    first = await post(client, "k", 5, "abc")
    await post(client, "k", 1, None)
    again = await post(client, "k", 5, "abc")
    quoted = await post(client, "k", 5, '"abc"')
    assert first == (200, {"key": "k", "value": 5, "version": first[1]["version"]}, False)
    assert again == (200, first[1], True)
    assert quoted == (200, first[1], True)
    assert (await (await client.get("/counters/k")).json())["value"] == 6


async def test_fifty_concurrent_requests_with_one_key_apply_once(client: Client) -> None:
    replies = await asyncio.gather(*(post(client, "hot", 3, "same-key") for _ in range(50)))
    assert {(status, str(body)) for status, body, _ in replies} == {
        (200, str(replies[0][1]))
    }  # 50 identical replies
    assert sum(not replayed for _, _, replayed in replies) == 1
    assert (await (await client.get("/counters/hot")).json())["value"] == 3


async def test_a_key_reused_for_another_request_is_refused(client: Client) -> None:
    await post(client, "k", 5, "abc")
    for key, amount in (("k", 6), ("other", 5)):
        status, body, _ = await post(client, key, amount, "abc")
        assert status == 422 and body["error"]["code"] == "idempotency_key_reused"
    assert (await (await client.get("/counters/other")).json())["value"] == 0


@pytest.mark.parametrize("bad", ["", "x" * 129, "caf\u00e9", "tab\there", '""'])
async def test_invalid_idempotency_keys_are_refused(client: Client, bad: str) -> None:
    response = await client.post(
        "/counters/k", json={"amount": 1}, headers={"Idempotency-Key": bad}
    )
    assert response.status == 400, await response.text()
    assert (await (await client.get("/counters/k")).json())["value"] == 0


async def test_a_reset_with_a_key_is_applied_once(client: Client) -> None:
    await post(client, "k", 5, None)
    first = await client.delete("/counters/k", headers={"Idempotency-Key": "r1"})
    await post(client, "k", 2, None)
    again = await client.delete("/counters/k", headers={"Idempotency-Key": "r1"})
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert await again.json() == await first.json()
    assert (await (await client.get("/counters/k")).json())["value"] == 2


async def test_batches_refuse_a_repeated_key_and_mix_replays_with_new_items(
    client: Client,
) -> None:
    items = [{"key": "a", "amount": 1, "idempotency_key": "x"}] * 2
    response = await client.post("/batch", json={"increments": items})
    assert response.status == 400
    assert (await (await client.get("/counters/a")).json())["value"] == 0
    await post(client, "a", 1, "one")
    response = await client.post(
        "/batch",
        json={
            "increments": [
                {"key": "a", "amount": 1, "idempotency_key": "one"},
                {"key": "b", "amount": 2, "idempotency_key": "two"},
            ]
        },
    )
    assert response.status == 200
    results = (await response.json())["results"]
    assert [r["value"] for r in results] == [1, 2]
    assert (await (await client.get("/counters/a")).json())["value"] == 1


async def test_records_and_their_age_show_in_status(client: Client) -> None:
    await post(client, "k", 1, "one")
    await post(client, "k", 1, "two")
    status = await (await client.get("/status")).json()
    assert status["records"] == 2
    assert status["oldest_record_age"] >= 0
    assert status["idempotency_unsafe_evictions"] == 0


@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_a_reply_an_earlier_release_stored_as_its_body_replays_byte_for_byte(
    client: Client, node: Node, method: str
) -> None:
    """Records written before replies were kept in the codec's storage encoding hold the reply's
    JSON body itself (a reset's siblings naming only ``node``): a retry answers those bytes."""
    await post(client, "k", 4, None)
    headers = {"Idempotency-Key": "old"}
    body = b'{"amount": 5}' if method == "POST" else b""
    async with client.request(method, "/counters/k", data=body, headers=headers) as response:
        assert response.status == 200
        reply = await response.json()
    if "siblings" in reply:
        reply["siblings"] = [
            {"node": s["node"], "seq": s["seq"], "value": s["value"]} for s in reply["siblings"]
        ]
    stored = json.dumps(reply, separators=(",", ":"))
    with contextlib.closing(sqlite3.connect(Path(node.config.data_dir) / DB_FILE)) as db, db:
        assert db.execute("UPDATE records SET reply = ?", (stored,)).rowcount == 1
    await post(client, "k", 2, None)  # the counter moves on; the replay must not show it
    async with client.request(method, "/counters/k", data=body, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Idempotent-Replayed"] == "true"
        assert await response.read() == stored.encode()
