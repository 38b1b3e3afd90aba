"""The decisions of one write group: what to insert, replay, compensate, raise or refuse.

The store's writer takes what is queued (local writes, pages of remote entries with their
records and marks, the raise of the vector that ends a pull round), loads what deciding them
needs into one :class:`Group` (the committed states of the keys they touch, every copy held of
their idempotency keys with the replies this node stored, the keys the dots of remote entries
are held under), and calls these functions on it in queue order. They fill the group with the
rows to write (entries, records, marks, vector and meta rows) and return each operation's
answer; the store then commits the whole group in one transaction.

An operation refused here (an overflow, a reused idempotency key, a conflicting dot) raises
before it changes the group, so the rest of the group commits without it. The exactly-once
rules are :mod:`vvstore.idempotency`'s: once every peer speaks the format that carries them, a
group publishes duplicate sets (:func:`publish_sets`); until then it compensates as the
release before did (:func:`compensate`). docs/design.md explains both.

Pure: the standard library and the pure core only. Nothing here reads a clock, draws
randomness or touches a database or a log: the token of a new actor id arrives with the group,
and the store logs what the group records (incarnation switches, copies it could not
compensate, keys applied with different requests).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from vvstore.actor import is_actor_of, make_actor_id
from vvstore.clock import VersionVector
from vvstore.codec import Outcome, Reply, Write
from vvstore.counter import CounterState, Entry
from vvstore.errors import ConflictingEntry, IdempotencyKeyReused, Overflow
from vvstore.idempotency import (
    Dot,
    DuplicateSet,
    Record,
    compensations,
    duplicates_of,
    fingerprint,
    key_hash,
    sets_to_publish,
)
from vvstore.retirement import EMPTY, Retirements, earlier_actors, finals_to_raise
from vvstore.wire import FLOOR_BYTES_BOUND, MAX_FLOORS_BYTES, floors_bytes

__all__ = [
    "ApplyResult",
    "Group",
    "Identity",
    "Switch",
    "check_floors",
    "compensate",
    "mark",
    "new_incarnation",
    "prepare_apply",
    "prepare_raise",
    "prepare_retire",
    "prepare_writes",
    "publish_sets",
    "waiting",
]


@dataclass(slots=True)
class Identity:
    """Whom this node writes as: its node id, its current actor id, that actor's event counter
    (the seq of its latest write) and the incarnation number.

    Decisions advance ``seq`` as they number writes, and switch to a new actor
    (:func:`new_incarnation`) when a peer holds a seq of ours beyond the counter.
    """

    node_id: str
    actor: str = ""
    seq: int = 0
    incarnation: int = 0
    # How often a peer showed our current actor as retired in this run, and whether this node
    # still retires the other actors of its node id it sees (see prepare_retire).
    retired_under_us: int = 0
    retire_earlier: bool = True

    def meta(self) -> dict[str, str]:
        """The meta rows that record the current actor and incarnation."""
        return {"actor": self.actor, "incarnation": str(self.incarnation)}


@dataclass(frozen=True, slots=True)
class Switch:
    """A new incarnation: the actor left behind, at its counter, and why."""

    left: str
    seq: int
    reason: str


def new_incarnation(identity: Identity, token: int, reason: str) -> Switch:
    """Switch ``identity`` to the actor id ``token`` names; what was left behind.

    ``token`` comes from the operating system's randomness, never a seeded generator: two
    incarnations must not share an actor id. The actor left behind keeps its place in V at its
    counter (the caller records it): this node holds every entry it committed.
    """
    switch = Switch(identity.actor, identity.seq, reason)
    identity.incarnation += 1
    identity.actor = make_actor_id(identity.node_id, token)
    identity.seq = 0
    return switch


@dataclass(slots=True)
class ApplyResult:
    """What applying a page of remote entries did."""

    received: int
    applied: int
    records: int = 0


@dataclass(slots=True)
class Group:
    """The decisions of one transaction, and what the store loaded to make them."""

    # Loaded before any decision. The committed states of every key the group may touch.
    base: dict[str, CounterState] = field(default_factory=dict)
    # Every copy held of the idempotency keys this group touches, by key hash then dot.
    copies: dict[bytes, dict[Dot, Record]] = field(default_factory=dict)
    # What the first reply of each copy this node made showed, by dot (see Outcome.reply).
    replies: dict[Dot, Reply | dict[str, Any]] = field(default_factory=dict)
    # The key each dot is held under: those of the remote entries queued, then every new one.
    dots: dict[Dot, str] = field(default_factory=dict)
    # Names the new actor id should the group need one (at most one: nothing can be held
    # beyond a new actor's counter, so a group never switches twice).
    token: int | None = None
    # The committed retirement map.
    retired: Retirements = EMPTY
    # Every duplicate set held of the idempotency keys this group touches, by key hash then
    # dot; and of the counter keys it touches, by key then dot, with the marks of their copies.
    sets: dict[bytes, dict[Dot, DuplicateSet]] = field(default_factory=dict)
    key_sets: dict[str, dict[Dot, DuplicateSet]] = field(default_factory=dict)
    set_marks: dict[Dot, Dot] = field(default_factory=dict)
    # Whether duplicate sets rule (every peer speaks their format), and whether this group may
    # publish one now (it writes a dot of our actor: not while the actor awaits confirmation).
    exclude: bool = False
    may_publish: bool = False

    # Decided: the rows to write. The states after the group, of the keys it changes.
    states: dict[str, CounterState] = field(default_factory=dict)
    rows: dict[tuple[str, str], Entry] = field(default_factory=dict)
    vector: dict[str, int] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    # New records, with what the reply showed for the copies this node made.
    new_records: list[tuple[Record, Reply | None]] = field(default_factory=list)
    marks: dict[Dot, Dot] = field(default_factory=dict)
    new_sets: list[DuplicateSet] = field(default_factory=list)
    # Retirements to record (actor -> final seq; the larger final wins).
    retire: dict[str, int] = field(default_factory=dict)
    local_writes: int = 0

    # Decided: what the store reports (logs) once the group is decided.
    switches: list[Switch] = field(default_factory=list)
    # Copies that were due for compensation but whose compensation would overflow.
    uncompensated: list[Record] = field(default_factory=list)
    # Key hashes of copies compensated though they came from another request than the first.
    mixed: list[bytes] = field(default_factory=list)

    @property
    def dirty(self) -> bool:
        return bool(
            self.rows
            or self.vector
            or self.meta
            or self.new_records
            or self.marks
            or self.retire
            or self.new_sets
        )

    def state(self, key: str) -> CounterState:
        """``key``'s state as the group leaves it so far (empty if never written)."""
        state = self.states.get(key) or self.base.get(key)
        return state if state is not None else CounterState()

    def add_set(self, dup: DuplicateSet) -> bool:
        """Hold ``dup`` (new: to write) and rule the key's value by it; False if held already."""
        if dup.dot in self.sets.get(dup.khash, {}):
            return False
        self.sets.setdefault(dup.khash, {})[dup.dot] = dup
        self.key_sets.setdefault(dup.key, {})[dup.dot] = dup
        self.new_sets.append(dup)
        self.rule(dup.key)
        return True

    def rule(self, key: str) -> None:
        """Give ``key``'s state the duplicates its sets and marks say (when sets rule)."""
        if not self.exclude:
            return
        marks = self.set_marks | self.marks
        duplicates = duplicates_of(self.key_sets.get(key, {}).values(), marks)
        self.states[key] = self.state(key).with_duplicates(duplicates)

    def switch(self, identity: Identity, reason: str) -> None:
        """Switch ``identity`` to the new actor the group's token names, within this group."""
        if self.token is None:
            raise RuntimeError(f"a write group needs a second new incarnation ({reason})")
        switch = new_incarnation(identity, self.token, reason)
        self.switches.append(switch)
        self.token = None
        self.meta.update(identity.meta())
        # The actor left behind issues no more dots. (A copy of another node's directory leaves
        # that node's actor, which is not ours to retire.)
        if switch.seq >= 1 and is_actor_of(switch.left, identity.node_id):
            self.retire_at(switch.left, switch.seq)

    def retire_at(self, actor: str, final: int) -> None:
        """Record ``actor`` as retired at ``final`` unless the map already says as much."""
        known = max(self.retired.get(actor, 0), self.retire.get(actor, 0))
        if final > known:
            self.retire[actor] = final


