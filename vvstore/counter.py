"""Per-key counter state: one entry per actor, merged as a join, valued as a sum.

A key's state holds at most one :class:`Entry` per actor id. Only that actor writes it; each
write takes the next number of the actor's own event counter as the entry's ``seq``, so the pair
``(actor, seq)`` (a *dot*) names one version of one entry, and a newer version supersedes an
older one. Entries of different actors are concurrent siblings. The key's version vector is
``{actor: seq of its entry}``. This is the state-based PN-counter of Shapiro, Preguiça, Baquero
and Zawirski, "Conflict-free Replicated Data Types" (SSS 2011), with one signed total per actor
and dots as in Almeida, Shoker and Baquero, "Delta State Replicated Data Types" (2018).

Reset (DELETE) cancels every increment the resetting actor has observed for the key, and
nothing else. The resetting actor writes a new version of its own entry carrying a *floor* for
each actor X whose entry it holds: ``floor[X] = (seq, total)`` of that entry. Floors carried by
all entries merge per actor by higher seq. X then contributes ``total - floor.total`` when its
entry's seq is at least the floor's seq, and 0 otherwise (the floor saw an entry we do not hold
yet, so what we hold is already cancelled). Concurrent resets that saw the same entries cancel
them once; increments no reset observed survive (add wins); a reset never changes a total, so it
never overflows.

Exactly-once (see :mod:`vvstore.idempotency`): a state may also carry the *copies* of
idempotency keys applied to this key more than once (a retry that landed on another node during a
partition). Each copy is inside its actor's total; the value counts each such key at most once by
*excluding* the others, as a function of the state alone (:func:`exclusions`): if any copy is
covered by a floor (a reset saw the key), every counted copy is excluded; otherwise the smallest
copy held here counts and every other held copy is excluded. Only counted copies are subtracted
(held, and under no floor), so the value never dips below one application of a key nobody reset.

Every entry carries its actor's latest floors forward, so a later increment does not forget an
earlier reset. Merging keeps, per actor, the entry with the higher seq: this is a join
(commutative, associative, idempotent), so applying an entry twice or an older entry after a
newer one changes nothing. Storage per key is O(actors) entries, never O(increments).

Pure core: standard library, :mod:`vvstore.clock` and :mod:`vvstore.errors` only; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from vvstore.clock import VersionVector
from vvstore.errors import ConflictingEntry, Overflow

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "Copy",
    "CounterState",
    "Entry",
    "Floor",
    "Sibling",
    "exclusions",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _in_int64(n: int) -> bool:
    return INT64_MIN <= n <= INT64_MAX


@dataclass(frozen=True, slots=True)
class Floor:
    """What a reset saw of one actor's entry: that entry's ``seq`` and ``total``."""

    seq: int
    total: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One actor's contribution to one key, at one version.

    :ivar actor: the actor id that wrote it (the only writer of this entry).
    :ivar seq: the actor's event number of this version; ``(actor, seq)`` is its dot.
    :ivar total: the signed sum of every amount this actor ever added to the key (int64).
    :ivar floors: the actor's latest reset floors, by actor id.
    """

    actor: str
    seq: int
    total: int
    floors: Mapping[str, Floor] = field(default_factory=dict)

    @property
    def dot(self) -> tuple[str, int]:
        return (self.actor, self.seq)


@dataclass(frozen=True, slots=True)
class Copy:
    """One application of an idempotency key to this key: its dot and amount.

    The copy's amount is inside its actor's total from ``seq`` on. Copies of one idempotency key
    are ordered by ``(seq, actor)``.
    """

    actor: str
    seq: int
    amount: int

    @property
    def order(self) -> tuple[int, str]:
        return (self.seq, self.actor)


#: The copies of each idempotency key applied to one counter key more than once, by key hash.
Duplicates = Mapping[bytes, frozenset[Copy]]


@dataclass(frozen=True, slots=True)
class Sibling:
    """One entry as a reader sees it: its dot and what it contributes to the value."""

    actor: str
    seq: int
    value: int


