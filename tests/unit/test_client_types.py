"""The client's typed replies: parsed from the JSON shapes nodes send, tolerant of fields a
newer node adds, and refusing a reply they cannot read with :class:`MalformedReply`.

The shapes are those of docs/api.md's examples; the last tests run the client against a live
node on 127.0.0.1 and against a server that answers 200 with bodies no node sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from vvstore import errors
from vvstore.api import create_app
from vvstore.cli import _status_table
from vvstore.client import (
    Client,
    Counter,
    CounterPage,
    Health,
    ListedCounter,
    MalformedReply,
    PeerStatus,
    Sibling,
    Status,
)
from vvstore.node import Node

DOCS = "docs~edeb5667687cb7a8"
PEER = "peer-b~4a1ac8725ae85a70"


# Replies as docs/api.md shows them (one session of a real node), compact as nodes send them.
def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


READ = _compact(
    {
        "key": "page-views",
        "value": 16,
        "version": {DOCS: 2, PEER: 1},
        "siblings": [
            {"actor": DOCS, "seq": 2, "value": 6, "node": DOCS},
            {"actor": PEER, "seq": 1, "value": 10, "node": PEER},
        ],
    }
)
INCREMENT = _compact({"key": "cart items", "value": 1, "version": {DOCS: 9}})
HUGE = _compact({"key": "huge", "value": 18446744073709551614, "version": {DOCS: 12, PEER: 3}})
PAGE = '{"counters":[{"key":"a+b","value":1},{"key":"cart items","value":-2}],"next":"cart items"}'
LAST_PAGE = '{"counters":[],"next":null}'
HEALTH = '{"status":"ok","node":"docs"}'
STATUS = json.dumps(
    {
        "node": "docs",
        "pid": 41207,
        "actor": DOCS,
        "version": {DOCS: 16, PEER: 4},
        "peers": [
            {
                "url": "http://127.0.0.1:8081",
                "node": "peer-b",
                "reachable": True,
                "last_success": 1795927231.66481,
                "last_error": None,
                "behind": 0,
                "rounds": 5,
                "pulled_pages": 5,
                "pulled_entries": 1,
                "pulled_bytes": 1080,
            },
            {
                "url": "http://127.0.0.1:8082",
                "node": None,
                "reachable": False,
                "last_success": None,
                "last_error": "PeerUnreachable: http://127.0.0.1:8082/sync/pull: refused",
                "behind": 0,
                "rounds": 0,
                "pulled_pages": 0,
                "pulled_entries": 0,
                "pulled_bytes": 0,
            },
        ],
        "clock_skew": {"peer-b": -0.0017702579498291016},
        "records": 4,
        "oldest_record_age": 31.006458282470703,
        "idempotency_unsafe_evictions": 0,
    }
)


# --- real shapes -----------------------------------------------------------------------------


def test_a_read_has_its_siblings_and_keeps_the_json_as_raw() -> None:
    counter = Counter.from_json(json.loads(READ))
    assert counter == Counter(
        key="page-views",
        value=16,
        version={DOCS: 2, PEER: 1},
        siblings=(Sibling(DOCS, 2, 6, raw={}), Sibling(PEER, 1, 10, raw={})),
        raw={},
    )
    assert counter.raw == json.loads(READ)
    assert json.dumps(counter.raw, separators=(",", ":")) == READ
    assert counter.siblings[1].raw["node"] == PEER


def test_a_write_reply_has_no_siblings_and_values_stay_exact() -> None:
    counter = Counter.from_json(json.loads(INCREMENT))
    assert (counter.key, counter.value, counter.version) == ("cart items", 1, {DOCS: 9})
    assert counter.siblings == () and "siblings" not in counter.raw
    assert Counter.from_json(json.loads(HUGE)).value == 2 * (2**63 - 1)


def test_a_sibling_from_a_node_before_the_rename_is_read_by_its_old_name() -> None:
    # Old nodes, and replays of reset replies stored by them, name the actor only "node".
    sibling = Sibling.from_json({"node": DOCS, "seq": 3, "value": 4})
    assert (sibling.actor, sibling.seq, sibling.value) == (DOCS, 3, 4)
    both = Sibling.from_json(
        {"actor": DOCS, "node": "ignored~0000000000000000", "seq": 3, "value": 4}
    )
    assert both.actor == DOCS


def test_a_page_and_the_last_page() -> None:
    page = CounterPage.from_json(json.loads(PAGE))
    assert page.counters == (
        ListedCounter("a+b", 1, raw={}),
        ListedCounter("cart items", -2, raw={}),
    )
    assert page.next == "cart items"
    last = CounterPage.from_json(json.loads(LAST_PAGE))
    assert (last.counters, last.next) == ((), None)


def test_a_status_with_a_reachable_and_an_unreachable_peer() -> None:
    status = Status.from_json(json.loads(STATUS))
    assert (status.node, status.pid, status.actor) == ("docs", 41207, DOCS)
    # A node older than the field (mid-upgrade) has no pid: still a status.
    assert Status.from_json(_without(STATUS, "pid")).pid is None
    assert status.version == {DOCS: 16, PEER: 4}
    assert status.clock_skew == {"peer-b": -0.0017702579498291016}
    assert (status.records, status.idempotency_unsafe_evictions) == (4, 0)
    assert status.oldest_record_age == pytest.approx(31.006458282470703)
    up, down = status.peers
    assert isinstance(up, PeerStatus)
    assert (up.node, up.reachable, up.last_error, up.pulled_bytes) == ("peer-b", True, None, 1080)
    assert (down.node, down.reachable, down.last_success) == (None, False, None)
    assert down.last_error is not None and down.last_error.startswith("PeerUnreachable")
    assert status.raw == json.loads(STATUS)


def test_health() -> None:
    assert Health.from_json(json.loads(HEALTH)) == Health("ok", "docs", raw={})


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (Counter.from_json, READ),
        (CounterPage.from_json, PAGE),
        (Status.from_json, STATUS),
        (Health.from_json, HEALTH),
    ],
    ids=["counter", "page", "status", "health"],
)
def test_fields_a_newer_node_adds_are_ignored_and_kept_in_raw(
    parse: Callable[[object], Any], text: str
) -> None:
    def widen(value: Any) -> Any:
        # Every object gains a field, but for maps (a vector, the clock skews).
        if isinstance(value, dict):
            wide = {k: v if k in ("version", "clock_skew") else widen(v) for k, v in value.items()}
            return {**wide, "added_later": [1, {"x": None}]}
        if isinstance(value, list):
            return [widen(v) for v in value]
        return value

    plain, wide = parse(json.loads(text)), parse(widen(json.loads(text)))
    assert wide == plain  # raw is left out of comparisons
    assert wide.raw["added_later"] == [1, {"x": None}]


def test_the_cli_status_table_from_a_typed_status() -> None:
    assert _status_table(Status.from_json(json.loads(STATUS))).splitlines() == [
        "node     docs",
        f"actor    {DOCS}",
        f'version  {{"{DOCS}": 16, "{PEER}": 4}}',
        "",
        "peer                         node         reachable  behind  last error",
        "http://127.0.0.1:8081        peer-b       True            0  -",
        "http://127.0.0.1:8082        ?            False           0  "
        "PeerUnreachable: http://127.0.0.1:8082/sync/pull: refused",
    ]


# --- malformed replies -----------------------------------------------------------------------


def _without(text: str, *path: str | int) -> Any:
    """The reply ``text`` with the field at ``path`` removed."""
    data = json.loads(text)
    *parents, last = path
    target = data
    for step in parents:
        target = target[step]
    del target[last]
    return data


def _with(text: str, value: Any, *path: str | int) -> Any:
    """The reply ``text`` with the field at ``path`` set to ``value``."""
    data = json.loads(text)
    *parents, last = path
    target = data
    for step in parents:
        target = target[step]
    target[last] = value
    return data


MALFORMED: list[tuple[str, Callable[[object], Any], Any, str]] = [
    ("not-an-object", Counter.from_json, [], "a counter must be a JSON object, got list"),
    ("no-key", Counter.from_json, _without(INCREMENT, "key"), "a counter has no 'key'"),
    (
        "bool-value",
        Counter.from_json,
        _with(INCREMENT, True, "value"),
        "'value' must be an integer",
    ),
    (
        "float-value",
        Counter.from_json,
        _with(INCREMENT, 1.5, "value"),
        "'value' must be an integer",
    ),
    (
        "string-seq",
        Counter.from_json,
        _with(INCREMENT, {DOCS: "9"}, "version"),
        "'version' must map",
    ),
    (
        "siblings-object",
        Counter.from_json,
        _with(READ, {}, "siblings"),
        "'siblings' must be a list",
    ),
    (
        "sibling-no-name",
        Sibling.from_json,
        {"seq": 1, "value": 1},
        "a sibling has no 'actor'",
    ),
    ("no-next", CounterPage.from_json, _without(PAGE, "next"), "a page of counters has no 'next'"),
    ("next-number", CounterPage.from_json, _with(PAGE, 3, "next"), "'next' must be a string"),
    ("string-pid", Status.from_json, _with(STATUS, "1", "pid"), "'pid' must be an integer"),
    ("peer-url", Status.from_json, _with(STATUS, None, "peers", 0, "url"), "a peer 'url'"),
    (
        "reachable-string",
        Status.from_json,
        _with(STATUS, "yes", "peers", 0, "reachable"),
        "'reachable' must be true or false",
    ),
    (
        "skew-null",
        Status.from_json,
        _with(STATUS, None, "clock_skew", "peer-b"),
        "must be a number",
    ),
    ("health-node", Health.from_json, _with(HEALTH, None, "node"), "'node' must be a string"),
]


@pytest.mark.parametrize(
    ("parse", "data", "says"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_a_malformed_reply_is_refused_by_name(
    parse: Callable[[object], Any], data: Any, says: str
) -> None:
    with pytest.raises(MalformedReply) as caught:
        parse(data)
    assert says in caught.value.message
    assert isinstance(caught.value, errors.MalformedPayload)  # in the one error tree


def test_a_malformed_sibling_without_its_actor_is_refused() -> None:
    # Both names gone: the error names the current one.
    data = _without(READ, "siblings", 0, "actor")
    del data["siblings"][0]["node"]
    with pytest.raises(MalformedReply, match="a sibling has no 'actor'"):
        Counter.from_json(data)


def test_a_huge_value_in_an_error_message_is_cut_short() -> None:
    with pytest.raises(MalformedReply) as caught:
        Counter.from_json(_with(INCREMENT, "x" * 10_000, "value"))
    assert len(caught.value.message) < 200


# --- over HTTP -------------------------------------------------------------------------------


async def test_every_method_returns_its_type_from_a_live_node(
    aiohttp_server: AiohttpServer, node: Node
) -> None:
    server = await aiohttp_server(create_app(node))
    async with Client(str(server.make_url(""))) as client:
        written = await client.increment("k", 5)
        assert (written.key, written.value, written.siblings) == ("k", 5, ())
        status = await client.status()
        assert isinstance(status, Status) and status.version == {status.actor: 1}
        assert status.peers == () and status.node == node.node_id

        read = await client.get("k")
        assert read.siblings == (Sibling(status.actor, 1, 5, raw={}),)
        assert read.raw["siblings"] == [
            {"actor": status.actor, "seq": 1, "value": 5, "node": status.actor}
        ]

        [first, second] = await client.batch([("k", 2), ("other", -1)])
        assert (first.value, second.key, second.value) == (7, "other", -1)

        page = await client.list(limit=1)
        assert page.counters == (ListedCounter("k", 7, raw={}),) and page.next == "k"
        assert (await client.list(after="k")).counters == (ListedCounter("other", -1, raw={}),)

        reset = await client.reset("k", idempotency_key="r1")
        assert reset.value == 0 and reset.siblings == (Sibling(status.actor, 4, 0, raw={}),)
        assert await client.reset("k", idempotency_key="r1") == reset  # the stored reply
        assert (await client.health()) == Health("ok", node.node_id, raw={})


class Garbled:
    """Answers 200 to everything with one body no node sends; counts the requests."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests = 0

    def app(self) -> web.Application:
        async def answer(request: web.Request) -> web.Response:
            self.requests += 1
            return web.Response(body=self.body, content_type="application/json")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        return app


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"<html>gateway</html>", "the reply is not JSON"),
        (b'{"key": "k", "value": "7", "version": {}}', "a counter 'value' must be an integer"),
    ],
    ids=["not-json", "wrong-type"],
)
async def test_a_malformed_reply_to_a_write_is_indefinite_and_not_retried(
    aiohttp_server: AiohttpServer, body: bytes, says: str
) -> None:
    garbled = Garbled(body)
    server = await aiohttp_server(garbled.app())
    async with Client(str(server.make_url("")), attempts=5, retry_delay=0) as client:
        with pytest.raises(MalformedReply) as caught:
            await client.increment("k", 7)
        assert not caught.value.definite  # the node answered success: it applied the write
        assert garbled.requests == 1
        assert says in caught.value.message
        assert "POST " in caught.value.message and "/counters/k" in caught.value.message

        with pytest.raises(MalformedReply) as read:
            await client.get("k")
        assert read.value.definite


async def test_a_batch_reply_without_results_is_refused(aiohttp_server: AiohttpServer) -> None:
    garbled = Garbled(b'{"counters": []}')
    server = await aiohttp_server(garbled.app())
    async with Client(str(server.make_url(""))) as client:
        with pytest.raises(MalformedReply, match="a batch reply has no 'results'"):
            await client.batch([("k", 1)])
    assert garbled.requests == 1
