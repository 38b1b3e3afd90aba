"""The authentication matrix, through the real aiohttp application and the real HttpPeer.

Client routes take the bearer token and nothing else; sync routes take the cluster HMAC and
nothing else; ``GET /health`` is open. Refused requests change nothing. A sync response is
signed over the request's nonce, and a requester refuses a response that was altered on the
way, before parsing it. Configuration refuses peers on other hosts without a cluster secret,
and ``serve`` warns when it listens beyond loopback without a token.
"""

from __future__ import annotations

import asyncio
import json
import logging
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

import vvstore.node as node_module
from vvstore.api import GuardedSite, create_app
from vvstore.auth import TokenAuth
from vvstore.clock import VersionVector
from vvstore.config import NodeConfig, is_loopback_host
from vvstore.counter import Entry
from vvstore.errors import ConfigError, Unauthorized
from vvstore.node import Node, serve
from vvstore.peer import HttpPeer
from vvstore.routes import ROUTES
from vvstore.signing import (
    NODE_HEADER,
    NONCE_HEADER,
    RESPONSE_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ClusterAuth,
)
from vvstore.sync import pull_once
from vvstore.wire import (
    Notice,
    Page,
    PullRequest,
    RetiredRequest,
    encode_notice,
    encode_page,
    encode_pull_request,
    encode_retired_request,
)

ApiClient = TestClient[web.Request, web.Application]

TOKEN = "auth-test-token-0123456789abcdef0123456789"
SECRET = b"auth-test-cluster-secret-0123456789abcdef"
NODE = "n1"  # the conftest node id: the recipient of every signed request here
PEER = "peer"
FAKE_ACTOR = "fake~0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
WWW_AUTHENTICATE = 'Bearer realm="vvstore"'

#: One valid request per client route: (method, path, route template, body).
CLIENT_CALLS: list[tuple[str, str, str, bytes | None]] = [
    ("GET", "/status", "/status", None),
    ("GET", "/metrics", "/metrics", None),
    ("GET", "/openapi.yaml", "/openapi.yaml", None),
    ("GET", "/counters", "/counters", None),
    ("GET", "/counters/k", "/counters/{key}", None),
    ("POST", "/counters/k", "/counters/{key}", b'{"amount": 2}'),
    ("DELETE", "/counters/k", "/counters/{key}", None),
    ("POST", "/batch", "/batch", b'{"increments": [{"key": "k", "amount": 3}]}'),
]
SYNC_PATHS = ["/sync/pull", "/sync/notice", "/sync/retired", "/sync/hello"]


def pull_body() -> bytes:
    return encode_pull_request(PullRequest(VersionVector()))


def notice_body() -> bytes:
    return encode_notice(Notice(PEER, f"{PEER}~0123456789abcdef", VersionVector()))


def retired_body() -> bytes:
    return encode_retired_request(RetiredRequest())


SYNC_BODIES: dict[str, Callable[[], bytes]] = {
    "/sync/pull": pull_body,
    "/sync/notice": notice_body,
    "/sync/retired": retired_body,
    "/sync/hello": bytes,  # a hello has no body
}


def signed(
    path: str,
    body: bytes,
    *,
    signer: ClusterAuth | None = None,
    recipient: str = NODE,
    offset: float = 0.0,
) -> dict[str, str]:
    """Headers of a sync request from ``signer`` (the peer by default) to ``recipient``."""
    signer = signer or ClusterAuth(SECRET, PEER)
    return signer.sign_request(
        "POST",
        path,
        body,
        recipient=recipient,
        now=time.time() + offset,
        nonce=secrets.token_hex(16),
    )


