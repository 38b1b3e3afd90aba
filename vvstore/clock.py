"""Version vectors: which writes a replica has seen, and how two histories relate.

A :class:`VersionVector` maps each actor id (the identity that writes entries) to the number of
writes by that actor that are known. vvstore compares vectors to find out which writes a node is
missing, but this module is a small library of its own: it depends only on the standard library
and :mod:`vvstore.errors`, so it can be used (and tested) without the rest of vvstore.

Semantics. Vectors are ordered pointwise: ``a`` *descends* ``b`` when every counter in ``a`` is
at least the matching counter in ``b``. This is the happened-before partial order of Lamport,
"Time, Clocks, and the Ordering of Events in a Distributed System" (CACM, 1978), captured exactly
by vectors as in Mattern, "Virtual Time and Global States of Distributed Systems" (1989), and
used to detect conflicting replicas by Parker et al., "Detection of Mutual Inconsistency in
Distributed Systems" (IEEE TSE, 1983), who named them version vectors. :meth:`~VersionVector.merge`
(pointwise maximum) is the least upper bound of that order, so merging is commutative,
associative and idempotent, and the merge descends every input. The vocabulary (``increment``,
``merge``, ``descends``, ``dominates``) follows riak_core's ``vclock``.

Edge cases, all deliberate:

* A missing actor id and a counter of zero are the same thing. ``VersionVector({"a": 0})`` equals
  ``VersionVector()``, hashes the same, has length 0, and ``to_dict()`` never contains a zero.
* A vector descends itself, and every vector descends the empty vector; a vector *dominates*
  another only if it descends it and differs from it.
* ``vv["x"]`` raises :class:`KeyError` for an absent id, as a :class:`~collections.abc.Mapping`
  must; ``vv.get("x")`` returns 0.
* A vector equals only another vector, never a plain ``dict`` (whose zeros would make equality
  ambiguous); compare ``vv.to_dict()`` with a dict instead.
* Iteration, ``repr`` and ``to_dict`` list ids in sorted order, so output is deterministic.
* Actor ids are non-empty ``str`` of at most :data:`MAX_ID_LENGTH` characters; counters are
  ``int`` (``bool`` is refused) in ``[0, MAX_COUNTER]``, which fits a signed 64-bit column.
  Anything else, and an increment past :data:`MAX_COUNTER`, raises
  :class:`~vvstore.errors.ClockError` naming the offending id or value. Counters never wrap.

This module is part of the pure core: it must never do I/O, read a clock or use randomness.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar, final, overload

from vvstore.errors import ClockError

__all__ = ["MAX_COUNTER", "MAX_ID_LENGTH", "Ordering", "VersionVector"]

MAX_COUNTER = 2**63 - 1
"""Largest counter a vector holds: the largest signed 64-bit integer, so SQLite and JSON peers
can store every counter exactly."""

MAX_ID_LENGTH = 64
"""Longest actor id, in characters."""

_T = TypeVar("_T")

# Long reprs in error messages are cut so a hostile payload cannot make a huge message; 80 still
# shows any id a few characters over MAX_ID_LENGTH in full.
_MAX_SHOWN = 80


class Ordering(enum.Enum):
    """How one version vector relates to another, as returned by :meth:`VersionVector.compare`.

    Read ``a.compare(b) is Ordering.BEFORE`` as "a happened before b".
    """

    BEFORE = "before"
    """The other vector descends this one and differs from it."""

    AFTER = "after"
    """This vector descends the other and differs from it."""

    EQUAL = "equal"
    """Both vectors have the same counters (zeros and missing ids being the same)."""

    CONCURRENT = "concurrent"
    """Each vector has a counter greater than the other's: neither descends the other."""