def check_floors(key: str, entry: Entry) -> None:
    """Refuse a reset whose entry every peer would refuse (floors over the sync limit)."""
    if len(entry.floors) * FLOOR_BYTES_BOUND <= MAX_FLOORS_BYTES:
        return
    size = floors_bytes(entry.floors)
    if size > MAX_FLOORS_BYTES:
        raise Overflow(
            f"resetting {key!r} would need {size} bytes of floors ({len(entry.floors)} siblings),"
            f" more than the {MAX_FLOORS_BYTES} a peer accepts"
        )


def prepare_writes(group: Group, identity: Identity, writes: Sequence[Write]) -> list[Outcome]:
    """Decide local writes all-or-none: on any refusal, the group is left untouched.

    One outcome per write, in order. A write whose idempotency key this node holds a copy of is
    a replay (:func:`_replay`); a zero amount, or a reset of a key without entries, writes
    nothing and answers the current state.

    :raises Overflow: an amount, this node's total, the value or a reset's floors overflow.
    :raises IdempotencyKeyReused: a key comes back with another counter key or amount.
    """
    states: dict[str, CounterState] = {}
    rows: dict[tuple[str, str], Entry] = {}
    records: list[tuple[Record, Reply]] = []
    outcomes: list[Outcome] = []
    seq = identity.seq
    for write in writes:
        state = states.get(write.key) or group.state(write.key)
        record = None
        if write.idempotency_key is not None:
            kh = key_hash(write.idempotency_key)
            fp = fingerprint(write.key, write.amount, reset=write.reset)
            replay = _replay(group, kh, fp, write.key, state)
            if replay is not None:
                outcomes.append(replay)
                continue
            record = Record(identity.actor, seq + 1, kh, fp, write.key, write.amount)
        if (write.amount == 0 and not write.reset) or (write.reset and not len(state)):
            outcomes.append(Outcome(state, Reply(write.key, state, siblings=write.reset)))
            continue  # a no-op: answer the current state, write nothing
        seq += 1
        if write.reset:
            entry = state.reset(identity.actor, seq)
            check_floors(write.key, entry)
        else:
            entry = state.increment(identity.actor, seq, write.amount)
        state = state.with_entry(entry)
        states[write.key] = state
        rows[(write.key, identity.actor)] = entry
        reply = Reply(write.key, state, siblings=write.reset)
        outcomes.append(Outcome(state, reply))
        if record is not None:
            records.append((record, reply))
    if rows:
        identity.seq = seq
        group.dots.update({entry.dot: key for (key, _), entry in rows.items()})
    for record, reply in records:
        group.copies.setdefault(record.khash, {})[record.dot] = record
        group.replies[record.dot] = reply
        group.new_records.append((record, reply))
    group.states.update(states)
    group.rows.update(rows)
    group.local_writes += len(rows)
    return outcomes


