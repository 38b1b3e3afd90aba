"""The sync protocol's payloads: pull requests, pages and notices, their limits and validation.

Everything nodes send each other carries a format version ``"v"``. A node speaks every
version in :data:`SUPPORTED_VERSIONS`, answers a request in the version it came in, and refuses
a version it does not know (``unsupported_version``), so a node that sends a newer request to an
older peer learns to speak the older version to it (see :mod:`vvstore.sync`).

Version 2 adds retirements (:mod:`vvstore.retirement`): every vector of a pull, a page or a
notice is sent compact against a retirement map named by its ``retired`` digest, and a new
request, :class:`RetiredRequest`, pages through a node's retirement map. A receiver whose own map
has another digest cannot read a compact vector: a pull then gets a page marked ``differs``, a
notice is taken as news. Version 1 sends whole vectors.

Version 3 adds duplicate sets (:class:`~vvstore.idempotency.DuplicateSet`) to pages, in the
stream of the node that published them. A node publishes them only once every peer speaks
version 3, and a page in an older version leaves them out.

Every decoder validates the whole payload (types, ranges, sizes, id formats, order) before
returning, so a hostile or broken peer can waste one call, never corrupt a store; decoders
raise :class:`UnsupportedVersion` or :class:`MalformedPayload`.

The limits are in encoded bytes (compact JSON in UTF-8, exactly what goes on the wire), each
defined once here: the sending side measures what it builds with this module's own encoders
(:mod:`vvstore.paging`), the receiving side's decoders refuse beyond the same constants.

Pure core: standard library and other core modules only (client-facing shapes, the strict JSON
reader and the key rules are :mod:`vvstore.codec`'s); no I/O. It runs past 600 lines because
each payload's encoder, decoder and limits belong together, in both versions: split, a limit
and the check that enforces it would live apart.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vvstore.actor import ACTOR_ID_RE
from vvstore.clock import MAX_COUNTER, VersionVector
from vvstore.codec import is_int, read_body, validate_key
from vvstore.config import NODE_ID_RE
from vvstore.counter import INT64_MAX, INT64_MIN, Entry, Floor
from vvstore.errors import ClockError, InvalidRequest, MalformedPayload, UnsupportedVersion
from vvstore.idempotency import MAX_DUPLICATE_COPIES, DuplicateSet, Record
from vvstore.retirement import DIGEST_HEX, EMPTY, Retirements

__all__ = [
    "DUPLICATE_SETS_VERSION",
    "FLOOR_BYTES_BOUND",
    "FORMAT_VERSION",
    "MAX_FLOORS_BYTES",
    "MAX_PAGE_BODY_BYTES",
    "MAX_PAGE_BYTES",
    "MAX_PAGE_ENTRIES",
    "MAX_SYNC_REQUEST_BYTES",
    "MAX_VECTOR_BYTES",
    "SUPPORTED_VERSIONS",
    "Cursor",
    "Notice",
    "Page",
    "PullRequest",
    "RetiredPage",
    "RetiredRequest",
    "decode_notice",
    "decode_page",
    "decode_pull_request",
    "decode_retired_page",
    "decode_retired_request",
    "duplicate_set_size",
    "encode_entry",
    "encode_notice",
    "encode_page",
    "encode_pull_request",
    "encode_record",
    "encode_retired_page",
    "encode_retired_request",
    "entry_size",
    "floors_bytes",
    "mark_size",
    "record_size",
    "vector_bytes",
]

#: The newest version of the sync payloads, the one a node sends unless a peer refuses it.
FORMAT_VERSION = 3
#: The first version whose pages carry duplicate sets.
DUPLICATE_SETS_VERSION = 3
#: Every version a node reads and answers in. Append-only.
SUPPORTED_VERSIONS = (1, 2, 3)

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
#: The most bytes one floor adds to a floors object (the arithmetic above): below
#: MAX_FLOORS_BYTES / this many floors, an entry's floors need no measuring.
FLOOR_BYTES_BOUND = 103
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
#: The most items of each kind in one page (what a node sends may be less), and the most
#: retirements in one :class:`RetiredPage` (at most 80 bytes each: well under a page's bytes).
MAX_PAGE_ENTRIES = 5000

#: A dot ``(actor id, seq)`` as a page cursor: the last item a page holds.
Cursor = tuple[str, int]


@dataclass(frozen=True, slots=True)
class PullRequest:
    """Ask a node for every entry with ``(actor, seq) > cursor`` and ``seq > vector[actor]``.

    ``snapshot`` is the responder's vector from the round's first page, echoed on later pages.
    In version 2, ``vector`` and ``snapshot`` travel compact against ``retired`` (the sender's
    choice of map; decoded, the receiver's own map they were expanded with). ``differs``, set
    only by the decoder, says the sender compacted against a map the receiver does not hold:
    ``vector`` and ``snapshot`` are then unknown (empty). ``page_bytes`` (version 3, optional)
    asks for pages of at most that many item bytes (the responder's own limit still applies):
    a requester whose page timed out asks again for half.
    """

    vector: VersionVector
    cursor: Cursor | None = None
    snapshot: VersionVector | None = None
    version: int = FORMAT_VERSION
    retired: Retirements = EMPTY
    differs: bool = False
    page_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a pull: the responder's identity and committed vector, and its items.

    Items are entries, records of idempotency-key applications, compensation marks
    ``(dot of the compensating write, dot of the record it marked)`` and (version 3) duplicate
    sets; each stream is in ``(actor, seq)`` order of the dot it travels under. ``version`` and
    ``retired`` are the request's (the vector travels compact against the same map). A page
    whose ``differs`` is set carries no vector and no items, only the digest of the
    responder's own retirement map: the requester fetches that map (:class:`RetiredRequest`)
    and asks again.
    """

    node: str
    actor: str
    vector: VersionVector
    entries: tuple[tuple[str, Entry], ...]
    next: Cursor | None
    records: tuple[Record, ...] = ()
    marks: tuple[tuple[Cursor, Cursor], ...] = ()
    version: int = FORMAT_VERSION
    retired: Retirements = EMPTY
    differs: str | None = None
    duplicates: tuple[DuplicateSet, ...] = ()

    @property
    def last(self) -> bool:
        return self.next is None


@dataclass(frozen=True, slots=True)
class Notice:
    """A debounced write notice: the sender's node-level vector, nothing else.

    ``differs`` (set only by the decoder) says the vector was compact against a retirement map
    the receiver does not hold, so it is unknown (empty): the receiver should pull.
    """

    node: str
    actor: str
    vector: VersionVector
    version: int = FORMAT_VERSION
    retired: Retirements = EMPTY
    differs: bool = False


@dataclass(frozen=True, slots=True)
class RetiredRequest:
    """Ask a node for its retirements of actors after ``after`` (in actor id order)."""

    after: str | None = None


@dataclass(frozen=True, slots=True)
class RetiredPage:
    """Some of a node's retirements, in actor id order; ``digest`` names its whole map."""

    node: str
    actor: str
    digest: str
    items: tuple[tuple[str, int], ...]
    next: str | None


def _check_version(obj: object) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise MalformedPayload("payload must be a JSON object")
    version = obj.get("v")
    if not is_int(version):
        raise MalformedPayload("payload must carry an integer format version 'v'")
    if version not in SUPPORTED_VERSIONS:
        speaks = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise UnsupportedVersion(
            f"format version {version} is not supported (this node speaks {speaks})"
        )
    return obj


def _v2(obj: Mapping[str, Any], what: str) -> None:
    if obj["v"] < 2:
        raise MalformedPayload(f"{what} needs format version 2 or later")


def _peer_json(body: bytes, limit: int) -> Mapping[str, Any]:
    if len(body) > limit:
        raise MalformedPayload(f"payload of {len(body)} bytes is over the {limit} byte limit")
    try:
        obj = read_body(body)
    except ValueError as exc:
        raise MalformedPayload(f"payload is not valid JSON: {exc}") from None
    return _check_version(obj)


def _exact_fields(
    obj: Mapping[str, Any], required: set[str], optional: frozenset[str] = frozenset()
) -> None:
    missing = sorted(required - set(obj))
    unknown = sorted(set(obj) - required - optional - {"v"})
    if missing or unknown:
        raise MalformedPayload(f"payload fields: missing {missing}, unknown {unknown}")


def _actor(value: object, what: str) -> str:
    if not isinstance(value, str) or not ACTOR_ID_RE.fullmatch(value):
        raise MalformedPayload(f"{what} must be an actor id '<node id>~<16 hex>', got {value!r}")
    return value


def _seq(value: object, what: str, *, low: int = 1) -> int:
    if not is_int(value) or not low <= value <= MAX_COUNTER:  # type: ignore[operator]
        raise MalformedPayload(f"{what} must be an int in [{low}, 2**63-1], got {value!r}")
    assert isinstance(value, int)
    return value


def _total(value: object, what: str) -> int:
    if not is_int(value) or not INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
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


def _listed(value: object, what: str) -> dict[str, int]:
    """A compact vector's listed actors: as a vector, but a seq may be 0 (see retirement)."""
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what} must be an object of actor id -> seq")
    size = vector_bytes(value)
    if size > MAX_VECTOR_BYTES:
        raise MalformedPayload(
            f"{what} takes {size} bytes ({len(value)} actors), more than {MAX_VECTOR_BYTES}"
        )
    return {_actor(a, f"{what} id"): _seq(s, f"{what} seq", low=0) for a, s in value.items()}


def _digest(value: object) -> str:
    if (
        not isinstance(value, str)
        or len(value) != DIGEST_HEX
        or value.strip("0123456789abcdef") != ""
    ):
        raise MalformedPayload(f"retired must be a {DIGEST_HEX}-digit hex digest, got {value!r}")
    return value


def _vector_out(vector: VersionVector, version: int, retired: Retirements) -> dict[str, int]:
    return retired.compact(vector) if version >= 2 else vector.to_dict()


def _vector_in(value: object, what: str, version: int, retired: Retirements) -> VersionVector:
    if version < 2:
        return _vector(value, what)
    return retired.expand(_listed(value, what))


def _dump(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def encode_pull_request(request: PullRequest) -> bytes:
    """The request in its ``version``: compact against ``retired`` from version 2 on."""
    v, retired = request.version, request.retired
    body: dict[str, Any] = {
        "v": v,
        "vector": _vector_out(request.vector, v, retired),
        "cursor": list(request.cursor) if request.cursor is not None else None,
        "snapshot": (
            _vector_out(request.snapshot, v, retired) if request.snapshot is not None else None
        ),
    }
    if v >= 2:
        body["retired"] = retired.digest
    if v >= DUPLICATE_SETS_VERSION and request.page_bytes is not None:
        body["page_bytes"] = request.page_bytes
    return _dump(body)


def decode_pull_request(body: bytes, retired: Retirements = EMPTY) -> PullRequest:
    """Decode a pull request; ``retired`` is the receiving node's retirement map."""
    obj = _peer_json(body, MAX_SYNC_REQUEST_BYTES)
    v = obj["v"]
    _exact_fields(
        obj,
        {"vector", "cursor", "snapshot"} | ({"retired"} if v >= 2 else set()),
        frozenset({"page_bytes"}) if v >= DUPLICATE_SETS_VERSION else frozenset(),
    )
    cursor = _cursor(obj["cursor"])
    page_bytes = obj.get("page_bytes")
    if page_bytes is not None and not (is_int(page_bytes) and 1 <= page_bytes <= MAX_PAGE_BYTES):
        raise MalformedPayload(f"page_bytes must be an integer from 1 to {MAX_PAGE_BYTES}")
    if v >= 2 and _digest(obj["retired"]) != retired.digest:
        _listed(obj["vector"], "vector")  # still refuse what is malformed
        return PullRequest(
            VersionVector(), cursor, None, v, retired, differs=True, page_bytes=page_bytes
        )
    snapshot = obj["snapshot"]
    return PullRequest(
        vector=_vector_in(obj["vector"], "vector", v, retired),
        cursor=cursor,
        snapshot=None if snapshot is None else _vector_in(snapshot, "snapshot", v, retired),
        version=v,
        retired=retired,
        page_bytes=page_bytes,
    )


def _floors_wire(floors: Mapping[str, Floor]) -> dict[str, list[int]]:
    return {a: [f.seq, f.total] for a, f in sorted(floors.items())}


def encode_entry(key: str, entry: Entry) -> list[Any]:
    """An entry on the wire: ``[actor, seq, key, total, {actor: [seq, total]}]``."""
    return [entry.actor, entry.seq, key, entry.total, _floors_wire(entry.floors)]


def entry_size(key: str, entry: Entry) -> int:
    """Bytes ``entry`` adds to a page: its encoding in UTF-8, and a separating comma.

    Counted without encoding in the common case (no floors, a key JSON writes as it is: ASCII,
    printable, no quote or backslash; actor ids always are): the brackets, the four commas
    between the five fields, the quoted actor and key, the two numbers, ``{}``, and the comma.
    """
    plain = key.isascii() and key.isprintable() and '"' not in key and "\\" not in key
    if plain and not entry.floors:
        digits = len(str(entry.seq)) + len(str(entry.total))
        return 2 + 4 + len(entry.actor) + 2 + len(key) + 2 + digits + 2 + 1
    return _wire_bytes(encode_entry(key, entry)) + 1


def record_size(record: Record) -> int:
    """Bytes ``record`` adds to a page: its encoding in UTF-8, and a separating comma."""
    return _wire_bytes(encode_record(record)) + 1


def mark_size(by: Cursor, marked: Cursor) -> int:
    """Bytes a mark adds to a page: its encoding, and a separating comma."""
    return _wire_bytes([*by, *marked]) + 1


def duplicate_set_size(dup: DuplicateSet) -> int:
    """Bytes ``dup`` adds to a page: its encoding in UTF-8, and a separating comma."""
    return _wire_bytes(encode_duplicate_set(dup)) + 1


def encode_duplicate_set(dup: DuplicateSet) -> list[Any]:
    """A duplicate set on the wire: ``[actor, seq, key hash hex, key, copies]``, each copy
    ``[actor, seq, fingerprint hex, amount, mark actor or null, mark seq or null]``."""
    return [
        dup.actor,
        dup.seq,
        dup.khash.hex(),
        dup.key,
        [
            [c.actor, c.seq, c.fingerprint.hex(), c.amount, *(c.mark or (None, None))]
            for c in dup.copies
        ],
    ]


def _duplicate_set(value: object, i: int) -> DuplicateSet:
    where = f"duplicates[{i}]"
    if not isinstance(value, list) or len(value) != 5:
        raise MalformedPayload(f"{where} must be [actor, seq, key hash, key, copies]")
    try:
        key = validate_key(value[3])
    except InvalidRequest as exc:
        raise MalformedPayload(f"{where} key: {exc.message}") from None
    khash = _hex(value[2], 16, f"{where} key hash")
    raw = value[4]
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_DUPLICATE_COPIES:
        raise MalformedPayload(f"{where} copies must be a list of 2 to {MAX_DUPLICATE_COPIES}")
    copies = []
    for j, item in enumerate(raw):
        at = f"{where} copies[{j}]"
        if not isinstance(item, list) or len(item) != 6:
            raise MalformedPayload(f"{at} must be [actor, seq, fingerprint, amount, mark, seq]")
        mark = None
        if item[4] is not None or item[5] is not None:
            mark = (_actor(item[4], f"{at} mark actor"), _seq(item[5], f"{at} mark seq"))
        copies.append(
            Record(
                actor=_actor(item[0], f"{at} actor"),
                seq=_seq(item[1], f"{at} seq"),
                khash=khash,
                fingerprint=_hex(item[2], 8, f"{at} fingerprint"),
                key=key,
                amount=_total(item[3], f"{at} amount"),
                mark=mark,
            )
        )
    for a, b in itertools.pairwise(copies):
        if a.order >= b.order:
            raise MalformedPayload(f"{where} copies must be in strictly increasing (seq, actor)")
    actor = _actor(value[0], f"{where} actor")
    return DuplicateSet(actor, _seq(value[1], f"{where} seq"), khash, key, tuple(copies))


def encode_page(page: Page) -> bytes:
    v = page.version
    body: dict[str, Any] = {
        "v": v,
        "node": page.node,
        "actor": page.actor,
        "vector": _vector_out(page.vector, v, page.retired) if page.differs is None else {},
        "entries": [encode_entry(key, entry) for key, entry in page.entries],
        "records": [encode_record(record) for record in page.records],
        "marks": [[*by, *marked] for by, marked in page.marks],
        "next": list(page.next) if page.next is not None else None,
    }
    if v >= 2:
        body["retired"] = page.differs if page.differs is not None else page.retired.digest
        body["differs"] = page.differs is not None
    if v >= DUPLICATE_SETS_VERSION and page.duplicates:
        body["duplicates"] = [encode_duplicate_set(dup) for dup in page.duplicates]
    return _dump(body)


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
    # Not bytes.fromhex alone: it skips whitespace, so "30 digits and 2 spaces" would decode
    # to one byte fewer than the field holds.
    if not isinstance(value, str) or len(value) != 2 * size or not _HEX_RE.fullmatch(value):
        raise MalformedPayload(f"{what} must be {2 * size} hex digits")
    return bytes.fromhex(value)


_HEX_RE = re.compile(r"[0-9a-fA-F]*")


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
    if len(floors) * FLOOR_BYTES_BOUND > MAX_FLOORS_BYTES:  # else they fit without measuring
        size = floors_bytes(floors)
        if size > MAX_FLOORS_BYTES:
            raise MalformedPayload(
                f"{where} floors take {size} bytes ({len(floors)} actors),"
                f" more than {MAX_FLOORS_BYTES}"
            )
    own = floors.get(actor)
    if own is not None and own.seq > seq:
        raise MalformedPayload(f"{where} carries a floor for its own actor beyond its seq")
    return key, Entry(actor, seq, total, floors)


def decode_page(body: bytes, retired: Retirements = EMPTY) -> Page:
    """Validate a whole page before anything of it is applied.

    ``retired`` is the map the request was compacted against: a version-2 page's vector must be
    compact against the same one (or the page must say ``differs``). Entries must be in
    strictly increasing ``(actor, seq)`` order, as the protocol sends them.
    """
    obj = _peer_json(body, MAX_PAGE_BODY_BYTES)
    v = obj["v"]
    fields = {"node", "actor", "vector", "entries", "records", "marks", "next"}
    # Duplicate sets are rare: a page without any leaves the field out (an idle round's bytes).
    _exact_fields(
        obj,
        fields | ({"retired", "differs"} if v >= 2 else set()),
        frozenset({"duplicates"}) if v >= DUPLICATE_SETS_VERSION else frozenset(),
    )
    node = obj["node"]
    if not isinstance(node, str) or not NODE_ID_RE.fullmatch(node):
        raise MalformedPayload(f"node must be a node id, got {node!r}")
    actor = _actor(obj["actor"], "actor")
    if v >= 2:
        digest, differs = _digest(obj["retired"]), obj["differs"]
        if not isinstance(differs, bool):
            raise MalformedPayload("differs must be a boolean")
        if differs:
            items = ("vector", "entries", "records", "marks", "next", "duplicates")
            if any(obj.get(name) for name in items):
                raise MalformedPayload("a page that differs carries nothing else")
            return Page(node, actor, VersionVector(), (), None, version=v, differs=digest)
        if digest != retired.digest:
            raise MalformedPayload("the page's vector is compact against another retirement map")
    raw_entries = obj["entries"]
    if not isinstance(raw_entries, list) or len(raw_entries) > MAX_PAGE_ENTRIES:
        raise MalformedPayload(f"entries must be a list of at most {MAX_PAGE_ENTRIES}")
    entries = tuple(_entry(e, i) for i, e in enumerate(raw_entries))
    for (_, a), (_, b) in itertools.pairwise(entries):
        if (a.actor, a.seq) >= (b.actor, b.seq):
            raise MalformedPayload("entries must be in strictly increasing (actor, seq) order")
    raw_records, raw_marks = obj["records"], obj["marks"]
    raw_dups = obj.get("duplicates", [])
    for name, raw in (("records", raw_records), ("marks", raw_marks), ("duplicates", raw_dups)):
        if not isinstance(raw, list) or len(raw) > MAX_PAGE_ENTRIES:
            raise MalformedPayload(f"{name} must be a list of at most {MAX_PAGE_ENTRIES}")
    records = tuple(_record(r, i) for i, r in enumerate(raw_records))
    marks = tuple(_mark(m, i) for i, m in enumerate(raw_marks))
    duplicates = tuple(_duplicate_set(d, i) for i, d in enumerate(raw_dups))
    _ordered("records", [r.dot for r in records])
    _ordered("marks", [by for by, _ in marks])
    _ordered("duplicates", [d.dot for d in duplicates])
    return Page(
        node=node,
        actor=actor,
        vector=_vector_in(obj["vector"], "vector", v, retired),
        entries=entries,
        next=_cursor(obj["next"]),
        records=records,
        marks=marks,
        version=v,
        retired=retired if v >= 2 else EMPTY,
        duplicates=duplicates,
    )


def encode_notice(notice: Notice) -> bytes:
    v = notice.version
    body: dict[str, Any] = {
        "v": v,
        "node": notice.node,
        "actor": notice.actor,
        "vector": _vector_out(notice.vector, v, notice.retired),
    }
    if v >= 2:
        body["retired"] = notice.retired.digest
    return _dump(body)


def decode_notice(body: bytes, retired: Retirements = EMPTY) -> Notice:
    """Decode a notice; ``retired`` is the receiving node's retirement map."""
    obj = _peer_json(body, MAX_SYNC_REQUEST_BYTES)
    v = obj["v"]
    _exact_fields(obj, {"node", "actor", "vector"} | ({"retired"} if v >= 2 else set()))
    node = obj["node"]
    if not isinstance(node, str) or not NODE_ID_RE.fullmatch(node):
        raise MalformedPayload(f"node must be a node id, got {node!r}")
    actor = _actor(obj["actor"], "actor")
    if v >= 2 and _digest(obj["retired"]) != retired.digest:
        _listed(obj["vector"], "vector")
        return Notice(node, actor, VersionVector(), v, retired, differs=True)
    return Notice(node, actor, _vector_in(obj["vector"], "vector", v, retired), v, retired)


def encode_retired_request(request: RetiredRequest) -> bytes:
    return _dump({"v": 2, "after": request.after})


def decode_retired_request(body: bytes) -> RetiredRequest:
    obj = _peer_json(body, MAX_SYNC_REQUEST_BYTES)
    _v2(obj, "a retirements request")
    _exact_fields(obj, {"after"})
    after = obj["after"]
    return RetiredRequest(None if after is None else _actor(after, "after"))


def encode_retired_page(page: RetiredPage) -> bytes:
    return _dump(
        {
            "v": 2,
            "node": page.node,
            "actor": page.actor,
            "retired": page.digest,
            "items": [list(item) for item in page.items],
            "next": page.next,
        }
    )


def decode_retired_page(body: bytes) -> RetiredPage:
    """A page of retirements: ids in strictly increasing order, finals at least 1."""
    obj = _peer_json(body, MAX_PAGE_BODY_BYTES)
    _v2(obj, "a retirements page")
    _exact_fields(obj, {"node", "actor", "retired", "items", "next"})
    node = obj["node"]
    if not isinstance(node, str) or not NODE_ID_RE.fullmatch(node):
        raise MalformedPayload(f"node must be a node id, got {node!r}")
    raw = obj["items"]
    if not isinstance(raw, list) or len(raw) > MAX_PAGE_ENTRIES:
        raise MalformedPayload(f"items must be a list of at most {MAX_PAGE_ENTRIES}")
    items: list[tuple[str, int]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, list) or len(item) != 2:
            raise MalformedPayload(f"items[{i}] must be [actor id, final seq]")
        items.append((_actor(item[0], f"items[{i}] actor"), _seq(item[1], f"items[{i}] final")))
    for (a, _), (b, _) in itertools.pairwise(items):
        if a >= b:
            raise MalformedPayload("items must be in strictly increasing actor id order")
    after = obj["next"]
    return RetiredPage(
        node=node,
        actor=_actor(obj["actor"], "actor"),
        digest=_digest(obj["retired"]),
        items=tuple(items),
        next=None if after is None else _actor(after, "next"),
    )