@pytest.fixture
async def secured(make_config: Callable[..., NodeConfig]) -> AsyncIterator[Node]:
    """A node (id n1) whose API needs the token on client routes, the HMAC on sync routes."""
    cluster = ClusterAuth(SECRET, NODE)
    opened = await Node.open(make_config(NODE), rng=random.Random(1), cluster=cluster)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, secured: Node) -> ApiClient:
    token = TokenAuth(TOKEN.encode())
    return await aiohttp_client(create_app(secured, token=token, cluster=secured.cluster))


async def send(
    client: ApiClient,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    """One request; its status, parsed JSON body (None if not JSON) and headers."""
    async with client.request(method, path, data=body, headers=headers) as response:
        raw = await response.read()
        json_body = raw and response.content_type == "application/json"
        parsed = json.loads(raw) if json_body else None
        return response.status, parsed, response.headers


def assert_refused(status: int, body: Any, code: str) -> None:
    assert status == 401, body
    assert body == {"error": {"code": code, "message": body["error"]["message"]}}
    assert body["error"]["message"]


async def value_of(client: ApiClient, key: str = "k") -> int:
    status, body, _ = await send(client, "GET", f"/counters/{key}", headers=BEARER)
    assert status == 200, body
    value: int = body["value"]
    return value


async def status_of(client: ApiClient) -> dict[str, Any]:
    status, body, _ = await send(client, "GET", "/status", headers=BEARER)
    assert status == 200, body
    assert isinstance(body, dict)
    return body


# --- the matrix itself -----------------------------------------------------------------------


def test_the_calls_below_cover_every_route_of_the_route_table() -> None:
    needing = {
        credential: {(r.method, r.path) for r in ROUTES if r.credential == credential}
        for credential in ("none", "token", "cluster")
    }
    assert {(m, t) for m, _, t, _ in CLIENT_CALLS} == needing["token"]
    assert {("POST", path) for path in SYNC_PATHS} == needing["cluster"]
    assert needing["none"] == {("GET", "/health")}
    assert sum(map(len, needing.values())) == len(ROUTES)


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_token"),
        ("Bearer", "missing_token"),
        ("Basic " + TOKEN, "wrong_scheme"),
        ("Bearer " + TOKEN[:-1] + "X", "wrong_token"),  # same length, last byte differs
        ("Bearer " + TOKEN[:-1], "wrong_token"),  # a prefix of the token
        ("Bearer " + TOKEN + "X", "wrong_token"),  # the token and more
        ("Bearer " + TOKEN.upper(), "wrong_token"),
    ],
    ids=["none", "empty", "basic", "last-byte", "prefix", "longer", "upper-case"],
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [(m, p, b) for m, p, _, b in CLIENT_CALLS],
    ids=[f"{m} {p}" for m, p, _, _ in CLIENT_CALLS],
)
async def test_client_routes_refuse_a_missing_or_wrong_token(
    client: ApiClient,
    method: str,
    path: str,
    body: bytes | None,
    authorization: str | None,
    code: str,
) -> None:
    await send(client, "POST", "/counters/k", body=b'{"amount": 7}', headers=BEARER)
    before = await status_of(client)
    headers = {} if authorization is None else {"Authorization": authorization}
    status, error, response_headers = await send(client, method, path, body=body, headers=headers)
    assert_refused(status, error, code)
    assert response_headers["WWW-Authenticate"] == WWW_AUTHENTICATE
    assert await value_of(client) == 7, "a refused request must change nothing"
    assert (await status_of(client))["version"] == before["version"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [(m, p, b) for m, p, _, b in CLIENT_CALLS],
    ids=[f"{m} {p}" for m, p, _, _ in CLIENT_CALLS],
)
async def test_client_routes_accept_the_token(
    client: ApiClient, method: str, path: str, body: bytes | None
) -> None:
    for scheme in ("Bearer", "bearer"):
        headers = {"Authorization": f"{scheme} {TOKEN}"}
        status, reply, response_headers = await send(
            client, method, path, body=body, headers=headers
        )
        assert status == 200, reply
        assert "WWW-Authenticate" not in response_headers


