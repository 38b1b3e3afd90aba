"""A prototype of the sync page and ``/batch`` decoders on msgspec, for ``bench.libraries``.

msgspec Structs check what they can express (types, integer ranges, id syntax by pattern, list
lengths, unknown fields, the format version as a tag); what they cannot (the key rules, order,
byte limits, retirement digests, the own-floor rule, the domain's error classes) stays Python,
so that both decoders refuse the same payloads. It builds the same objects as
:func:`vvstore.wire.decode_page` and :func:`vvstore.codec.decode_batch`, which the benchmark
checks before it measures. Measured, not adopted: see docs/design.md.

Needs msgspec (``pip install msgspec``); the benchmark imports this module only when it is
installed.
"""

import itertools
from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from vvstore import codec, wire
from vvstore.actor import ACTOR_ID_RE
from vvstore.clock import MAX_COUNTER, VersionVector
from vvstore.config import NODE_ID_RE
from vvstore.counter import INT64_MAX, INT64_MIN, Entry, Floor
from vvstore.errors import InvalidRequest, MalformedPayload, Overflow, UnsupportedVersion
from vvstore.idempotency import (
    MAX_DUPLICATE_COPIES,
    DuplicateSet,
    Record,
    normalize_idempotency_key,
)
from vvstore.retirement import DIGEST_HEX, EMPTY, Retirements

__all__ = ["decode_batch", "decode_page"]

# \Z, not $: msgspec searches the pattern, and "$" also matches before a trailing newline.
ActorId = Annotated[str, Meta(pattern="^" + ACTOR_ID_RE.pattern + r"\Z")]
NodeId = Annotated[str, Meta(pattern="^" + NODE_ID_RE.pattern + r"\Z")]
Seq = Annotated[int, Meta(ge=1, le=MAX_COUNTER)]
Seq0 = Annotated[int, Meta(ge=0, le=MAX_COUNTER)]
Total = Annotated[int, Meta(ge=INT64_MIN, le=INT64_MAX)]
Hex16 = Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{16}\Z")]
Hex32 = Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{32}\Z")]
Digest = Annotated[str, Meta(pattern=f"^[0-9a-f]{{{DIGEST_HEX}}}\\Z")]
_ITEMS = Meta(max_length=wire.MAX_PAGE_ENTRIES)


class WireEntry(Struct, array_like=True):
    actor: ActorId
    seq: Seq
    key: str
    total: Total
    floors: dict[ActorId, tuple[Seq, Total]]


class WireRecord(Struct, array_like=True):
    actor: ActorId
    seq: Seq
    khash: Hex32
    fingerprint: Hex16
    key: str
    amount: Total


Copy = tuple[ActorId, Seq, Hex16, Total, ActorId | None, Seq | None]


class WireDuplicates(Struct, array_like=True):
    actor: ActorId
    seq: Seq
    khash: Hex32
    key: str
    copies: Annotated[list[Copy], Meta(min_length=2, max_length=MAX_DUPLICATE_COPIES)]


class PageV1(Struct, tag_field="v", tag=1, forbid_unknown_fields=True):
    node: NodeId
    actor: ActorId
    vector: dict[ActorId, Seq0]
    entries: Annotated[list[WireEntry], _ITEMS]
    records: Annotated[list[WireRecord], _ITEMS]
    marks: Annotated[list[tuple[ActorId, Seq, ActorId, Seq]], _ITEMS]
    next: tuple[ActorId, Seq0] | None


class PageV2(PageV1, tag=2):
    retired: Digest
    differs: bool


class PageV3(PageV2, tag=3):
    duplicates: Annotated[list[WireDuplicates], _ITEMS] = []


class Item(Struct, forbid_unknown_fields=True):
    key: str
    amount: int = 1
    idempotency_key: str | UnsetType = UNSET


class Batch(Struct, forbid_unknown_fields=True):
    increments: list[Item]


_PAGE = msgspec.json.Decoder(PageV1 | PageV2 | PageV3)
_BATCH = msgspec.json.Decoder(Batch)


def _key(value: str, where: str) -> str:
    try:
        return codec.validate_key(value)
    except InvalidRequest as exc:
        raise MalformedPayload(f"{where} key: {exc.message}") from None


def _ordered(name: str, dots: list[tuple[str, int]]) -> None:
    if any(a > b for a, b in itertools.pairwise(dots)):
        raise MalformedPayload(f"{name} must be in (actor, seq) order")