def _replay(group: Group, kh: bytes, fp: bytes, key: str, state: CounterState) -> Outcome | None:
    """The outcome of a write whose idempotency key this node holds a copy of, if any."""
    copies = dict(group.copies.get(kh, {}))
    for dup in group.sets.get(kh, {}).values():  # copies whose records may be purged
        for copy in dup.copies:
            copies.setdefault(copy.dot, copy)
    if not copies:
        return None
    first = min(copies.values(), key=lambda r: r.order)
    if first.fingerprint != fp:
        raise IdempotencyKeyReused(
            "this idempotency key was used for another counter key or amount"
        )
    for dot in sorted(copies):
        reply = group.replies.get(dot)
        if reply is not None:  # we made this copy: what its first reply showed
            return Outcome(state, reply, replayed=True)
    return Outcome(state, Reply(key, state), replayed=True)


def prepare_apply(
    group: Group,
    identity: Identity,
    entries: Sequence[tuple[str, Entry]],
    records: Iterable[Record],
    marks: Iterable[tuple[Dot, Dot]],
    sets: Iterable[DuplicateSet] = (),
) -> ApplyResult:
    """Join a page of remote entries, records, marks and duplicate sets: all or none.

    An entry of our own actor beyond our counter (a restored backup that was not detected
    otherwise) switches to a new incarnation.

    :raises ConflictingEntry: an entry's dot is held under another key, or with other contents.
    """
    states: dict[str, CounterState] = {}
    rows: dict[tuple[str, str], Entry] = {}
    page_dots: dict[Dot, str] = {}
    switch = False
    for key, entry in entries:
        held_key = page_dots.get(entry.dot) or group.dots.get(entry.dot)
        if held_key is not None and held_key != key:
            raise ConflictingEntry(
                f"dot {entry.actor}:{entry.seq} is held for another key; page refused"
            )
        if entry.actor == identity.actor and entry.seq > identity.seq:
            switch = True
        before = states.get(key) or group.state(key)
        after = before.with_entry(entry)
        if after is not before:
            states[key] = after
            rows[(key, entry.actor)] = entry
            page_dots[entry.dot] = key
    group.dots.update(page_dots)
    sets = list(sets)
    if any(dup.actor == identity.actor and dup.seq > identity.seq for dup in sets):
        switch = True
    if switch:
        group.switch(identity, "another node holds a seq of our actor beyond our counter")
    group.states.update(states)
    group.rows.update(rows)
    new = 0
    for record in records:
        copies = group.copies.setdefault(record.khash, {})
        if record.dot not in copies:
            copies[record.dot] = record
            group.new_records.append((record, None))
            new += 1
    for by, marked in marks:
        mark(group, marked, by)
    for dup in sets:
        new += group.add_set(dup)
    return ApplyResult(received=len(entries), applied=len(rows), records=new)


