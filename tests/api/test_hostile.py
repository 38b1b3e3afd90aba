"""The hostile-input table (docs/security.md): every limit is enforced, nothing is applied, and
the node keeps serving.

Two directions:

* **Into the node**, through the real aiohttp app (with a token, a cluster secret and a short
  body timeout): oversized and slow bodies, over-long keys and idempotency keys, and signed
  sync requests carrying malformed payloads. Each gets its 4xx and changes nothing.
* **Out of the node**: a peer, or anything answering on a peer's port, sends back malformed,
  oversized, inconsistent or slow pages. The real :class:`~vvstore.peer.HttpPeer` and
  :func:`~vvstore.sync.pull_once` refuse them before anything is applied, V is not raised, and
  the node still serves its clients.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from vvstore.api import BATCH_BODY_LIMIT, COUNTER_BODY_LIMIT, SYNC_BODY_LIMIT, create_app
from vvstore.auth import TokenAuth
from vvstore.codec import MAX_KEY_BYTES, Write
from vvstore.config import NodeConfig
from vvstore.counter import Floor
from vvstore.errors import (
    ConflictingEntry,
    MalformedPayload,
    PeerTimeout,
    RoundAbandoned,
    Unauthorized,
    UnsupportedVersion,
    VVStoreError,
)
from vvstore.idempotency import MAX_IDEMPOTENCY_KEY
from vvstore.node import Node
from vvstore.peer import HttpPeer
from vvstore.retirement import EMPTY
from vvstore.signing import NONCE_HEADER, RESPONSE_SIGNATURE_HEADER, ClusterAuth
from vvstore.sync import PeerLink, pull_once
from vvstore.wire import (
    FORMAT_VERSION,
    MAX_FLOORS_BYTES,
    MAX_PAGE_BODY_BYTES,
    MAX_PAGE_ENTRIES,
    MAX_VECTOR_BYTES,
    floors_bytes,
    vector_bytes,
)

ApiClient = TestClient[web.Request, web.Application]

TOKEN = "hostile-test-token-0123456789abcdef0123"
SECRET = b"hostile-test-cluster-secret-0123456789abcdef"
NODE = "n1"
PEER = "peer"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BODY_TIMEOUT = 0.5
A = "fake~0123456789abcdef"  # the fake responder's actor
B = "other~fedcba9876543210"


def actor(i: int) -> str:
    return f"a{i}~{i:016x}"


def long_actor(i: int) -> str:
    """An actor id of the longest legal form (a 40-character node id)."""
    return f"{i:040d}~{i:016x}"


def _over(limit: int, measure: Callable[[int], int]) -> int:
    """The least count whose measure exceeds ``limit`` (the measure grows with the count)."""
    count = 1
    while measure(count) <= limit:
        count *= 2
    low, high = count // 2, count
    while low + 1 < high:
        mid = (low + high) // 2
        low, high = (mid, high) if measure(mid) <= limit else (low, mid)
    return high


def big_vector(n: int) -> dict[str, int]:
    return {long_actor(i): 2**63 - 1 for i in range(n)}


def big_floors(n: int) -> dict[str, list[int]]:
    return {long_actor(i): [2**63 - 1, -(2**63)] for i in range(n)}


#: The fewest actors (of the longest ids and seqs) over the vector limit, and floors over theirs.
VECTOR_OVER = _over(MAX_VECTOR_BYTES, lambda n: vector_bytes(big_vector(n)))
FLOORS_OVER = _over(
    MAX_FLOORS_BYTES,
    lambda n: floors_bytes({a: Floor(s, t) for a, (s, t) in big_floors(n).items()}),
)


def test_the_byte_limits_hold_5000_actors_of_the_longest_ids() -> None:
    assert VECTOR_OVER > 5000
    assert FLOORS_OVER > 5000


@pytest.fixture
async def secured(make_config: Callable[..., NodeConfig]) -> AsyncIterator[Node]:
    cluster = ClusterAuth(SECRET, NODE)
    opened = await Node.open(make_config(NODE), rng=random.Random(1), cluster=cluster)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, secured: Node) -> ApiClient:
    app = create_app(
        secured,
        token=TokenAuth(TOKEN.encode()),
        cluster=secured.cluster,
        body_timeout=BODY_TIMEOUT,
    )
    return await aiohttp_client(app)


def sign(path: str, body: bytes) -> dict[str, str]:
    return ClusterAuth(SECRET, PEER).sign_request(
        "POST", path, body, recipient=NODE, now=time.time(), nonce=secrets.token_hex(16)
    )


def headers_for(path: str, body: bytes) -> dict[str, str]:
    """The credential the route needs: the HMAC on sync routes, the token elsewhere."""
    return sign(path, body) if path.startswith("/sync/") else dict(BEARER)


async def send(
    client: ApiClient,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    chunked: bool = False,
) -> tuple[int, Any]:
    data: Any = body
    if body is not None and (chunked or len(body) > 1 << 20):
        # A stream: sent chunked (no Content-Length), and no aiohttp warning over 1 MiB.
        data = io.BytesIO(body) if not chunked else _chunks(body)
    async with client.request(method, path, data=data, headers=headers) as response:
        raw = await response.read()
        assert response.content_type == "application/json", (response.status, raw[:200])
        return response.status, json.loads(raw)


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 256 * 1024):
        yield body[i : i + 256 * 1024]


def assert_error(status: int, body: Any, expected: int, code: str) -> None:
    assert status == expected, body
    assert body == {"error": {"code": code, "message": body["error"]["message"]}}, body


async def state(client: ApiClient) -> tuple[Any, ...]:
    """What a refused request must leave alone, and proof the node still serves."""
    status, body = await send(client, "GET", "/status", headers=BEARER)
    assert status == 200, body
    status, listing = await send(client, "GET", "/counters", headers=BEARER)
    assert status == 200, listing
    return body["version"], listing


@pytest.fixture
async def primed(client: ApiClient) -> ApiClient:
    status, body = await send(client, "POST", "/counters/k", b'{"amount": 7}', BEARER)
    assert status == 200, body
    return client


# --- bodies: size limits ---------------------------------------------------------------------


def padded(prefix: bytes, size: int) -> bytes:
    """``prefix`` followed by spaces, ``size`` bytes in all (still the same JSON)."""
    assert len(prefix) <= size
    return prefix + b" " * (size - len(prefix))


def pull_json(**fields: Any) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "vector": {},
        "cursor": None,
        "snapshot": None,
        "retired": EMPTY.digest,
        **fields,
    }


#: A format version no release speaks yet.
UNKNOWN = FORMAT_VERSION + 1

PULL = json.dumps(pull_json()).encode()
NOTICE = json.dumps({"v": 1, "node": PEER, "actor": f"{PEER}~0123456789abcdef", "vector": {}})

#: (method, path, limit, a valid body, status of that body padded to exactly the limit)
SIZE_LIMITS = [
    ("POST", "/counters/k", COUNTER_BODY_LIMIT, b'{"amount": 1}', 200),
    ("DELETE", "/counters/k", COUNTER_BODY_LIMIT, b"{}", 400),  # DELETE takes no body at all
    ("POST", "/batch", BATCH_BODY_LIMIT, b'{"increments": [{"key": "k"}]}', 200),
    ("POST", "/sync/pull", SYNC_BODY_LIMIT, PULL, 200),
    ("POST", "/sync/notice", SYNC_BODY_LIMIT, NOTICE.encode(), 200),
]


def test_the_size_limits_are_the_documented_ones() -> None:
    assert (COUNTER_BODY_LIMIT, BATCH_BODY_LIMIT, SYNC_BODY_LIMIT) == (
        64 * 1024,
        1024 * 1024,
        1088 * 1024,
    )


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("method", "path", "limit", "valid", "at_limit"),
    SIZE_LIMITS,
    ids=[f"{m} {p}" for m, p, *_ in SIZE_LIMITS],
)
async def test_a_body_over_the_route_limit_is_refused(
    primed: ApiClient,
    method: str,
    path: str,
    limit: int,
    valid: bytes,
    at_limit: int,
    chunked: bool,
) -> None:
    before = await state(primed)
    over = padded(valid, limit + 1)
    status, body = await send(primed, method, path, over, headers_for(path, over), chunked=chunked)
    assert_error(status, body, 413, "payload_too_large")
    assert await state(primed) == before
    # One byte less is read in full (and, but for DELETE, accepted).
    exact = padded(valid, limit)
    status, body = await send(
        primed, method, path, exact, headers_for(path, exact), chunked=chunked
    )
    assert status == at_limit, body


# --- bodies: slow senders --------------------------------------------------------------------


async def trickle_request(
    client: ApiClient, head: str, *, declared: int, deadline: float
) -> tuple[bytes, float]:
    """Send ``head`` with a ``Content-Length`` of ``declared``, then the body one byte every
    0.05 s, never finishing it; return the response's status line and when it came."""
    assert client.server.host in ("127.0.0.1", "localhost")
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    request = head + f"Content-Length: {declared}\r\nConnection: close\r\n\r\n"
    started = time.monotonic()
    writer.write(request.encode())

    async def drip() -> None:
        for _ in range(declared - 1):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)  # pacing the sender, not waiting for the server

    dripping = asyncio.create_task(drip())
    try:
        async with asyncio.timeout(deadline):
            status_line = await reader.readline()
        return status_line, time.monotonic() - started
    finally:
        dripping.cancel()
        with pytest.raises((asyncio.CancelledError, ConnectionError)):
            await dripping
        writer.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/counters/k"),
        ("DELETE", "/counters/k"),
        ("POST", "/batch"),
        ("POST", "/sync/pull"),
    ],
)
async def test_a_slow_body_gets_408_within_the_body_timeout(
    primed: ApiClient, method: str, path: str
) -> None:
    before = await state(primed)
    auth = "" if path.startswith("/sync/") else f"Authorization: Bearer {TOKEN}\r\n"
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/json\r\n"
    status_line, elapsed = await trickle_request(primed, head, declared=1000, deadline=10)
    assert status_line.startswith(b"HTTP/1.1 408 "), status_line
    # The timeout covers the whole body, however steadily it trickles in.
    assert BODY_TIMEOUT * 0.8 <= elapsed < BODY_TIMEOUT + 5, elapsed
    assert await state(primed) == before


