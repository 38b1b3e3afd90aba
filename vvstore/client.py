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

Every method returns a frozen dataclass parsed from the reply (:class:`Counter`,
:class:`CounterPage`, :class:`Status`, :class:`Health`), each with the decoded JSON object it
came from as ``raw``, for callers that print or pass on the node's own JSON. Parsing ignores
fields it does not know, so a newer node works; a reply without a field this client needs, or
with a wrong type, is :class:`MalformedReply`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from yarl import URL

from vvstore import errors

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


class MalformedReply(errors.MalformedPayload):
    """A reply this client cannot read: not JSON, a field it needs missing, or a field of
    the wrong type. Raised by every ``from_json`` and by the client, which is never retried.

    From the client, it is indefinite after a write: the node answered success, so it applied
    the write, but what it answered is unknown; the same request with the same idempotency
    key reads it back. After a read, it is definite.
    """

    def __init__(self, message: str, *, definite: bool = True) -> None:
        super().__init__(message)
        self.definite = definite


# --- what the replies say ----------------------------------------------------------------
#
# Each parser takes the decoded JSON object and reads the fields it knows, so that a newer
# node's extra fields pass.

_T = TypeVar("_T")


def _brief(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MalformedReply(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _field(obj: Mapping[str, Any], name: str, what: str) -> Any:
    if name not in obj:
        raise MalformedReply(f"{what} has no {name!r}")
    return obj[name]


def _str(obj: Mapping[str, Any], name: str, what: str) -> str:
    value = _field(obj, name, what)
    if not isinstance(value, str):
        raise MalformedReply(f"{what} {name!r} must be a string, got {_brief(value)}")
    return value


def _str_or_null(obj: Mapping[str, Any], name: str, what: str) -> str | None:
    return None if _field(obj, name, what) is None else _str(obj, name, what)


def _int(obj: Mapping[str, Any], name: str, what: str) -> int:
    value = _field(obj, name, what)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedReply(f"{what} {name!r} must be an integer, got {_brief(value)}")
    return value


def _number(obj: Mapping[str, Any], name: str, what: str) -> float:
    value = _field(obj, name, what)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise MalformedReply(f"{what} {name!r} must be a number, got {_brief(value)}")
    return float(value)


def _number_or_null(obj: Mapping[str, Any], name: str, what: str) -> float | None:
    return None if _field(obj, name, what) is None else _number(obj, name, what)


def _bool(obj: Mapping[str, Any], name: str, what: str) -> bool:
    value = _field(obj, name, what)
    if not isinstance(value, bool):
        raise MalformedReply(f"{what} {name!r} must be true or false, got {_brief(value)}")
    return value


def _list(obj: Mapping[str, Any], name: str, what: str) -> list[Any]:
    value = _field(obj, name, what)
    if not isinstance(value, list):
        raise MalformedReply(f"{what} {name!r} must be a list, got {_brief(value)}")
    return value


def _vector(obj: Mapping[str, Any], name: str, what: str) -> dict[str, int]:
    value = _object(_field(obj, name, what), f"{what} {name!r}")
    for actor, seq in value.items():
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise MalformedReply(
                f"{what} {name!r} must map actor ids to integers, got {actor!r}: {_brief(seq)}"
            )
    return dict(value)


# The reply types below parse alike (one checked field per line, then ``raw``) because each
# names its own fields once; a generic parser would hide which field a message is about.


@dataclass(frozen=True, slots=True)
class Sibling:
    """One entry of a counter: the actor that wrote it, the seq of that actor's latest write
    to the key, and what the entry contributes to the counter's value."""

    actor: str
    seq: int
    value: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> Sibling:
        obj = _object(data, "a sibling")
        # "node" is the field's old name: nodes before the rename send only it, and so does a
        # replay of a reset reply they stored.
        name = "node" if "actor" not in obj and "node" in obj else "actor"
        return cls(
            actor=_str(obj, name, "a sibling"),
            seq=_int(obj, "seq", "a sibling"),
            value=_int(obj, "value", "a sibling"),
            raw=dict(obj),
        )


@dataclass(frozen=True, slots=True)
class Counter:
    """One counter as a node answered it: ``key``, ``value`` (exact, possibly beyond int64)
    and ``version`` (``{actor id: seq}``).

    ``siblings`` (one per entry, in actor order) comes with reads and resets. It is empty when
    the reply has none (increments, batch results, the replay of a reset made on another
    node) as well as for a key with no entry; ``"siblings" in raw`` tells the two apart.
    """

    key: str
    value: int
    version: dict[str, int]
    siblings: tuple[Sibling, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> Counter:
        obj = _object(data, "a counter")
        siblings: tuple[Sibling, ...] = ()
        if "siblings" in obj:
            siblings = tuple(Sibling.from_json(s) for s in _list(obj, "siblings", "a counter"))
        return cls(
            key=_str(obj, "key", "a counter"),
            value=_int(obj, "value", "a counter"),
            version=_vector(obj, "version", "a counter"),
            siblings=siblings,
            raw=dict(obj),
        )


@dataclass(frozen=True, slots=True)
class ListedCounter:
    """One counter of a listing: its key and value."""

    key: str
    value: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> ListedCounter:
        obj = _object(data, "a listed counter")
        return cls(
            key=_str(obj, "key", "a listed counter"),
            value=_int(obj, "value", "a listed counter"),
            raw=dict(obj),
        )


@dataclass(frozen=True, slots=True)
class CounterPage:
    """One page of ``GET /counters``: counters in key order, and ``next``, the ``after`` of
    the next page (None on the last page)."""

    counters: tuple[ListedCounter, ...]
    next: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> CounterPage:
        obj = _object(data, "a page of counters")
        return cls(
            counters=tuple(
                ListedCounter.from_json(c) for c in _list(obj, "counters", "a page of counters")
            ),
            next=_str_or_null(obj, "next", "a page of counters"),
            raw=dict(obj),
        )


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """What a node knows of one peer: see ``GET /status`` in docs/api.md for each field."""

    url: str
    node: str | None
    reachable: bool
    last_success: float | None
    last_error: str | None
    behind: int
    rounds: int
    pulled_pages: int
    pulled_entries: int
    pulled_bytes: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> PeerStatus:
        what = "a peer"
        obj = _object(data, what)
        return cls(
            url=_str(obj, "url", what),
            node=_str_or_null(obj, "node", what),
            reachable=_bool(obj, "reachable", what),
            last_success=_number_or_null(obj, "last_success", what),
            last_error=_str_or_null(obj, "last_error", what),
            behind=_int(obj, "behind", what),
            rounds=_int(obj, "rounds", what),
            pulled_pages=_int(obj, "pulled_pages", what),
            pulled_entries=_int(obj, "pulled_entries", what),
            pulled_bytes=_int(obj, "pulled_bytes", what),
            raw=dict(obj),
        )


@dataclass(frozen=True, slots=True)
class Status:
    """``GET /status``: the node's id, pid, actor id and vector, its peers and its
    idempotency records (see docs/api.md for each field)."""

    node: str
    #: None from a node older than the field (a mixed cluster mid-upgrade).
    pid: int | None
    actor: str
    version: dict[str, int]
    peers: tuple[PeerStatus, ...]
    clock_skew: dict[str, float]
    records: int
    oldest_record_age: float | None
    idempotency_unsafe_evictions: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> Status:
        what = "a status"
        obj = _object(data, what)
        skew_what = f"{what} 'clock_skew'"
        skew = _object(_field(obj, "clock_skew", what), skew_what)
        return cls(
            node=_str(obj, "node", what),
            pid=_int(obj, "pid", what) if "pid" in obj else None,
            actor=_str(obj, "actor", what),
            version=_vector(obj, "version", what),
            peers=tuple(PeerStatus.from_json(p) for p in _list(obj, "peers", what)),
            clock_skew={node: _number(skew, node, skew_what) for node in skew},
            records=_int(obj, "records", what),
            oldest_record_age=_number_or_null(obj, "oldest_record_age", what),
            idempotency_unsafe_evictions=_int(obj, "idempotency_unsafe_evictions", what),
            raw=dict(obj),
        )


@dataclass(frozen=True, slots=True)
class Health:
    """``GET /health``: ``status`` (always ``"ok"``) and the node's id."""

    status: str
    node: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> Health:
        obj = _object(data, "a health reply")
        return cls(
            status=_str(obj, "status", "a health reply"),
            node=_str(obj, "node", "a health reply"),
            raw=dict(obj),
        )


def _batch_results(data: object) -> list[Counter]:
    results = _list(_object(data, "a batch reply"), "results", "a batch reply")
    return [Counter.from_json(r) for r in results]


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
        parse: Callable[[object], _T],
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> _T:
        """One call to the current node; its reply, parsed."""
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
        except TimeoutError:
            raise errors.PeerTimeout(f"{self.url} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise errors.PeerUnreachable(f"{self.url}: {exc}") from None
        where = f"{method} {url}"
        try:
            decoded = json.loads(raw)
        except ValueError as exc:
            raise MalformedReply(
                f"{where}: the reply is not JSON: {exc}", definite=method == "GET"
            ) from None
        try:
            return parse(decoded)
        except MalformedReply as exc:
            raise MalformedReply(f"{where}: {exc.message}", definite=method == "GET") from None

    async def _retrying(
        self,
        method: str,
        path: str,
        parse: Callable[[object], _T],
        body: Any = None,
        *,
        headers: dict[str, str],
    ) -> _T:
        """A write, retried with the same headers (so the same idempotency key) while its
        outcome is indefinite, moving to the next node after each failure.

        A malformed reply is not retried: the node answered, so the write was applied.
        """
        for attempt in range(self.attempts):
            try:
                return await self._call(method, path, parse, body, headers=headers)
            except MalformedReply:
                raise
            except errors.VVStoreError as exc:
                if exc.definite or attempt == self.attempts - 1:
                    raise
                self._current = (self._current + 1) % len(self.urls)
                await asyncio.sleep(self.retry_delay * 2**attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def increment(
        self, key: str, amount: int = 1, *, idempotency_key: str | None = None
    ) -> Counter:
        """``POST /counters/{key}``: add ``amount``, exactly once, retrying if need be.

        :param idempotency_key: the key to send; a fresh random one when None.
        :returns: the counter right after this increment (without siblings).
        """
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        return await self._retrying(
            "POST", self._counter_path(key), Counter.from_json, {"amount": amount}, headers=headers
        )

    async def reset(self, key: str, *, idempotency_key: str | None = None) -> Counter:
        """``DELETE /counters/{key}``: cancel every increment this node has observed."""
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        return await self._retrying(
            "DELETE", self._counter_path(key), Counter.from_json, headers=headers
        )

    async def batch(self, items: Sequence[tuple[str, int]]) -> list[Counter]:
        """``POST /batch``: every item in one transaction, or none; retried like increments.

        :returns: one counter per item, in order (without siblings).
        """
        body = {
            "increments": [
                {"key": k, "amount": a, "idempotency_key": new_idempotency_key()} for k, a in items
            ]
        }
        return await self._retrying("POST", "/batch", _batch_results, body, headers={})

    async def get(self, key: str) -> Counter:
        """``GET /counters/{key}``: value, version and siblings."""
        return await self._call("GET", self._counter_path(key), Counter.from_json)

    async def list(
        self, *, prefix: str = "", after: str | None = None, limit: int = 100
    ) -> CounterPage:
        """``GET /counters``: one page of keys and values, and the next cursor."""
        params = {"prefix": prefix, "limit": str(limit)}
        if after is not None:
            params["after"] = after
        return await self._call("GET", "/counters", CounterPage.from_json, params=params)

    async def status(self) -> Status:
        """``GET /status``: node, actor, vector and peers."""
        return await self._call("GET", "/status", Status.from_json)

    async def health(self) -> Health:
        """``GET /health``: the node answers, and says its node id."""
        return await self._call("GET", "/health", Health.from_json)