def mark(group: Group, marked: Dot, by: Dot) -> None:
    """Record that the write ``by`` compensated the copy ``marked`` (merges by max)."""
    known = group.marks.get(marked)
    if known is None or (by[1], by[0]) > (known[1], known[0]):
        group.marks[marked] = by
    for copies in group.copies.values():
        record = copies.get(marked)
        if record is not None:
            copies[marked] = dataclasses.replace(record, mark=group.marks[marked])
    for key, sets in group.key_sets.items():
        if any(marked == copy.dot for dup in sets.values() for copy in dup.copies):
            group.rule(key)


def compensate(group: Group, identity: Identity, khashes: Set[bytes]) -> set[bytes]:
    """Compensate every duplicate copy this node made that is now known to be one.

    Each compensation is a write of the current actor: minus the copy's amount on its key,
    with a mark of the copy. Returns the key hashes of ``khashes`` that still have a copy
    which may need compensating later (:func:`waiting`).
    """
    still: set[bytes] = set()
    for kh in khashes:
        copies = list(group.copies.get(kh, {}).values())
        states = {c.key: group.state(c.key) for c in copies}
        for copy in compensations(copies, states, node_id=identity.node_id):
            state = group.state(copy.key)
            try:
                entry = state.increment(identity.actor, identity.seq + 1, -copy.amount)
            except Overflow:
                group.uncompensated.append(copy)
                continue
            identity.seq += 1
            group.states[copy.key] = state.with_entry(entry)
            group.rows[(copy.key, identity.actor)] = entry
            group.dots[entry.dot] = copy.key
            group.local_writes += 1
            mark(group, copy.dot, entry.dot)
            if copy.fingerprint != min(copies, key=lambda r: r.order).fingerprint:
                group.mixed.append(kh)
        if waiting(group, identity.node_id, kh):
            still.add(kh)
    return still