@final
class VersionVector(Mapping[str, int]):
    """An immutable map from actor id to a non-negative write counter.

    Operations return new vectors; nothing changes a vector after construction.

    :param counters: initial counters by actor id; zeros are dropped. ``None`` (the default)
        builds the empty vector.
    :raises ClockError: if ``counters`` is not a mapping, an id is not a non-empty ``str`` of at
        most :data:`MAX_ID_LENGTH` characters, or a counter is not an ``int`` (``bool`` excluded)
        in ``[0, MAX_COUNTER]``.
    """

    __slots__ = ("_counters", "_hash")

    _counters: dict[str, int]
    _hash: int | None

    def __new__(cls, counters: Mapping[str, int] | None = None) -> VersionVector:
        # Built in __new__, with no __init__, so that calling __init__ again cannot change a vector.
        if counters is None:
            return cls._trusted({})
        if isinstance(counters, VersionVector):
            # Already validated, and never mutated, so the dict can be shared.
            return cls._trusted(counters._counters)
        if isinstance(counters, Mapping):
            return cls._trusted(_validated(counters.items()))
        raise ClockError(
            f"a version vector is built from a mapping of actor id to counter, "
            f"got {_describe(counters)}"
        )

    @classmethod
    def _trusted(cls, counters: dict[str, int]) -> VersionVector:
        """Wrap ``counters`` without validation: only for dicts this module built itself."""
        vector = object.__new__(cls)
        object.__setattr__(vector, "_counters", counters)
        object.__setattr__(vector, "_hash", None)
        return vector

    @classmethod
    def from_dict(cls, data: object) -> VersionVector:
        """Build a vector from the shape :meth:`to_dict` produces, e.g. decoded JSON.

        The input is untrusted, so it is checked completely: it must be a ``dict`` whose keys are
        valid actor ids and whose values are valid counters. Zero counters are accepted and
        dropped.

        :param data: a ``dict`` of actor id to counter.
        :raises ClockError: if ``data`` is not a ``dict`` or any id or counter is invalid.
        """
        if not isinstance(data, dict):
            raise ClockError(f"a version vector dict must be a dict, got {_describe(data)}")
        return cls._trusted(_validated(data.items()))

    def to_dict(self) -> dict[str, int]:
        """Return a new ``dict`` of the non-zero counters, with ids in sorted order.

        ``VersionVector.from_dict(vv.to_dict()) == vv`` for every vector.
        """
        counters = self._counters
        return {actor_id: counters[actor_id] for actor_id in sorted(counters)}

    def increment(self, actor_id: str) -> VersionVector:
        """Return a new vector with the counter of ``actor_id`` one higher.

        The result dominates this vector. A missing id counts as 0, so its counter becomes 1.

        :raises ClockError: if ``actor_id`` is not a valid actor id, or its counter is already
            :data:`MAX_COUNTER`.
        """
        _checked_id(actor_id)
        current = self._counters.get(actor_id, 0)
        if current >= MAX_COUNTER:
            raise ClockError(
                f"cannot increment version vector counter for {_show(actor_id)}: "
                f"it is already 2**63-1 (MAX_COUNTER)"
            )
        counters = dict(self._counters)
        counters[actor_id] = current + 1
        return VersionVector._trusted(counters)

    def merge(self, *others: VersionVector) -> VersionVector:
        """Return the pointwise maximum of this vector and ``others``.

        The result descends every input and is the smallest vector that does. ``vv.merge()``
        returns a vector equal to ``vv``. Merging is commutative, associative and idempotent.

        :raises ClockError: if an argument is not a :class:`VersionVector`.
        """
        merged = dict(self._counters)
        for other in others:
            for actor_id, theirs in _counters_of(other, "merge").items():
                if theirs > merged.get(actor_id, 0):
                    merged[actor_id] = theirs
        return VersionVector._trusted(merged)

    def compare(self, other: VersionVector) -> Ordering:
        """Return how this vector relates to ``other``.

        :data:`Ordering.BEFORE` if ``other`` dominates this vector, :data:`Ordering.AFTER` if
        this vector dominates ``other``, :data:`Ordering.EQUAL` if they are equal and
        :data:`Ordering.CONCURRENT` otherwise. ``a.compare(b)`` is BEFORE exactly when
        ``b.compare(a)`` is AFTER; EQUAL and CONCURRENT are symmetric.

        :raises ClockError: if ``other`` is not a :class:`VersionVector`.
        """
        mine = self._counters
        theirs = _counters_of(other, "compare")
        ahead = behind = False
        shared = 0
        for actor_id, count in mine.items():
            their_count = theirs.get(actor_id)
            if their_count is None:
                ahead = True
            else:
                shared += 1
                if count > their_count:
                    ahead = True
                elif count < their_count:
                    behind = True
            if ahead and behind:
                return Ordering.CONCURRENT
        # Zeros are never stored, so an id only ``other`` has is one where ``other`` is ahead.
        if shared < len(theirs):
            behind = True
        if ahead:
            return Ordering.CONCURRENT if behind else Ordering.AFTER
        return Ordering.BEFORE if behind else Ordering.EQUAL

    def descends(self, other: VersionVector) -> bool:
        """Return whether every counter of ``other`` is at most the matching one here.

        A vector descends itself, and every vector descends the empty vector.

        :raises ClockError: if ``other`` is not a :class:`VersionVector`.
        """
        mine = self._counters
        theirs = _counters_of(other, "descends")
        # Zeros are never stored, so more ids in ``other`` means one of them is missing here.
        if len(theirs) > len(mine):
            return False
        return all(mine.get(actor_id, 0) >= count for actor_id, count in theirs.items())

    def dominates(self, other: VersionVector) -> bool:
        """Return whether this vector descends ``other`` and differs from it.

        No vector dominates itself; a vector and its :meth:`increment` are never equal, so the
        increment always dominates the original.

        :raises ClockError: if ``other`` is not a :class:`VersionVector`.
        """
        return self.compare(other) is Ordering.AFTER

    def concurrent_with(self, other: VersionVector) -> bool:
        """Return whether neither vector descends the other (a conflict between histories).

        :raises ClockError: if ``other`` is not a :class:`VersionVector`.
        """
        return self.compare(other) is Ordering.CONCURRENT

    @overload
    def get(self, actor_id: str, /) -> int: ...

    @overload
    def get(self, actor_id: str, /, default: int | _T) -> int | _T: ...

    def get(self, actor_id: str, /, default: object = 0) -> object:
        """Return the counter of ``actor_id``, or ``default`` (0) if the vector has none."""
        return self._counters.get(actor_id, default)

    def __getitem__(self, actor_id: str) -> int:
        """Return the counter of ``actor_id``.

        :raises KeyError: if the vector has no (non-zero) counter for ``actor_id``.
        """
        return self._counters[actor_id]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._counters))

    def __len__(self) -> int:
        return len(self._counters)

    def __contains__(self, actor_id: object) -> bool:
        return actor_id in self._counters

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VersionVector):
            return self._counters == other._counters
        return NotImplemented

    def __hash__(self) -> int:
        cached = self._hash
        if cached is None:
            cached = hash(frozenset(self._counters.items()))
            object.__setattr__(self, "_hash", cached)
        return cached

    def __repr__(self) -> str:
        return f"VersionVector({self.to_dict()!r})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"VersionVector is immutable: cannot set {name!r}; "
            f"increment() and merge() return new vectors"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"VersionVector is immutable: cannot delete {name!r}")

    def __reduce__(self) -> tuple[type[VersionVector], tuple[dict[str, int]]]:
        # The default slot-state protocol restores with setattr, which immutability forbids.
        return (VersionVector, (self._counters,))


