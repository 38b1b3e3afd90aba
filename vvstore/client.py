"""A typed async client for the public HTTP API (used by the CLI, the demo, tests and users).

Writes are retry-safe by default: every increment and reset carries an ``Idempotency-Key``
(a random one unless the caller gives one), and a failure whose outcome is indefinite (the
connection broke, the call timed out, the node answered 503) is retried with the same key,
failing over to the next node when several URLs are given. A node applies a key at most once
and the cluster counts it once, so a retry never double-counts. Definite refusals (4xx) are
raised at once.

Keys are percent-encoded in full, so any valid key round-trips. An error reply becomes the
matching :class:`~vvstore.errors.VVStoreError` (by its JSON ``code``); a connection failure or
timeout becomes :class:`~vvstore.errors.PeerUnreachable` or :class:`~vvstore.errors.PeerTimeout`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from vvstore import errors

__all__ = ["Client", "ReplyError", "new_idempotency_key"]

_BY_CODE: dict[str, type[errors.VVStoreError]] = {
    cls.code: cls
    for cls in (
        errors.InvalidRequest,
        errors.Unauthorized,
        errors.NotFound,
        errors.MethodNotAllowed,
        errors.PayloadTooLarge,
        errors.Overflow,
        errors.IdempotencyKeyReused,
        errors.ConflictingEntry,
        errors.Unavailable,
        errors.UnsupportedVersion,
        errors.MalformedPayload,
    )
}


class ReplyError(errors.RequestError):
    """The node answered with an error whose code this client does not know.

    A 5xx is indefinite (the node may have applied the write before failing); a 4xx definite.
    """

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.definite = status < 500


def new_idempotency_key() -> str:
    """A fresh random idempotency key (32 hex characters)."""
    return uuid.uuid4().hex


def _error(status: int, body: bytes) -> errors.VVStoreError:
    try:
        detail = json.loads(body)["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{status}", body[:200].decode("utf-8", "replace")
    cls = _BY_CODE.get(code)
    if cls is None:
        return ReplyError(f"HTTP {status}: {message}", code=code, status=status)
    return cls(message)


class Client:
    """Talks to the nodes at ``urls`` (one URL, or several to fail over between).

    :param timeout: seconds one call may take.
    :param attempts: how many times a write with an indefinite outcome is tried in all.
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
        listed = [urls] if isinstance(urls, str) else list(urls)
        if not listed:
            raise ValueError("give at least one node URL")
        self.urls = [URL(url.rstrip("/")) for url in listed]
        self.attempts = max(1, attempts)
        self.retry_delay = retry_delay
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None
        self._current = 0

    @property
    def url(self) -> URL:
        """The node this client talks to now (it moves on when a node fails)."""
        return self.urls[self._current]

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

    def _counter_path(self, key: str) -> str:
        return "/counters/" + quote(key, safe="")

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One call to the current node."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = URL(str(self.url) + path, encoded=True)
        data = None if body is None else json.dumps(body).encode()
        sent = dict(self._headers)
        if data is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        try:
            async with self._session.request(
                method, url, data=data, params=params, headers=sent
            ) as response:
                raw = await response.read()
                if response.status != 200:
                    raise _error(response.status, raw)
                return json.loads(raw)
        except TimeoutError:
            raise errors.PeerTimeout(f"{self.url} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise errors.PeerUnreachable(f"{self.url}: {exc}") from None

    async def _retrying(
        self, method: str, path: str, body: Any = None, *, headers: dict[str, str]
    ) -> Any:
        """A write, retried with the same headers (so the same idempotency key) while its
        outcome is indefinite, moving to the next node after each failure."""
        for attempt in range(self.attempts):
            try:
                return await self._call(method, path, body, headers=headers)
            except errors.VVStoreError as exc:
                if exc.definite or attempt == self.attempts - 1:
                    raise
                self._current = (self._current + 1) % len(self.urls)
                await asyncio.sleep(self.retry_delay * 2**attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def increment(
        self, key: str, amount: int = 1, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """``POST /counters/{key}``: add ``amount``, exactly once, retrying if need be.

        :param idempotency_key: the key to send; a fresh random one when None.
        """
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        result: dict[str, Any] = await self._retrying(
            "POST", self._counter_path(key), {"amount": amount}, headers=headers
        )
        return result

    async def reset(self, key: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """``DELETE /counters/{key}``: cancel every increment this node has observed."""
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        result: dict[str, Any] = await self._retrying(
            "DELETE", self._counter_path(key), headers=headers
        )
        return result

    async def batch(self, items: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
        """``POST /batch``: every item in one transaction, or none; retried like increments."""
        body = {
            "increments": [
                {"key": k, "amount": a, "idempotency_key": new_idempotency_key()} for k, a in items
            ]
        }
        result = await self._retrying("POST", "/batch", body, headers={})
        return list(result["results"])

    async def get(self, key: str) -> dict[str, Any]:
        """``GET /counters/{key}``: value, version and siblings."""
        result: dict[str, Any] = await self._call("GET", self._counter_path(key))
        return result

    async def list(
        self, *, prefix: str = "", after: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """``GET /counters``: one page of keys and values, and the next cursor."""
        params = {"prefix": prefix, "limit": str(limit)}
        if after is not None:
            params["after"] = after
        result: dict[str, Any] = await self._call("GET", "/counters", params=params)
        return result

    async def status(self) -> dict[str, Any]:
        """``GET /status``: node, actor, vector and peers."""
        result: dict[str, Any] = await self._call("GET", "/status")
        return result

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/health")
        return result
