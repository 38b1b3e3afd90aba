"""Exactly-once increments: idempotency keys, application records, and duplicate sets.

A client may send an increment with an ``Idempotency-Key`` K and retry it, on the same node or
another, until it gets an answer. Each node applies K at most once: the writer checks for a
copy of K it holds and writes a record in the increment's own transaction. An application of K
is a :class:`Record` ``(hash of K, fingerprint of (counter key, amount), dot)``; records travel
in their actor's stream and merge by union, so every node eventually learns every copy of K.

When K was applied on two nodes before either knew of the other (a retry elsewhere during a
partition), both copies stay inside their actors' totals. A node that holds two or more copies
of K for one counter key publishes a :class:`DuplicateSet` listing them, at a dot of its own:
the sets travel in their publisher's stream, merge by union and are never purged, so they
outlive the records (which a node purges after the retention period). The counter's value then
excludes every copy but one, or all of them if a reset saw any: the rule is
:func:`vvstore.counter.exclusions`, a function of the merged state, so every node that holds the
same entries and sets shows the same value whatever order they arrived in. Nothing is written
to cancel a copy, so nothing can cancel it twice.

The release before duplicate sets compensated a later copy with a negative write and a *mark*
(:func:`compensations`). Marked copies count as exclusions already applied: they are left out
of the rule. A node keeps compensating as that release did until every peer speaks the sync
format that carries duplicate sets (see :mod:`vvstore.sync`); from then on it publishes sets.

Limits (see docs/design.md): a retry after every record and set of its key is gone counts
again (records live for the retention period; sets only exist for duplicated keys); a copy
whose node never returns stays counted.

Pure core: standard library, :mod:`vvstore.actor`, :mod:`vvstore.counter` and
:mod:`vvstore.errors` only; no I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vvstore.actor import node_of
from vvstore.counter import Copy, CounterState
from vvstore.errors import InvalidRequest

__all__ = [
    "MAX_DUPLICATE_COPIES",
    "MAX_IDEMPOTENCY_KEY",
    "Dot",
    "DuplicateSet",
    "Record",
    "compensations",
    "duplicates_of",
    "fingerprint",
    "key_hash",
    "normalize_idempotency_key",
    "sets_to_publish",
]

MAX_IDEMPOTENCY_KEY = 128
#: The most copies one duplicate set lists: the smallest ones, should a key ever have more.
MAX_DUPLICATE_COPIES = 64
#: The name of one write: (actor id, seq).
Dot = tuple[str, int]


def normalize_idempotency_key(raw: object) -> str:
    """Validate an idempotency key: 1 to 128 printable ASCII characters.

    A quoted form ``"abc"`` is the same key as ``abc``.

    :raises InvalidRequest: for anything else.
    """
    if not isinstance(raw, str):
        raise InvalidRequest("idempotency key must be a string")
    key = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(
            f"idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} characters, got {len(key)}"
        )
    # Printable ASCII is exactly " " to "~": ASCII, and printable (no control characters).
    if not (key.isascii() and key.isprintable()):
        raise InvalidRequest("idempotency key must be printable ASCII")
    return key


def key_hash(idempotency_key: str) -> bytes:
    """16 bytes naming an idempotency key (records never store the key itself).

    :raises InvalidRequest: if the key is not valid (see :func:`normalize_idempotency_key`).
    """
    key = normalize_idempotency_key(idempotency_key)
    return hashlib.sha256(key.encode("ascii")).digest()[:16]


def fingerprint(counter_key: str, amount: int, *, reset: bool = False) -> bytes:
    """8 bytes naming what a request did: its counter key and amount (or a reset)."""
    what = "reset" if reset else str(amount)
    return hashlib.sha256(f"{what}\0{counter_key}".encode()).digest()[:8]


@dataclass(frozen=True, slots=True)
class Record:
    """One application of an idempotency key, named by the dot of the write that made it.

    :ivar mark: the dot of the write that compensated this copy, or None.
    """

    actor: str
    seq: int
    khash: bytes
    fingerprint: bytes
    key: str
    amount: int
    mark: Dot | None = None

    @property
    def dot(self) -> Dot:
        return (self.actor, self.seq)

    @property
    def order(self) -> tuple[int, str]:
        """Copies of one key are ordered by (seq, actor id); the smallest stands."""
        return (self.seq, self.actor)

    @property
    def node_id(self) -> str:
        """The node that made this copy (in any of its incarnations)."""
        return node_of(self.actor)


def compensations(
    copies: Iterable[Record], states: Mapping[str, CounterState], *, node_id: str
) -> list[Record]:
    """The copies of one idempotency key that node ``node_id`` must compensate now.

    ``copies`` are every record of the key this node holds; ``states`` the counter states of
    their keys. A copy qualifies when this node made it (any incarnation), it is not marked,
    it added something, a smaller copy is held and counted here, and no reset floor covers it.
    """
    ordered = sorted(copies, key=lambda r: r.order)
    out: list[Record] = []
    for i, copy in enumerate(ordered):
        if i == 0 or copy.node_id != node_id or copy.mark is not None or copy.amount == 0:
            continue
        state = states.get(copy.key, CounterState())
        floor = state.floors().get(copy.actor)
        if floor is not None and floor.seq >= copy.seq:
            continue  # a reset already cancelled this copy
        if any(_counted(smaller, states) for smaller in ordered[:i]):
            out.append(copy)
    return out


def _counted(record: Record, states: Mapping[str, CounterState]) -> bool:
    entry = states.get(record.key, CounterState()).entries.get(record.actor)
    return entry is not None and entry.seq >= record.seq


@dataclass(frozen=True, slots=True)
class DuplicateSet:
    """Copies of one idempotency key applied to one counter key, as a node knew them.

    Published at the dot ``(actor, seq)`` of the node that knew them (a seq of its own stream
    with no entry), and never purged. ``copies`` are in ``(seq, actor)`` order, each with the
    set's key hash and counter key, and the mark of an earlier compensation if it had one.
    """

    actor: str
    seq: int
    khash: bytes
    key: str
    copies: tuple[Record, ...]

    @property
    def dot(self) -> Dot:
        return (self.actor, self.seq)


def _later_mark(a: Dot | None, b: Dot | None) -> Dot | None:
    if a is None or b is None:
        return a or b
    return max(a, b, key=lambda d: (d[1], d[0]))


def sets_to_publish(
    records: Iterable[Record], published: Iterable[DuplicateSet]
) -> list[tuple[str, tuple[Record, ...]]]:
    """For one idempotency key: per counter key, the copies a new duplicate set must list.

    ``records`` and ``published`` are what this node holds of the key. A new set is due for a
    counter key when at least two copies of it are known and some copy (or its mark) is in no
    published set; it lists every known copy, at most :data:`MAX_DUPLICATE_COPIES`.
    """
    known: dict[str, dict[Dot, Record]] = {}
    listed: dict[str, dict[Dot, Dot | None]] = {}
    for dup in published:
        for copy in dup.copies:
            _merge_copy(known.setdefault(dup.key, {}), copy)
            marks = listed.setdefault(dup.key, {})
            marks[copy.dot] = _later_mark(marks.get(copy.dot), copy.mark)
    for record in records:
        _merge_copy(known.setdefault(record.key, {}), record)
    out = []
    for key, copies in sorted(known.items()):
        marks = listed.get(key, {})
        new = [c for c in copies.values() if c.dot not in marks or c.mark != marks[c.dot]]
        if len(copies) >= 2 and new:
            ordered = sorted(copies.values(), key=lambda r: r.order)
            out.append((key, tuple(ordered[:MAX_DUPLICATE_COPIES])))
    return out


def _merge_copy(copies: dict[Dot, Record], record: Record) -> None:
    known = copies.get(record.dot)
    if known is None:
        copies[record.dot] = record
    else:
        mark = _later_mark(known.mark, record.mark)
        if mark != known.mark:
            copies[record.dot] = dataclasses.replace(known, mark=mark)


def duplicates_of(
    sets: Iterable[DuplicateSet], marked: Mapping[Dot, Dot] | None = None
) -> dict[bytes, frozenset[Copy]]:
    """The copies :func:`vvstore.counter.exclusions` rules over, from one counter key's sets.

    The union of the sets' copies per idempotency key, without the copies an earlier release
    compensated (a mark in a set, or in ``marked``): their compensation is already applied.
    """
    copies: dict[bytes, dict[Dot, Record]] = {}
    for dup in sets:
        for copy in dup.copies:
            _merge_copy(copies.setdefault(dup.khash, {}), copy)
    marked = marked or {}
    return {
        kh: frozenset(
            Copy(c.actor, c.seq, c.amount)
            for c in by_dot.values()
            if c.mark is None and c.dot not in marked
        )
        for kh, by_dot in copies.items()
    }
