"""A typed async client for the public HTTP API (used by the CLI, the demo and tests).

Keys are percent-encoded in full, so any valid key round-trips. An error reply becomes the
matching :class:`~vvstore.errors.VVStoreError` (by its JSON ``code``); a connection failure or
timeout becomes :class:`~vvstore.errors.PeerUnreachable` or :class:`~vvstore.errors.PeerTimeout`,
whose outcome is indefinite.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from vvstore import errors

__all__ = ["Client", "ReplyError"]

_BY_CODE: dict[str, type[errors.VVStoreError]] = {
    cls.code: cls
    for cls in (
        errors.InvalidRequest,
        errors.Unauthorized,
        errors.NotFound,
        errors.MethodNotAllowed,
        errors.PayloadTooLarge,
        errors.Overflow,
        errors.ConflictingEntry,
        errors.Unavailable,
        errors.UnsupportedVersion,
        errors.MalformedPayload,
    )
}


class ReplyError(errors.RequestError):
    """The node answered with an error whose code this client does not know."""

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message, code=code)
        self.status = status


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
    """Talks to one node at ``url``. Use as an async context manager, or call :meth:`close`."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = URL(url.rstrip("/"))
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

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

    def _counter_url(self, key: str) -> URL:
        return URL(str(self.url) + "/counters/" + quote(key, safe=""), encoded=True)

    async def _call(
        self, method: str, url: URL, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            async with self._session.request(
                method, url, data=data, params=params, headers=headers
            ) as response:
                raw = await response.read()
                if response.status != 200:
                    raise _error(response.status, raw)
                return json.loads(raw)
        except TimeoutError:
            raise errors.PeerTimeout(f"{self.url} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise errors.PeerUnreachable(f"{self.url}: {exc}") from None

    async def increment(self, key: str, amount: int = 1) -> dict[str, Any]:
        """``POST /counters/{key}``: add ``amount``; the reply has key, value, version."""
        result: dict[str, Any] = await self._call(
            "POST", self._counter_url(key), {"amount": amount}
        )
        return result

    async def get(self, key: str) -> dict[str, Any]:
        """``GET /counters/{key}``: value, version and siblings."""
        result: dict[str, Any] = await self._call("GET", self._counter_url(key))
        return result

    async def reset(self, key: str) -> dict[str, Any]:
        """``DELETE /counters/{key}``: cancel every increment this node has observed."""
        result: dict[str, Any] = await self._call("DELETE", self._counter_url(key))
        return result

    async def batch(self, items: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
        """``POST /batch``: every item in one transaction, or none."""
        body = {"increments": [{"key": k, "amount": a} for k, a in items]}
        result = await self._call("POST", self.url / "batch", body)
        return list(result["results"])

    async def list(
        self, *, prefix: str = "", after: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """``GET /counters``: one page of keys and values, and the next cursor."""
        params = {"prefix": prefix, "limit": str(limit)}
        if after is not None:
            params["after"] = after
        result: dict[str, Any] = await self._call("GET", self.url / "counters", params=params)
        return result

    async def status(self) -> dict[str, Any]:
        """``GET /status``: node, actor, vector and peers."""
        result: dict[str, Any] = await self._call("GET", self.url / "status")
        return result

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", self.url / "health")
        return result