def _duplicates(page: PageV1) -> list[DuplicateSet]:
    out = []
    for i, d in enumerate(page.duplicates if isinstance(page, PageV3) else ()):
        key, khash = _key(d.key, f"duplicates[{i}]"), bytes.fromhex(d.khash)
        copies = []
        for j, (a, s, fp, amount, mark_actor, mark_seq) in enumerate(d.copies):
            if (mark_actor is None) != (mark_seq is None):
                raise MalformedPayload(f"duplicates[{i}] copies[{j}] mark needs actor and seq")
            mark = None if mark_actor is None or mark_seq is None else (mark_actor, mark_seq)
            copies.append(Record(a, s, khash, bytes.fromhex(fp), key, amount, mark))
        if any(x.order >= y.order for x, y in itertools.pairwise(copies)):
            raise MalformedPayload(f"duplicates[{i}] copies must be in increasing (seq, actor)")
        out.append(DuplicateSet(d.actor, d.seq, khash, key, tuple(copies)))
    return out


def decode_page(body: bytes, retired: Retirements = EMPTY) -> wire.Page:
    """:func:`vvstore.wire.decode_page` on msgspec."""
    if len(body) > wire.MAX_PAGE_BODY_BYTES:
        raise MalformedPayload(f"payload of {len(body)} bytes is over the limit")
    try:
        page = _PAGE.decode(body)
    except msgspec.ValidationError as exc:
        if "`$.v`" in str(exc):
            raise UnsupportedVersion(f"format version: {exc}") from None
        raise MalformedPayload(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise MalformedPayload(f"payload is not valid JSON: {exc}") from None
    v = 3 if isinstance(page, PageV3) else 2 if isinstance(page, PageV2) else 1
    if isinstance(page, PageV2):
        if page.differs:
            if page.vector or page.entries or page.records or page.marks or page.next:
                raise MalformedPayload("a page that differs carries nothing else")
            return wire.Page(
                page.node, page.actor, VersionVector(), (), None, version=v, differs=page.retired
            )
        if page.retired != retired.digest:
            raise MalformedPayload("the page's vector is compact against another retirement map")
    if wire.vector_bytes(page.vector) > wire.MAX_VECTOR_BYTES:
        raise MalformedPayload("vector is over its byte limit")
    vector = retired.expand(page.vector) if v >= 2 else VersionVector.from_dict(page.vector)
    entries = []
    for i, e in enumerate(page.entries):
        floors = {a: Floor(s, t) for a, (s, t) in e.floors.items()}
        if wire.floors_bytes(floors) > wire.MAX_FLOORS_BYTES:
            raise MalformedPayload(f"entries[{i}] floors are over their byte limit")
        own = floors.get(e.actor)
        if own is not None and own.seq > e.seq:
            raise MalformedPayload(f"entries[{i}] carries a floor for its own actor beyond its seq")
        entries.append((_key(e.key, f"entries[{i}]"), Entry(e.actor, e.seq, e.total, floors)))
    for (_, a), (_, b) in itertools.pairwise(entries):
        if (a.actor, a.seq) >= (b.actor, b.seq):
            raise MalformedPayload("entries must be in strictly increasing (actor, seq) order")
    records = tuple(
        Record(
            r.actor,
            r.seq,
            bytes.fromhex(r.khash),
            bytes.fromhex(r.fingerprint),
            _key(r.key, f"records[{i}]"),
            r.amount,
        )
        for i, r in enumerate(page.records)
    )
    marks = tuple(((a, s), (ra, rs)) for a, s, ra, rs in page.marks)
    duplicates = _duplicates(page)
    _ordered("records", [r.dot for r in records])
    _ordered("marks", [by for by, _ in marks])
    _ordered("duplicates", [d.dot for d in duplicates])
    return wire.Page(
        node=page.node,
        actor=page.actor,
        vector=vector,
        entries=tuple(entries),
        next=page.next,
        records=records,
        marks=marks,
        version=v,
        retired=retired if v >= 2 else EMPTY,
        duplicates=tuple(duplicates),
    )


def decode_batch(body: bytes, *, max_items: int = 1000) -> list[codec.Write]:
    """:func:`vvstore.codec.decode_batch` on msgspec."""
    try:
        items = _BATCH.decode(body).increments
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None
    if not 1 <= len(items) <= max_items:
        raise InvalidRequest(f"'increments' must hold 1 to {max_items} items, got {len(items)}")
    out: list[codec.Write] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"increments[{i}] "
        try:
            codec.validate_key(item.key)
            ikey = None
            if isinstance(item.idempotency_key, str):
                ikey = normalize_idempotency_key(item.idempotency_key)
        except InvalidRequest as exc:
            raise InvalidRequest(f"{where}{exc.message}") from None
        if not INT64_MIN <= item.amount <= INT64_MAX:
            raise Overflow(f"{where}amount {item.amount} is outside the 64-bit signed range")
        if ikey is not None:
            if ikey in seen:
                raise InvalidRequest(f"{where}repeats an idempotency key of an earlier item")
            seen.add(ikey)
        out.append(codec.Write(item.key, item.amount, ikey))
    return out