async def test_a_slow_body_without_the_token_is_refused_before_it_is_read(
    primed: ApiClient,
) -> None:
    head = "POST /counters/k HTTP/1.1\r\nHost: test\r\n"
    status_line, elapsed = await trickle_request(primed, head, declared=1000, deadline=10)
    assert status_line.startswith(b"HTTP/1.1 401 "), status_line
    assert elapsed < BODY_TIMEOUT, "the token is checked before the body is waited for"


# --- client input: keys, idempotency keys, batches, pages ------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "expected"),
    [
        ("POST", "/counters/" + "k" * MAX_KEY_BYTES, {}, None, 200),
        ("POST", "/counters/" + "k" * (MAX_KEY_BYTES + 1), {}, None, 400),
        ("POST", "/counters/" + "%C3%A9" * (MAX_KEY_BYTES // 2), {}, None, 200),
        ("POST", "/counters/" + "%C3%A9" * (MAX_KEY_BYTES // 2) + "k", {}, None, 400),
        ("GET", "/counters/" + "k" * (MAX_KEY_BYTES + 1), {}, None, 400),
        ("DELETE", "/counters/" + "k" * (MAX_KEY_BYTES + 1), {}, None, 400),
        ("POST", "/counters/k", {"Idempotency-Key": "i" * MAX_IDEMPOTENCY_KEY}, None, 200),
        ("POST", "/counters/k", {"Idempotency-Key": "i" * (MAX_IDEMPOTENCY_KEY + 1)}, None, 400),
        ("DELETE", "/counters/k", {"Idempotency-Key": "i" * (MAX_IDEMPOTENCY_KEY + 1)}, None, 400),
        ("POST", "/counters/k", {"Idempotency-Key": "tab\there"}, None, 400),
        ("POST", "/counters/k", {}, b'{"amount": true}', 400),
        ("POST", "/counters/k", {}, b'{"amount": 1.0}', 400),
        ("POST", "/counters/k", {}, b'{"amount": "1"}', 400),
        ("POST", "/counters/k", {}, b'{"amount": 9223372036854775808}', 422),
        ("POST", "/counters/k", {}, b'{"amount": 1' + b"0" * 5000 + b"}", 400),
        ("POST", "/counters/k", {}, b'{"amount": NaN}', 400),
        ("POST", "/counters/k", {}, b"[" * 30_000 + b"]" * 30_000, 400),
        ("POST", "/counters/k", {}, b'{"amount": 1, "amount": {"x": [[[[]]]]}}', 400),
        ("POST", "/counters/k", {}, b"\xff\xfe{}", 400),
        ("GET", "/counters?limit=1001", {}, None, 400),
        ("GET", "/counters?limit=0", {}, None, 400),
        ("GET", "/counters?limit=1000", {}, None, 200),
        ("GET", "/counters?limit=-1", {}, None, 400),
        ("GET", "/counters?limit=1&limit=2", {}, None, 400),
    ],
)
async def test_client_input_limits(
    primed: ApiClient,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    expected: int,
) -> None:
    before = await state(primed)
    status, reply = await send(primed, method, path, body, {**BEARER, **headers})
    assert status == expected, reply
    if expected != 200:
        assert set(reply) == {"error"}, reply
        assert await state(primed) == before


def batch(*items: dict[str, Any]) -> bytes:
    return json.dumps({"increments": list(items)}).encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (batch(*[{"key": f"k{i}"} for i in range(1000)]), 200),
        (batch(*[{"key": f"k{i}"} for i in range(1001)]), 400),
        (batch(), 400),
        (batch({"key": "k" * (MAX_KEY_BYTES + 1)}), 400),
        (batch({"key": "k", "idempotency_key": "i" * (MAX_IDEMPOTENCY_KEY + 1)}), 400),
        (batch({"key": "a", "idempotency_key": "x"}, {"key": "b", "idempotency_key": "x"}), 400),
        (batch({"key": "a"}, {"key": "b", "amount": 2**63}), 422),
        (batch({"key": "a"}, {"key": "b", "amount": False}), 400),
        (batch({"key": "a", "extra": 1}), 400),
        (json.dumps({"increments": {"key": "a"}}).encode(), 400),
    ],
    ids=[
        "1000-items",
        "1001-items",
        "no-items",
        "long-key",
        "long-idempotency-key",
        "repeated-idempotency-key",
        "overflow",
        "bool-amount",
        "unknown-field",
        "not-a-list",
    ],
)
async def test_batch_limits_and_all_or_nothing(
    primed: ApiClient, body: bytes, expected: int
) -> None:
    before = await state(primed)
    status, reply = await send(primed, "POST", "/batch", body, BEARER)
    assert status == expected, reply
    if expected != 200:
        assert await state(primed) == before, "a refused batch applies none of its items"


# --- sync requests from a peer: signed, but malformed ----------------------------------------

DEEP = (
    b'{"v": 1, "vector": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b', "cursor": null, "snapshot": null}'
)

