"""The public HTTP API of one node, end to end through aiohttp: shapes, keys, limits, errors.

Every test builds the app over the conftest ``node`` with ``aiohttp_client(create_app(node))``.
Bad input must get a 4xx with a JSON error body and change nothing, so those tests compare the
key's state, the node's status version and the key listing before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpClient
from yarl import URL

from vvstore import errors
from vvstore.api import BATCH_BODY_LIMIT, COUNTER_BODY_LIMIT, create_app, error_response
from vvstore.config import NodeConfig
from vvstore.node import Node
from vvstore.retirement import EMPTY
from vvstore.store import DB_FILE

ApiClient = TestClient[web.Request, web.Application]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


# --- helpers ---------------------------------------------------------------------------------


def raw(path: str) -> URL:
    """A request URL taken exactly as written (aiohttp must not re-encode it)."""
    return URL(path, encoded=True)


def counter_url(key: str) -> URL:
    """The URL of ``key``'s counter, with the key percent-encoded in full."""
    return raw("/counters/" + quote(key, safe=""))


async def call(
    client: ApiClient,
    method: str,
    url: URL | str,
    *,
    body: Any = None,
    data: bytes | None = None,
) -> tuple[int, Any]:
    """Send one request (``body`` as JSON or ``data`` as raw bytes); return status and JSON."""
    if body is not None:
        data = json.dumps(body).encode()
    # aiohttp warns about raw bytes over 1 MiB; a BytesIO sends the same bytes, sized.
    payload: bytes | io.BytesIO | None = data
    if data is not None and len(data) > 1 << 20:
        payload = io.BytesIO(data)
    async with client.request(method, url, data=payload) as response:
        payload = await response.read()
        assert response.content_type == "application/json", (response.status, payload[:200])
        return response.status, json.loads(payload)


def assert_error(status: int, body: Any, expected_status: int, code: str | None = None) -> None:
    """``body`` is exactly ``{"error": {"code": str, "message": non-empty str}}``."""
    assert status == expected_status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}, body
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body
    if code is not None:
        assert error["code"] == code, body


async def get_counter(client: ApiClient, key: str) -> dict[str, Any]:
    status, body = await call(client, "GET", counter_url(key))
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def incr(client: ApiClient, key: str, amount: int = 1) -> dict[str, Any]:
    status, body = await call(client, "POST", counter_url(key), body={"amount": amount})
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def node_version(client: ApiClient) -> dict[str, int]:
    status, body = await call(client, "GET", "/status")
    assert status == 200, body
    version: dict[str, int] = body["version"]
    return version


async def list_all(client: ApiClient, **params: str) -> list[dict[str, Any]]:
    """Every ``{"key", "value"}`` of the listing, following ``next`` cursors."""
    out: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        query = dict(params)
        if after is not None:
            query["after"] = after
        status, body = await call(client, "GET", URL("/counters").with_query(query))
        assert status == 200, body
        out += body["counters"]
        after = body["next"]
        if after is None:
            return out


async def snapshot(client: ApiClient, *keys: str) -> tuple[Any, ...]:
    """Everything a refused request must leave alone: the keys, the node vector, the listing."""
    return (
        [await get_counter(client, key) for key in keys],
        await node_version(client),
        await list_all(client),
    )


async def assert_refused(
    client: ApiClient,
    method: str,
    url: URL | str,
    data: bytes | None,
    expected_status: int,
    code: str | None = None,
    *,
    keys: tuple[str, ...] = ("k",),
) -> None:
    """The request gets ``expected_status`` with a JSON error and changes nothing."""
    before = await snapshot(client, *keys)
    status, body = await call(client, method, url, data=data)
    assert_error(status, body, expected_status, code)
    assert await snapshot(client, *keys) == before


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, node: Node) -> ApiClient:
    return await aiohttp_client(create_app(node))


@pytest.fixture
async def primed(client: ApiClient) -> ApiClient:
    """A client whose node holds ``k`` = 7, so an accidental write would show."""
    await incr(client, "k", 7)
    return client


