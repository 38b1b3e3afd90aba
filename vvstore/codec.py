"""The JSON shapes of everything that crosses the process boundary, and their validation.

Two families live here:

* the public HTTP API: counter keys taken from raw URL paths, request bodies, reply bodies;
* the sync protocol between nodes: pull requests, pages of entries and write notices, each
  carrying ``"v": FORMAT_VERSION``.

Every decoder validates fully before returning (types, ranges, sizes, id formats), so nothing
half-checked reaches the store. Decoders of client input raise :class:`InvalidRequest` or
:class:`Overflow`; decoders of peer payloads raise :class:`UnsupportedVersion` or
:class:`MalformedPayload`. Booleans, floats and numeric strings are never integers here.

Pure core: standard library, :mod:`vvstore.clock`, :mod:`vvstore.counter` and
:mod:`vvstore.errors` only; no I/O.
"""

from __future__ import annotations

import itertools
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

# ACTOR_ID_RE and make_actor_id live in vvstore.actor; re-exported for existing importers.
from vvstore.actor import ACTOR_ID_RE, make_actor_id
from vvstore.clock import MAX_COUNTER, VersionVector
from vvstore.config import NODE_ID_RE
from vvstore.counter import INT64_MAX, INT64_MIN, CounterState, Entry, Floor
from vvstore.errors import (
    ClockError,
    InvalidRequest,
    MalformedPayload,
    Overflow,
    UnsupportedVersion,
)
from vvstore.idempotency import Record, normalize_idempotency_key

__all__ = [
    "ACTOR_ID_RE",
    "FORMAT_VERSION",
    "MAX_FLOORS_BYTES",
    "MAX_KEY_BYTES",
    "MAX_NUMBER_CHARS",
    "MAX_PAGE_BODY_BYTES",
    "MAX_PAGE_BYTES",
    "MAX_PAGE_ENTRIES",
    "MAX_SYNC_REQUEST_BYTES",
    "MAX_VECTOR_BYTES",
    "HugeNumber",
    "Notice",
    "Outcome",
    "Page",
    "PullRequest",
    "Reply",
    "Write",
    "counter_body",
    "decode_batch",
    "decode_increment",
    "decode_int_param",
    "decode_key",
    "decode_notice",
    "decode_page",
    "decode_pull_request",
    "decode_reply",
    "encode_entry",
    "encode_notice",
    "encode_page",
    "encode_pull_request",
    "encode_record",
    "encode_reply",
    "entry_size",
    "floors_bytes",
    "make_actor_id",
    "mark_size",
    "page_envelope_size",
    "read_body",
    "record_size",
    "reply_body",
    "validate_key",
    "vector_bytes",
]

#: Version of the sync payloads. Append-only: a node refuses a version it does not know.
FORMAT_VERSION = 1
MAX_KEY_BYTES = 256

# Sync limits, in encoded bytes (UTF-8, as the JSON goes on the wire), each the one definition
# that senders keep within and receivers enforce. They stop a hostile or broken peer; no state
# a cluster reaches in use should come near them (see docs/security.md for the arithmetic).
#
#: A version vector's JSON object (a page's or notice's vector; a pull's vector or snapshot).
#: An actor costs at most 80 bytes (a 57-character id, a 19-digit seq, quotes, colon, comma),
#: so this holds 6,553 actors of the longest ids, and 5,000 with room to spare.
MAX_VECTOR_BYTES = 512 * 1024
#: One entry's floors object: a floor costs at most 103 bytes (id, seq, a 20-character total),
#: so this holds 7,635 floors of the longest ids. A reset that would need more is refused.
MAX_FLOORS_BYTES = 768 * 1024
#: The items of one page (entries, records, marks, with their separating commas): the most a
#: node's page_bytes may be, and more than the largest legal entry (a 256-byte key, escaped,
#: and floors at their limit), so every entry fits some page.
MAX_PAGE_BYTES = 1 << 20
#: Room for what is neither items nor vector: field names, node and actor ids, the cursor.
_ENVELOPE_BYTES = 64 * 1024
#: The most bytes a receiver reads of one page: its items, its vector, its envelope.
MAX_PAGE_BODY_BYTES = MAX_PAGE_BYTES + MAX_VECTOR_BYTES + _ENVELOPE_BYTES
#: The most bytes a node reads of a sync request (a pull carries two vectors, a notice one).
MAX_SYNC_REQUEST_BYTES = 2 * MAX_VECTOR_BYTES + _ENVELOPE_BYTES
#: The most items of each kind in one page (what a node sends may be less).
MAX_PAGE_ENTRIES = 5000
#: The most characters of a JSON number that is converted at all: int64 needs 20, and Python
#: refuses (with a ValueError) to convert more than 4,300 digits. Longer numbers decode to a
#: :class:`HugeNumber` that every field validator refuses by name.
MAX_NUMBER_CHARS = 40

