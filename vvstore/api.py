"""The HTTP API: aiohttp.web routes over a :class:`NodeService`, JSON in and out.

Errors map to statuses in one place, :func:`error_response`; every error body is
``{"error": {"code": ..., "message": ...}}``. Keys are decoded from the raw request path by
:func:`vvstore.codec.decode_key`, so ``/``, ``%``, ``+``, spaces and any Unicode round-trip.
Bodies are read up to the route's limit and no further, and a sync route reads a body only
once its signature, which covers the body's hash, is verified (at most
:data:`UNVERIFIED_BODY_LIMIT` bytes before, from a sender that does not announce the hash). No
malformed request, however malformed, may produce a 5xx: a 500 here is a bug, logged with its
traceback.

Connections are guarded (:class:`ConnectionGuard`, served by :class:`GuardedSite`): one that
has not presented a valid credential is closed a few seconds after it opened, whatever it is
doing (headers sent slowly, a body trickled in, idling), and only so many such connections may
be open at once.

This module must never touch SQLite or speak to other nodes itself; it only calls the service.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiohttp import web

from vvstore.auth import AUTHORIZATION_HEADER, TokenAuth, credential_for
from vvstore.clock import VersionVector
from vvstore.codec import (
    Outcome,
    Write,
    counter_body,
    decode_batch,
    decode_increment,
    decode_int_param,
    decode_key,
    reply_body,
)
from vvstore.counter import CounterState
from vvstore.errors import (
    CodecError,
    ConflictingEntry,
    IdempotencyKeyReused,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    Overflow,
    PayloadTooLarge,
    RequestError,
    RequestTimeout,
    Unauthorized,
    Unavailable,
    VVStoreError,
)
from vvstore.idempotency import normalize_idempotency_key
from vvstore.metrics import CONTENT_TYPE, Metrics
from vvstore.retirement import Retirements
from vvstore.routes import HELLO_PATH, ROUTES, route_for
from vvstore.signing import (
    CONTENT_HASH_HEADER,
    NODE_HEADER,
    NONCE_HEADER,
    ClusterAuth,
    check_body,
)
from vvstore.wire import (
    MAX_SYNC_REQUEST_BYTES,
    Notice,
    Page,
    PullRequest,
    RetiredPage,
    RetiredRequest,
    decode_notice,
    decode_pull_request,
    decode_retired_request,
    encode_page,
    encode_retired_page,
)

__all__ = [
    "BATCH_BODY_LIMIT",
    "COUNTER_BODY_LIMIT",
    "GUARD",
    "SERVICE",
    "SYNC_BODY_LIMIT",
    "UNVERIFIED_BODY_LIMIT",
    "ConnectionGuard",
    "GuardedSite",
    "NodeService",
    "create_app",
    "error_response",
]

log = logging.getLogger(__name__)
#: One line per request: method, route template, status, seconds (never a key or a header).
access_log = logging.getLogger("vvstore.access")

COUNTER_BODY_LIMIT = 64 * 1024
BATCH_BODY_LIMIT = 1024 * 1024
# Two vectors at their byte limit and an envelope: the wire's bound on what a peer may send.
SYNC_BODY_LIMIT = MAX_SYNC_REQUEST_BYTES
#: Most bytes of a sync request's body read before its signature is verified: only from a
#: sender that does not send X-VV-Content-SHA256 (a release before it); others none.
UNVERIFIED_BODY_LIMIT = 64 * 1024
COUNTERS_PREFIX = "/counters/"


class NodeService(Protocol):
    """What the HTTP API needs from a node (the node module provides it; tests may fake it)."""

    @property
    def node_id(self) -> str: ...

    async def write(self, writes: Sequence[Write]) -> list[Outcome]: ...

    async def read(self, key: str) -> CounterState: ...

    async def list_counters(
        self, *, prefix: str, after: str | None, limit: int
    ) -> tuple[list[tuple[str, CounterState]], str | None]: ...

    async def status(self) -> dict[str, Any]: ...

    @property
    def metrics(self) -> Metrics:
        """The node's metrics, which the API counts every request into."""
        ...

    async def scrape(self) -> bytes: ...

    @property
    def retirements(self) -> Retirements: ...

    async def serve_pull(self, request: PullRequest) -> Page: ...

    async def receive_notice(self, notice: Notice) -> VersionVector: ...

    async def serve_retired(self, request: RetiredRequest) -> RetiredPage: ...