# --- health and status -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_an_empty_key_is_named_as_such(client: ApiClient, method: str) -> None:
    status, body = await call(client, method, "/counters/")
    assert status == 400, body
    assert body["error"]["code"] == "invalid_request"
    assert "the counter key is empty" in body["error"]["message"]


async def test_health(client: ApiClient, node: Node) -> None:
    assert await call(client, "GET", "/health") == (200, {"status": "ok", "node": node.node_id})


async def test_status_shape(client: ApiClient, node: Node) -> None:
    status, body = await call(client, "GET", "/status")
    assert status == 200
    assert body["pid"] == os.getpid()  # the node runs in this test's process
    assert set(body) == {
        "node",
        "pid",
        "actor",
        "incarnation",
        "version",
        "actors",
        "peers",
        "clock_skew",
        "peer_secrets",
        "previous_token_uses",
        "records",
        "oldest_record_age",
        "idempotency_unsafe_evictions",
        "exactly_once",
    }
    assert body["node"] == node.node_id
    # No peers to wait for: duplicate sets rule from the start.
    assert body["exactly_once"] == {"rule": "duplicate sets", "duplicate_sets": 0}
    assert (body["records"], body["oldest_record_age"]) == (0, None)
    assert body["idempotency_unsafe_evictions"] == 0
    assert body["actor"].startswith(f"{node.node_id}~")
    assert body["version"] == {}
    assert body["actors"] == {"live": 0, "retired": 0, "retired_digest": EMPTY.digest}
    assert body["peers"] == []
    await incr(client, "a")
    await incr(client, "b")
    assert await node_version(client) == {body["actor"]: 2}
    assert (await call(client, "GET", "/status"))[1]["actors"]["live"] == 1


# --- increments and reads --------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [None, b"", b"{}", b"  \n", b'{"amount": 1}'],
    ids=["no-body", "empty", "empty-object", "whitespace", "explicit"],
)
async def test_increment_amount_defaults_to_one(client: ApiClient, data: bytes | None) -> None:
    assert (await call(client, "POST", "/counters/k", data=data))[1]["value"] == 1
    status, body = await call(client, "POST", "/counters/k", data=data)
    assert status == 200
    assert body["value"] == 2


async def test_increment_reply_shape_and_decrement(client: ApiClient) -> None:
    actor = (await call(client, "GET", "/status"))[1]["actor"]
    assert await incr(client, "k", 5) == {"key": "k", "value": 5, "version": {actor: 1}}
    assert await incr(client, "k", -8) == {"key": "k", "value": -3, "version": {actor: 2}}
    assert await get_counter(client, "k") == {
        "key": "k",
        "value": -3,
        "version": {actor: 2},
        "siblings": [{"actor": actor, "seq": 2, "value": -3, "node": actor}],
    }


async def test_never_written_key_reads_zero(client: ApiClient) -> None:
    assert await get_counter(client, "ghost") == {
        "key": "ghost",
        "value": 0,
        "version": {},
        "siblings": [],
    }


async def test_zero_amount_is_a_no_op(client: ApiClient) -> None:
    written = await incr(client, "k", 3)
    before = await snapshot(client, "k", "ghost")
    assert await incr(client, "k", 0) == written
    assert await incr(client, "ghost", 0) == {"key": "ghost", "value": 0, "version": {}}
    assert await snapshot(client, "k", "ghost") == before


async def test_int64_bounds_are_accepted(client: ApiClient) -> None:
    assert (await incr(client, "max", INT64_MAX))["value"] == INT64_MAX
    assert (await incr(client, "min", INT64_MIN))["value"] == INT64_MIN


async def test_concurrent_increments_get_distinct_values(client: ApiClient) -> None:
    replies = await asyncio.gather(*(incr(client, "hot") for _ in range(50)))
    assert {reply["value"] for reply in replies} == set(range(1, 51))
    assert (await get_counter(client, "hot"))["value"] == 50


# --- reset -----------------------------------------------------------------------------------