async def test_head_needs_the_token_like_get(client: ApiClient) -> None:
    assert (await send(client, "HEAD", "/status"))[0] == 401
    assert (await send(client, "HEAD", "/status", headers=BEARER))[0] == 200
    assert (await send(client, "HEAD", "/health"))[0] == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, BEARER])
async def test_health_is_open_whatever_the_credentials(
    client: ApiClient, secured: Node, headers: dict[str, str]
) -> None:
    assert (await send(client, "GET", "/health", headers=headers))[:2] == (
        200,
        {"status": "ok", "node": secured.node_id},
    )


@pytest.mark.parametrize(
    ("method", "path", "with_token"),
    [
        ("GET", "/nope", 404),
        ("GET", "/counters/", 400),  # an empty key, named as such once the token is given
        ("POST", "/health", 405),
        ("PUT", "/counters/k", 405),
        ("GET", "/sync/pull", 405),
        ("DELETE", "/batch", 405),
    ],
)
async def test_unknown_routes_and_methods_need_the_token_first(
    client: ApiClient, method: str, path: str, with_token: int
) -> None:
    status, body, headers = await send(client, method, path)
    assert_refused(status, body, "missing_token")
    assert "Allow" not in headers, "a stranger learns nothing about the routes"
    status, body, _ = await send(client, method, path, headers=BEARER)
    assert status == with_token, body


async def test_the_cluster_signature_is_not_accepted_on_client_routes(client: ApiClient) -> None:
    before = await value_of(client)
    for method, path, _, body in CLIENT_CALLS:
        headers = signed(path, body or b"")
        status, error, _ = await send(client, method, path, body=body, headers=headers)
        assert_refused(status, error, "missing_token")
    assert await value_of(client) == before


# --- sync routes -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", SYNC_PATHS)
async def test_a_signed_sync_request_is_accepted_and_its_response_signed(
    client: ApiClient, path: str
) -> None:
    body = SYNC_BODIES[path]()
    headers = signed(path, body)
    async with client.post(path, data=body, headers=headers) as response:
        assert response.status == 200
        raw = await response.read()
        assert response.headers[NODE_HEADER] == NODE
        assert RESPONSE_SIGNATURE_HEADER in response.headers
        peer = ClusterAuth(SECRET, PEER)
        peer.verify_response(headers[NONCE_HEADER], 200, raw, response.headers, expected_node=NODE)
        flipped = bytes([raw[0] ^ 1]) + raw[1:]
        with pytest.raises(Unauthorized) as info:
            peer.verify_response(
                headers[NONCE_HEADER], 200, flipped, response.headers, expected_node=NODE
            )
        assert info.value.code == "tampered_response"
        with pytest.raises(Unauthorized):  # the signature is bound to the request's nonce
            peer.verify_response(
                secrets.token_hex(16), 200, raw, response.headers, expected_node=NODE
            )
        with pytest.raises(Unauthorized):  # and to the status
            peer.verify_response(
                headers[NONCE_HEADER], 500, raw, response.headers, expected_node=NODE
            )


