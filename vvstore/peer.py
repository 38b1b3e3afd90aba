"""HttpPeer: the sync protocol spoken to another node over aiohttp's client.

The only module that speaks to other nodes. Every call times out on lack of progress: on
connecting, and on any gap between received bytes longer than the read timeout (never on the
call's total time, which a slow link may stretch to minutes for a large page; the sync round
has a deadline of its own). A response body is read to at most
:data:`~vvstore.wire.MAX_PAGE_BODY_BYTES` and validated in full (:mod:`vvstore.wire`)
before anything of it is returned, so a hostile or broken peer can waste one call, never
corrupt us.
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
    PeerTimeout,
    PeerUnreachable,
    Unauthorized,
    UnsupportedVersion,
)
from vvstore.signing import NONCE_HEADER, ClusterAuth
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


class HttpPeer:
    """One peer node reached at ``url`` (``http://host:port``)."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        connect_timeout: float,
        read_timeout: float,
        cluster: ClusterAuth | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=read_timeout
        )
        self._max_response = MAX_PAGE_BODY_BYTES
        self._cluster = cluster
        # The peer's node id, learned from its /health: signed requests name their recipient.
        self.node_id: str | None = None
        #: Bytes received in sync responses (figures for replication cost).
        self.bytes_received = 0
        #: Bytes of sync requests sent (the other half of the replication cost).
        self.bytes_sent = 0

    async def _recipient(self) -> str:
        if self.node_id is None:
            async with self._session.get(self.url + "/health", timeout=self._timeout) as response:
                data = await response.content.read(4096)
            try:
                node = json.loads(data)["node"]
            except (ValueError, KeyError, TypeError):
                raise MalformedPayload(f"{self.url}/health did not name its node") from None
            if not isinstance(node, str):
                raise MalformedPayload(f"{self.url}/health did not name its node")
            self.node_id = node
        return self.node_id

    async def _post(self, path: str, body: bytes) -> bytes:
        try:
            return await self._signed_post(path, body, previous=False)
        except Unauthorized as exc:
            # Mid-rotation, a peer not yet given the current secret refuses it, unsigned: sign
            # again with the previous one, which it still holds.
            rotating = self._cluster is not None and self._cluster.rotating
            if not rotating or exc.code != "unsigned_response":
                raise
            return await self._signed_post(path, body, previous=True)

    async def _signed_post(self, path: str, body: bytes, *, previous: bool) -> bytes:
        headers = {"Content-Type": "application/json"}
        try:
            if self._cluster is not None:
                headers.update(
                    self._cluster.sign_request(
                        "POST",
                        path,
                        body,
                        recipient=await self._recipient(),
                        now=time.time(),
                        nonce=secrets.token_hex(16),
                        previous=previous,
                    )
                )
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
                if self._cluster is not None:  # authenticate before parsing anything
                    self._cluster.verify_response(
                        headers[NONCE_HEADER],
                        response.status,
                        bytes(data),
                        response.headers,
                        expected_node=self.node_id,
                        previous=previous,
                    )
                if response.status != 200:
                    if _error_code(data) == UnsupportedVersion.code:
                        raise UnsupportedVersion(f"{self.url}{path}: {_error_message(data)}")
                    raise MalformedPayload(
                        f"{self.url}{path} answered {response.status}: {data[:200]!r}"
                    )
                self.bytes_received += len(data)
                return bytes(data)
        except TimeoutError:
            raise PeerTimeout(f"{self.url}{path} made no progress in time") from None
        except aiohttp.ClientError as exc:
            raise PeerUnreachable(f"{self.url}{path}: {exc}") from None

    async def pull(self, request: PullRequest) -> Page:
        data = await self._post("/sync/pull", encode_pull_request(request))
        try:
            return decode_page(data, request.retired)
        except CodecError as exc:
            log.warning("invalid_response from %s: %s", self.url, exc)
            raise

    async def notify(self, notice: Notice) -> None:
        await self._post("/sync/notice", encode_notice(notice))

    async def retired(self, request: RetiredRequest) -> RetiredPage:
        data = await self._post("/sync/retired", encode_retired_request(request))
        try:
            return decode_retired_page(data)
        except CodecError as exc:
            log.warning("invalid_response from %s: %s", self.url, exc)
            raise


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