async def test_delete_resets_and_counting_restarts_from_zero(client: ApiClient) -> None:
    await incr(client, "k", 5)
    await incr(client, "other", 2)
    status, body = await call(client, "DELETE", counter_url("k"))
    assert status == 200
    assert set(body) == {"key", "value", "version", "siblings"}
    assert body["key"] == "k"
    assert body["value"] == 0
    assert [s["value"] for s in body["siblings"]] == [0]
    assert await get_counter(client, "k") == body
    assert await list_all(client) == [{"key": "k", "value": 0}, {"key": "other", "value": 2}]
    assert (await incr(client, "k", 2))["value"] == 2
    assert (await incr(client, "k", 1))["value"] == 3
    assert (await get_counter(client, "other"))["value"] == 2


async def test_siblings_name_their_actor_and_still_carry_the_deprecated_node(
    client: ApiClient,
) -> None:
    actor = (await call(client, "GET", "/status"))[1]["actor"]
    await incr(client, "k", 4)
    status, reset = await call(client, "DELETE", counter_url("k"))
    assert status == 200, reset
    for body in (reset, await get_counter(client, "k")):
        assert body["siblings"] == [{"actor": actor, "seq": 2, "value": 0, "node": actor}]


async def test_a_reset_reply_stored_before_the_actor_field_replays_as_stored(
    client: ApiClient, node: Node
) -> None:
    """A data directory of the previous release holds replies whose siblings have only
    ``node``: a retry replays them word for word, not rewritten."""
    await incr(client, "k", 4)
    headers = {"Idempotency-Key": "old-reset"}
    async with client.delete(counter_url("k"), headers=headers) as response:
        assert response.status == 200
        reply = await response.json()
    old = {
        **reply,
        "siblings": [
            {"node": s["actor"], "seq": s["seq"], "value": s["value"]} for s in reply["siblings"]
        ],
    }
    stored = json.dumps(old, separators=(",", ":"))
    with contextlib.closing(sqlite3.connect(Path(node.config.data_dir) / DB_FILE)) as db, db:
        assert db.execute("UPDATE records SET reply = ?", (stored,)).rowcount == 1
    async with client.delete(counter_url("k"), headers=headers) as response:
        assert response.status == 200
        assert response.headers["Idempotent-Replayed"] == "true"
        assert await response.read() == stored.encode()
    assert (await get_counter(client, "k"))["siblings"] == reply["siblings"]


async def test_delete_twice_stays_at_zero(client: ApiClient) -> None:
    await incr(client, "k", 4)
    assert (await call(client, "DELETE", counter_url("k")))[1]["value"] == 0
    assert (await call(client, "DELETE", counter_url("k")))[1]["value"] == 0
    assert (await incr(client, "k", -1))["value"] == -1


async def test_delete_of_never_written_key_writes_nothing(client: ApiClient) -> None:
    await incr(client, "k")
    before = await snapshot(client, "k", "ghost")
    status, body = await call(client, "DELETE", counter_url("ghost"))
    assert status == 200
    assert body == {"key": "ghost", "value": 0, "version": {}, "siblings": []}
    assert await snapshot(client, "k", "ghost") == before


# --- listing ---------------------------------------------------------------------------------


async def test_list_in_key_order(client: ApiClient) -> None:
    for key, amount in [("b", 2), ("a", 1), ("c/x", 3), ("é", 4)]:
        await incr(client, key, amount)
    status, body = await call(client, "GET", "/counters")
    assert status == 200
    assert body == {
        "counters": [
            {"key": "a", "value": 1},
            {"key": "b", "value": 2},
            {"key": "c/x", "value": 3},
            {"key": "é", "value": 4},
        ],
        "next": None,
    }


async def test_list_of_empty_node(client: ApiClient) -> None:
    assert await call(client, "GET", "/counters") == (200, {"counters": [], "next": None})