#: (name, pull request body, expected error code)
HOSTILE_PULLS: list[tuple[str, bytes, str]] = [
    ("unknown-version", json.dumps(pull_json(v=UNKNOWN)).encode(), "unsupported_version"),
    (
        "no-version",
        json.dumps({"vector": {}, "cursor": None, "snapshot": None}).encode(),
        "invalid_payload",
    ),
    ("bool-version", json.dumps(pull_json(v=True)).encode(), "invalid_payload"),
    ("float-version", json.dumps(pull_json(v=1.0)).encode(), "invalid_payload"),
    ("negative-seq", json.dumps(pull_json(vector={A: -1})).encode(), "invalid_payload"),
    ("seq-2**63", json.dumps(pull_json(vector={A: 2**63})).encode(), "invalid_payload"),
    ("bool-seq", json.dumps(pull_json(vector={A: True})).encode(), "invalid_payload"),
    ("string-seq", json.dumps(pull_json(vector={A: "1"})).encode(), "invalid_payload"),
    ("bad-actor-id", json.dumps(pull_json(vector={"nobody": 1})).encode(), "invalid_payload"),
    (
        "too-many-actors",
        json.dumps(pull_json(vector=big_vector(VECTOR_OVER))).encode(),
        "invalid_payload",
    ),
    (
        "too-many-snapshot-actors",
        json.dumps(pull_json(snapshot=big_vector(VECTOR_OVER))).encode(),
        "invalid_payload",
    ),
    ("negative-cursor", json.dumps(pull_json(cursor=[A, -1])).encode(), "invalid_payload"),
    ("cursor-2**63", json.dumps(pull_json(cursor=[A, 2**63])).encode(), "invalid_payload"),
    ("cursor-shape", json.dumps(pull_json(cursor=[A, 1, 2])).encode(), "invalid_payload"),
    ("unknown-field", json.dumps(pull_json(extra=1)).encode(), "invalid_payload"),
    (
        "missing-field",
        json.dumps({"v": 1, "vector": {}, "cursor": None}).encode(),
        "invalid_payload",
    ),
    ("deep-nesting", DEEP, "invalid_payload"),
    ("huge-integer", b'{"v": 1' + b"0" * 5000 + b"}", "invalid_payload"),
    ("array", b"[]", "invalid_payload"),
    ("number", b"1", "invalid_payload"),
    ("null", b"null", "invalid_payload"),
    ("empty", b"", "invalid_payload"),
    ("not-json", b"{", "invalid_payload"),
    ("nan", b'{"v": NaN}', "invalid_payload"),
    (
        "not-utf8",
        b'{"v": 1, "vector": {"\xff": 1}, "cursor": null, "snapshot": null}',
        "invalid_payload",
    ),
]


