"""The calls a client makes, and when to try one again: the pure half of the clients.

Each function here builds one :class:`Call` of the public HTTP API (method, percent-encoded
target, headers, body, and how to read the reply); :func:`read_reply` turns what the node
answered into the call's result or its error; :class:`Attempts` decides, after a failure,
whether to try again, on which node and after how long. The two clients,
:mod:`vvstore.client` (async, aiohttp) and :mod:`vvstore.blocking_client` (standard library),
only send bytes and sleep, so they cannot differ in what they send, how they read a reply or
when they retry.

The retry rule: a failure whose outcome is indefinite (no connection, no reply in time, a 5xx)
is tried again on the next node when a second try cannot change the result:

- a read (``GET``) tries each node once, in turn, without waiting;
- a write carrying idempotency keys is tried up to ``attempts`` times in all, moving to the
  next node each time, waiting ``retry_delay`` seconds and doubling: a node applies a key at
  most once and the cluster counts it once, so the retry never counts twice;
- a write without a key is tried once: a retry could apply it twice.

A definite refusal (a 4xx) and a reply that cannot be read are never tried again.

Pure core: standard library, :mod:`vvstore.codec`, :mod:`vvstore.counter`,
:mod:`vvstore.errors`, :mod:`vvstore.idempotency` and :mod:`vvstore.replies` only; no I/O, no
clock, no randomness (idempotency keys are passed in).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from vvstore import errors
from vvstore.codec import MAX_NUMBER_CHARS, validate_key
from vvstore.counter import INT64_MAX, INT64_MIN
from vvstore.idempotency import MAX_IDEMPOTENCY_KEY, normalize_idempotency_key
from vvstore.replies import (
    Counter,
    CounterPage,
    Health,
    MalformedReply,
    Status,
    batch_results,
    error_for,
)

__all__ = [
    "Attempts",
    "Call",
    "auth_headers",
    "batch",
    "batch_keys",
    "get",
    "health",
    "increment",
    "list_counters",
    "node_url",
    "node_urls",
    "parse_batch_lines",
    "read_reply",
    "reset",
    "status",
]

T = TypeVar("T")

_SCHEMES = ("http", "https")


def node_url(text: str) -> str:
    """A node's base URL as the clients use it: ``http://`` when ``text`` has no scheme
    (``127.0.0.1:8080``), without a trailing ``/``.

    :raises ValueError: for a scheme other than http or https, or no host.
    """
    url = (text if "://" in text else "http://" + text).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"a node URL must be http:// or https://, got {text!r}")
    if not parts.hostname:
        raise ValueError(f"a node URL needs a host, got {text!r}")
    return url


def node_urls(urls: str | Sequence[str]) -> list[str]:
    """One URL or several, each through :func:`node_url`.

    :raises ValueError: for no URL at all, or one :func:`node_url` refuses.
    """
    listed = [urls] if isinstance(urls, str) else list(urls)
    if not listed:
        raise ValueError("give at least one node URL")
    return [node_url(url) for url in listed]


def auth_headers(token: str | None) -> dict[str, str]:
    """The headers that carry the bearer ``token`` (none without one)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request of the public API, and how to read its reply.

    :ivar target: the path after the node's base URL, percent-encoded, with its query.
    :ivar keyed: a write that carries idempotency keys (every item of a batch has one), so
        that sending it again is safe.
    """

    method: str
    target: str
    parse: Callable[[object], T]
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    keyed: bool = False

    @property
    def is_read(self) -> bool:
        return self.method == "GET"


def _json_body(value: object) -> bytes:
    return json.dumps(value).encode()


_JSON = {"Content-Type": "application/json"}


def _counter_target(key: str) -> str:
    # Every character but the unreserved ones is escaped, "/" included: any key round-trips.
    return "/counters/" + quote(key, safe="")


def _key_header(idempotency_key: str | None) -> dict[str, str]:
    return {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}


def increment(key: str, amount: int, idempotency_key: str | None) -> Call[Counter]:
    """``POST /counters/{key}``: add ``amount``."""
    return Call(
        "POST",
        _counter_target(key),
        Counter.from_json,
        _json_body({"amount": amount}),
        {**_JSON, **_key_header(idempotency_key)},
        keyed=idempotency_key is not None,
    )


def reset(key: str, idempotency_key: str | None) -> Call[Counter]:
    """``DELETE /counters/{key}``: cancel every increment the node has observed."""
    return Call(
        "DELETE",
        _counter_target(key),
        Counter.from_json,
        headers=_key_header(idempotency_key),
        keyed=idempotency_key is not None,
    )


def batch_keys(idempotency_key: str, count: int) -> list[str]:
    """The idempotency keys of the ``count`` items of a batch sent under one key: ``K/0``,
    ``K/1``, ... Sending the same items under the same key again applies none twice.

    :raises InvalidRequest: ``idempotency_key`` is not a valid key, or too long to leave room
        for the item numbers within :data:`~vvstore.idempotency.MAX_IDEMPOTENCY_KEY`.
    """
    key = normalize_idempotency_key(idempotency_key)
    room = MAX_IDEMPOTENCY_KEY - len(f"/{max(count - 1, 0)}")
    if len(key) > room:
        raise errors.InvalidRequest(
            f"a batch's idempotency key may have at most {room} characters for {count} items"
            f" (each item's key is it plus '/N'), got {len(key)}"
        )
    return [f"{key}/{i}" for i in range(count)]


def batch(
    items: Sequence[tuple[str, int]], idempotency_keys: Sequence[str | None]
) -> Call[list[Counter]]:
    """``POST /batch``: every item in one transaction, or none; one key per item (or None)."""
    if len(idempotency_keys) != len(items):
        raise ValueError(f"{len(items)} items need as many keys, got {len(idempotency_keys)}")
    increments: list[dict[str, Any]] = []
    for (key, amount), idempotency_key in zip(items, idempotency_keys, strict=True):
        item: dict[str, Any] = {"key": key, "amount": amount}
        if idempotency_key is not None:
            item["idempotency_key"] = idempotency_key
        increments.append(item)
    return Call(
        "POST",
        "/batch",
        batch_results,
        _json_body({"increments": increments}),
        _JSON,
        keyed=all(k is not None for k in idempotency_keys),
    )


_AMOUNT = re.compile(r"[+-]?[0-9]+")


def parse_batch_lines(lines: Iterable[str]) -> list[tuple[str, int]]:
    """The items of a batch written one per line as ``KEY AMOUNT``, for :func:`batch`.

    The amount is the last word (an integer, optionally signed, in the 64-bit signed range);
    the key is everything before it, surrounding whitespace removed, so a key may hold spaces.
    Blank lines are skipped.

    :raises InvalidRequest: naming the first bad line (counting from 1), or for no item at all.
    """
    items: list[tuple[str, int]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        words = line.rsplit(None, 1)
        if len(words) != 2:
            raise errors.InvalidRequest(
                f"line {number}: expected KEY AMOUNT, got {line.strip()[:60]!r}"
            )
        key, amount = words[0].strip(), words[1]
        try:
            validate_key(key)
        except errors.InvalidRequest as exc:
            raise errors.InvalidRequest(f"line {number}: {exc.message}") from None
        if not _AMOUNT.fullmatch(amount):
            raise errors.InvalidRequest(
                f"line {number}: amount must be an integer, got {amount[:60]!r}"
            )
        if len(amount) > MAX_NUMBER_CHARS or not INT64_MIN <= int(amount) <= INT64_MAX:
            shown = amount if len(amount) <= MAX_NUMBER_CHARS else f"{amount[:10]}..."
            raise errors.InvalidRequest(
                f"line {number}: amount {shown} is outside the 64-bit signed range"
            )
        items.append((key, int(amount)))
    if not items:
        raise errors.InvalidRequest("no KEY AMOUNT line to send")
    return items


def get(key: str) -> Call[Counter]:
    """``GET /counters/{key}``: value, version and siblings."""
    return Call("GET", _counter_target(key), Counter.from_json)


def list_counters(prefix: str, after: str | None, limit: int) -> Call[CounterPage]:
    """``GET /counters``: one page of keys and values, and the next cursor."""
    params = {"prefix": prefix, "limit": str(limit)}
    if after is not None:
        params["after"] = after
    # quote, not quote_plus: "+" is sent as %2B and a space as %20, unambiguous to any reader.
    return Call("GET", "/counters?" + urlencode(params, quote_via=quote), CounterPage.from_json)


def status() -> Call[Status]:
    """``GET /status``: node, actor, vector and peers."""
    return Call("GET", "/status", Status.from_json)


def health() -> Call[Health]:
    """``GET /health``: the node answers, and says its node id."""
    return Call("GET", "/health", Health.from_json)


def read_reply(call: Call[T], where: str, status: int, body: bytes) -> T:
    """What the node at ``where`` answered to ``call`` (HTTP ``status``, ``body``), parsed.

    :raises VVStoreError: the error the node answered (see :func:`~vvstore.replies.error_for`).
    :raises MalformedReply: a 200 that cannot be read; indefinite after a write (the node
        applied it), definite after a read.
    """
    if status != 200:
        raise error_for(status, body)
    at = f"{call.method} {where}{call.target}"
    try:
        decoded = json.loads(body)
    except ValueError as exc:
        raise MalformedReply(f"{at}: the reply is not JSON: {exc}", definite=call.is_read) from None
    try:
        return call.parse(decoded)
    except MalformedReply as exc:
        raise MalformedReply(f"{at}: {exc.message}", definite=call.is_read) from None


class Attempts:
    """The tries of one call: how many, on which node, and how long to wait between them
    (see the module docstring for the rule).

    :param nodes: how many node URLs the client has.
    :param start: the index of the node to try first.
    """

    def __init__(
        self, call: Call[Any], *, nodes: int, start: int, attempts: int, retry_delay: float
    ) -> None:
        self.call = call
        self.nodes = nodes
        self.current = start
        self.retry_delay = retry_delay
        if call.is_read:
            self.tries = nodes
        elif call.keyed:
            self.tries = max(1, attempts)
        else:
            self.tries = 1
        self._failed = 0

    def retry_after(self, exc: errors.VVStoreError) -> float | None:
        """After a failed try: the seconds to wait before trying again at :attr:`current`
        (which has moved to the next node), or None when the failure is final."""
        self._failed += 1
        if isinstance(exc, MalformedReply) or exc.definite or self._failed >= self.tries:
            return None
        self.current = (self.current + 1) % self.nodes
        return 0.0 if self.call.is_read else self.retry_delay * 2 ** (self._failed - 1)