async def test_paging_walks_every_key_exactly_once(client: ApiClient) -> None:
    keys = [*sorted(f"key-{i:02d}" for i in range(23)), "z", "😀"]
    status, _ = await call(
        client, "POST", "/batch", body={"increments": [{"key": k, "amount": 1} for k in keys]}
    )
    assert status == 200
    for limit in ("1", "2", "7", "25", "1000"):
        seen = await list_all(client, limit=limit)
        assert [c["key"] for c in seen] == keys, limit


async def test_default_limit_is_100(client: ApiClient) -> None:
    keys = [f"k{i:03d}" for i in range(101)]
    await call(client, "POST", "/batch", body={"increments": [{"key": k} for k in keys]})
    status, body = await call(client, "GET", "/counters")
    assert status == 200
    assert [c["key"] for c in body["counters"]] == keys[:100]
    assert body["next"] is not None
    status, rest = await call(client, "GET", URL("/counters").with_query(after=body["next"]))
    assert rest == {"counters": [{"key": "k100", "value": 1}], "next": None}


async def test_prefix_filters_and_pages(client: ApiClient) -> None:
    keys = ["a", "ab", "ab/1", "ab/2", "ab/3", "ac", "b", "ab+", "ab 1"]
    await call(client, "POST", "/batch", body={"increments": [{"key": k} for k in keys]})
    expected = sorted(k for k in keys if k.startswith("ab/"))
    for limit in ("1", "2", "100"):
        assert [c["key"] for c in await list_all(client, prefix="ab/", limit=limit)] == expected
    assert [c["key"] for c in await list_all(client, prefix="ab")] == sorted(
        k for k in keys if k.startswith("ab")
    )
    assert await list_all(client, prefix="zzz") == []


# --- batch -----------------------------------------------------------------------------------


async def test_batch_applies_all_in_item_order(client: ApiClient) -> None:
    await incr(client, "b", 10)
    items = [
        {"key": "a", "amount": 2},
        {"key": "b", "amount": -1},
        {"key": "a", "amount": 3},
        {"key": "c"},
        {"key": "a", "amount": 1},
    ]
    status, body = await call(client, "POST", "/batch", body={"increments": items})
    assert status == 200
    results = body["results"]
    assert [(r["key"], r["value"]) for r in results] == [
        ("a", 2),
        ("b", 9),
        ("a", 5),
        ("c", 1),
        ("a", 6),
    ]
    assert all(set(r) == {"key", "value", "version"} for r in results)
    a_seqs = [next(iter(r["version"].values())) for r in results if r["key"] == "a"]
    assert a_seqs == sorted(a_seqs) and len(set(a_seqs)) == 3
    assert [(await get_counter(client, k))["value"] for k in "abc"] == [6, 9, 1]


async def test_batch_with_an_overflowing_item_applies_nothing(primed: ApiClient) -> None:
    client = primed
    await incr(client, "big", INT64_MAX)
    body = {
        "increments": [
            {"key": "k", "amount": 1},
            {"key": "fresh", "amount": 5},
            {"key": "big", "amount": 1},
        ]
    }
    await assert_refused(
        client,
        "POST",
        "/batch",
        json.dumps(body).encode(),
        422,
        "overflow",
        keys=("k", "fresh", "big"),
    )


async def test_batch_of_1000_items_is_accepted(client: ApiClient) -> None:
    items = [{"key": f"k{i % 10}", "amount": 1} for i in range(1000)]
    status, body = await call(client, "POST", "/batch", body={"increments": items})
    assert status == 200
    assert len(body["results"]) == 1000
    assert [(await get_counter(client, f"k{i}"))["value"] for i in range(10)] == [100] * 10


# --- keys ------------------------------------------------------------------------------------

ODD_KEYS = [
    "a/b",
    "a%2Fb",
    "a%25b",
    "%",
    "a+b",
    "a%2Bb",
    "a b",
    "é",
    "😀",
    "/",
    "?x=1",
    "#frag",
    "...",
    " ",
    "é" * 128,  # 256 bytes of UTF-8
]