@pytest.mark.parametrize(
    ("body", "code"), [(b, c) for _, b, c in HOSTILE_PULLS], ids=[n for n, _, _ in HOSTILE_PULLS]
)
async def test_a_malformed_pull_request_is_refused_and_the_node_keeps_serving(
    primed: ApiClient, body: bytes, code: str
) -> None:
    before = await state(primed)
    headers = sign("/sync/pull", body)
    async with primed.post("/sync/pull", data=body, headers=headers) as response:
        raw = await response.read()
        assert response.status == 400, raw[:300]
        assert json.loads(raw)["error"]["code"] == code
        # The request was authentic, so the refusal is signed: the peer can trust it.
        assert RESPONSE_SIGNATURE_HEADER in response.headers
    assert await state(primed) == before
    status, reply = await send(primed, "POST", "/counters/k", b'{"amount": 1}', BEARER)
    assert (status, reply["value"]) == (200, 8)


@pytest.mark.parametrize(
    ("notice", "code"),
    [
        (
            {"v": UNKNOWN, "node": PEER, "actor": f"{PEER}~0123456789abcdef", "vector": {}},
            "unsupported_version",
        ),
        (
            {"v": 1, "node": "bad node", "actor": f"{PEER}~0123456789abcdef", "vector": {}},
            "invalid_payload",
        ),
        ({"v": 1, "node": PEER, "actor": "nobody", "vector": {}}, "invalid_payload"),
        (
            {
                "v": 1,
                "node": PEER,
                "actor": f"{PEER}~0123456789abcdef",
                "vector": big_vector(VECTOR_OVER),
            },
            "invalid_payload",
        ),
        (
            {"v": 1, "node": PEER, "actor": f"{PEER}~0123456789abcdef", "vector": {A: -5}},
            "invalid_payload",
        ),
    ],
    ids=["unknown-version", "bad-node-id", "bad-actor", "too-many-actors", "negative-seq"],
)
async def test_a_malformed_notice_is_refused(
    primed: ApiClient, notice: dict[str, Any], code: str
) -> None:
    before = await state(primed)
    body = json.dumps(notice).encode()
    status, reply = await send(primed, "POST", "/sync/notice", body, sign("/sync/notice", body))
    assert_error(status, reply, 400, code)
    assert await state(primed) == before