def _tamper_body(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    if not body:  # a hello
        return headers, b" "
    assert body.startswith(b"{")
    return headers, b"{ " + body[1:]  # the same JSON, other bytes


def _drop_signature(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    return {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}, body


def _flip_signature(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    sig = headers[SIGNATURE_HEADER]
    return {**headers, SIGNATURE_HEADER: ("0" if sig[0] != "0" else "1") + sig[1:]}, body


def _other_sender(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    return {**headers, NODE_HEADER: "impostor"}, body


def _later_timestamp(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    return {**headers, TIMESTAMP_HEADER: str(int(headers[TIMESTAMP_HEADER]) + 1)}, body


def _malformed_nonce(headers: dict[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    return {**headers, NONCE_HEADER: "not-hex"}, body


@pytest.mark.parametrize(
    ("alter", "code"),
    [
        (_tamper_body, "bad_signature"),
        (_drop_signature, "missing_auth_header"),
        (_flip_signature, "bad_signature"),
        (_other_sender, "bad_signature"),
        (_later_timestamp, "bad_signature"),
        (_malformed_nonce, "malformed_auth_header"),
    ],
    ids=["body", "no-signature", "signature", "sender", "timestamp", "nonce"],
)
@pytest.mark.parametrize("path", SYNC_PATHS)
async def test_an_altered_sync_request_is_refused(
    client: ApiClient,
    path: str,
    alter: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]],
    code: str,
) -> None:
    headers, body = alter(*(lambda b: (signed(path, b), b))(SYNC_BODIES[path]()))
    status, error, response_headers = await send(client, "POST", path, body=body, headers=headers)
    assert_refused(status, error, code)
    assert RESPONSE_SIGNATURE_HEADER not in response_headers, "refusals go out unsigned"


@pytest.mark.parametrize("path", SYNC_PATHS)
async def test_unsigned_sync_requests_and_the_token_are_refused(
    client: ApiClient, path: str
) -> None:
    body = SYNC_BODIES[path]()
    for headers in ({}, BEARER):
        status, error, _ = await send(client, "POST", path, body=body, headers=headers)
        assert_refused(status, error, "missing_auth_header")


@pytest.mark.parametrize("path", SYNC_PATHS)
async def test_a_request_signed_with_another_secret_or_for_another_node_is_refused(
    client: ApiClient, path: str
) -> None:
    body = SYNC_BODIES[path]()
    stranger = ClusterAuth(b"another-cluster-secret-0123456789abcdef", PEER)
    for headers in (signed(path, body, signer=stranger), signed(path, body, recipient="n2")):
        status, error, _ = await send(client, "POST", path, body=body, headers=headers)
        assert_refused(status, error, "bad_signature")


@pytest.mark.parametrize("path", SYNC_PATHS)
async def test_a_replayed_nonce_is_refused(client: ApiClient, path: str) -> None:
    body = SYNC_BODIES[path]()
    headers = signed(path, body)
    assert (await send(client, "POST", path, body=body, headers=headers))[0] == 200
    status, error, _ = await send(client, "POST", path, body=body, headers=headers)
    assert_refused(status, error, "replayed_nonce")
    # A fresh nonce is fine: the refusal is of the replay, not of the sender.
    assert (await send(client, "POST", path, body=body, headers=signed(path, body)))[0] == 200


@pytest.mark.parametrize("offset", [-31.0, 31.0])
async def test_a_stale_timestamp_is_refused_and_its_skew_shown_in_status(
    client: ApiClient, offset: float
) -> None:
    body = pull_body()
    liar = ClusterAuth(b"another-cluster-secret-0123456789abcdef", "liar")
    status, error, _ = await send(
        client,
        "POST",
        "/sync/pull",
        body=body,
        headers=signed("/sync/pull", body, signer=liar, offset=offset),
    )
    assert_refused(status, error, "clock_skew")
    assert (await status_of(client))["clock_skew"] == {}, "only a valid signature records skew"

    headers = signed("/sync/pull", body, offset=offset)
    status, error, _ = await send(client, "POST", "/sync/pull", body=body, headers=headers)
    assert_refused(status, error, "clock_skew")
    skew = (await status_of(client))["clock_skew"]
    assert set(skew) == {PEER}
    assert abs(skew[PEER] - offset) < 5, skew

    # Within the window it goes through, and the skew is updated.
    inside = 25.0 if offset > 0 else -25.0
    headers = signed("/sync/pull", body, offset=inside)
    assert (await send(client, "POST", "/sync/pull", body=body, headers=headers))[0] == 200
    assert abs((await status_of(client))["clock_skew"][PEER] - inside) < 5


# --- a tampered response through the real HttpPeer -------------------------------------------


class FakeResponder:
    """Something answering on a peer's port: a valid, signed page, then altered on the way."""

    def __init__(self, alter: Callable[[bytes], bytes]) -> None:
        self.cluster = ClusterAuth(SECRET, "fake")
        self.alter = alter
        self.pulls = 0
        vector = VersionVector.from_dict({FAKE_ACTOR: 1})
        entry = Entry(FAKE_ACTOR, 1, 5)
        self.page = encode_page(Page("fake", FAKE_ACTOR, vector, (("k", entry),), None))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_post("/sync/pull", self.pull)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "node": "fake"})

    async def pull(self, request: web.Request) -> web.Response:
        body = await request.read()
        # The requester signed for us: verify as a node would.
        self.cluster.verify_request(
            "POST", request.raw_path, body, request.headers, now=time.time()
        )
        self.pulls += 1
        headers = self.cluster.sign_response(request.headers[NONCE_HEADER], 200, self.page)
        return web.Response(
            body=self.alter(self.page), headers=headers, content_type="application/json"
        )


def _one_byte(page: bytes) -> bytes:
    altered = page.replace(b',"k",5,{}]', b',"k",6,{}]')
    assert (
        len(altered) == len(page) and sum(a != b for a, b in zip(altered, page, strict=True)) == 1
    )
    return altered


@pytest.mark.parametrize(
    ("alter", "applied"),
    [(lambda page: page, True), (_one_byte, False)],
    ids=["untouched", "one-byte-changed"],
)
async def test_http_peer_refuses_a_tampered_response_and_applies_nothing(
    aiohttp_server: AiohttpServer,
    node: Node,
    alter: Callable[[bytes], bytes],
    applied: bool,
) -> None:
    fake = FakeResponder(alter)
    server = await aiohttp_server(fake.app())
    async with aiohttp.ClientSession() as session:
        peer = HttpPeer(
            str(server.make_url("")),
            session,
            connect_timeout=5,
            read_timeout=5,
            cluster=ClusterAuth(SECRET, node.node_id),
        )
        before = await node.store.vector()
        if applied:
            result = await pull_once(node.store, peer, max_pages=4)
            assert result.complete
            assert (await node.read("k")).value() == 5
            assert (await node.store.vector()).get(FAKE_ACTOR) == 1
        else:
            with pytest.raises(Unauthorized) as info:
                await pull_once(node.store, peer, max_pages=4)
            assert info.value.code == "tampered_response"
            assert (await node.read("k")).value() == 0
            assert await node.store.vector() == before
            assert peer.bytes_received == 0, "an unauthenticated response is not counted"
    assert fake.pulls == 1


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "peer", ["http://10.0.0.7:8080", "http://node-b.example:8080", "https://[2001:db8::1]:8443"]
)
def test_peers_beyond_loopback_need_a_cluster_secret(
    make_config: Callable[..., NodeConfig], peer: str
) -> None:
    with pytest.raises(ConfigError, match="cluster secret"):
        make_config(peers=(peer,))
    assert make_config(peers=(peer,), cluster_secret=SECRET.decode()).peers == (peer,)


@pytest.mark.parametrize(
    "peer", ["http://127.0.0.1:8081", "http://localhost:8081", "http://[::1]:8081"]
)
def test_loopback_peers_need_no_cluster_secret(
    make_config: Callable[..., NodeConfig], peer: str
) -> None:
    assert make_config(peers=(peer,)).cluster_secret is None


def test_a_bind_beyond_loopback_needs_a_cluster_secret(
    make_config: Callable[..., NodeConfig],
) -> None:
    with pytest.raises(ConfigError, match="cluster secret"):
        make_config(host="0.0.0.0", token=TOKEN)
    make_config(host="0.0.0.0", token=TOKEN, cluster_secret=SECRET.decode())


def test_short_secrets_are_refused(make_config: Callable[..., NodeConfig]) -> None:
    for field in ("token", "cluster_secret"):
        with pytest.raises(ConfigError, match="at least 32 bytes"):
            make_config(**{field: "x" * 31})
        make_config(**{field: "x" * 32})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("node-a.example", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("host", "token", "warned"),
    [("0.0.0.0", None, True), ("0.0.0.0", TOKEN, False), ("127.0.0.1", None, False)],
    ids=["all-interfaces-no-token", "all-interfaces-token", "loopback-no-token"],
)
async def test_serve_warns_when_listening_beyond_loopback_without_a_token(
    make_config: Callable[..., NodeConfig],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    host: str,
    token: str | None,
    warned: bool,
) -> None:
    """The node is told to listen on ``host``; the socket is bound to 127.0.0.1 regardless
    (tests only listen on loopback), so what is checked is serve's decision to warn."""
    real_site = node_module.GuardedSite
    bound: list[str | None] = []

    def loopback_site(runner: web.AppRunner, host: str, port: int) -> GuardedSite:
        bound.append(host)
        return real_site(runner, "127.0.0.1", port)

    monkeypatch.setattr(node_module, "GuardedSite", loopback_site)  # what serve calls
    ready = asyncio.Event()
    caplog.set_level(logging.INFO, logger="vvstore")
    task = asyncio.create_task(
        serve(
            make_config(host=host, token=token, cluster_secret=SECRET.decode()),
            ready=lambda url: ready.set(),
        )
    )
    waiter = asyncio.create_task(ready.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, timeout=30, return_when="FIRST_COMPLETED")
        assert waiter in done, task.result() if task.done() else "serve did not start in 30 s"
    finally:
        waiter.cancel()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert bound == [host]
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "token" in r.getMessage()
    ]
    assert bool(warnings) is warned, warnings
    if warned:
        assert "--token-file" in warnings[0] and "TLS" in warnings[0]


async def test_the_refusing_node_logs_why_once_a_minute_per_sender_and_reason(
    client: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Mismatched secrets show on the refusing side too, without a line per request."""
    body = SYNC_BODIES["/sync/pull"]()
    stranger = ClusterAuth(b"another-cluster-secret-0123456789abcdef", PEER)
    with caplog.at_level(logging.WARNING, logger="vvstore.api"):
        for _ in range(3):
            headers = signed("/sync/pull", body, signer=stranger)
            status, error, _ = await send(client, "POST", "/sync/pull", body=body, headers=headers)
            assert_refused(status, error, "bad_signature")
        status, error, _ = await send(client, "POST", "/sync/pull", body=body, headers={})
        assert_refused(status, error, "missing_auth_header")
    lines = [r.getMessage() for r in caplog.records if r.name == "vvstore.api"]
    assert len(lines) == 2, lines
    assert f"claims to be node {PEER!r}" in lines[0] and "bad_signature" in lines[0]
    assert "missing_auth_header" in lines[1]


async def test_a_peer_with_another_cluster_secret_is_told_the_secrets_differ(
    aiohttp_server: AiohttpServer, secured: Node, make_config: Callable[..., NodeConfig]
) -> None:
    """The requester's error names the cause, not only "tampered or unsigned response"."""
    server = await aiohttp_server(
        create_app(secured, token=TokenAuth(TOKEN.encode()), cluster=secured.cluster)
    )
    async with aiohttp.ClientSession() as session:
        peer = HttpPeer(
            str(server.make_url("")),
            session,
            connect_timeout=5,
            read_timeout=5,
            cluster=ClusterAuth(b"another-cluster-secret-0123456789abcdef", PEER),
        )
        puller = await Node.open(make_config(PEER), rng=random.Random(2))
        try:
            with pytest.raises(Unauthorized, match="the cluster secrets differ") as info:
                await pull_once(puller.store, peer, max_pages=4)
        finally:
            await puller.close()
    assert info.value.code == "unsigned_response"