async def test_odd_keys_round_trip_as_separate_counters(client: ApiClient) -> None:
    for i, key in enumerate(ODD_KEYS, start=1):
        assert await incr(client, key, i) == {
            "key": key,
            "value": i,
            "version": (await incr(client, key, 0))["version"],
        }
    for i, key in enumerate(ODD_KEYS, start=1):
        body = await get_counter(client, key)
        assert (body["key"], body["value"]) == (key, i)
    listed = {c["key"]: c["value"] for c in await list_all(client)}
    assert listed == {key: i for i, key in enumerate(ODD_KEYS, start=1)}
    for i, key in enumerate(ODD_KEYS, start=1):
        status, body = await call(client, "DELETE", counter_url(key))
        assert (status, body["key"], body["value"]) == (200, key, 0), i


async def test_batch_keys_are_the_same_counters_as_url_keys(client: ApiClient) -> None:
    items = [{"key": key, "amount": i} for i, key in enumerate(ODD_KEYS, start=1)]
    status, body = await call(client, "POST", "/batch", body={"increments": items})
    assert status == 200
    assert [r["key"] for r in body["results"]] == ODD_KEYS
    for i, key in enumerate(ODD_KEYS, start=1):
        assert (await get_counter(client, key))["value"] == i


BAD_KEY_SEGMENTS = {
    "invalid-utf8": "%FF",
    "truncated-utf8": "a%C3",
    "overlong-dot": "%C0%AE",
    "surrogate": "%ED%A0%80",
    "nul": "%00",
    "bel": "%07",
    "newline": "a%0Ab",
    "del": "%7F",
    "c1-control": "%C2%85",
    "dot": "%2E",
    "dot-dot": "%2E%2E",
    "257-bytes": "a" * 257,
    "257-bytes-encoded": "%C3%A9" * 128 + "a",
}


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize("segment", BAD_KEY_SEGMENTS.values(), ids=BAD_KEY_SEGMENTS.keys())
async def test_bad_keys_are_refused(primed: ApiClient, method: str, segment: str) -> None:
    await assert_refused(primed, method, raw("/counters/" + segment), None, 400, "invalid_request")


@pytest.mark.parametrize(
    "key",
    ["", ".", "..", "a\x00b", "\x07", "é" * 128 + "a", "a\nb"],
    ids=["empty", "dot", "dot-dot", "nul", "bel", "257-bytes", "newline"],
)
async def test_bad_keys_in_batch_are_refused(primed: ApiClient, key: str) -> None:
    body = {"increments": [{"key": "k", "amount": 1}, {"key": key, "amount": 1}]}
    await assert_refused(primed, "POST", "/batch", json.dumps(body).encode(), 400)


# --- refused bodies --------------------------------------------------------------------------

BAD_INCREMENT_BODIES: dict[str, bytes] = {
    "malformed": b'{"amount": ',
    "trailing-garbage": b'{"amount": 1} x',
    "single-quotes": b"{'amount': 1}",
    "unknown-field": b'{"amount": 1, "extra": 2}',
    "only-unknown-field": b'{"amont": 1}',
    "bool": b'{"amount": true}',
    "float": b'{"amount": 1.0}',
    "exponent": b'{"amount": 1e3}',
    "string": b'{"amount": "1"}',
    "null": b'{"amount": null}',
    "list": b'{"amount": [1]}',
    "object": b'{"amount": {"n": 1}}',
    "top-level-int": b"1",
    "top-level-list": b"[]",
    "top-level-null": b"null",
    "top-level-string": b'"amount"',
    "nan": b'{"amount": NaN}',
    "infinity": b'{"amount": Infinity}',
    "minus-infinity": b'{"amount": -Infinity}',
    "huge-float": b'{"amount": 1e400}',
    "deep-nesting": b"[" * 60_000,
    "deep-nesting-in-field": b'{"amount": ' + b"[" * 60_000,
    "non-utf8": b'{"amount": 1, "\xff": 1}',
    "latin1": '{"amount": 1, "é": 1}'.encode("latin-1"),
    "lone-surrogate-field": b'{"\\ud800": 1}',
    "utf16": '{"amount": 5}'.encode("utf-16"),
    "utf16-le": '{"amount": 5}'.encode("utf-16-le"),
    "utf32": '{"amount": 5}'.encode("utf-32"),
}