# --- pages from a hostile responder ----------------------------------------------------------


def page_json(**fields: Any) -> dict[str, Any]:
    """A valid last page from the fake responder: two entries of actor A."""
    return {
        "v": FORMAT_VERSION,
        "node": "fake",
        "actor": A,
        "vector": {A: 2},
        "entries": [[A, 1, "k", 5, {}], [A, 2, "j", 3, {}]],
        "records": [],
        "marks": [],
        "next": None,
        "retired": EMPTY.digest,
        "differs": False,
        **fields,
    }


def encoded(**fields: Any) -> bytes:
    return json.dumps(page_json(**fields)).encode()


class HostileResponder:
    """Answers on a peer's port: /health names it "fake"; /sync/pull gives the queued bodies.

    It checks the requester's signature as a real node would, and signs what it sends (with
    ``signer``, None for unsigned), so a refusal is about the payload, not the signature.
    """

    def __init__(self, bodies: list[bytes], signer: ClusterAuth | None) -> None:
        self.bodies = bodies
        self.signer = signer
        self.verifier = ClusterAuth(SECRET, "fake")
        self.pulls = 0
        self.release = asyncio.Event()  # a stalling handler waits for this

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_post("/sync/pull", self.pull)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "node": "fake"})

    async def pull(self, request: web.Request) -> web.StreamResponse:
        data = await request.read()
        self.verifier.verify_request(
            "POST", request.raw_path, data, request.headers, now=time.time()
        )
        self.pulls += 1
        body = self.bodies[min(self.pulls, len(self.bodies)) - 1]
        if body == b"STALL":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(b'{"v": 1')
            await self.release.wait()
            return response
        headers = {}
        if self.signer is not None:
            headers = self.signer.sign_response(request.headers[NONCE_HEADER], 200, body)
        return web.Response(body=body, headers=headers, content_type="application/json")