def merge_floors(entries: Iterable[Entry]) -> dict[str, Floor]:
    """Join the floors of ``entries``: per actor, the floor with the higher seq."""
    merged: dict[str, Floor] = {}
    for entry in entries:
        for actor, floor in entry.floors.items():
            known = merged.get(actor)
            if known is None or floor.seq > known.seq:
                merged[actor] = floor
    return merged


def exclusions(
    entries: Mapping[str, Entry], floors: Mapping[str, Floor], duplicates: Duplicates
) -> dict[str, int]:
    """What to subtract from each actor's contribution so every duplicated key counts once.

    Per idempotency key, with its copies: a copy is *held* when its actor's entry here has
    reached its seq, *covered* when a floor of its actor has (a reset saw it), and *counted*
    when held and not covered (its amount is then in the value). If any copy is covered, the
    key is cancelled: every counted copy is excluded. Otherwise the smallest held copy stands
    and every other counted copy is excluded. Only counted copies are ever subtracted.
    """
    out: dict[str, int] = {}
    for copies in duplicates.values():
        if len(copies) < 2:
            continue
        held: list[Copy] = []
        cancelled = False
        for copy in copies:
            floor = floors.get(copy.actor)
            if floor is not None and floor.seq >= copy.seq:
                cancelled = True
                continue
            entry = entries.get(copy.actor)
            if entry is not None and entry.seq >= copy.seq:
                held.append(copy)
        if not held:
            continue
        stands = None if cancelled else min(held, key=lambda c: c.order)
        for copy in held:
            if copy is not stands and copy.amount:
                out[copy.actor] = out.get(copy.actor, 0) + copy.amount
    return out


def _contribution(entry: Entry, floors: Mapping[str, Floor]) -> int:
    floor = floors.get(entry.actor)
    if floor is None:
        return entry.total
    if entry.seq >= floor.seq:
        return entry.total - floor.total
    return 0


