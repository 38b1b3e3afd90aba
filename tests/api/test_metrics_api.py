"""GET /metrics and the access log, through aiohttp, over a real in-process node.

What a scrape shows is parsed with prometheus_client's own parser. Keys and the token are
distinctive strings, so a test can check that neither reaches a label or a log line.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from vvstore.api import create_app
from vvstore.auth import TokenAuth
from vvstore.config import NodeConfig
from vvstore.node import Node

ApiClient = TestClient[web.Request, web.Application]

TOKEN = "metrics-test-token-0123456789abcdef0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEY = "key-that-must-not-leak-7f3a"
COUNTER = "/counters/{key}"


async def scrape(client: ApiClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with client.get("/metrics", headers=AUTH) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/plain"
        text = await response.text()
    assert KEY not in text and TOKEN not in text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests(seen: dict[tuple[str, frozenset[tuple[str, str]]], float], **labels: str) -> float:
    return seen.get(("vvstore_http_requests_total", frozenset(labels.items())), 0.0)


@pytest.fixture
async def client(node: Node, aiohttp_client: AiohttpClient) -> ApiClient:
    return await aiohttp_client(create_app(node, token=TokenAuth(TOKEN.encode())))


async def test_metrics_need_the_token_like_other_reads(client: ApiClient) -> None:
    async with client.get("/metrics") as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "missing_token"
    async with client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 40}) as response:
        assert response.status == 401
    async with client.head("/metrics", headers=AUTH) as response:
        assert response.status == 200
    seen = await scrape(client)
    refused = {"route": "/metrics", "method": "GET", "status": "401"}
    # Both refusals and the HEAD (counted as its GET route) are in; this scrape is not yet.
    assert requests(seen, **refused) == 2
    assert requests(seen, route="/metrics", method="GET", status="200") == 1


async def test_requests_are_counted_by_route_template_and_status(client: ApiClient) -> None:
    before = await scrape(client)
    for amount in (1, 2, 3):
        async with client.post(f"/counters/{KEY}", json={"amount": amount}, headers=AUTH) as r:
            assert r.status == 200
    async with client.post(f"/counters/{KEY}", data=b"{", headers=AUTH) as r:
        assert r.status == 400
    async with client.get(f"/counters/{KEY}/deeper", headers=AUTH) as r:
        assert r.status == 200
    async with client.put(f"/counters/{KEY}", headers=AUTH) as r:
        assert r.status == 405
    seen = await scrape(client)
    post = {"route": COUNTER, "method": "POST"}
    assert requests(seen, **post, status="200") - requests(before, **post, status="200") == 3
    assert requests(seen, **post, status="400") == 1
    assert requests(seen, route=COUNTER, method="GET", status="200") == 1
    assert requests(seen, route="unmatched", method="unmatched", status="405") == 1
    duration = ("vvstore_http_request_duration_seconds_count", frozenset(post.items()))
    assert seen[duration] == 4


async def test_increments_commits_keys_and_actors(client: ApiClient) -> None:
    headers = {**AUTH, "Idempotency-Key": "retry-1"}
    for _ in range(2):  # the second is a replay: answered, not applied again
        async with client.post(f"/counters/{KEY}", json={"amount": 5}, headers=headers) as r:
            assert r.status == 200
    batch = {"increments": [{"key": f"{KEY}-{i}", "amount": i + 1} for i in range(3)]}
    async with client.post("/batch", data=json.dumps(batch), headers=AUTH) as r:
        assert r.status == 200
    async with client.delete(f"/counters/{KEY}", headers=AUTH) as r:
        assert r.status == 200
    seen = await scrape(client)
    assert seen[("vvstore_increments_total", frozenset())] == 4
    # Three transactions at least (one per request); each holds one write or more.
    commits = seen[("vvstore_commit_batch_size_count", frozenset())]
    assert commits >= 3
    assert seen[("vvstore_commit_batch_size_sum", frozenset())] >= commits
    assert seen[("vvstore_commit_duration_seconds_count", frozenset())] == commits
    assert seen[("vvstore_keys", frozenset())] == 4
    assert seen[("vvstore_actors", frozenset({("state", "live")}))] == 1
    assert seen[("vvstore_actors", frozenset({("state", "retired")}))] == 0


async def test_each_request_writes_one_access_log_line_without_key_or_token(
    client: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vvstore.access")
    async with client.post(f"/counters/{KEY}", json={"amount": 1}, headers=AUTH) as r:
        assert r.status == 200
    async with client.get(f"/counters/{KEY}") as r:
        assert r.status == 401
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "vvstore.access"]
    assert len(lines) == 2, lines
    for line, (method, status) in zip(lines, [("POST", 200), ("GET", 401)], strict=True):
        fields = line.split()
        assert fields[1:4] == [method, COUNTER, str(status)], line
        assert fields[4].endswith("s") and float(fields[4][:-1]) >= 0, line
        assert KEY not in line and TOKEN not in line and "Bearer" not in line


async def test_two_nodes_in_one_process_keep_separate_figures(
    make_config: Callable[..., NodeConfig], aiohttp_client: AiohttpClient
) -> None:
    first = await Node.open(make_config("m1"), rng=random.Random(1))
    second = await Node.open(make_config("m2"), rng=random.Random(2))
    try:
        one = await aiohttp_client(create_app(first, token=TokenAuth(TOKEN.encode())))
        two = await aiohttp_client(create_app(second, token=TokenAuth(TOKEN.encode())))
        for _ in range(3):
            async with one.post(f"/counters/{KEY}", json={"amount": 1}, headers=AUTH) as r:
                assert r.status == 200
        assert (await scrape(one))[("vvstore_increments_total", frozenset())] == 3
        assert (await scrape(two))[("vvstore_increments_total", frozenset())] == 0
    finally:
        await first.close()
        await second.close()


async def test_a_peers_sync_call_is_logged_at_debug_unless_it_is_refused(
    client: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Peers call every second or so: their successful calls stay out of the INFO log."""
    caplog.set_level(logging.DEBUG, logger="vvstore.access")
    notice = {"v": 1, "node": "peer", "actor": "peer~0123456789abcdef", "vector": {}}
    async with client.post("/sync/notice", data=json.dumps(notice)) as r:
        assert r.status == 200
    async with client.post("/sync/notice", data=b"{}") as r:
        assert r.status == 400
    async with client.get(f"/counters/{KEY}", headers=AUTH) as r:
        assert r.status == 200
    records = [(rec.levelno, rec.getMessage().split()[1:4]) for rec in caplog.records]
    assert records == [
        (logging.DEBUG, ["POST", "/sync/notice", "200"]),
        (logging.INFO, ["POST", "/sync/notice", "400"]),
        (logging.INFO, ["GET", COUNTER, "200"]),
    ], records


async def test_access_log_off_writes_no_line_and_still_counts(
    node: Node, aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    quiet = await aiohttp_client(
        create_app(node, token=TokenAuth(TOKEN.encode()), access_log=False)
    )
    caplog.set_level(logging.DEBUG, logger="vvstore.access")
    async with quiet.post(f"/counters/{KEY}", json={"amount": 1}, headers=AUTH) as r:
        assert r.status == 200
    assert not [rec for rec in caplog.records if rec.name == "vvstore.access"]
    seen = await scrape(quiet)
    assert requests(seen, route=COUNTER, method="POST", status="200") == 1
