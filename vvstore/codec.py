"""The JSON shapes of the public HTTP API, and their validation: counter keys taken from raw
URL paths, request bodies, query integers, reply bodies and the stored form of a reply. Also
the strict JSON reader every payload goes through (:func:`read_body`); the sync protocol's
payloads are :mod:`vvstore.wire`'s.

Every decoder validates fully before returning (types, ranges, sizes), so nothing half-checked
reaches the store. Decoders of client input raise :class:`InvalidRequest` or
:class:`Overflow`. Booleans, floats and numeric strings are never integers here.

Pure core: standard library, :mod:`vvstore.clock`, :mod:`vvstore.counter` and
:mod:`vvstore.errors` only; no I/O.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from vvstore.counter import INT64_MAX, INT64_MIN, CounterState, Entry
from vvstore.errors import (
    InvalidRequest,
    Overflow,
)
from vvstore.idempotency import normalize_idempotency_key

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_NUMBER_CHARS",
    "HugeNumber",
    "Outcome",
    "Reply",
    "Write",
    "counter_body",
    "decode_batch",
    "decode_increment",
    "decode_int_param",
    "decode_key",
    "decode_reply",
    "encode_reply",
    "is_int",
    "read_body",
    "reply_body",
    "validate_key",
]

MAX_KEY_BYTES = 256
#: The most characters of a JSON number that is converted at all: int64 needs 20, and Python
#: refuses (with a ValueError) to convert more than 4,300 digits. Longer numbers decode to a
#: :class:`HugeNumber` that every field validator refuses by name.
MAX_NUMBER_CHARS = 40


# --- public API: keys and bodies ---------------------------------------------------------


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid counter key, else raise :class:`InvalidRequest`.

    A key is 1 to 256 bytes of UTF-8, has no control character (category Cc), and is not
    ``.`` or ``..``.
    """
    if not isinstance(key, str):
        raise InvalidRequest("key must be a string")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequest("key must be valid UTF-8 (no lone surrogates)") from None
    if not 1 <= size <= MAX_KEY_BYTES:
        raise InvalidRequest(f"key must be 1 to {MAX_KEY_BYTES} bytes of UTF-8, got {size}")
    if key in (".", ".."):
        raise InvalidRequest("key must not be '.' or '..'")
    # isprintable() is False for every control character (and some others): check those only.
    if not key.isprintable() and any(unicodedata.category(ch) == "Cc" for ch in key):
        raise InvalidRequest("key must not contain control characters")
    return key


def decode_key(raw: str) -> str:
    """Decode a key from its percent-encoded URL path segment, exactly.

    ``+`` stays ``+``; ``%2F`` becomes ``/``; invalid UTF-8 is refused.

    :raises InvalidRequest: for invalid UTF-8 or an invalid key.
    """
    try:
        key = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("key is not valid UTF-8 once percent-decoded") from None
    return validate_key(key)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class HugeNumber:
    """A JSON integer of more than :data:`MAX_NUMBER_CHARS` characters, left unconverted.

    Converting it would cost time quadratic in its length (or raise beyond 4,300 digits); no
    field accepts it, and each field's validator refuses it naming the field.
    """

    __slots__ = ("chars",)

    def __init__(self, chars: int) -> None:
        self.chars = chars

    def __repr__(self) -> str:
        return f"an integer of {self.chars} characters"


def _parse_int(text: str) -> int | HugeNumber:
    return int(text) if len(text) <= MAX_NUMBER_CHARS else HugeNumber(len(text))


# Built once: json.loads with any keyword builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_int=_parse_int)