@pytest.fixture
async def responder(aiohttp_server: AiohttpServer) -> AsyncIterator[Callable[..., Any]]:
    """Start a HostileResponder on 127.0.0.1 and an HttpPeer pointing at it."""
    made: list[HostileResponder] = []
    async with aiohttp.ClientSession() as session:

        async def make(
            bodies: list[bytes], signer: ClusterAuth | None = None, timeout: float = 5.0
        ) -> tuple[HostileResponder, HttpPeer]:
            fake = HostileResponder(bodies, signer)
            made.append(fake)
            server = await aiohttp_server(fake.app())
            assert server.host == "127.0.0.1"
            peer = HttpPeer(
                str(server.make_url("")),
                session,
                connect_timeout=timeout,
                read_timeout=timeout,
                cluster=ClusterAuth(SECRET, NODE),
            )
            return fake, peer

        try:
            yield make
        finally:
            for fake in made:
                fake.release.set()


FAKE_SIGNER = ClusterAuth(SECRET, "fake")

#: (name, page bodies, signer, expected error, what its message says)
HOSTILE_PAGES: list[tuple[str, list[bytes], ClusterAuth | None, type[VVStoreError], str]] = [
    (
        "unknown-version",
        [encoded(v=UNKNOWN)],
        FAKE_SIGNER,
        UnsupportedVersion,
        f"format version {UNKNOWN}",
    ),
    ("bool-version", [encoded(v=True)], FAKE_SIGNER, MalformedPayload, "integer format version"),
    (
        "huge-vector",
        [encoded(vector=big_vector(VECTOR_OVER))],
        FAKE_SIGNER,
        MalformedPayload,
        f"{VECTOR_OVER} actors\\), more than {MAX_VECTOR_BYTES}",
    ),
    (
        "out-of-order",
        [encoded(entries=[[A, 2, "j", 3, {}], [A, 1, "k", 5, {}]])],
        FAKE_SIGNER,
        MalformedPayload,
        "strictly increasing",
    ),
    (
        "one-dot-two-keys",
        [encoded(entries=[[A, 1, "k", 5, {}], [A, 1, "j", 3, {}]])],
        FAKE_SIGNER,
        MalformedPayload,
        "strictly increasing",
    ),
    (
        "negative-seq",
        [encoded(entries=[[A, -1, "k", 5, {}]])],
        FAKE_SIGNER,
        MalformedPayload,
        "seq must be an int",
    ),
    (
        "seq-2**63",
        [encoded(entries=[[A, 2**63, "k", 5, {}]])],
        FAKE_SIGNER,
        MalformedPayload,
        "seq must be an int",
    ),
    (
        "total-2**63",
        [encoded(entries=[[A, 1, "k", 2**63, {}]])],
        FAKE_SIGNER,
        MalformedPayload,
        "total must be a 64-bit",
    ),
    (
        "bool-total",
        [encoded(entries=[[A, 1, "k", True, {}]])],
        FAKE_SIGNER,
        MalformedPayload,
        "total must be a 64-bit",
    ),
    (
        "bad-key",
        [encoded(entries=[[A, 1, "k" * 257, 5, {}]])],
        FAKE_SIGNER,
        MalformedPayload,
        "key must be 1 to 256 bytes",
    ),
    (
        "own-floor-ahead",
        [encoded(entries=[[A, 1, "k", 5, {A: [2, 5]}]])],
        FAKE_SIGNER,
        MalformedPayload,
        "floor for its own actor",
    ),
    (
        "too-many-floors",
        [encoded(entries=[[A, 1, "k", 5, big_floors(FLOORS_OVER)]])],
        FAKE_SIGNER,
        MalformedPayload,
        f"{FLOORS_OVER} actors\\), more than {MAX_FLOORS_BYTES}",
    ),
    (
        "too-many-entries",
        [encoded(entries=[[A, i, "k", i, {}] for i in range(1, MAX_PAGE_ENTRIES + 2)])],
        FAKE_SIGNER,
        MalformedPayload,
        "entries must be a list of at most",
    ),
    (
        "bad-record",
        [encoded(records=[[A, 1, "zz", "00", "k", 1]])],
        FAKE_SIGNER,
        MalformedPayload,
        "key hash must be",
    ),
    ("unknown-field", [encoded(extra=1)], FAKE_SIGNER, MalformedPayload, "unknown \\['extra'\\]"),
    (
        "bad-node-id",
        [encoded(node="no such node!")],
        FAKE_SIGNER,
        MalformedPayload,
        "node must be a node id",
    ),
    (
        "deep-nesting",
        [b"[" * 100_000 + b"]" * 100_000],
        FAKE_SIGNER,
        MalformedPayload,
        "nested too deeply",
    ),
    ("not-an-object", [b'"page"'], FAKE_SIGNER, MalformedPayload, "must be a JSON object"),
    ("not-json", [b"<html>hello</html>"], FAKE_SIGNER, MalformedPayload, "not valid JSON"),
    (
        "too-large",
        [padded(encoded(), MAX_PAGE_BODY_BYTES + 1)],
        FAKE_SIGNER,
        MalformedPayload,
        "too large",
    ),
    ("unsigned", [encoded()], None, Unauthorized, "unsigned response"),
    (
        "signed-with-another-secret",
        [encoded()],
        ClusterAuth(b"another-cluster-secret-0123456789abcdef", "fake"),
        Unauthorized,
        "tampered or unsigned",
    ),
    (
        "signed-by-another-node",
        [encoded()],
        ClusterAuth(SECRET, "other"),
        Unauthorized,
        "signed by node 'other'",
    ),
    (
        "bad-second-page",
        [encoded(entries=[[A, 1, "k", 5, {}]], next=[A, 1]), encoded(entries="nope")],
        FAKE_SIGNER,
        MalformedPayload,
        "entries must be a list",
    ),
    (
        "vector-changes-mid-round",
        [encoded(entries=[[A, 1, "k", 5, {}]], next=[A, 1]), encoded(vector={A: 3}, entries=[])],
        FAKE_SIGNER,
        RoundAbandoned,
        "vector changed during the round",
    ),
    (
        "cursor-does-not-advance",
        [
            encoded(entries=[[A, 1, "k", 5, {}]], next=[A, 1]),
            encoded(entries=[], next=[A, 1]),
        ],
        FAKE_SIGNER,
        MalformedPayload,
        "cursor did not advance",
    ),
    ("stalls", [b"STALL"], FAKE_SIGNER, PeerTimeout, "made no progress in time"),
]