Cursor = tuple[str, int]


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


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _amount(value: object, where: str) -> int:
    if isinstance(value, HugeNumber):
        raise InvalidRequest(
            f"{where}amount must be an integer of at most {MAX_NUMBER_CHARS} characters,"
            f" got {value!r}"
        )
    if not _is_int(value):
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


# --- sync protocol -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PullRequest:
    """Ask a node for every entry with ``(actor, seq) > cursor`` and ``seq > vector[actor]``.

    ``snapshot`` is the responder's vector from the round's first page, echoed on later pages.
    """

    vector: VersionVector
    cursor: Cursor | None = None
    snapshot: VersionVector | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a pull: the responder's identity and committed vector, and its items.

    Items are entries, records of idempotency-key applications, and compensation marks
    ``(dot of the compensating write, dot of the record it marked)``; each stream is in
    ``(actor, seq)`` order of the dot it travels under.
    """

    node: str
    actor: str
    vector: VersionVector
    entries: tuple[tuple[str, Entry], ...]
    next: Cursor | None
    records: tuple[Record, ...] = ()
    marks: tuple[tuple[Cursor, Cursor], ...] = ()

    @property
    def last(self) -> bool:
        return self.next is None


@dataclass(frozen=True, slots=True)
class Notice:
    """A debounced write notice: the sender's node-level vector, nothing else."""

    node: str
    actor: str
    vector: VersionVector


def _check_version(obj: object) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise MalformedPayload("payload must be a JSON object")
    version = obj.get("v")
    if not _is_int(version):
        raise MalformedPayload("payload must carry an integer format version 'v'")
    if version != FORMAT_VERSION:
        raise UnsupportedVersion(
            f"format version {version} is not supported (this node speaks {FORMAT_VERSION})"
        )
    return obj


def _peer_json(body: bytes, limit: int) -> Mapping[str, Any]:
    if len(body) > limit:
        raise MalformedPayload(f"payload of {len(body)} bytes is over the {limit} byte limit")
    try:
        obj = read_body(body)
    except ValueError as exc:
        raise MalformedPayload(f"payload is not valid JSON: {exc}") from None
    return _check_version(obj)


def _exact_fields(obj: Mapping[str, Any], required: set[str]) -> None:
    missing = sorted(required - set(obj))
    unknown = sorted(set(obj) - required - {"v"})
    if missing or unknown:
        raise MalformedPayload(f"payload fields: missing {missing}, unknown {unknown}")


def _actor(value: object, what: str) -> str:
    if not isinstance(value, str) or not ACTOR_ID_RE.fullmatch(value):
        raise MalformedPayload(f"{what} must be an actor id '<node id>~<16 hex>', got {value!r}")
    return value


def _seq(value: object, what: str, *, low: int = 1) -> int:
    if not _is_int(value) or not low <= value <= MAX_COUNTER:  # type: ignore[operator]
        raise MalformedPayload(f"{what} must be an int in [{low}, 2**63-1], got {value!r}")
    assert isinstance(value, int)
    return value


def _total(value: object, what: str) -> int:
    if not _is_int(value) or not INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
        raise MalformedPayload(f"{what} must be a 64-bit signed int, got {value!r}")
    assert isinstance(value, int)
    return value


def _wire_bytes(obj: Any) -> int:
    """Bytes of ``obj`` encoded as the sync payloads encode it (compact, UTF-8)."""
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def vector_bytes(vector: Mapping[str, int]) -> int:
    """Encoded bytes of a vector's JSON object, the measure :data:`MAX_VECTOR_BYTES` bounds."""
    return _wire_bytes(vector)


def floors_bytes(floors: Mapping[str, Floor]) -> int:
    """Encoded bytes of an entry's floors object, the measure :data:`MAX_FLOORS_BYTES` bounds."""
    return _wire_bytes(_floors_wire(floors))


def _vector(value: object, what: str) -> VersionVector:
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what} must be an object of actor id -> seq")
    for actor in value:
        _actor(actor, f"{what} id")
    try:
        vector = VersionVector.from_dict(value)
    except ClockError as exc:
        raise MalformedPayload(f"{what}: {exc}") from None
    size = vector_bytes(value)
    if size > MAX_VECTOR_BYTES:
        raise MalformedPayload(
            f"{what} takes {size} bytes ({len(value)} actors), more than {MAX_VECTOR_BYTES}"
        )
    return vector


