"""A typed blocking client for the public HTTP API: :class:`vvstore.client.Client` without an
event loop, for scripts, the CLI and code that is not async.

Same methods, arguments, reply types, errors and retries as the async client: both build their
requests, read the replies and decide their retries in :mod:`vvstore.calls` and
:mod:`vvstore.replies`, so this module only sends bytes and sleeps. It uses the standard
library's :mod:`http.client` (no aiohttp, so it loads fast), and opens one connection per try,
closed before the call returns: it holds no socket between calls. It also makes the idempotency
keys both clients send (:func:`new_idempotency_key`, :func:`item_keys`).

One difference: ``timeout`` bounds the connection and each wait for bytes from the node (the
socket timeout), not the call's total time, which a node sending a byte at a time could stretch.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit

from vvstore import calls, errors
from vvstore.replies import Counter, CounterPage, Health, Status

__all__ = ["BlockingClient", "Nodes", "item_keys", "new_idempotency_key"]

_T = TypeVar("_T")


def new_idempotency_key() -> str:
    """A fresh random idempotency key (32 hex characters)."""
    return uuid.uuid4().hex


def item_keys(idempotency_key: str | None, count: int) -> list[str]:
    """The idempotency keys of a batch's ``count`` items: derived from the batch's key
    (:func:`vvstore.calls.batch_keys`), else a fresh random one each."""
    if idempotency_key is None:
        return [new_idempotency_key() for _ in range(count)]
    return calls.batch_keys(idempotency_key, count)


class Nodes:
    """What both clients hold: the node URLs, which one is current, the retry settings and the
    token's headers."""

    def __init__(
        self, urls: str | Sequence[str], *, attempts: int, retry_delay: float, token: str | None
    ) -> None:
        self.urls = calls.node_urls(urls)
        self.attempts = max(1, attempts)
        self.retry_delay = retry_delay
        self._headers = calls.auth_headers(token)
        self._current = 0

    def _plan(self, call: calls.Call[_T]) -> calls.Attempts:
        """The tries of ``call``, starting at the current node."""
        return calls.Attempts(
            call,
            nodes=len(self.urls),
            start=self._current,
            attempts=self.attempts,
            retry_delay=self.retry_delay,
        )


class BlockingClient(Nodes):
    """Talks to the nodes at ``urls`` (one URL, or several to fail over between; ``http://``
    when a URL has no scheme), blocking until each call is done.

    :param timeout: seconds to connect to a node, and to wait for each part of its reply.
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
        self.timeout = timeout

    @property
    def url(self) -> str:
        """The node this client talks to now (it moves on when a node fails)."""
        return self.urls[self._current]

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (no connection outlives a call); here to match the async client."""

    def _exchange(self, call: calls.Call[_T]) -> tuple[int, bytes]:
        """Send ``call`` to the current node once; its status and body."""
        base = urlsplit(self.url)
        kind = HTTPSConnection if base.scheme == "https" else HTTPConnection
        connection = kind(base.netloc, timeout=self.timeout)
        try:
            connection.request(
                call.method,
                base.path + call.target,
                body=call.body,
                headers={**self._headers, **call.headers},
            )
            response = connection.getresponse()
            return response.status, response.read()
        except TimeoutError:
            raise errors.PeerTimeout(f"{self.url} did not answer in time") from None
        except (OSError, HTTPException) as exc:
            raise errors.PeerUnreachable(f"{self.url}: {exc}") from None
        finally:
            connection.close()

    def _send(self, call: calls.Call[_T]) -> _T:
        """``call``, tried as :class:`vvstore.calls.Attempts` says; its reply, parsed."""
        plan = self._plan(call)
        for _ in range(plan.tries):
            try:
                return calls.read_reply(call, self.url, *self._exchange(call))
            except errors.VVStoreError as exc:
                delay = plan.retry_after(exc)
                if delay is None:
                    raise
            self._current = plan.current
            time.sleep(delay)  # the backoff between tries, not a wait for another party
        raise AssertionError("unreachable")  # the last try returns or raises

    def increment(
        self, key: str, amount: int = 1, *, idempotency_key: str | None = None
    ) -> Counter:
        """``POST /counters/{key}``: add ``amount``, exactly once, retrying if need be.

        :param idempotency_key: the key to send; a fresh random one when None.
        :returns: the counter right after this increment (without siblings).
        """
        key_sent = idempotency_key or new_idempotency_key()
        return self._send(calls.increment(key, amount, key_sent))

    def reset(self, key: str, *, idempotency_key: str | None = None) -> Counter:
        """``DELETE /counters/{key}``: cancel every increment this node has observed."""
        return self._send(calls.reset(key, idempotency_key or new_idempotency_key()))

    def batch(
        self, items: Sequence[tuple[str, int]], *, idempotency_key: str | None = None
    ) -> list[Counter]:
        """``POST /batch``: every item in one transaction, or none; retried like increments.

        :param idempotency_key: one key for the whole batch (see :meth:`Client.batch`).
        :returns: one counter per item, in order (without siblings).
        """
        return self._send(calls.batch(items, item_keys(idempotency_key, len(items))))

    def get(self, key: str) -> Counter:
        """``GET /counters/{key}``: value, version and siblings."""
        return self._send(calls.get(key))

    def list(self, *, prefix: str = "", after: str | None = None, limit: int = 100) -> CounterPage:
        """``GET /counters``: one page of keys and values, and the next cursor."""
        return self._send(calls.list_counters(prefix, after, limit))

    def status(self) -> Status:
        """``GET /status``: node, actor, vector and peers."""
        return self._send(calls.status())

    def health(self) -> Health:
        """``GET /health``: the node answers, and says its node id."""
        return self._send(calls.health())
