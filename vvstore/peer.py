"""HttpPeer: the sync protocol spoken to another node over aiohttp's client.

The only module that speaks to other nodes. Every call times out on lack of progress: on
connecting, and on any gap between received bytes longer than the read timeout (never on the
call's total time, which a slow link may stretch to minutes for a large page; the sync round
has a deadline of its own). A response body is read to at most
:data:`~vvstore.wire.MAX_PAGE_BODY_BYTES` and validated in full (:mod:`vvstore.wire`)
before anything of it is returned, so a hostile or broken peer can waste one call, never
corrupt us.

Identity. A peer is an address and, when the operator names it (``--peer b=http://...``), the
node expected there (:attr:`HttpPeer.expected_node`). Who answers at the address is asked
with a hello (``POST /sync/hello``), signed when there is a cluster secret, whose signed
answer names the node: never the open ``/health``, which anyone at the address can answer
(except for a release that has no hello and refuses it unsigned as an unknown route: each
signed call then proves or refutes the name all the same). The name found is
:attr:`HttpPeer.node_id`; every signed call is made for that node and its answer is checked to
be signed by it, so each round proves it again. The name is forgotten, and asked again on the
next call, whenever a call fails on the connection or on a signature, or an answer names
another node: a reused address is noticed on the next round, not cached for the life of the
process. A found node that is not the expected one is refused
(:class:`~vvstore.errors.PeerMismatch`, a log line on each change,
:attr:`HttpPeer.identity_error` for ``/status``) until the expected node answers there again;
a peer given without a name takes the node found, and follows it if it changes.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

import aiohttp

from vvstore.errors import (
    CodecError,
    MalformedPayload,
    PeerError,
    PeerMismatch,
    PeerTimeout,
    PeerUnreachable,
    Unauthorized,
    UnsupportedVersion,
)
from vvstore.routes import HELLO_PATH
from vvstore.signing import ANY_RECIPIENT, NODE_HEADER, NONCE_HEADER, ClusterAuth
from vvstore.wire import (
    MAX_PAGE_BODY_BYTES,
    Notice,
    Page,
    PullRequest,
    RetiredPage,
    RetiredRequest,
    decode_page,
    decode_retired_page,
    encode_notice,
    encode_pull_request,
    encode_retired_request,
)

__all__ = ["HttpPeer"]

log = logging.getLogger(__name__)


class _NoHello(Exception):
    """The node at the address does not know hellos: a release before them."""


def _no_hello(status: int, data: bytes | bytearray) -> bool:
    """An unsigned answer to a hello from a release before hellos: 404 (no such route), or 401
    for want of the token (such a release asks the token on a route it does not know)."""
    return status == 404 or (status == 401 and _error_code(data) == "missing_token")


class HttpPeer:
    """One peer node reached at ``url`` (``http://host:port``), expected to be the node
    ``expected_node`` when given (see the module docstring, "Identity")."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        connect_timeout: float,
        read_timeout: float,
        cluster: ClusterAuth | None = None,
        expected_node: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        #: The node the operator named for this address, or None (learned, and may change).
        self.expected_node = expected_node
        #: Why the node answering at the address is refused (None when it is not): for /status.
        self.identity_error: str | None = None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=read_timeout
        )
        self._max_response = MAX_PAGE_BODY_BYTES
        self._cluster = cluster
        # The node id established at the address (None: ask on the next call). Signed requests
        # name their recipient, and answers must come from it.
        self.node_id: str | None = None
        # The last node found that we logged about, so that a change is logged once.
        self._logged_node: str | None = None
        #: Bytes received in sync responses (figures for replication cost).
        self.bytes_received = 0
        #: Bytes of sync requests sent (the other half of the replication cost).
        self.bytes_sent = 0

    async def _recipient(self) -> str:
        """The node id the next call is made for: established now if it is not known."""
        if self.node_id is None:
            self._found(await self._hello())
        assert self.node_id is not None
        return self.node_id

    async def _hello(self) -> str:
        """The node id that answers at the address: signed, when there is a cluster secret."""
        try:
            data, responder = await self._post(HELLO_PATH, b"", hello=True)
        except _NoHello:
            return await self._health()
        try:
            node = json.loads(data)["node"]
        except (ValueError, KeyError, TypeError):
            node = None
        if not isinstance(node, str) or (responder is not None and node != responder):
            raise MalformedPayload(f"{self.url}{HELLO_PATH} did not name its node")
        return node

    async def _health(self) -> str:
        """The node id /health gives, for a release without hellos (see "Identity")."""
        try:
            async with self._session.get(self.url + "/health", timeout=self._timeout) as response:
                data = await response.content.read(4096)
        except TimeoutError:
            raise PeerTimeout(f"{self.url}/health made no progress in time") from None
        except aiohttp.ClientError as exc:
            raise PeerUnreachable(f"{self.url}/health: {exc}") from None
        try:
            node = json.loads(data)["node"]
        except (ValueError, KeyError, TypeError):
            node = None
        if not isinstance(node, str):
            raise MalformedPayload(f"{self.url}/health did not name its node")
        return node

    def _found(self, node: str) -> None:
        """Take ``node`` as the node at the address, or refuse it if another is expected."""
        if self.expected_node is not None and node != self.expected_node:
            self.node_id = None
            self.identity_error = (
                f"node {node!r} answers at {self.url}, where node {self.expected_node!r} is"
                f" expected (--peer {self.expected_node}={self.url}): refused until"
                f" {self.expected_node!r} answers there"
            )
            if node != self._logged_node:
                self._logged_node = node
                log.warning("peer mismatch: %s", self.identity_error)
            raise PeerMismatch(self.identity_error)
        if self._logged_node is not None and node != self._logged_node:
            log.warning("peer at %s is now node %r (was %r)", self.url, node, self._logged_node)
        self._logged_node = node
        self.node_id = node
        self.identity_error = None

    async def _post(
        self, path: str, body: bytes, *, hello: bool = False
    ) -> tuple[bytes, str | None]:
        """The answer to a sync call and the node that signed it (None without a secret).

        A call that fails on the connection or a signature forgets the node at the address,
        which the next call then asks again.
        """
        try:
            try:
                return await self._signed_post(path, body, previous=False, hello=hello)
            except Unauthorized as exc:
                # Mid-rotation, a peer not yet given the current secret refuses it, unsigned:
                # sign again with the previous one, which it still holds.
                rotating = self._cluster is not None and self._cluster.rotating
                if not rotating or exc.code != "unsigned_response":
                    raise
                return await self._signed_post(path, body, previous=True, hello=hello)
        except (Unauthorized, PeerError):
            self.node_id = None
            raise

    async def _signed_post(
        self, path: str, body: bytes, *, previous: bool, hello: bool
    ) -> tuple[bytes, str | None]:
        headers = {"Content-Type": "application/json"}
        recipient = ANY_RECIPIENT if hello else None
        try:
            if self._cluster is not None:
                if recipient is None:
                    recipient = await self._recipient()
                headers.update(
                    self._cluster.sign_request(
                        "POST",
                        path,
                        body,
                        recipient=recipient,
                        now=time.time(),
                        nonce=secrets.token_hex(16),
                        previous=previous,
                    )
                )
            elif not hello and self.node_id is None:
                await self._recipient()
            self.bytes_sent += len(body)
            async with self._session.post(
                self.url + path, data=body, headers=headers, timeout=self._timeout
            ) as response:
                data = bytearray()
                while len(data) <= self._max_response:  # read() returns one chunk at a time
                    chunk = await response.content.read(self._max_response + 1 - len(data))
                    if not chunk:
                        break
                    data += chunk
                if len(data) > self._max_response:
                    raise MalformedPayload(f"response from {self.url}{path} is too large")
                if (
                    hello
                    and NODE_HEADER not in response.headers
                    and _no_hello(response.status, data)
                ):
                    raise _NoHello
                responder = None
                if self._cluster is not None:  # authenticate before parsing anything
                    try:
                        responder = self._cluster.verify_response(
                            headers[NONCE_HEADER],
                            response.status,
                            bytes(data),
                            response.headers,
                            expected_node=None if hello else recipient,
                            previous=previous,
                        )
                    except Unauthorized as exc:
                        # An unsigned refusal of our signature: say what it most likely means
                        # (the body is unauthenticated, so it is a hint, not a proof).
                        refused = response.status == 401 and _error_code(data) == "bad_signature"
                        if exc.code != "unsigned_response" or not refused:
                            raise
                        raise Unauthorized(
                            f"{self.url}{path} refused our signature (HTTP 401 bad_signature,"
                            " unsigned): the cluster secrets differ",
                            code=exc.code,
                        ) from None
                if response.status != 200:
                    if _error_code(data) == UnsupportedVersion.code:
                        raise UnsupportedVersion(f"{self.url}{path}: {_error_message(data)}")
                    raise MalformedPayload(
                        f"{self.url}{path} answered {response.status}: {data[:200]!r}"
                    )
                self.bytes_received += len(data)
                return bytes(data), responder
        except TimeoutError:
            raise PeerTimeout(f"{self.url}{path} made no progress in time") from None
        except aiohttp.ClientError as exc:
            raise PeerUnreachable(f"{self.url}{path}: {exc}") from None

    def _answered_by(self, node: str) -> None:
        """An answer names ``node``: another node than the one established is a change."""
        if node != self.node_id:
            self.node_id = None
            self._found(node)

    async def pull(self, request: PullRequest) -> Page:
        data, _ = await self._post("/sync/pull", encode_pull_request(request))
        try:
            page = decode_page(data, request.retired)
        except CodecError as exc:
            log.warning("invalid_response from %s: %s", self.url, exc)
            raise
        self._answered_by(page.node)
        return page

    async def notify(self, notice: Notice) -> None:
        await self._post("/sync/notice", encode_notice(notice))

    async def retired(self, request: RetiredRequest) -> RetiredPage:
        data, _ = await self._post("/sync/retired", encode_retired_request(request))
        try:
            page = decode_retired_page(data)
        except CodecError as exc:
            log.warning("invalid_response from %s: %s", self.url, exc)
            raise
        self._answered_by(page.node)
        return page


def _error(data: bytes | bytearray) -> dict[str, object]:
    """The ``error`` object of a JSON error reply, or {} if it is not one."""
    try:
        error = json.loads(data)["error"]
    except (ValueError, KeyError, TypeError):
        return {}
    return error if isinstance(error, dict) else {}


def _error_code(data: bytes | bytearray) -> object:
    return _error(data).get("code")


def _error_message(data: bytes | bytearray) -> str:
    return str(_error(data).get("message", ""))[:200]
