"""What a node answers on the public HTTP API, read into typed values: the pure half of the clients.

Every reply a client reads becomes a frozen dataclass (:class:`Counter`, :class:`CounterPage`,
:class:`Status`, :class:`Health`), each with the decoded JSON object it came from as ``raw``,
for callers that print or pass on the node's own JSON. Parsing ignores fields it does not know,
so a newer node works; a reply without a field a client needs, or with a wrong type, is
:class:`MalformedReply`. An error reply becomes the matching
:class:`~vvstore.errors.VVStoreError` by its JSON ``code`` (:func:`error_for`).

:mod:`vvstore.client` (async) and :mod:`vvstore.blocking_client` both read replies here, so the
two cannot disagree on what a reply means.

Pure core: standard library and :mod:`vvstore.errors` only; no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vvstore import errors

__all__ = [
    "Counter",
    "CounterPage",
    "Health",
    "ListedCounter",
    "MalformedReply",
    "PeerStatus",
    "ReplyError",
    "Sibling",
    "Status",
    "batch_results",
    "error_for",
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


def batch_results(data: object) -> list[Counter]:
    """The counters of a ``POST /batch`` reply, one per item, in order."""
    results = _list(_object(data, "a batch reply"), "results", "a batch reply")
    return [Counter.from_json(r) for r in results]


def error_for(status: int, body: bytes) -> errors.VVStoreError:
    """The error a reply of HTTP ``status`` with ``body`` stands for: the class of its JSON
    ``code``, else :class:`ReplyError` (definite for a 4xx, indefinite for a 5xx)."""
    try:
        detail = json.loads(body)["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{status}", body[:200].decode("utf-8", "replace")
    cls = _BY_CODE.get(code)
    if cls is None:
        return ReplyError(f"HTTP {status}: {message}", code=code, status=status)
    return cls(message)