SERVICE = web.AppKey("service", NodeService)
TOKEN = web.AppKey("token", TokenAuth)
CLUSTER = web.AppKey("cluster", ClusterAuth)
BODY_TIMEOUT = web.AppKey("body_timeout", float)
#: Whether each request gets an access-log line (the access_log setting).
ACCESS_LOG = web.AppKey("access_log", bool)
# The body _auth read and verified, for the handler. aiohttp 3.14 warns on a plain string key
# in request storage (an error under the test suite's warning filter, so a 500); older
# versions have no RequestKey.
_BODY: Any = web.RequestKey("body", bytes) if hasattr(web, "RequestKey") else "body"

_STATUS: dict[type[VVStoreError], int] = {
    InvalidRequest: 400,
    CodecError: 400,
    Unauthorized: 401,
    NotFound: 404,
    MethodNotAllowed: 405,
    ConflictingEntry: 409,
    RequestTimeout: 408,
    PayloadTooLarge: 413,
    Overflow: 422,
    IdempotencyKeyReused: 422,
    Unavailable: 503,
}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        # ASCII with \u escapes: any key round-trips, and text echoed from a request (even a
        # lone surrogate) can always be encoded.
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(exc: VVStoreError) -> web.Response:
    """The one place that maps an error to an HTTP status and a JSON body."""
    status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), None)
    if status is None:
        status = 400 if isinstance(exc, RequestError) else 503
    headers = {}
    if status == 503:  # every 503 says when to come back
        hint = exc.retry_after if isinstance(exc, Unavailable) else 1.0
        headers["Retry-After"] = str(max(1, round(hint)))
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="vvstore"'
    body = {"error": {"code": exc.code, "message": exc.message}}
    return _json(body, status, headers or None)


#: The status recorded (metrics, access log) for a request whose client closed the connection
#: before the answer: nobody received a status, and 499 is the usual figure for it.
CLIENT_CLOSED = 499
#: Seconds between two log lines about the same refusal (sender and code).
REFUSAL_LOG_INTERVAL = 60.0
_REFUSALS_LOGGED = web.AppKey("refusals_logged", dict[tuple[str, str], float])


def _log_refused_peer(request: web.Request, exc: Unauthorized) -> None:
    """Say on this side why a sync request was refused (mismatched secrets show here), once a
    minute per claimed sender and reason."""
    sender = request.headers.get(NODE_HEADER, "?")[:64]
    logged = request.app[_REFUSALS_LOGGED]
    now, key = time.monotonic(), (sender, exc.code)
    if now - logged.get(key, -REFUSAL_LOG_INTERVAL) < REFUSAL_LOG_INTERVAL:
        return
    logged[key] = now
    log.warning(
        "refused %s %s from %s (claims to be node %r): %s: %s",
        request.method,
        request.path,
        request.remote,
        sender,
        exc.code,
        exc.message,
    )