@pytest.mark.parametrize(
    "data", BAD_INCREMENT_BODIES.values(), ids=list(BAD_INCREMENT_BODIES.keys())
)
async def test_bad_increment_bodies_are_refused(primed: ApiClient, data: bytes) -> None:
    await assert_refused(primed, "POST", "/counters/k", data, 400, "invalid_request")


@pytest.mark.parametrize("amount", [2**63, INT64_MIN - 1, 10**30, -(10**30)])
async def test_amount_outside_int64_is_overflow(primed: ApiClient, amount: int) -> None:
    data = json.dumps({"amount": amount}).encode()
    await assert_refused(primed, "POST", "/counters/k", data, 422, "overflow")
    batch = json.dumps({"increments": [{"key": "k", "amount": amount}]}).encode()
    await assert_refused(primed, "POST", "/batch", batch, 422, "overflow")


@pytest.mark.parametrize(("first", "then"), [(INT64_MAX, 1), (INT64_MIN, -1)])
async def test_own_total_leaving_int64_is_overflow(
    client: ApiClient, first: int, then: int
) -> None:
    await incr(client, "k", first)
    data = json.dumps({"amount": then}).encode()
    await assert_refused(client, "POST", "/counters/k", data, 422, "overflow")
    assert (await incr(client, "k", -then))["value"] == first - then


BAD_BATCH_BODIES: dict[str, Any] = {
    "no-increments": {},
    "unknown-top-field": {"increments": [{"key": "k"}], "atomic": True},
    "increments-not-list": {"increments": {"key": "k"}},
    "increments-null": {"increments": None},
    "zero-items": {"increments": []},
    "1001-items": {"increments": [{"key": "k", "amount": 1}] * 1001},
    "item-not-object": {"increments": [{"key": "k"}, ["k", 1]]},
    "item-missing-key": {"increments": [{"key": "k"}, {"amount": 1}]},
    "item-unknown-field": {"increments": [{"key": "k", "amount": 1, "x": 1}]},
    "key-not-string": {"increments": [{"key": 1, "amount": 1}]},
    "amount-bool": {"increments": [{"key": "k", "amount": False}]},
    "amount-float": {"increments": [{"key": "k", "amount": 1.0}]},
    "amount-string": {"increments": [{"key": "k", "amount": "1"}]},
    "amount-null": {"increments": [{"key": "k", "amount": None}]},
    "amount-list": {"increments": [{"key": "k", "amount": [1]}]},
    "top-level-list": [{"key": "k", "amount": 1}],
}


@pytest.mark.parametrize("body", BAD_BATCH_BODIES.values(), ids=list(BAD_BATCH_BODIES.keys()))
async def test_bad_batch_bodies_are_refused(primed: ApiClient, body: Any) -> None:
    data = json.dumps(body).encode()
    await assert_refused(primed, "POST", "/batch", data, 400, "invalid_request")


@pytest.mark.parametrize(
    "data",
    [
        b'{"increments": [{"key": "k", "amount": NaN}]}',
        b'{"increments": [{"key": "k", "amount": Infinity}]}',
        b"[" * 100_000,
        b'{"increments": [{"key": "k\xff"}]}',
        b'{"increments": [{"key": "k", "\\udc00": 1}]}',
        '{"increments": [{"key": "k"}]}'.encode("utf-16"),
        b"",
        b"{",
    ],
    ids=["nan", "infinity", "deep", "non-utf8", "surrogate-field", "utf16", "empty", "malformed"],
)
async def test_bad_batch_bytes_are_refused(primed: ApiClient, data: bytes) -> None:
    await assert_refused(primed, "POST", "/batch", data, 400, "invalid_request")


# --- body size limits ------------------------------------------------------------------------