def _validated(items: Iterable[tuple[object, object]]) -> dict[str, int]:
    """Check every (id, counter) pair of ``items`` and return the non-zero ones as a dict."""
    counters: dict[str, int] = {}
    for key, count in items:
        actor_id = _checked_id(key)
        if isinstance(count, bool) or not isinstance(count, int):
            raise ClockError(
                f"version vector counter for {_show(actor_id)} must be an int in "
                f"[0, 2**63-1], got {_describe(count)}"
            )
        if not 0 <= count <= MAX_COUNTER:
            raise ClockError(
                f"version vector counter for {_show(actor_id)} must be an int in "
                f"[0, 2**63-1], got {_show(count)}"
            )
        if count:
            # int() turns an int subclass (an IntEnum, say) into a plain int.
            counters[actor_id] = int(count)
    return counters


def _checked_id(actor_id: object) -> str:
    if not isinstance(actor_id, str):
        raise ClockError(f"version vector actor id must be a str, got {_describe(actor_id)}")
    if not actor_id or len(actor_id) > MAX_ID_LENGTH:
        raise ClockError(
            f"version vector actor id must have 1 to {MAX_ID_LENGTH} characters, "
            f"got {_show(actor_id)} ({len(actor_id)} characters)"
        )
    return actor_id


def _counters_of(other: object, operation: str) -> dict[str, int]:
    if not isinstance(other, VersionVector):
        raise ClockError(f"{operation} expects a VersionVector, got {_describe(other)}")
    return other._counters


def _show(value: object) -> str:
    shown = repr(value)
    if len(shown) > _MAX_SHOWN:
        shown = shown[: _MAX_SHOWN - 3] + "..."
    return shown


def _describe(value: object) -> str:
    return f"{_show(value)} ({type(value).__name__})"