@web.middleware
async def _observe(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count and time every request, refused ones included, and write its access-log line.

    The route is the template of the route table, so no key reaches a label or the log.
    """
    started = time.perf_counter()
    status = 500  # what aiohttp answers when a handler raises past the error middleware
    try:
        response = await handler(request)
        status = response.status
        return response
    except asyncio.CancelledError:
        status = CLIENT_CLOSED  # the client went away before the answer
        raise
    finally:
        seconds = time.perf_counter() - started
        metrics = _service(request).metrics
        route = metrics.observe_request(request.method, request.path, status, seconds)
        if request.app[ACCESS_LOG]:
            _access_line(request, route, status, seconds)


def _access_line(request: web.Request, route: str, status: int, seconds: float) -> None:
    """One access-log line. Peers' sync calls come every second or so per peer: at DEBUG when
    they succeed, so that the INFO log is the clients' requests and whatever went wrong."""
    found = route_for(request.method, request.path)
    quiet = found is not None and found.credential == "cluster" and status < 400
    level = logging.DEBUG if quiet else logging.INFO
    if access_log.isEnabledFor(level):
        access_log.log(
            level, "%s %s %s %d %.6fs", request.remote, request.method, route, status, seconds
        )


@web.middleware
async def _auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Client routes need the token, sync routes the cluster signature (when configured).

    A verified sync request's response is signed over the request's nonce, the status and the
    body, so the requester can authenticate what it pulls.
    """
    credential = credential_for(request.method, request.path)
    token, cluster = request.app.get(TOKEN), request.app.get(CLUSTER)
    guard = request.app[GUARD]
    try:
        if credential == "token" and token is not None:
            token.check(request.headers.get(AUTHORIZATION_HEADER))
        if credential != "cluster" or cluster is None:
            if credential != "none":  # the route's credential, if any, was presented
                guard.trust(request.transport)
            return await handler(request)
        body, sender = await _verified_body(request, cluster, guard)
    except VVStoreError as exc:
        if credential == "cluster" and isinstance(exc, Unauthorized):
            _log_refused_peer(request, exc)
        refusal = error_response(exc)
        if not request.content.is_eof():
            # Close rather than read (and wait for) the rest of a body we refused unread.
            refusal.force_close()
        return refusal
    request[_BODY] = body
    response = await handler(request)
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        nonce = request.headers.get(NONCE_HEADER, "")
        signature = cluster.sign_response(nonce, response.status, response.body, sender=sender)
        response.headers.update(signature)
    return response


async def _verified_body(
    request: web.Request, cluster: ClusterAuth, guard: ConnectionGuard
) -> tuple[bytes, str]:
    """The body of a sync request and its sender, the signature verified before the body is
    read (or, from a sender that does not announce the body's hash, after reading at most
    :data:`UNVERIFIED_BODY_LIMIT` bytes, within the unauthenticated timeout)."""
    any_recipient = request.path == HELLO_PATH
    if CONTENT_HASH_HEADER in request.headers:
        sender, digest = cluster.verify_headers(
            request.method,
            request.raw_path,
            request.headers,
            now=time.time(),
            any_recipient=any_recipient,
        )
        guard.trust(request.transport)
        body = await _body(request, SYNC_BODY_LIMIT)
        check_body(body, digest)
        return body, sender
    body = await _body(
        request,
        UNVERIFIED_BODY_LIMIT,
        timeout=guard.timeout,
        too_large=f"send {CONTENT_HASH_HEADER}: a sync request without it is read only up to"
        f" {UNVERIFIED_BODY_LIMIT} bytes, before its signature is verified",
    )
    sender = cluster.verify_request(
        request.method,
        request.raw_path,
        body,
        request.headers,
        now=time.time(),
        any_recipient=any_recipient,
    )
    guard.trust(request.transport)
    return body, sender


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except VVStoreError as exc:
        return error_response(exc)
    except web.HTTPNotFound:
        if request.path == COUNTERS_PREFIX:
            # /counters/{key} with nothing after the slash: say what is wrong, not "no route".
            return error_response(
                InvalidRequest("the counter key is empty: a key is 1 to 256 bytes of UTF-8")
            )
        return error_response(NotFound(f"no route for {request.method} {request.path}"))
    except web.HTTPMethodNotAllowed as exc:
        response = error_response(
            MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
        )
        response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return response
    except web.HTTPRequestEntityTooLarge:
        return error_response(PayloadTooLarge("the request body is too large"))
    except web.HTTPException as exc:
        if exc.status >= 500:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return _json({"error": {"code": code, "message": exc.text or exc.reason}}, exc.status)


async def _body(
    request: web.Request, limit: int, *, timeout: float | None = None, too_large: str = ""
) -> bytes:
    """Read the body, refusing (413) as soon as it is known to exceed ``limit`` bytes, and
    (408) when the client takes longer than ``timeout`` (the body timeout unless given) to
    send it. ``too_large`` replaces the 413's message."""
    if _BODY in request:
        read: bytes = request[_BODY]
        return read
    too_large = too_large or f"the body is over the {limit} byte limit of this route"
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(too_large)
    if request.content.is_eof():
        # All of it arrived with the headers (a small increment): no timer, no wait.
        whole = request.content.read_nowait(-1)
        if len(whole) > limit:
            raise PayloadTooLarge(too_large)
        return whole
    data = bytearray()
    if timeout is None:
        timeout = request.app.get(BODY_TIMEOUT, 10.0)
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await request.content.read(64 * 1024)
                if not chunk:
                    return bytes(data)
                data += chunk
                if len(data) > limit:
                    raise PayloadTooLarge(too_large)
    except TimeoutError:
        raise RequestTimeout("the request body did not arrive in time") from None


def _key(request: web.Request) -> str:
    raw = request.raw_path.split("?", 1)[0]
    if not raw.startswith(COUNTERS_PREFIX):
        raise NotFound(f"no route for {request.method} {request.path}")
    return decode_key(raw[len(COUNTERS_PREFIX) :])


def _service(request: web.Request) -> NodeService:
    return request.app[SERVICE]


async def health(request: web.Request) -> web.Response:
    return _json({"status": "ok", "node": _service(request).node_id})


async def status(request: web.Request) -> web.Response:
    return _json(await _service(request).status())


async def get_counter(request: web.Request) -> web.Response:
    key = _key(request)
    state = await _service(request).read(key)
    return _json(counter_body(key, state, siblings=True))


def _idempotency_key(request: web.Request) -> str | None:
    values = request.headers.getall("Idempotency-Key", [])
    if len(values) > 1:
        raise InvalidRequest("give one Idempotency-Key header, not several")
    return normalize_idempotency_key(values[0]) if values else None


def _outcome(outcome: Outcome) -> web.Response:
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return _json(reply_body(outcome), headers=headers)


async def post_counter(request: web.Request) -> web.Response:
    key = _key(request)
    idempotency_key = _idempotency_key(request)
    amount = decode_increment(await _body(request, COUNTER_BODY_LIMIT))
    [outcome] = await _service(request).write([Write(key, amount, idempotency_key)])
    return _outcome(outcome)


async def delete_counter(request: web.Request) -> web.Response:
    key = _key(request)
    idempotency_key = _idempotency_key(request)
    if await _body(request, COUNTER_BODY_LIMIT):
        raise InvalidRequest("DELETE takes no body")
    write = Write(key, 0, idempotency_key, reset=True)
    [outcome] = await _service(request).write([write])
    return _outcome(outcome)


def _query(request: web.Request, allowed: set[str]) -> dict[str, str]:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown query parameter(s): {', '.join(unknown)}")
    if len(request.query) != len(set(request.query)):
        raise InvalidRequest("a query parameter is given twice")
    return dict(request.query)


async def list_counters(request: web.Request) -> web.Response:
    query = _query(request, {"prefix", "limit", "after"})
    limit = decode_int_param("limit", query.get("limit", "100"), 1, 1000)
    counters, cursor = await _service(request).list_counters(
        prefix=query.get("prefix", ""), after=query.get("after"), limit=limit
    )
    return _json(
        {"counters": [{"key": k, "value": s.value()} for k, s in counters], "next": cursor}
    )


async def post_batch(request: web.Request) -> web.Response:
    writes = decode_batch(await _body(request, BATCH_BODY_LIMIT))
    outcomes = await _service(request).write(writes)
    return _json({"results": [reply_body(outcome) for outcome in outcomes]})


async def sync_pull(request: web.Request) -> web.Response:
    service = _service(request)
    pull = decode_pull_request(await _body(request, SYNC_BODY_LIMIT), service.retirements)
    page = await service.serve_pull(pull)
    return web.Response(body=encode_page(page), content_type="application/json")


async def sync_notice(request: web.Request) -> web.Response:
    service = _service(request)
    notice = decode_notice(await _body(request, SYNC_BODY_LIMIT), service.retirements)
    vector = await service.receive_notice(notice)
    if notice.version >= 2:  # the sender reads nothing of the reply: keep it O(1)
        return _json({"node": service.node_id})
    return _json({"node": service.node_id, "vector": vector.to_dict()})


async def sync_retired(request: web.Request) -> web.Response:
    service = _service(request)
    page = await service.serve_retired(
        decode_retired_request(await _body(request, SYNC_BODY_LIMIT))
    )
    return web.Response(body=encode_retired_page(page), content_type="application/json")


async def sync_hello(request: web.Request) -> web.Response:
    """Who answers here: the node id, in a signed answer when there is a cluster secret."""
    if await _body(request, SYNC_BODY_LIMIT):
        raise InvalidRequest("a hello takes no body")
    return _json({"node": _service(request).node_id})


async def metrics(request: web.Request) -> web.Response:
    body = await _service(request).scrape()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    spec = importlib.resources.files("vvstore").joinpath("openapi.yaml").read_bytes()
    return web.Response(body=spec, content_type="application/yaml")


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The handlers the route table (:data:`vvstore.routes.ROUTES`) names, by name.
_HANDLERS: dict[str, _Handler] = {
    handler.__name__: handler
    for handler in (
        health,
        status,
        metrics,
        openapi,
        list_counters,
        get_counter,
        post_counter,
        delete_counter,
        post_batch,
        sync_pull,
        sync_notice,
        sync_retired,
        sync_hello,
    )
}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _resource_path(path: str) -> str:
    """A path of the route table in aiohttp's syntax, where ``{key}`` becomes ``{key:[\\s\\S]+}``.

    So a placeholder takes the rest of the path, any character, ``/`` and newline included
    (:func:`~vvstore.codec.decode_key` then refuses what a key may not hold).
    """
    return _PLACEHOLDER.sub(lambda match: "{" + match[1] + r":[\s\S]+}", path)


def create_app(
    service: NodeService,
    *,
    token: TokenAuth | None = None,
    cluster: ClusterAuth | None = None,
    body_timeout: float = 10.0,
    unauthenticated_timeout: float = 5.0,
    unauthenticated_connections: int = 256,
    access_log: bool = True,
) -> web.Application:
    """The aiohttp application for ``service``: every route of :data:`vvstore.routes.ROUTES`.

    Background work is the caller's (node.py). Served by a :class:`GuardedSite`, connections
    are guarded with the last two parameters (see :class:`ConnectionGuard`).

    :param token: when given, every client route but ``GET /health`` requires it.
    :param cluster: when given, the sync routes require its signature, and sign their replies.
    """
    app = web.Application(middlewares=[_observe, _auth, _errors], client_max_size=SYNC_BODY_LIMIT)
    app[SERVICE] = service
    app[BODY_TIMEOUT] = body_timeout
    app[ACCESS_LOG] = access_log
    app[GUARD] = ConnectionGuard(timeout=unauthenticated_timeout, limit=unauthenticated_connections)
    app[_REFUSALS_LOGGED] = {}
    if token is not None:
        app[TOKEN] = token
    if cluster is not None:
        app[CLUSTER] = cluster
    resources: dict[str, web.Resource] = {}
    for route in ROUTES:
        if route.path not in resources:
            resources[route.path] = app.router.add_resource(_resource_path(route.path))
        handler = _HANDLERS[route.handler]
        if route.method == "GET":
            resources[route.path].add_route("HEAD", handler)
        resources[route.path].add_route(route.method, handler)
    return app


class ConnectionGuard:
    """Closes connections that stay unauthenticated, and caps how many may be open at once.

    A connection is *unauthenticated* from the moment it opens until one of its requests
    presents its route's credential (the token, the cluster signature, or nothing on a client
    route of a node without a token; ``GET /health`` proves nothing): :meth:`trust`. Until then
    it is aborted ``timeout`` seconds after it opened, whatever it is doing, which bounds a
    caller that sends its headers or its body slowly, or idles. A connection that opens while
    ``limit`` unauthenticated ones are open is aborted at once (:attr:`refused` counts them).
    Trusted connections are not counted: peers keep theirs open, and a flood of outsiders
    delays new callers, never them.
    """

    def __init__(self, *, timeout: float, limit: int) -> None:
        self.timeout = timeout
        self.limit = limit
        #: Connections aborted at once because ``limit`` unauthenticated ones were open.
        self.refused = 0
        #: Connections aborted because they stayed unauthenticated for ``timeout`` seconds.
        self.expired = 0
        self._pending: weakref.WeakKeyDictionary[asyncio.BaseTransport, asyncio.TimerHandle] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def unauthenticated(self) -> int:
        """Connections open now that have not presented a credential."""
        return len(self._pending)

    def trust(self, transport: asyncio.BaseTransport | None) -> None:
        """The connection presented a valid credential: no deadline, not counted."""
        if transport is not None:
            timer = self._pending.pop(transport, None)
            if timer is not None:
                timer.cancel()

    def protocol_factory(
        self, make: Callable[[], asyncio.BaseProtocol]
    ) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` that guards the protocols of ``make``."""
        return lambda: _GuardedProtocol(self, make())

    def _opened(self, transport: asyncio.BaseTransport) -> bool:
        if len(self._pending) >= self.limit:
            self.refused += 1
            _abort(transport)
            return False
        loop = asyncio.get_running_loop()
        self._pending[transport] = loop.call_later(self.timeout, self._expire, transport)
        return True

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        if self._pending.pop(transport, None) is not None:
            self.expired += 1
            _abort(transport)

    def _closed(self, transport: asyncio.BaseTransport) -> None:
        self.trust(transport)


GUARD = web.AppKey("guard", ConnectionGuard)


def _abort(transport: asyncio.BaseTransport) -> None:
    """Close at once, dropping what is unsent (every stream transport has abort())."""
    abort = getattr(transport, "abort", None)
    (abort or transport.close)()


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind :class:`ConnectionGuard`'s checks."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.BaseProtocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._guard._opened(transport):
            self._transport = transport
            self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()  # type: ignore[attr-defined,no-any-return]

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:  # else refused: aiohttp never saw it
            self._guard._closed(self._transport)
            self._inner.connection_lost(exc)


class GuardedSite(web.BaseSite):
    """A TCP site (``web.TCPSite`` but for the guard) whose connections go through the
    :class:`ConnectionGuard` of the runner's app (an app of :func:`create_app`)."""

    __slots__ = ("_host", "_port")

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        super().__init__(runner)
        self._host, self._port = host, port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None and isinstance(self._runner, web.AppRunner)
        guard = self._runner.app[GUARD]
        self._server = await asyncio.get_running_loop().create_server(
            guard.protocol_factory(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )
