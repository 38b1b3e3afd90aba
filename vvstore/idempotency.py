"""Exactly-once increments: idempotency keys, application records, and compensation.

A client may send an increment with an ``Idempotency-Key`` K and retry it, on the same node or
another, until it gets an answer. Each node applies K at most once: the writer checks for a
record of K and writes one in the increment's own transaction. An application of K is a
:class:`Record` ``(hash of K, fingerprint of (counter key, amount), dot)``; records travel in
their actor's stream and merge by union, so every node eventually learns every copy of K.

When K was applied on two nodes before either knew of the other (a retry elsewhere during a
partition), the copies are ordered by ``(seq, actor id)``. The smallest copy stands. The node
that made any other copy c compensates it exactly once, in one transaction: it subtracts c's
amount from its own current entry for c's key and marks c with that write's dot (its ``mark``).
It does so only when it holds a record of a smaller copy c' *and* the entry that counts c'
(so the total never dips below one application), and no reset floor covers c (a reset that
already cancelled c must not be cancelled twice). :func:`compensations` decides; the store acts.

Limits (see docs/design.md): a retry after its record was purged counts again; a copy whose node
never returns stays counted; a reset concurrent with a duplicate can be off by that amount.

Pure core: standard library, :mod:`vvstore.actor`, :mod:`vvstore.counter` and
:mod:`vvstore.errors` only; no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vvstore.actor import node_of
from vvstore.counter import CounterState
from vvstore.errors import InvalidRequest

__all__ = [
    "MAX_IDEMPOTENCY_KEY",
    "Dot",
    "Record",
    "compensations",
    "fingerprint",
    "key_hash",
    "normalize_idempotency_key",
]

MAX_IDEMPOTENCY_KEY = 128
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