def _cursor(value: object) -> Cursor | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise MalformedPayload("cursor must be null or [actor id, seq]")
    return (_actor(value[0], "cursor actor"), _seq(value[1], "cursor seq", low=0))


def encode_pull_request(request: PullRequest) -> bytes:
    body: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "vector": request.vector.to_dict(),
        "cursor": list(request.cursor) if request.cursor is not None else None,
        "snapshot": request.snapshot.to_dict() if request.snapshot is not None else None,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode_pull_request(body: bytes) -> PullRequest:
    obj = _peer_json(body, MAX_SYNC_REQUEST_BYTES)
    _exact_fields(obj, {"vector", "cursor", "snapshot"})
    snapshot = obj["snapshot"]
    return PullRequest(
        vector=_vector(obj["vector"], "vector"),
        cursor=_cursor(obj["cursor"]),
        snapshot=None if snapshot is None else _vector(snapshot, "snapshot"),
    )


def _floors_wire(floors: Mapping[str, Floor]) -> dict[str, list[int]]:
    return {a: [f.seq, f.total] for a, f in sorted(floors.items())}


def encode_entry(key: str, entry: Entry) -> list[Any]:
    """An entry on the wire: ``[actor, seq, key, total, {actor: [seq, total]}]``."""
    return [entry.actor, entry.seq, key, entry.total, _floors_wire(entry.floors)]


def entry_size(key: str, entry: Entry) -> int:
    """Bytes ``entry`` adds to a page: its encoding in UTF-8, and a separating comma."""
    return _wire_bytes(encode_entry(key, entry)) + 1


def record_size(record: Record) -> int:
    """Bytes ``record`` adds to a page: its encoding in UTF-8, and a separating comma."""
    return _wire_bytes(encode_record(record)) + 1


def mark_size(by: Cursor, marked: Cursor) -> int:
    """Bytes a mark adds to a page: its encoding, and a separating comma."""
    return _wire_bytes([*by, *marked]) + 1


def page_envelope_size(vector: VersionVector, node: str, actor: str, cursor: Cursor | None) -> int:
    """Bytes of a page with no items: the part :func:`entry_size` and its kin do not count."""
    return len(encode_page(Page(node, actor, vector, (), cursor)))


