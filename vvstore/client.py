"""A typed async client for the public HTTP API (used by the demo, tests and users).

:class:`vvstore.blocking_client.BlockingClient` is the same client without an event loop: the
same methods, arguments and reply types. Both build their requests, read the replies and decide
their retries in the pure :mod:`vvstore.calls` and :mod:`vvstore.replies`; this module only
sends bytes with aiohttp and sleeps. Idempotency keys are made by the blocking client's module
(which needs no aiohttp): :func:`new_idempotency_key` is re-exported here.

Writes are retry-safe by default: every increment and reset carries an ``Idempotency-Key``
(a random one unless the caller gives one), and every item of a batch one. A failure whose
outcome is indefinite (the connection broke, the call timed out, the node answered a 5xx) is
retried with the same key, failing over to the next node when several URLs are given; a node
applies a key at most once and the cluster counts it once, so a retry never double-counts.
Reads fail over too: each node is tried once, in turn. Definite refusals (4xx) are raised at
once.

An error reply becomes the matching :class:`~vvstore.errors.VVStoreError` (by its JSON
``code``); a connection failure or timeout becomes :class:`~vvstore.errors.PeerUnreachable` or
:class:`~vvstore.errors.PeerTimeout`. Every method returns a frozen dataclass of
:mod:`vvstore.replies` (re-exported here), with the node's JSON object as ``raw``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import TypeVar

import aiohttp
from yarl import URL

from vvstore import calls, errors
from vvstore.blocking_client import Nodes, item_keys, new_idempotency_key
from vvstore.replies import (
    Counter,
    CounterPage,
    Health,
    ListedCounter,
    MalformedReply,
    PeerStatus,
    ReplyError,
    Sibling,
    Status,
)

__all__ = [
    "Client",
    "Counter",
    "CounterPage",
    "Health",
    "ListedCounter",
    "MalformedReply",
    "PeerStatus",
    "ReplyError",
    "Sibling",
    "Status",
    "new_idempotency_key",
]

_T = TypeVar("_T")


class Client(Nodes):
    """Talks to the nodes at ``urls`` (one URL, or several to fail over between; ``http://``
    when a URL has no scheme).

    :param timeout: seconds one call to one node may take.
    :param attempts: how many times a write with an indefinite outcome is tried in all.
    :param retry_delay: seconds before the first retry of a write; doubled before each next.
    :param token: the bearer token, when the nodes require one.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        timeout: float = 10.0,
        attempts: int = 5,
        retry_delay: float = 0.05,
        token: str | None = None,
    ) -> None:
        super().__init__(urls, attempts=attempts, retry_delay=retry_delay, token=token)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> URL:
        """The node this client talks to now (it moves on when a node fails)."""
        return URL(self.urls[self._current])

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _exchange(self, call: calls.Call[_T]) -> tuple[int, bytes]:
        """Send ``call`` to the current node once; its status and body."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = URL(str(self.url) + call.target, encoded=True)
        try:
            async with self._session.request(
                call.method, url, data=call.body, headers={**self._headers, **call.headers}
            ) as response:
                return response.status, await response.read()
        except TimeoutError:
            raise errors.PeerTimeout(f"{self.url} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise errors.PeerUnreachable(f"{self.url}: {exc}") from None

    async def _send(self, call: calls.Call[_T]) -> _T:
        """``call``, tried as :class:`vvstore.calls.Attempts` says; its reply, parsed."""
        plan = self._plan(call)
        for _ in range(plan.tries):
            try:
                return calls.read_reply(call, str(self.url), *await self._exchange(call))
            except errors.VVStoreError as exc:
                delay = plan.retry_after(exc)
                if delay is None:
                    raise
            self._current = plan.current
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the last try returns or raises

    async def increment(
        self, key: str, amount: int = 1, *, idempotency_key: str | None = None
    ) -> Counter:
        """``POST /counters/{key}``: add ``amount``, exactly once, retrying if need be.

        :param idempotency_key: the key to send; a fresh random one when None.
        :returns: the counter right after this increment (without siblings).
        """
        key_sent = idempotency_key or new_idempotency_key()
        return await self._send(calls.increment(key, amount, key_sent))

    async def reset(self, key: str, *, idempotency_key: str | None = None) -> Counter:
        """``DELETE /counters/{key}``: cancel every increment this node has observed."""
        return await self._send(calls.reset(key, idempotency_key or new_idempotency_key()))

    async def batch(
        self, items: Sequence[tuple[str, int]], *, idempotency_key: str | None = None
    ) -> list[Counter]:
        """``POST /batch``: every item in one transaction, or none; retried like increments.

        :param idempotency_key: one key for the whole batch; item *i* is sent with the key
            ``{idempotency_key}/{i}`` (:func:`vvstore.calls.batch_keys`). When None, each item
            gets a fresh random key.
        :returns: one counter per item, in order (without siblings).
        """
        return await self._send(calls.batch(items, item_keys(idempotency_key, len(items))))

    async def get(self, key: str) -> Counter:
        """``GET /counters/{key}``: value, version and siblings."""
        return await self._send(calls.get(key))

    async def list(
        self, *, prefix: str = "", after: str | None = None, limit: int = 100
    ) -> CounterPage:
        """``GET /counters``: one page of keys and values, and the next cursor."""
        return await self._send(calls.list_counters(prefix, after, limit))

    async def status(self) -> Status:
        """``GET /status``: node, actor, vector and peers."""
        return await self._send(calls.status())

    async def health(self) -> Health:
        """``GET /health``: the node answers, and says its node id."""
        return await self._send(calls.health())
