"""Retired actors: actors that will issue no more dots, and vectors that leave them out.

An actor is **retired** once the node it belonged to has moved on to another actor (a new
incarnation) or to none: it will never issue another dot. A retirement is a pair
``(actor, final)``, where ``final`` is the highest seq of that actor any member holds.
Retirements form a grow-only map merged by taking the larger final on each actor, so every
member converges to the same map whatever order retirements arrive in, and to the true final
seq (each member raises a final to its own V of the actor as it learns the retirement).

A vector sent under a retirement map R (:meth:`Retirements.compact`) leaves out every retired
actor it holds at exactly its final seq, and names R by its digest. A receiver holding a map
with the same digest restores the whole vector (:meth:`Retirements.expand`); one holding
another map cannot, and says so (the sender then fetches the receiver's map, see
:mod:`vvstore.sync`). So once a retired actor is covered everywhere, it costs no bytes in any
sync message: idle traffic is O(live actors), however many incarnations came before.

The compact form may list a retired actor at seq 0 (a member that learnt the retirement but
holds none of its entries): the receiver must not mistake an absent actor for one held in full.

Pure core: standard library and other core modules only; no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from types import MappingProxyType

from vvstore.actor import is_actor_of
from vvstore.clock import VersionVector

__all__ = ["EMPTY", "Retirements", "earlier_actors", "finals_to_raise"]

#: Hex digits of a retirement map's digest on the wire (128 bits of SHA-256).
DIGEST_HEX = 32


def _digest(finals: Mapping[str, int]) -> str:
    h = hashlib.sha256()
    for actor in sorted(finals):
        h.update(f"{actor} {finals[actor]}\n".encode())
    return h.hexdigest()[:DIGEST_HEX]


class Retirements(Mapping[str, int]):
    """An immutable retirement map (actor id -> final seq) with its digest."""

    __slots__ = ("_finals", "digest")

    def __init__(self, finals: Mapping[str, int] = MappingProxyType({})) -> None:
        if any(seq < 1 for seq in finals.values()):
            raise ValueError("a retired actor's final seq is at least 1")
        self._finals: Mapping[str, int] = MappingProxyType(dict(finals))
        #: The map's digest: two maps with the same digest are the same map.
        self.digest: str = _digest(self._finals)

    def __getitem__(self, actor: str) -> int:
        return self._finals[actor]

    def __iter__(self) -> Iterator[str]:
        return iter(self._finals)

    def __len__(self) -> int:
        return len(self._finals)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Retirements):
            return self.digest == other.digest and self._finals == other._finals
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(self.digest)

    def __reduce__(self) -> tuple[type[Retirements], tuple[dict[str, int]]]:
        return (Retirements, (dict(self._finals),))

    def __deepcopy__(self, memo: dict[int, object]) -> Retirements:
        return self  # immutable

    def __repr__(self) -> str:
        return f"Retirements({len(self)} actors, digest {self.digest})"

    def merged(self, other: Mapping[str, int]) -> dict[str, int]:
        """The retirements of ``other`` that raise this map: new actors, or higher finals."""
        return {a: f for a, f in other.items() if f > self._finals.get(a, 0)}

    def with_changes(self, changes: Mapping[str, int]) -> Retirements:
        """This map with ``changes`` merged in (the larger final wins)."""
        if not changes:
            return self
        finals = dict(self._finals)
        for actor, final in changes.items():
            finals[actor] = max(final, finals.get(actor, 0))
        return Retirements(finals)

    def compact(self, vector: Mapping[str, int]) -> dict[str, int]:
        """``vector`` without the retired actors it holds at their final seq.

        Retired actors it holds below their final (or not at all: 0) stay listed.
        """
        out = {a: s for a, s in vector.items() if self._finals.get(a) != s}
        for actor in self._finals:
            if actor not in vector:
                out[actor] = 0
        return dict(sorted(out.items()))

    def expand(self, listed: Mapping[str, int]) -> VersionVector:
        """The whole vector a :meth:`compact` form under this map stands for."""
        whole = dict(self._finals)
        whole.update(listed)
        return VersionVector.from_dict(whole)


#: No retirements.
EMPTY = Retirements()


def earlier_actors(
    node_id: str, current: str, vector: Mapping[str, int], retired: Mapping[str, int]
) -> dict[str, int]:
    """Retirements of this node's earlier actors that ``vector`` shows and nobody retired yet.

    A node runs as one process at a time, so an actor of its node id other than the current
    one belongs to an earlier incarnation and will issue no more dots (a wiped node learns its
    earlier actors from its peers' vectors). The final seq is what ``vector`` holds; a member
    holding more raises it later (:func:`finals_to_raise`).
    """
    return {
        actor: seq
        for actor, seq in vector.items()
        if seq >= 1 and actor != current and actor not in retired and is_actor_of(actor, node_id)
    }


def finals_to_raise(vector: Mapping[str, int], retired: Mapping[str, int]) -> dict[str, int]:
    """Retired actors that ``vector`` holds beyond their recorded final seq, at that seq."""
    return {a: s for a, s in vector.items() if a in retired and s > retired[a]}