def encode_page(page: Page) -> bytes:
    body = {
        "v": FORMAT_VERSION,
        "node": page.node,
        "actor": page.actor,
        "vector": page.vector.to_dict(),
        "entries": [encode_entry(key, entry) for key, entry in page.entries],
        "records": [encode_record(record) for record in page.records],
        "marks": [[*by, *marked] for by, marked in page.marks],
        "next": list(page.next) if page.next is not None else None,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def encode_record(record: Record) -> list[Any]:
    """A record on the wire: ``[actor, seq, key hash hex, fingerprint hex, key, amount]``."""
    return [
        record.actor,
        record.seq,
        record.khash.hex(),
        record.fingerprint.hex(),
        record.key,
        record.amount,
    ]


def _hex(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise MalformedPayload(f"{what} must be {2 * size} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedPayload(f"{what} must be {2 * size} hex digits") from None


def _record(value: object, i: int) -> Record:
    where = f"records[{i}]"
    if not isinstance(value, list) or len(value) != 6:
        raise MalformedPayload(f"{where} must be [actor, seq, key hash, fingerprint, key, amount]")
    try:
        key = validate_key(value[4])
    except InvalidRequest as exc:
        raise MalformedPayload(f"{where} key: {exc.message}") from None
    return Record(
        actor=_actor(value[0], f"{where} actor"),
        seq=_seq(value[1], f"{where} seq"),
        khash=_hex(value[2], 16, f"{where} key hash"),
        fingerprint=_hex(value[3], 8, f"{where} fingerprint"),
        key=key,
        amount=_total(value[5], f"{where} amount"),
    )


def _mark(value: object, i: int) -> tuple[Cursor, Cursor]:
    where = f"marks[{i}]"
    if not isinstance(value, list) or len(value) != 4:
        raise MalformedPayload(f"{where} must be [actor, seq, record actor, record seq]")
    by = (_actor(value[0], f"{where} actor"), _seq(value[1], f"{where} seq"))
    marked = (_actor(value[2], f"{where} record actor"), _seq(value[3], f"{where} record seq"))
    return by, marked


def _ordered(name: str, dots: list[Cursor]) -> None:
    for a, b in itertools.pairwise(dots):
        if a > b:
            raise MalformedPayload(f"{name} must be in (actor, seq) order")


def _entry(value: object, i: int) -> tuple[str, Entry]:
    where = f"entries[{i}]"
    if not isinstance(value, list) or len(value) != 5:
        raise MalformedPayload(f"{where} must be [actor, seq, key, total, floors]")
    actor = _actor(value[0], f"{where} actor")
    seq = _seq(value[1], f"{where} seq")
    try:
        key = validate_key(value[2])
    except InvalidRequest as exc:
        raise MalformedPayload(f"{where} key: {exc.message}") from None
    total = _total(value[3], f"{where} total")
    raw_floors = value[4]
    if not isinstance(raw_floors, dict):
        raise MalformedPayload(f"{where} floors must be an object of actor id -> [seq, total]")
    floors: dict[str, Floor] = {}
    for floor_actor, pair in raw_floors.items():
        _actor(floor_actor, f"{where} floor actor")
        if not isinstance(pair, list) or len(pair) != 2:
            raise MalformedPayload(f"{where} floor must be [seq, total]")
        floors[floor_actor] = Floor(
            _seq(pair[0], f"{where} floor seq"), _total(pair[1], f"{where} floor total")
        )
    size = floors_bytes(floors)
    if size > MAX_FLOORS_BYTES:
        raise MalformedPayload(
            f"{where} floors take {size} bytes ({len(floors)} actors), more than {MAX_FLOORS_BYTES}"
        )
    own = floors.get(actor)
    if own is not None and own.seq > seq:
        raise MalformedPayload(f"{where} carries a floor for its own actor beyond its seq")
    return key, Entry(actor, seq, total, floors)


def decode_page(body: bytes) -> Page:
    """Validate a whole page before anything of it is applied.

    Entries must be in strictly increasing ``(actor, seq)`` order, as the protocol sends them.
    """
    obj = _peer_json(body, MAX_PAGE_BODY_BYTES)
    _exact_fields(obj, {"node", "actor", "vector", "entries", "records", "marks", "next"})
    node = obj["node"]
    if not isinstance(node, str) or not NODE_ID_RE.fullmatch(node):
        raise MalformedPayload(f"node must be a node id, got {node!r}")
    actor = _actor(obj["actor"], "actor")
    raw_entries = obj["entries"]
    if not isinstance(raw_entries, list) or len(raw_entries) > MAX_PAGE_ENTRIES:
        raise MalformedPayload(f"entries must be a list of at most {MAX_PAGE_ENTRIES}")
    entries = tuple(_entry(e, i) for i, e in enumerate(raw_entries))
    for (_, a), (_, b) in itertools.pairwise(entries):
        if (a.actor, a.seq) >= (b.actor, b.seq):
            raise MalformedPayload("entries must be in strictly increasing (actor, seq) order")
    raw_records, raw_marks = obj["records"], obj["marks"]
    for name, raw in (("records", raw_records), ("marks", raw_marks)):
        if not isinstance(raw, list) or len(raw) > MAX_PAGE_ENTRIES:
            raise MalformedPayload(f"{name} must be a list of at most {MAX_PAGE_ENTRIES}")
    records = tuple(_record(r, i) for i, r in enumerate(raw_records))
    marks = tuple(_mark(m, i) for i, m in enumerate(raw_marks))
    _ordered("records", [r.dot for r in records])
    _ordered("marks", [by for by, _ in marks])
    return Page(
        node=node,
        actor=actor,
        vector=_vector(obj["vector"], "vector"),
        entries=entries,
        next=_cursor(obj["next"]),
        records=records,
        marks=marks,
    )


def encode_notice(notice: Notice) -> bytes:
    body = {
        "v": FORMAT_VERSION,
        "node": notice.node,
        "actor": notice.actor,
        "vector": notice.vector.to_dict(),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode_notice(body: bytes) -> Notice:
    obj = _peer_json(body, MAX_SYNC_REQUEST_BYTES)
    _exact_fields(obj, {"node", "actor", "vector"})
    node = obj["node"]
    if not isinstance(node, str) or not NODE_ID_RE.fullmatch(node):
        raise MalformedPayload(f"node must be a node id, got {node!r}")
    return Notice(
        node=node,
        actor=_actor(obj["actor"], "actor"),
        vector=_vector(obj["vector"], "vector"),
    )