@pytest.mark.parametrize(
    ("bodies", "signer", "error", "match"),
    [(b, s, e, m) for _, b, s, e, m in HOSTILE_PAGES],
    ids=[n for n, *_ in HOSTILE_PAGES],
)
async def test_a_hostile_page_is_refused_nothing_applied_and_v_not_raised(
    node: Node,
    responder: Callable[..., Any],
    bodies: list[bytes],
    signer: ClusterAuth | None,
    error: type[VVStoreError],
    match: str,
) -> None:
    fake, peer = await responder(bodies, signer, timeout=1.0)
    before = await node.store.vector()
    with pytest.raises(error, match=match):
        await pull_once(node.store, peer, max_pages=10)
    assert await node.store.vector() == before, "V must not be raised by a failed round"
    assert (await node.read("j")).value() == 0, "the last entry of a refused round is never applied"
    if len(bodies) == 1:
        assert (await node.read("k")).value() == 0
        assert await node.list_counters(prefix="", after=None, limit=10) == ([], None)
    assert fake.pulls == len(bodies)
    # The node still takes writes.
    [outcome] = await node.write([Write("after", 1)])
    assert outcome.state.value() == 1


async def test_the_same_responder_with_a_valid_page_is_applied(
    node: Node, responder: Callable[..., Any]
) -> None:
    """The control for the table above: the harness itself lets a good page through."""
    fake, peer = await responder(
        [encoded(entries=[[A, 1, "k", 5, {}]], next=[A, 1]), encoded(entries=[[A, 2, "j", 3, {}]])],
        FAKE_SIGNER,
    )
    result = await pull_once(node.store, peer, max_pages=10)
    assert result.complete and result.pages == 2 and fake.pulls == 2
    assert (await node.read("k")).value() == 5
    assert (await node.read("j")).value() == 3
    assert (await node.store.vector()).get(A) == 2


