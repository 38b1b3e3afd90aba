"""HttpPeer: the sync protocol spoken to another node over aiohttp's client.

The only module that speaks to other nodes. Every call has a timeout; a response body is read
to at most the page limit plus 64 KiB and validated in full (:mod:`vvstore.codec`) before
anything of it is returned, so a hostile or broken peer can waste one call, never corrupt us.
"""

from __future__ import annotations

import logging

import aiohttp

from vvstore.codec import (
    MAX_PAGE_BYTES,
    Notice,
    Page,
    PullRequest,
    decode_page,
    encode_notice,
    encode_pull_request,
)
from vvstore.errors import CodecError, MalformedPayload, PeerTimeout, PeerUnreachable

__all__ = ["HttpPeer"]

log = logging.getLogger(__name__)


class HttpPeer:
    """One peer node reached at ``url`` (``http://host:port``)."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        timeout: float,
        max_actors: int,
    ) -> None:
        self.url = url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_response = MAX_PAGE_BYTES + 64 * 1024
        self._max_actors = max_actors
        #: Bytes received in sync responses (figures for replication cost).
        self.bytes_received = 0

    async def _post(self, path: str, body: bytes) -> bytes:
        try:
            async with self._session.post(
                self.url + path,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=self._timeout,
            ) as response:
                data = bytearray()
                while len(data) <= self._max_response:  # read() returns one chunk at a time
                    chunk = await response.content.read(self._max_response + 1 - len(data))
                    if not chunk:
                        break
                    data += chunk
                if len(data) > self._max_response:
                    raise MalformedPayload(f"response from {self.url}{path} is too large")
                if response.status != 200:
                    raise MalformedPayload(
                        f"{self.url}{path} answered {response.status}: {data[:200]!r}"
                    )
                self.bytes_received += len(data)
                return bytes(data)
        except TimeoutError:
            raise PeerTimeout(f"{self.url}{path} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise PeerUnreachable(f"{self.url}{path}: {exc}") from None

    async def pull(self, request: PullRequest) -> Page:
        data = await self._post("/sync/pull", encode_pull_request(request))
        try:
            return decode_page(data, max_actors=self._max_actors)
        except CodecError as exc:
            log.warning("invalid_response from %s: %s", self.url, exc)
            raise

    async def notify(self, notice: Notice) -> None:
        await self._post("/sync/notice", encode_notice(notice))