def publish_sets(group: Group, identity: Identity, khashes: Set[bytes]) -> None:
    """Publish a duplicate set for each counter key of ``khashes`` that needs a new one.

    Each set takes the next seq of our actor, with no entry: V records that seq (our counter
    must never go back to it), and the set travels in our stream like a write.
    """
    for kh in sorted(khashes):
        records = group.copies.get(kh, {}).values()
        for key, copies in sets_to_publish(records, group.sets.get(kh, {}).values()):
            identity.seq += 1
            group.add_set(DuplicateSet(identity.actor, identity.seq, kh, key, copies))
            group.vector[identity.actor] = identity.seq
            group.local_writes += 1
            if any(c.fingerprint != copies[0].fingerprint for c in copies):
                group.mixed.append(kh)


def waiting(group: Group, node_id: str, kh: bytes) -> bool:
    """Whether a copy of ``kh`` this node made may still need compensating later."""
    copies = list(group.copies.get(kh, {}).values())
    if len(copies) < 2:
        return False
    smallest = min(copies, key=lambda r: r.order)
    for copy in copies:
        if copy is smallest or copy.node_id != node_id or copy.mark or not copy.amount:
            continue
        floor = group.state(copy.key).floors().get(copy.actor)
        if floor is None or floor.seq < copy.seq:
            return True
    return False


def prepare_raise(
    group: Group, identity: Identity, vector: VersionVector, committed: Mapping[str, int]
) -> None:
    """Raise V to ``max(V, vector)`` for every actor but ours (``committed``: V as stored).

    A vector beyond our actor's counter switches to a new incarnation first.
    """
    if vector.get(identity.actor) > identity.seq:
        group.switch(identity, "another node's vector is beyond our actor's counter")
    for actor, seq in vector.items():
        if actor == identity.actor:
            continue
        if seq > max(committed.get(actor, 0), group.vector.get(actor, 0)):
            group.vector[actor] = seq

    # V now shows every actor it will after this group: retire this node's earlier actors it
    # shows, and raise the finals of retired actors it holds beyond them.
    after = dict(committed)
    for actor, seq in group.vector.items():
        after[actor] = max(seq, after.get(actor, 0))
    for actor, seq in finals_to_raise(after, group.retired).items():
        group.retire_at(actor, seq)
    if identity.retire_earlier:
        for actor, seq in earlier_actors(
            identity.node_id, identity.actor, after, group.retired
        ).items():
            group.retire_at(actor, seq)


#: Why a node leaves an actor a peer holds as retired.
RETIRED_BY_PEER = (
    "a peer holds our actor as retired (our files were restored, or another process runs as"
    " this node id)"
)


def prepare_retire(
    group: Group, identity: Identity, finals: Mapping[str, int], committed: Mapping[str, int]
) -> int:
    """Merge a peer's retirements (``finals``); how many raised our map.

    A final below what we hold of the actor is raised to our V (``committed``). A retirement of
    our own current actor means a dot of it may exist that we did not issue in this run (our
    files were restored, or another process runs as this node): switch to a new actor first.
    The second time in one run, it is another process: this node stops retiring its node's
    other actors (they are that process's), so the two do not retire each other forever.
    """
    if identity.actor in finals and group.token is not None:
        identity.retired_under_us += 1
        if identity.retired_under_us >= 2:
            identity.retire_earlier = False
        group.switch(identity, RETIRED_BY_PEER)
    raised = 0
    for actor, final in finals.items():
        before = max(group.retired.get(actor, 0), group.retire.get(actor, 0))
        group.retire_at(actor, max(final, committed.get(actor, 0), group.vector.get(actor, 0)))
        raised += max(group.retired.get(actor, 0), group.retire.get(actor, 0)) > before
    return raised