def read_body(body: bytes) -> Any:
    """Parse a UTF-8 JSON body strictly (no NaN or Infinity, no UTF-16 or UTF-32 guessing).

    :raises ValueError: for anything that is not valid JSON (including absurd nesting).
    """
    try:
        return _DECODER.decode(body.decode("utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("body is not UTF-8") from None


def decode_int_param(name: str, raw: str, low: int, high: int) -> int:
    """A decimal integer query parameter in ``[low, high]``, checked for size before conversion.

    :raises InvalidRequest: naming the parameter, for anything else (signs, spaces, non-ASCII
        digits, more than :data:`MAX_NUMBER_CHARS` digits, a value out of range).
    """
    if (
        not raw.isascii()
        or not raw.isdigit()
        or len(raw) > MAX_NUMBER_CHARS
        or not low <= int(raw) <= high
    ):
        # repr() escapes what could garble a message; a long value is cut, by its repr's length.
        shown = repr(raw) if len(repr(raw)) <= 60 else f"{raw[:10]!r}... ({len(raw)} characters)"
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}, got {shown}")
    return int(raw)


def _client_json(body: bytes) -> Any:
    try:
        return read_body(body)
    except ValueError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None


def is_int(value: object) -> bool:
    """True for a JSON integer: an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _amount(value: object, where: str) -> int:
    if isinstance(value, HugeNumber):
        raise InvalidRequest(
            f"{where}amount must be an integer of at most {MAX_NUMBER_CHARS} characters,"
            f" got {value!r}"
        )
    if not is_int(value):
        raise InvalidRequest(f"{where}amount must be an integer, got {type(value).__name__}")
    assert isinstance(value, int)
    if not INT64_MIN <= value <= INT64_MAX:
        raise Overflow(f"{where}amount {value} is outside the 64-bit signed range")
    return value


def _fields(obj: object, allowed: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidRequest(f"{where}must be a JSON object")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise InvalidRequest(f"{where}has unknown field(s): {', '.join(unknown)}")
    return obj


def decode_increment(body: bytes) -> int:
    """The amount of ``POST /counters/{key}``: ``{"amount": int}``; empty body or ``{}`` is 1."""
    if not body.strip():
        return 1
    obj = _fields(_client_json(body), {"amount"}, "body ")
    return _amount(obj["amount"], "") if "amount" in obj else 1


@dataclass(frozen=True, slots=True)
class Write:
    """One write a client asked for: an increment (or a reset) with its idempotency key."""

    key: str
    amount: int = 1
    idempotency_key: str | None = None
    reset: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """What the reply to one write shows: the state of ``key``, with its siblings for a reset.

    The API renders it (:func:`reply_body`). The store keeps it with the record of the write's
    idempotency key (:func:`encode_reply`), so that a retry answers what the first application
    answered, whatever the key's state by then.
    """

    key: str
    state: CounterState
    siblings: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one write did: the key's state after it, what its reply shows, and whether it was a
    replay of an earlier application of its idempotency key.

    ``state`` is the key's state right after the write (for a replay, its state now); ``reply``
    is a :class:`Reply`, or, replaying a reply stored by an earlier release, that reply's JSON
    body, answered as stored.
    """

    state: CounterState
    reply: Reply | dict[str, Any]
    replayed: bool = False

    @property
    def body(self) -> dict[str, Any]:
        """The reply's JSON body (:func:`reply_body`), for callers that hold an outcome."""
        return reply_body(self)


def decode_batch(body: bytes, *, max_items: int = 1000) -> list[Write]:
    """The items of ``POST /batch``: ``{"increments": [{"key", "amount", "idempotency_key"}]}``.

    Two items with one idempotency key are refused (400).
    """
    obj = _fields(_client_json(body), {"increments"}, "body ")
    items = obj.get("increments")
    if not isinstance(items, list):
        raise InvalidRequest("body must have an 'increments' list")
    if not 1 <= len(items) <= max_items:
        raise InvalidRequest(f"'increments' must hold 1 to {max_items} items, got {len(items)}")
    out: list[Write] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"increments[{i}] "
        fields = _fields(item, {"key", "amount", "idempotency_key"}, where)
        if "key" not in fields:
            raise InvalidRequest(f"{where}needs a 'key'")
        key = fields["key"]
        try:
            validate_key(key)
        except InvalidRequest as exc:
            raise InvalidRequest(f"{where}{exc.message}") from None
        amount = _amount(fields["amount"], where) if "amount" in fields else 1
        idempotency_key = None
        if "idempotency_key" in fields:
            try:
                idempotency_key = normalize_idempotency_key(fields["idempotency_key"])
            except InvalidRequest as exc:
                raise InvalidRequest(f"{where}{exc.message}") from None
            if idempotency_key in seen:
                raise InvalidRequest(f"{where}repeats an idempotency key of an earlier item")
            seen.add(idempotency_key)
        out.append(Write(key, amount, idempotency_key))
    return out


def counter_body(key: str, state: CounterState, *, siblings: bool) -> dict[str, Any]:
    """The reply body for one key: key, value, version (and siblings for reads)."""
    body: dict[str, Any] = {
        "key": key,
        "value": state.value(),
        "version": state.version_dict(),
    }
    if siblings:
        # "node" is the deprecated old name of "actor" (it always held an actor id), sent as
        # well for one release so that readers of the old name keep working.
        body["siblings"] = [
            {"actor": s.actor, "seq": s.seq, "value": s.value, "node": s.actor}
            for s in state.siblings()
        ]
    return body


def reply_body(outcome: Outcome) -> dict[str, Any]:
    """The JSON body answering one write: its key's value and version (and siblings for a
    reset), or, replaying a reply an earlier release stored as its body, that body."""
    reply = outcome.reply
    if isinstance(reply, Reply):
        return counter_body(reply.key, reply.state, siblings=reply.siblings)
    return reply


# The storage encoding of a reply (the reply column of the store's records table), versioned
# like a payload: [_REPLY_FORMAT, siblings (0 or 1), [[actor id, seq, contribution], ...]]. A
# reply shows only the value, the version and the siblings' contributions, so the state kept is
# the floorless one whose totals are those contributions: it renders the same body in fewer
# bytes than the floors would take. The key is the record's own column. Earlier releases stored
# the reply's JSON body (an object) instead; those rows replay as stored.
_REPLY_FORMAT = 1


def encode_reply(reply: Reply) -> str:
    """What :func:`decode_reply` needs to answer ``reply`` again, as compact JSON text."""
    entries = [[s.actor, s.seq, s.value] for s in reply.state.siblings()]
    return json.dumps([_REPLY_FORMAT, int(reply.siblings), entries], separators=(",", ":"))


def decode_reply(stored: str, key: str) -> Reply | dict[str, Any]:
    """The reply a record of ``key`` stored (:func:`encode_reply`), or an earlier release's
    stored body as it is.

    :raises ValueError: ``stored`` is in neither shape (the database is not one vvstore wrote).
    """
    obj = json.loads(stored)
    if isinstance(obj, dict):
        return obj
    if not (isinstance(obj, list) and len(obj) == 3 and obj[0] == _REPLY_FORMAT):
        raise ValueError(f"a stored reply of {key!r} is in no known format: {stored[:80]!r}")
    _, siblings, entries = obj
    state = CounterState(Entry(actor, seq, total) for actor, seq, total in entries)
    return Reply(key, state, bool(siblings))