async def test_an_entry_conflicting_with_a_held_one_is_refused(
    node: Node, responder: Callable[..., Any]
) -> None:
    """The same dot (A, 1) once for "k", then for another key: the second is a protocol
    violation, refused whole; the held entry stays."""
    first = encoded(vector={A: 1}, entries=[[A, 1, "k", 5, {}]])
    conflicting = encoded(vector={A: 2}, entries=[[A, 1, "x", 9, {}], [A, 2, "j", 3, {}]])
    _, peer = await responder([first, conflicting], FAKE_SIGNER)
    await pull_once(node.store, peer, max_pages=10)
    after_first = await node.store.vector()
    assert after_first.get(A) == 1
    with pytest.raises(ConflictingEntry):
        await pull_once(node.store, peer, max_pages=10)
    assert await node.store.vector() == after_first
    assert (await node.read("k")).value() == 5
    assert (await node.read("x")).value() == 0
    assert (await node.read("j")).value() == 0, "the whole page is refused"


async def test_the_sync_loop_records_a_hostile_peer_and_the_api_keeps_serving(
    aiohttp_client: AiohttpClient,
    node: Node,
    responder: Callable[..., Any],
) -> None:
    """What production does with a hostile page: the round fails, /status says why, the
    node's clients see nothing but that."""
    _, peer = await responder([encoded(v=UNKNOWN)], FAKE_SIGNER)
    link = PeerLink(peer)
    assert await node.sync.round(link) is None
    assert link.reachable is False and link.failures == 1
    assert link.last_error is not None and link.last_error.startswith("UnsupportedVersion")
    client = await aiohttp_client(create_app(node))
    async with client.post("/counters/k", json={"amount": 2}) as response:
        assert response.status == 200
        assert (await response.json())["value"] == 2
    assert (await node.store.vector()).get(A) == 0