class CounterState:
    """The state of one key: at most one entry per actor. Immutable.

    Operations that write (:meth:`increment`, :meth:`reset`) return the new entry for the
    writing actor and leave this state unchanged; :meth:`with_entry` returns the joined state.
    """

    __slots__ = ("_duplicates", "_entries", "_floored", "_value")

    def __init__(self, entries: Iterable[Entry] = (), duplicates: Duplicates | None = None) -> None:
        table: dict[str, Entry] = {}
        for entry in entries:
            known = table.get(entry.actor)
            if known is None or entry.seq > known.seq:
                table[entry.actor] = entry
        self._entries = table
        self._duplicates: Duplicates = duplicates or {}
        self._value: int | None = None  # computed on first use: the state never changes
        # False only when no entry carries a floor and no key is duplicated (no reset ever):
        # then the value is the plain sum of the totals, and a new entry moves it by its
        # difference in total.
        self._floored = bool(self._duplicates) or any(entry.floors for entry in table.values())

    @property
    def entries(self) -> Mapping[str, Entry]:
        """The entries by actor id (read-only view; do not mutate)."""
        return self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CounterState):
            return NotImplemented
        return self._entries == other._entries

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CounterState({list(self._entries.values())!r})"

    @property
    def duplicates(self) -> Duplicates:
        """The copies of idempotency keys applied to this key more than once (see
        :func:`exclusions`); empty when none is known."""
        return self._duplicates

    def with_duplicates(self, duplicates: Duplicates) -> CounterState:
        """This state with ``duplicates`` in place of the copies it carried."""
        return CounterState(self._entries.values(), duplicates)

    def version(self) -> VersionVector:
        """The key's version vector: ``{actor: seq of its entry}``."""
        return VersionVector(self.version_dict())

    def version_dict(self) -> dict[str, int]:
        """The key's version vector as a plain dict sorted by actor (what replies carry)."""
        return {actor: self._entries[actor].seq for actor in sorted(self._entries)}

    def floors(self) -> dict[str, Floor]:
        """The merged floors of every entry."""
        return merge_floors(self._entries.values())

    def value(self) -> int:
        """The counter's value: the sum of every entry's contribution, an exact int."""
        if self._value is None:
            entries = self._entries.values()
            if self._floored:
                floors = merge_floors(entries)
                excluded = exclusions(self._entries, floors, self._duplicates)
                self._value = sum(_contribution(e, floors) for e in entries) - sum(
                    excluded.values()
                )
            else:  # no reset ever: every total counts whole
                self._value = sum(e.total for e in entries)
        return self._value

    def siblings(self) -> list[Sibling]:
        """Every entry with its contribution, in actor order."""
        floors = self.floors()
        excluded = exclusions(self._entries, floors, self._duplicates)
        return [
            Sibling(actor, entry.seq, _contribution(entry, floors) - excluded.get(actor, 0))
            for actor, entry in sorted(self._entries.items())
        ]

    def increment(self, actor: str, seq: int, amount: int) -> Entry:
        """Return ``actor``'s new entry after adding ``amount`` at event ``seq``.

        The new entry keeps the actor's floors. ``seq`` must exceed the actor's current entry's
        seq (the caller allocates it from the actor's event counter).

        :raises Overflow: if ``amount`` or the new total is outside int64, or if the value would
            leave int64 while moving away from zero.
        """
        if not _in_int64(amount):
            raise Overflow(f"amount {amount} is outside the 64-bit signed range")
        own = self._entries.get(actor)
        self._check_seq(own, seq)
        total = (own.total if own is not None else 0) + amount
        if not _in_int64(total):
            raise Overflow("increment or decrement would overflow this node's entry total")
        before = self.value()
        after = before + amount
        if not _in_int64(after) and abs(after) > abs(before):
            raise Overflow("increment or decrement would overflow the counter's value")
        floors = own.floors if own is not None else {}
        return Entry(actor, seq, total, floors)

    def reset(self, actor: str, seq: int) -> Entry:
        """Return ``actor``'s new entry after a reset at event ``seq``.

        The entry records a floor for every actor whose entry this state holds, at that entry's
        ``(seq, total)``, joined with the floors the actor already carried. Its own total is
        unchanged, so a reset never overflows.
        """
        own = self._entries.get(actor)
        self._check_seq(own, seq)
        floors: dict[str, Floor] = dict(own.floors) if own is not None else {}
        for other, entry in self._entries.items():
            known = floors.get(other)
            if known is None or entry.seq > known.seq:
                floors[other] = Floor(entry.seq, entry.total)
        return Entry(actor, seq, own.total if own is not None else 0, floors)

    def with_entry(self, entry: Entry) -> CounterState:
        """Join one entry into this state; return the new state (``self`` if nothing changed).

        :raises ConflictingEntry: if this state holds the same dot with different contents.
        """
        known = self._entries.get(entry.actor)
        if known is not None:
            if entry.seq < known.seq:
                return self
            if entry.seq == known.seq:
                if entry != known:
                    raise ConflictingEntry(
                        f"entry {entry.actor}:{entry.seq} differs from the one held for that dot"
                    )
                return self
        table = dict(self._entries)
        table[entry.actor] = entry
        state = CounterState.__new__(CounterState)
        state._entries = table
        state._duplicates = self._duplicates
        state._floored = self._floored or bool(entry.floors)
        if state._floored or self._value is None:
            state._value = None
        else:  # sums of totals on both sides: only this actor's total moved
            state._value = self._value + entry.total - (known.total if known is not None else 0)
        return state

    def merge(self, other: CounterState) -> CounterState:
        """Join two states: per actor, the entry with the higher seq (keeps ``self``'s
        duplicates: the store attaches those)."""
        state = self
        for entry in other:
            state = state.with_entry(entry)
        return state

    @staticmethod
    def _check_seq(own: Entry | None, seq: int) -> None:
        if own is not None and seq <= own.seq:
            raise ValueError(f"seq {seq} does not advance {own.actor}'s entry at {own.seq}")