def padded(body: bytes, size: int) -> bytes:
    """``body`` followed by spaces up to exactly ``size`` bytes (still the same JSON)."""
    assert len(body) <= size
    return body + b" " * (size - len(body))


async def test_counter_body_at_the_limit_is_accepted(client: ApiClient) -> None:
    data = padded(b'{"amount": 3}', COUNTER_BODY_LIMIT)
    assert (await call(client, "POST", "/counters/k", data=data))[1]["value"] == 3


async def test_batch_body_at_the_limit_is_accepted(client: ApiClient) -> None:
    data = padded(b'{"increments": [{"key": "k", "amount": 3}]}', BATCH_BODY_LIMIT)
    status, body = await call(client, "POST", "/batch", data=data)
    assert status == 200, body
    assert body["results"][0]["value"] == 3


async def test_counter_body_over_the_limit_is_413(primed: ApiClient) -> None:
    data = padded(b'{"amount": 3}', COUNTER_BODY_LIMIT + 1)
    await assert_refused(primed, "POST", "/counters/k", data, 413, "payload_too_large")
    await assert_refused(primed, "DELETE", "/counters/k", data, 413, "payload_too_large")


async def test_batch_body_over_the_limit_is_413(primed: ApiClient) -> None:
    data = padded(b'{"increments": [{"key": "k", "amount": 3}]}', BATCH_BODY_LIMIT + 1)
    await assert_refused(primed, "POST", "/batch", data, 413, "payload_too_large")


async def test_chunked_body_over_the_limit_is_413(primed: ApiClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"amount": 3}'
        for _ in range(5):
            yield b" " * 16_384

    before = await snapshot(primed, "k")
    async with primed.post("/counters/k", data=chunks()) as response:
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert_error(response.status, await response.json(), 413, "payload_too_large")
    assert await snapshot(primed, "k") == before


# --- routes, methods, query parameters -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/counter/k"),
        ("GET", "/"),
        ("GET", "/health/x"),
        ("POST", "/batch/x"),
    ],
)
async def test_unknown_route_is_404_json(primed: ApiClient, method: str, path: str) -> None:
    await assert_refused(primed, method, raw(path), b'{"amount": 1}', 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/counters/k"),
        ("PATCH", "/counters/k"),
        ("GET", "/batch"),
        ("DELETE", "/batch"),
        ("POST", "/health"),
        ("POST", "/status"),
        ("DELETE", "/counters"),
        ("POST", "/counters"),
    ],
)
async def test_wrong_method_is_405_json(primed: ApiClient, method: str, path: str) -> None:
    await assert_refused(primed, method, raw(path), b'{"amount": 1}', 405, "method_not_allowed")


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "limit=",
        "limit=1.5",
        "limit=%D9%A3",  # an Arabic-Indic digit three
        "limit=99999999999999999999999",
        "limit=1&limit=2",
        "prefix=a&prefix=b",
        "unknown=1",
        "prefix=a&cursor=b",
    ],
)
async def test_bad_list_queries_are_400(primed: ApiClient, query: str) -> None:
    await assert_refused(primed, "GET", raw("/counters?" + query), None, 400, "invalid_request")


async def test_limit_bounds_are_accepted(primed: ApiClient) -> None:
    for limit in ("1", "1000", "0100"):
        status, body = await call(primed, "GET", raw(f"/counters?limit={limit}"))
        assert (status, body) == (200, {"counters": [{"key": "k", "value": 7}], "next": None})


# --- no request produces a 5xx (property-based) ----------------------------------------------


@contextlib.contextmanager
def private_client(config: NodeConfig) -> Iterator[Callable[..., tuple[int, bytes, str]]]:
    """A node and a test client on their own event loop, for Hypothesis' synchronous examples.

    Yields ``send(method, url, data) -> (status, body, content type)``. The node and client are
    built once per test function, not per example.
    """
    loop = asyncio.new_event_loop()
    node: Node | None = None
    client: ApiClient | None = None

    async def start() -> None:
        nonlocal node, client
        node = await Node.open(config, rng=random.Random(1))
        client = TestClient(TestServer(create_app(node)))
        await client.start_server()

    async def stop() -> None:
        if client is not None:
            await client.close()
        if node is not None:
            await node.close()

    async def request(method: str, url: URL, data: bytes | None) -> tuple[int, bytes, str]:
        assert client is not None
        async with client.request(method, url, data=data) as response:
            return response.status, await response.read(), response.content_type

    def send(method: str, url: URL, data: bytes | None = None) -> tuple[int, bytes, str]:
        return loop.run_until_complete(request(method, url, data))

    try:
        loop.run_until_complete(start())
        yield send
    finally:
        loop.run_until_complete(stop())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def assert_no_5xx(status: int, payload: bytes, content_type: str) -> None:
    assert status < 500, payload[:300]
    if status >= 400:
        assert content_type == "application/json", payload[:300]
        assert_error(status, json.loads(payload), status)


# Strings that include lone surrogates (JSON can carry them as \ud800 escapes).
nasty_text = st.text(
    alphabet=st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=20
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | nasty_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty_text, inner, max_size=4),
    max_leaves=12,
)
amounts = st.one_of(json_values, st.integers(min_value=-(2**64), max_value=2**64))
increment_objects = st.dictionaries(
    st.sampled_from(["amount"]) | nasty_text, amounts, max_size=3
).map(lambda obj: json.dumps(obj).encode())
batch_objects = st.fixed_dictionaries(
    {
        "increments": st.lists(
            st.dictionaries(
                st.sampled_from(["key", "amount"]) | nasty_text,
                amounts | nasty_text,
                max_size=3,
            ),
            max_size=5,
        )
    }
).map(lambda obj: json.dumps(obj).encode())
bodies = st.one_of(
    st.binary(max_size=512),
    json_values.map(lambda v: json.dumps(v).encode()),
    increment_objects,
    batch_objects,
)


path_pieces = st.one_of(
    st.sampled_from(list("abz09-._~!$&'()*,;=:@+/%")),
    st.integers(min_value=0, max_value=255).map(lambda b: f"%{b:02X}"),
    st.text(max_size=8).map(lambda s: quote(s, safe="")),
    st.sampled_from(["%2E", "%2F", "%25", "..", ".", "%C0%AE", "%ED%A0%80", "%F0%9F%98"]),
)
path_segments = st.lists(path_pieces, min_size=1, max_size=30).map("".join)


def test_random_bodies_never_produce_5xx(make_config: Callable[..., NodeConfig]) -> None:
    with private_client(make_config()) as send:

        @settings(max_examples=200, deadline=None)
        @given(body=bodies, route=st.sampled_from(["/counters/k", "/batch"]))
        def post_random_body(body: bytes, route: str) -> None:
            assert_no_5xx(*send("POST", raw(route), body))

        post_random_body()


def test_random_key_segments_never_produce_5xx(make_config: Callable[..., NodeConfig]) -> None:
    with private_client(make_config()) as send:

        @settings(max_examples=200, deadline=None)
        @given(segment=path_segments, method=st.sampled_from(["GET", "POST", "DELETE"]))
        def request_random_segment(segment: str, method: str) -> None:
            assert_no_5xx(*send(method, raw("/counters/" + segment)))

        request_random_segment()


def test_every_503_carries_retry_after_and_every_other_status_does_not() -> None:
    classes: list[type[errors.VVStoreError]] = [errors.VVStoreError]
    seen = 0
    while classes:
        cls = classes.pop()
        # The error tree of vvstore.errors (the client's own reply errors are not answers).
        classes.extend(c for c in cls.__subclasses__() if c.__module__ == errors.__name__)
        response = error_response(cls("x"))
        has_hint = "Retry-After" in response.headers
        assert has_hint == (response.status == 503), (cls.__name__, response.status)
        seen += response.status == 503
    assert seen >= 2  # Unavailable and at least one store error that falls back to 503
    slow = error_response(errors.Unavailable("x", retry_after=4.6))
    assert slow.headers["Retry-After"] == "5"
