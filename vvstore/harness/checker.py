"""Judge a recorded history of counter operations against the values the nodes converged to.

A workload records every client operation as an ``invoke`` :class:`Op` followed later by exactly
one completion of the same process: ``ok`` (it happened), ``fail`` (it certainly did not happen)
or ``info`` (indefinite: the reply was lost or timed out, so it may or may not have happened).
A process has at most one operation outstanding at a time, as in Jepsen (Kingsbury, "Jepsen:
on the perils of network partitions", 2013); an invoke with no completion at the end of the
history is indefinite too.

After the cluster has healed and converged, :func:`check` compares the final value of every key
on every node with what the history allows, the bounds check of Jepsen's counter checker:

- **nodes agree**: every node holds the same ``{key: value}`` mapping (a missing key reads 0);
- **non-exact mode** (the default): ``lower <= value <= upper`` where ``lower`` is the sum of the
  acknowledged adds plus every indefinite amount that would lower the value, and ``upper`` the
  acknowledged sum plus every indefinite amount that would raise it. With the positive amounts
  of the workloads that is ``acknowledged <= value <= acknowledged + indefinite``;
- **exact mode**: the workload's last phase retried every indefinite add with its idempotency key
  until it was acknowledged, so each distinct idempotency key must have been applied exactly
  once: ``value == expected``, the sum over *distinct* acknowledged idempotency keys (counted
  per key, once however many ops carried them). Every add must carry an idempotency key, and
  one idempotency key must always carry the same amount, or :func:`check` raises ValueError.
  An idempotency key seen only as indefinite breaks the premise of exact mode and is reported
  as an error (a ``fail`` applied nothing and needs no retry);
- **exactly once per idempotency key** (exact mode): a key's value is a sum, so on a key shared
  by many idempotency keys one lost increment and one doubled increment of the same amount
  cancel out. A key that only one idempotency key ever added to (a *probe*: the fault suite's
  workload sends a share of its increments to keys of their own) has no such blind spot: its
  value must be exactly that key's amount, 0 meaning the increment was lost and twice the
  amount that it was applied twice. :func:`check` reports every acknowledged probe as an
  :class:`IdempotencyVerdict`, so a run says how many idempotency keys it verified one by one
  and which of them were lost or doubled.

:func:`check` does not judge reads: with multi-master writes a read at one node may legitimately
miss adds acknowledged by another. The fault suite (:mod:`vvstore.harness.faults`) adds what
*can* be
required of every read while faults run, and :func:`check_faults` combines it with exact mode:

- **upper bound** (Jepsen's, per key): a read never exceeds the sum of the amounts of every add
  *attempt* invoked before the read completed, whatever its outcome but a definite ``fail``.
  Each attempt counts, retries of one idempotency key on other nodes included, because two
  nodes may each apply a retried key during a partition and count it twice until the later
  copy is compensated. This needs non-negative amounts;
- **lower bound, a node's own writes**: a read served by node N is at least the sum, over the
  distinct idempotency keys N acknowledged before the read was invoked, of their amounts. A
  copy N made and later compensated still counts, because N compensates a copy only once it
  holds the entry of the copy that survives. A :class:`NodeLoss` (N's data directory wiped,
  or replaced by a stale copy) starts N's sum again from zero: what it acknowledged before
  belongs to an incarnation that is gone;
- **a node's own dots** (when ops carry versions): once N acknowledged an add whose reply
  shows N's actor at seq s for the key, every read of that key at N invoked later shows that
  actor at s or beyond. This catches a stale read that the value bound misses because other
  nodes' contributions hide the missing amount;
- **versions never go back at a node**: a read of a key at N invoked after an earlier read of
  it at N completed shows every actor at least at the earlier read's seq (entries only move
  forward, compensations included, and a crash keeps what was committed). A :class:`NodeLoss`
  of N resets both dot rules for N;
- **lost to a wipe**: in the final values, a shortfall up to the sum of the idempotency keys
  acknowledged only by nodes that later lost their data directory is reported as
  ``lost_to_wipe``, apart from ``lost`` (see :func:`wipe_allowance`).

This module is pure: standard library only, no I/O, no clock and no randomness; times are
supplied by the caller. It never talks to a node: the harness collects the history and the
final state and hands both in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

__all__ = [
    "FaultVerdict",
    "History",
    "IdempotencyVerdict",
    "KeyVerdict",
    "NodeLoss",
    "NodeLossKind",
    "Op",
    "OpFunction",
    "OpType",
    "ReadCheck",
    "ReadViolation",
    "ReadViolationKind",
    "Verdict",
    "Version",
    "as_version",
    "check",
    "check_faults",
    "check_reads",
    "summarize",
    "summarize_faults",
    "wipe_allowance",
]

OpType = Literal["invoke", "ok", "fail", "info"]
OpFunction = Literal["add", "read"]
NodeLossKind = Literal["wipe", "restore"]
ReadViolationKind = Literal[
    "above_attempted", "ignores_own_write", "misses_own_dot", "version_went_back"
]
Version = tuple[tuple[str, int], ...]

_OP_TYPES: frozenset[str] = frozenset(get_args(OpType))
_OP_FUNCTIONS: frozenset[str] = frozenset(get_args(OpFunction))
_COMPLETIONS: frozenset[str] = _OP_TYPES - {"invoke"}
_LOSS_KINDS: frozenset[str] = frozenset(get_args(NodeLossKind))

# Written into every serialized history so that a file from a future format is refused
# instead of being misread.
_HISTORY_FORMAT = "vvstore-history"
_HISTORY_VERSION = 1

# How many error sentences summarize() quotes before counting the rest.
_SUMMARY_ERRORS = 3


def _is_int(value: object) -> bool:
    # bool is a subclass of int, and True as an amount is always a harness bug.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Op:
    """One event of a history: the invocation or the completion of a client operation.

    ``value`` is the amount for an add (on its invoke and, by convention, on its completion),
    the value read for a read's ``ok`` completion, and None otherwise. ``time`` is monotonic
    seconds supplied by the caller; the checker orders events by their position in the history,
    not by ``time``. ``version`` is optional: the key's version ``((actor, seq), ...)`` sorted
    by actor, as a read's ``ok`` completion returned it, or as an add's ``ok`` completion
    returned it for the answering node's own actors (see :func:`check_reads`). The
    constructor checks field types and raises ValueError.
    """

    process: int
    type: OpType
    f: OpFunction
    key: str
    value: int | None
    node: str
    time: float
    idempotency_key: str | None = None
    version: Version | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.process):
            raise ValueError(f"process must be an int, got {self.process!r}")
        if self.type not in _OP_TYPES:
            raise ValueError(f"type must be one of {sorted(_OP_TYPES)}, got {self.type!r}")
        if self.f not in _OP_FUNCTIONS:
            raise ValueError(f"f must be one of {sorted(_OP_FUNCTIONS)}, got {self.f!r}")
        if not isinstance(self.key, str):
            raise ValueError(f"key must be a str, got {self.key!r}")
        if self.value is not None and not _is_int(self.value):
            raise ValueError(f"value must be an int or None, got {self.value!r}")
        if not isinstance(self.node, str):
            raise ValueError(f"node must be a str, got {self.node!r}")
        if not isinstance(self.time, int | float) or isinstance(self.time, bool):
            raise ValueError(f"time must be a number, got {self.time!r}")
        if not math.isfinite(self.time):
            raise ValueError(f"time must be finite, got {self.time!r}")
        if self.idempotency_key is not None and not isinstance(self.idempotency_key, str):
            raise ValueError(f"idempotency_key must be a str or None, got {self.idempotency_key!r}")
        if self.version is not None and not (
            isinstance(self.version, tuple)
            and all(
                isinstance(pair, tuple)
                and len(pair) == 2
                and isinstance(pair[0], str)
                and _is_int(pair[1])
                for pair in self.version
            )
            and [actor for actor, _ in self.version] == sorted({a for a, _ in self.version})
        ):
            raise ValueError(
                f"version must be ((actor, seq), ...) sorted by actor, got {self.version!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the op as a JSON-friendly dict (the inverse of :meth:`from_dict`).

        ``version`` appears only when set, as ``{actor: seq}``.
        """
        data: dict[str, Any] = {
            "process": self.process,
            "type": self.type,
            "f": self.f,
            "key": self.key,
            "value": self.value,
            "node": self.node,
            "time": self.time,
            "idempotency_key": self.idempotency_key,
        }
        if self.version is not None:
            data["version"] = dict(self.version)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Op:
        """Build an op from :meth:`to_dict` output; unknown or missing fields raise ValueError."""
        fields = {"process", "type", "f", "key", "value", "node", "time", "idempotency_key"}
        unknown = set(data) - fields - {"version"}
        if unknown:
            raise ValueError(f"unknown op fields: {sorted(unknown)}")
        missing = fields - {"idempotency_key"} - set(data)
        version = data.get("version")
        if version is not None and not isinstance(version, Mapping):
            raise ValueError(f"version must be an object of actor -> seq, got {version!r}")
        if missing:
            raise ValueError(f"missing op fields: {sorted(missing)}")
        return cls(
            process=data["process"],
            type=data["type"],
            f=data["f"],
            key=data["key"],
            value=data["value"],
            node=data["node"],
            time=data["time"],
            idempotency_key=data.get("idempotency_key"),
            version=None if version is None else as_version(version),
        )


def as_version(vector: Mapping[str, int]) -> Version:
    """``{actor: seq}`` as the sorted tuple an :class:`Op` carries."""
    return tuple(sorted((str(actor), seq) for actor, seq in vector.items()))


@dataclass(frozen=True, slots=True)
class KeyVerdict:
    """What the history allows for one key and what the nodes hold.

    ``acknowledged`` and ``indefinite`` are sums of add amounts over operations (an ``info``
    completion or a missing completion is indefinite; ``fail`` counts nowhere). ``value`` is
    None when the nodes disagree; ``lost`` and ``doubled`` are then the worst over the nodes.
    ``expected`` is only set in exact mode, where ``lost`` and ``doubled`` are measured against
    it instead of the bounds; the op-level bounds are then reported but not enforced, since an
    idempotency key acknowledged twice counts twice in them and once in ``expected``.
    ``lost_to_wipe`` is the part of a shortfall that :func:`check`'s ``at_risk`` allowance
    explains (adds acknowledged only by a node whose data directory was later wiped or replaced
    by a stale copy); it is reported apart from ``lost`` and is not an error.
    """

    key: str
    acknowledged: int
    indefinite: int
    lower: int
    upper: int
    value: int | None
    lost: int
    doubled: int
    expected: int | None = None
    lost_to_wipe: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict for this key as a JSON-friendly dict."""
        return {
            "key": self.key,
            "acknowledged": self.acknowledged,
            "indefinite": self.indefinite,
            "lower": self.lower,
            "upper": self.upper,
            "value": self.value,
            "lost": self.lost,
            "doubled": self.doubled,
            "expected": self.expected,
            "lost_to_wipe": self.lost_to_wipe,
        }


@dataclass(frozen=True, slots=True)
class IdempotencyVerdict:
    """One acknowledged idempotency key verified on its own: the only one that added to ``key``.

    ``value`` is the key's converged value (None when the nodes disagree), ``copies`` how many
    times ``amount`` it holds (None when it is not a whole multiple): 1 is exactly once, 0
    lost, 2 or more doubled. ``lost``, ``doubled`` and ``lost_to_wipe`` are amounts, as in the
    key's :class:`KeyVerdict`.
    """

    idempotency_key: str
    key: str
    amount: int
    value: int | None
    lost: int
    doubled: int
    lost_to_wipe: int = 0

    @property
    def copies(self) -> int | None:
        if self.value is None or self.amount == 0 or self.value % self.amount:
            return None
        return self.value // self.amount

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict for this idempotency key as a JSON-friendly dict."""
        return {
            "idempotency_key": self.idempotency_key,
            "key": self.key,
            "amount": self.amount,
            "value": self.value,
            "copies": self.copies,
            "lost": self.lost,
            "doubled": self.doubled,
            "lost_to_wipe": self.lost_to_wipe,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of :func:`check`. ``valid`` is true exactly when ``errors`` is empty.

    ``per_idempotency_key`` (exact mode only) holds the acknowledged idempotency keys that were
    verified one by one, sorted by key: those alone on their key.
    """

    valid: bool
    nodes_agree: bool
    exact: bool
    nodes: tuple[str, ...]
    per_key: dict[str, KeyVerdict]
    errors: list[str] = field(default_factory=list)
    per_idempotency_key: tuple[IdempotencyVerdict, ...] = ()

    @property
    def verified_individually(self) -> int:
        """How many idempotency keys were verified one by one."""
        return len(self.per_idempotency_key)

    @property
    def individually_lost(self) -> int:
        """How many of them were lost (beyond what a node loss explains)."""
        return sum(1 for iv in self.per_idempotency_key if iv.lost)

    @property
    def individually_doubled(self) -> int:
        """How many of them were applied more than once."""
        return sum(1 for iv in self.per_idempotency_key if iv.doubled)

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict as a JSON-friendly dict."""
        return {
            "valid": self.valid,
            "nodes_agree": self.nodes_agree,
            "exact": self.exact,
            "nodes": list(self.nodes),
            "per_key": {key: kv.to_dict() for key, kv in self.per_key.items()},
            "verified_individually": self.verified_individually,
            "individually_lost": self.individually_lost,
            "individually_doubled": self.individually_doubled,
            "per_idempotency_key": [iv.to_dict() for iv in self.per_idempotency_key],
            "errors": list(self.errors),
        }


@dataclass(slots=True)
class _Idempotent:
    """What the history says about one distinct idempotency key of one key (exact mode)."""

    amount: int
    acknowledged: bool = False
    indefinite: bool = False


@dataclass(slots=True)
class _KeyTally:
    """Running sums for one key while walking the history."""

    acknowledged: int = 0
    indefinite_down: int = 0  # sum of negative indefinite amounts (<= 0)
    indefinite_up: int = 0  # sum of positive indefinite amounts (>= 0)
    idempotent: dict[str, _Idempotent] = field(default_factory=dict)


def _pair(history: Sequence[Op]) -> list[tuple[int, Op, Op | None]]:
    """Match every invoke with its completion; return (index, invoke, completion or None).

    Raises ValueError when the history is not well formed: a process invoking while it has an
    operation outstanding, a completion without an invoke, or a completion whose function or key
    differ from its invoke's.
    """
    completions = _completions(history)
    return [
        (index, op, completions[index][1] if index in completions else None)
        for index, op in enumerate(history)
        if op.type == "invoke"
    ]


def _completions(history: Sequence[Op]) -> dict[int, tuple[int, Op]]:
    """Invoke index -> (completion index, completion) for every completed operation.

    Raises ValueError for a malformed history, as :func:`_pair` documents.
    """
    outstanding: dict[int, tuple[int, Op]] = {}
    completed: dict[int, tuple[int, Op]] = {}
    for index, op in enumerate(history):
        if op.type == "invoke":
            if op.process in outstanding:
                earlier = outstanding[op.process][0]
                raise ValueError(
                    f"op {index}: process {op.process} invokes while its operation from op "
                    f"{earlier} is still outstanding"
                )
            if op.f == "add" and op.value is None:
                raise ValueError(f"op {index}: an add invoke needs an amount")
            outstanding[op.process] = (index, op)
            continue
        if op.process not in outstanding:
            raise ValueError(
                f"op {index}: {op.type} completion of process {op.process} has no invoke"
            )
        start, invoke = outstanding.pop(op.process)
        if (op.f, op.key) != (invoke.f, invoke.key):
            raise ValueError(
                f"op {index}: completion {op.f} {op.key!r} does not match its invoke at op "
                f"{start} ({invoke.f} {invoke.key!r})"
            )
        completed[start] = (index, op)
    return completed


def _tally(history: Sequence[Op], *, exact: bool) -> dict[str, _KeyTally]:
    tallies: dict[str, _KeyTally] = {}
    for index, invoke, completion in _pair(history):
        tally = tallies.setdefault(invoke.key, _KeyTally())
        if invoke.f != "add":
            continue
        # The invoke carries the amount; _pair guarantees it is an int.
        amount = cast(int, invoke.value)
        outcome = "info" if completion is None else completion.type
        if outcome == "ok":
            tally.acknowledged += amount
        elif outcome == "info":
            if amount < 0:
                tally.indefinite_down += amount
            else:
                tally.indefinite_up += amount
        if not exact:
            continue
        ik = invoke.idempotency_key
        if ik is None:
            raise ValueError(f"op {index}: exact mode needs an idempotency key on every add")
        seen = tally.idempotent.setdefault(ik, _Idempotent(amount))
        if seen.amount != amount:
            raise ValueError(
                f"op {index}: idempotency key {ik!r} on key {invoke.key!r} carries amount "
                f"{amount} but an earlier add with it carried {seen.amount}"
            )
        # A "fail" applied nothing and needs no retry, so it marks neither flag.
        seen.acknowledged |= outcome == "ok"
        seen.indefinite |= outcome == "info"
    return tallies


def _final_keys(final_state: Mapping[str, Mapping[str, int]]) -> set[str]:
    keys: set[str] = set()
    for node, values in final_state.items():
        if not isinstance(node, str):
            raise ValueError(f"node names must be str, got {node!r}")
        for key, value in values.items():
            if not isinstance(key, str) or not _is_int(value):
                raise ValueError(f"node {node}: {key!r} -> {value!r} is not str -> int")
            keys.add(key)
    return keys


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def _judge_key(
    key: str, tally: _KeyTally, readings: dict[str, int], *, exact: bool, at_risk: int = 0
) -> tuple[KeyVerdict, list[str]]:
    """Compare one key's readings (node -> value, the reference node first) with its tally.

    Up to ``at_risk`` of a shortfall is put down to a lost data directory (``lost_to_wipe``)
    instead of ``lost``.
    """
    errors: list[str] = []
    name = f"key {key!r}"
    if exact and len(tally.idempotent) == 1:
        name += f" (only idempotency key {next(iter(tally.idempotent))!r})"
    reference = next(iter(readings))
    agree = len(set(readings.values())) == 1
    errors.extend(
        f"{name}: node {node} reads {value} but node {reference} reads {readings[reference]}"
        for node, value in readings.items()
        if value != readings[reference]
    )

    lower = tally.acknowledged + tally.indefinite_down
    upper = tally.acknowledged + tally.indefinite_up
    expected: int | None = None
    if exact:
        acked = [i.amount for i in tally.idempotent.values() if i.acknowledged]
        expected = sum(acked)
        # Exact mode judges against `expected` alone: the op-level bounds may double count
        # an idempotency key acknowledged twice, so they are reported but not enforced.
        lowest = highest = expected
        low_basis = high_basis = (
            f"the {expected} expected from {_plural(len(acked), 'acknowledged idempotency key')}"
        )
        unacked = sorted(
            ik for ik, i in tally.idempotent.items() if i.indefinite and not i.acknowledged
        )
        if unacked:
            errors.append(
                f"{name}: {_plural(len(unacked), 'idempotency key')} never acknowledged "
                f"(first: {unacked[0]!r}); exact mode needs every indefinite add retried until "
                "acknowledged"
            )
    else:
        lowest, highest = lower, upper
        low_basis = (
            f"the {tally.acknowledged} acknowledged"
            if lower == tally.acknowledged
            else f"the lower bound {lower}"
        )
        high_basis = f"the {tally.acknowledged} acknowledged + {tally.indefinite_up} indefinite"

    lost = doubled = lost_to_wipe = 0
    judged: set[int] = set()
    for node, value in readings.items():
        # Judge each distinct reading once; when the nodes disagree, name the node.
        if value in judged:
            continue
        judged.add(value)
        subject = f"value {value}" if agree else f"node {node}'s value {value}"
        if value < lowest:
            shortfall = lowest - value
            wiped = min(shortfall, max(0, at_risk))
            lost_to_wipe = max(lost_to_wipe, wiped)
            if shortfall > wiped:
                lost = max(lost, shortfall - wiped)
                excused = f", {wiped} more put down to a wipe" if wiped else ""
                errors.append(
                    f"{name}: {subject} is below {low_basis} ({shortfall - wiped} lost{excused})"
                )
        if value > highest:
            doubled = max(doubled, value - highest)
            errors.append(f"{name}: {subject} is above {high_basis} ({value - highest} doubled)")

    verdict = KeyVerdict(
        key=key,
        acknowledged=tally.acknowledged,
        indefinite=tally.indefinite_down + tally.indefinite_up,
        lower=lower,
        upper=upper,
        value=readings[reference] if agree else None,
        lost=lost,
        doubled=doubled,
        expected=expected,
        lost_to_wipe=lost_to_wipe,
    )
    return verdict, errors


def check(
    history: Sequence[Op],
    final_state: Mapping[str, Mapping[str, int]],
    *,
    exact: bool = False,
    at_risk: Mapping[str, int] | None = None,
) -> Verdict:
    """Check a history of adds and reads against the converged state of every node.

    :param history: the ops in the order they happened (see :class:`History`).
    :param final_state: node name -> {key: value}, read from every node after convergence.
        A key missing on a node reads 0; a key present but never added to must read 0.
    :param exact: require ``value == expected`` (distinct acknowledged idempotency keys)
        instead of the bounds; every add must then carry an idempotency key, and one idempotency
        key must always carry the same amount on one key.
    :param at_risk: key -> how much of a shortfall to report as ``lost_to_wipe`` rather than
        ``lost`` (see :func:`wipe_allowance`); none by default.
    :returns: a :class:`Verdict`; errors name the key (and, for a key only one idempotency key
        added to, that idempotency key) and, when nodes disagree, the node. Disagreeing nodes
        are named against the first node in sorted order. In exact mode its
        ``per_idempotency_key`` lists the acknowledged idempotency keys verified one by one.
    :raises ValueError: the history is malformed (a process with two operations outstanding,
        a completion without an invoke or not matching it, an add without an amount),
        ``final_state`` is empty or holds non-int values, or exact mode's requirements on
        idempotency keys do not hold.
    """
    if not final_state:
        raise ValueError("final_state needs at least one node")
    tallies = _tally(history, exact=exact)
    nodes = tuple(sorted(final_state))
    per_key: dict[str, KeyVerdict] = {}
    per_idempotency_key: list[IdempotencyVerdict] = []
    errors: list[str] = []
    for key in sorted(_final_keys(final_state) | set(tallies)):
        readings = {node: final_state[node].get(key, 0) for node in nodes}
        allowance = at_risk.get(key, 0) if at_risk else 0
        tally = tallies.get(key, _KeyTally())
        verdict, key_errors = _judge_key(key, tally, readings, exact=exact, at_risk=allowance)
        per_key[key] = verdict
        errors.extend(key_errors)
        alone = list(tally.idempotent.items())
        if exact and len(alone) == 1 and alone[0][1].acknowledged:
            # The key's verdict is this idempotency key's: nothing else could add to it.
            ik, seen = alone[0]
            per_idempotency_key.append(
                IdempotencyVerdict(
                    ik,
                    key,
                    seen.amount,
                    verdict.value,
                    verdict.lost,
                    verdict.doubled,
                    verdict.lost_to_wipe,
                )
            )
    return Verdict(
        valid=not errors,
        nodes_agree=all(kv.value is not None for kv in per_key.values()),
        exact=exact,
        nodes=nodes,
        per_key=per_key,
        errors=errors,
        per_idempotency_key=tuple(per_idempotency_key),
    )


def summarize(verdict: Verdict) -> str:
    """Return one closing line for a test log or the demo.

    ``VALID: 3 nodes agree on 5 keys; 1,234 acknowledged, 12 indefinite, 0 lost, 0 doubled``,
    or ``INVALID: <n> errors: <the first few>; ...``. Totals are summed over keys.
    """
    keys = verdict.per_key.values()
    mode = " (exact)" if verdict.exact else ""
    if verdict.valid:
        count = len(verdict.nodes)
        agree = "agrees" if count == 1 else "agree"
        scope = f"{_plural(count, 'node')} {agree} on {_plural(len(verdict.per_key), 'key')}"
        return (
            f"VALID{mode}: {scope}; "
            f"{sum(k.acknowledged for k in keys):,} acknowledged, "
            f"{sum(k.indefinite for k in keys):,} indefinite, "
            f"{sum(k.lost for k in keys):,} lost, {sum(k.doubled for k in keys):,} doubled"
        )
    shown = "; ".join(verdict.errors[:_SUMMARY_ERRORS])
    rest = len(verdict.errors) - _SUMMARY_ERRORS
    more = f"; and {rest} more" if rest > 0 else ""
    return f"INVALID{mode}: {_plural(len(verdict.errors), 'error')}: {shown}{more}"


class History:
    """Records a history as concurrent clients run; one instance per workload run.

    Each client is a process with at most one operation outstanding: :meth:`invoke` before the
    request, :meth:`complete` with ``ok``/``fail``/``info`` after it. Methods raise ValueError
    when that discipline is broken, so a harness bug shows up where it happens rather than in
    :func:`check`. Not thread-safe; meant for a single event loop.
    """

    def __init__(self, ops: Iterable[Op] = ()) -> None:
        self.ops: list[Op] = []
        self._outstanding: dict[int, Op] = {}
        for op in ops:
            self._append(op)

    def _append(self, op: Op) -> None:
        if op.type == "invoke":
            if op.process in self._outstanding:
                raise ValueError(f"process {op.process} already has an operation outstanding")
            self._outstanding[op.process] = op
        else:
            invoke = self._outstanding.get(op.process)
            if invoke is None or (invoke.f, invoke.key) != (op.f, op.key):
                raise ValueError(
                    f"{op.type} for process {op.process} matches no outstanding invoke"
                )
            del self._outstanding[op.process]
        self.ops.append(op)

    def invoke(
        self,
        process: int,
        f: OpFunction,
        key: str,
        value: int | None,
        node: str,
        time: float,
        idempotency_key: str | None = None,
    ) -> Op:
        """Record the start of an operation and return its invoke op (pass it to complete)."""
        if f == "add" and value is None:
            raise ValueError("an add needs an amount")
        op = Op(process, "invoke", f, key, value, node, time, idempotency_key)
        self._append(op)
        return op

    def complete(
        self,
        invoke_op: Op,
        type: OpType,
        time: float,
        value: int | None = None,
        version: Mapping[str, int] | None = None,
    ) -> Op:
        """Record the completion of ``invoke_op`` and return it.

        For an add the completion carries the invoke's amount when ``value`` is None; for a
        read, pass the value read with ``ok``. ``version`` is the key's version the reply
        carried, if the caller keeps it (see :class:`Op`).
        """
        if type not in _COMPLETIONS:
            raise ValueError(f"type must be one of {sorted(_COMPLETIONS)}, got {type!r}")
        if self._outstanding.get(invoke_op.process) is not invoke_op:
            raise ValueError(f"{invoke_op!r} is not the outstanding operation of its process")
        if value is None and invoke_op.f == "add":
            value = invoke_op.value
        op = Op(
            invoke_op.process,
            type,
            invoke_op.f,
            invoke_op.key,
            value,
            invoke_op.node,
            time,
            invoke_op.idempotency_key,
            None if version is None else as_version(version),
        )
        self._append(op)
        return op

    def to_json(self) -> str:
        """Serialize the history, with a format version, one op per line for readable diffs."""
        lines = ",\n".join("  " + json.dumps(op.to_dict(), sort_keys=True) for op in self.ops)
        body = f"[\n{lines}\n]" if self.ops else "[]"
        return f'{{"format": "{_HISTORY_FORMAT}", "version": {_HISTORY_VERSION}, "ops": {body}}}\n'

    @classmethod
    def from_json(cls, text: str) -> History:
        """Load a history written by :meth:`to_json`; anything else raises ValueError."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != _HISTORY_FORMAT:
            raise ValueError("not a vvstore history")
        if data.get("version") != _HISTORY_VERSION:
            raise ValueError(f"unsupported history version {data.get('version')!r}")
        ops = data.get("ops")
        if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
            raise ValueError("history ops must be a list of objects")
        return cls(Op.from_dict(op) for op in ops)


# --- fault runs: node losses, read bounds and the combined verdict ---------------------------


@dataclass(frozen=True, slots=True)
class NodeLoss:
    """Node ``node`` lost its local state just before history op ``position``.

    ``kind`` is ``wipe`` (its data directory was emptied) or ``restore`` (it was replaced by a
    copy taken earlier). Either way the node comes back as a new incarnation: adds it
    acknowledged before ``position`` are no longer its own (its reads' lower bound starts from
    zero again), and any of them that no other node had pulled is gone. ``position`` is the
    number of ops recorded when the node was killed, so ops before it happened before the loss.
    """

    position: int
    node: str
    kind: NodeLossKind
    time: float

    def __post_init__(self) -> None:
        if not _is_int(self.position) or self.position < 0:
            raise ValueError(f"position must be an int >= 0, got {self.position!r}")
        if not isinstance(self.node, str):
            raise ValueError(f"node must be a str, got {self.node!r}")
        if self.kind not in _LOSS_KINDS:
            raise ValueError(f"kind must be one of {sorted(_LOSS_KINDS)}, got {self.kind!r}")
        if isinstance(self.time, bool) or not isinstance(self.time, int | float):
            raise ValueError(f"time must be a number, got {self.time!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return the loss as a JSON-friendly dict (the inverse of :meth:`from_dict`)."""
        return {"position": self.position, "node": self.node, "kind": self.kind, "time": self.time}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeLoss:
        """Build a loss from :meth:`to_dict` output; wrong fields raise ValueError."""
        fields = {"position", "node", "kind", "time"}
        if set(data) != fields:
            raise ValueError(f"a node loss has exactly the fields {sorted(fields)}")
        return cls(data["position"], data["node"], data["kind"], data["time"])


@dataclass(frozen=True, slots=True)
class ReadViolation:
    """One read that broke a bound; ``position`` is the index of its ``ok`` completion.

    For the value rules ``value`` is the value read and ``bound`` the bound; for the dot rules
    (``misses_own_dot``, ``version_went_back``) they are the seqs of ``actor`` read and owed.
    """

    position: int
    process: int
    node: str
    key: str
    value: int
    bound: int
    kind: ReadViolationKind
    time: float
    actor: str | None = None

    def describe(self) -> str:
        """One sentence naming the read, its value and the bound it broke."""
        where = f"read of {self.key!r} at node {self.node} (op {self.position}, t={self.time:.3f})"
        if self.kind == "above_attempted":
            return (
                f"{where} returned {self.value}, above the {self.bound} attempted before it "
                f"completed ({self.value - self.bound} too many)"
            )
        if self.kind == "ignores_own_write":
            return (
                f"{where} returned {self.value}, below the {self.bound} that node acknowledged "
                f"before the read began ({self.bound - self.value} of its own writes ignored)"
            )
        if self.kind == "misses_own_dot":
            return (
                f"{where} shows {self.actor} at seq {self.value}, but that node had acknowledged "
                f"a write of it at seq {self.bound} before the read began"
            )
        return (
            f"{where} shows {self.actor} at seq {self.value}, below the seq {self.bound} an "
            "earlier read at that node showed (its version went back)"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the violation as a JSON-friendly dict."""
        return {
            "position": self.position,
            "process": self.process,
            "node": self.node,
            "key": self.key,
            "value": self.value,
            "bound": self.bound,
            "kind": self.kind,
            "time": self.time,
            "actor": self.actor,
        }


@dataclass(frozen=True, slots=True)
class ReadCheck:
    """What :func:`check_reads` found: how many ``ok`` reads it judged, and which failed."""

    reads: int
    violations: tuple[ReadViolation, ...]


def _sorted_losses(losses: Iterable[NodeLoss], length: int) -> list[NodeLoss]:
    ordered = sorted(losses, key=lambda loss: loss.position)
    for loss in ordered:
        if loss.position > length:
            raise ValueError(
                f"node loss of {loss.node} at op {loss.position} is past the history's end "
                f"({length} ops)"
            )
    return ordered


def _add_identity(index: int, op: Op) -> str:
    """The idempotency key of an add, or a name unique to the op when it has none."""
    return op.idempotency_key if op.idempotency_key is not None else f"#op{index}"


def _raise_to(floor: dict[str, int], version: Iterable[tuple[str, int]]) -> None:
    """Raise ``floor`` pointwise to ``version``."""
    for actor, seq in version:
        if seq > floor.get(actor, 0):
            floor[actor] = seq


def check_reads(history: Sequence[Op], losses: Iterable[NodeLoss] = ()) -> ReadCheck:
    """Judge every ``ok`` read against the upper bound, the own-writes lower bound and, for
    ops that carry versions, the two dot rules.

    See the module docstring for the rules. Runs in one pass over the history (plus the
    pairing), so histories of hundreds of thousands of ops are fine.

    :raises ValueError: the history is malformed, an add amount is negative (the upper bound
        would be meaningless), or a loss lies past the history's end.
    """
    completions = _completions(history)
    ordered = _sorted_losses(losses, len(history))
    # Amounts of adds that may have been applied, per key, as their invokes come by.
    attempted: dict[str, int] = {}
    # (node, key) -> {idempotency key: amount} acknowledged by that node since its last loss.
    own: dict[tuple[str, str], dict[str, int]] = {}
    own_sum: dict[tuple[str, str], int] = {}
    lower_at_invoke: dict[int, int] = {}
    # (node, key) -> actor -> the seq owed by that node's own acknowledgements, and the seq
    # seen by its completed reads; snapshots taken when each read is invoked.
    own_dots: dict[tuple[str, str], dict[str, int]] = {}
    seen: dict[tuple[str, str], dict[str, int]] = {}
    dots_at_invoke: dict[int, tuple[dict[str, int], dict[str, int]]] = {}
    invoke_of: dict[int, int] = {done: start for start, (done, _) in completions.items()}
    violations: list[ReadViolation] = []
    reads = 0
    next_loss = 0
    for index, op in enumerate(history):
        while next_loss < len(ordered) and ordered[next_loss].position <= index:
            lost_node = ordered[next_loss].node
            for pair in [pair for pair in own if pair[0] == lost_node]:
                del own[pair]
                del own_sum[pair]
            for table in (own_dots, seen):
                for pair in [pair for pair in table if pair[0] == lost_node]:
                    del table[pair]
            next_loss += 1
        pair = (op.node, op.key)
        if op.type == "invoke":
            if op.f == "add":
                amount = cast(int, op.value)
                if amount < 0:
                    raise ValueError(f"op {index}: read checks need non-negative add amounts")
                done = completions.get(index)
                if done is None or done[1].type != "fail":
                    attempted[op.key] = attempted.get(op.key, 0) + amount
            else:
                lower_at_invoke[index] = own_sum.get(pair, 0)
                dots_at_invoke[index] = (dict(own_dots.get(pair, {})), dict(seen.get(pair, {})))
            continue
        if op.type != "ok":
            continue
        start = invoke_of[index]
        if op.f == "add":
            acknowledged = own.setdefault(pair, {})
            identity = _add_identity(start, history[start])
            if identity not in acknowledged:
                amount = cast(int, history[start].value)
                acknowledged[identity] = amount
                own_sum[pair] = own_sum.get(pair, 0) + amount
            if op.version is not None:
                _raise_to(own_dots.setdefault(pair, {}), op.version)
            continue
        if op.value is None:
            raise ValueError(f"op {index}: an ok read needs the value read")
        reads += 1
        upper = attempted.get(op.key, 0)
        lower = lower_at_invoke[start]
        for kind, bound, broken in (
            ("above_attempted", upper, op.value > upper),
            ("ignores_own_write", lower, op.value < lower),
        ):
            if broken:
                violations.append(
                    ReadViolation(
                        index,
                        op.process,
                        op.node,
                        op.key,
                        op.value,
                        bound,
                        cast(ReadViolationKind, kind),
                        op.time,
                    )
                )
        if op.version is None:
            continue
        read = dict(op.version)
        owed, earlier = dots_at_invoke[start]
        for kind, floor in (("misses_own_dot", owed), ("version_went_back", earlier)):
            for actor, seq in sorted(floor.items()):
                if read.get(actor, 0) < seq:
                    violations.append(
                        ReadViolation(
                            index,
                            op.process,
                            op.node,
                            op.key,
                            read.get(actor, 0),
                            seq,
                            cast(ReadViolationKind, kind),
                            op.time,
                            actor,
                        )
                    )
                    break  # one sentence per read and rule
        _raise_to(seen.setdefault(pair, {}), op.version)
    return ReadCheck(reads, tuple(violations))


def wipe_allowance(history: Sequence[Op], losses: Iterable[NodeLoss]) -> dict[str, int]:
    """Key -> the sum over idempotency keys whose every acknowledgement came from a node that
    later lost its data directory.

    Such an add may be gone with that directory if no other node had pulled it yet, so
    :func:`check_faults` reports a shortfall up to this sum as ``lost_to_wipe`` instead of
    ``lost``. A key acknowledged by any node that kept its data is not at risk.
    """
    ordered = _sorted_losses(losses, len(history))
    last_loss: dict[str, int] = {}
    for loss in ordered:
        last_loss[loss.node] = loss.position
    completions = _completions(history)
    # (key, idempotency key) -> [amount, survived]
    seen: dict[tuple[str, str], list[int]] = {}
    for start, (done, completion) in completions.items():
        invoke = history[start]
        if invoke.f != "add" or completion.type != "ok":
            continue
        entry = seen.setdefault((invoke.key, _add_identity(start, invoke)), [0, 0])
        entry[0] = cast(int, invoke.value)
        if done >= last_loss.get(completion.node, -1):
            entry[1] = 1
    allowance: dict[str, int] = {}
    for (key, _), (amount, survived) in seen.items():
        if not survived:
            allowance[key] = allowance.get(key, 0) + amount
    return allowance


@dataclass(frozen=True, slots=True)
class FaultVerdict:
    """The verdict of a fault run: exact final values plus the read bounds.

    ``final`` is :func:`check` in exact mode with the wipe allowance; ``errors`` holds its errors
    and then one sentence per read violation; ``valid`` is true exactly when it is empty.
    """

    valid: bool
    final: Verdict
    reads: int
    read_violations: tuple[ReadViolation, ...]
    errors: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(kv.lost for kv in self.final.per_key.values())

    @property
    def doubled(self) -> int:
        return sum(kv.doubled for kv in self.final.per_key.values())

    @property
    def lost_to_wipe(self) -> int:
        return sum(kv.lost_to_wipe for kv in self.final.per_key.values())

    @property
    def verified_individually(self) -> int:
        """Idempotency keys verified one by one (alone on their key): see :class:`Verdict`."""
        return self.final.verified_individually

    def violations_of(self, kind: ReadViolationKind) -> int:
        return sum(1 for v in self.read_violations if v.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict as a JSON-friendly dict."""
        return {
            "valid": self.valid,
            "lost": self.lost,
            "doubled": self.doubled,
            "lost_to_wipe": self.lost_to_wipe,
            "verified_individually": self.verified_individually,
            "individually_lost": self.final.individually_lost,
            "individually_doubled": self.final.individually_doubled,
            "reads": self.reads,
            "read_violations": [v.to_dict() for v in self.read_violations],
            "final": self.final.to_dict(),
            "errors": list(self.errors),
        }


def check_faults(
    history: Sequence[Op],
    final_state: Mapping[str, Mapping[str, int]],
    losses: Iterable[NodeLoss] = (),
) -> FaultVerdict:
    """Judge a fault run: every node agrees, every key equals the sum over its distinct
    acknowledged idempotency keys (0 lost, 0 doubled, shortfalls explained by node losses
    reported apart), so that every idempotency key alone on its key was applied exactly once,
    and every read kept both bounds.

    :raises ValueError: as :func:`check` in exact mode and :func:`check_reads`.
    """
    losses = list(losses)
    final = check(history, final_state, exact=True, at_risk=wipe_allowance(history, losses))
    reads = check_reads(history, losses)
    errors = [*final.errors, *(violation.describe() for violation in reads.violations)]
    return FaultVerdict(
        valid=not errors,
        final=final,
        reads=reads.reads,
        read_violations=reads.violations,
        errors=errors,
    )


def summarize_faults(verdict: FaultVerdict) -> str:
    """One closing line for a fault run.

    ``VALID: 3 nodes agree on 8 keys; +1,234 acknowledged, 0 lost, 0 doubled, 0 lost to
    wipes; 97 idempotency keys verified one by one, 0 lost, 0 doubled; 180 reads judged, 0
    above the attempted sum, 0 ignoring an own write, 0 missing an own dot, 0 going back``
    (amounts summed over keys; the idempotency keys are counted) or
    ``INVALID: <n> errors: <the first few>; ...``.
    """
    if not verdict.valid:
        shown = "; ".join(verdict.errors[:_SUMMARY_ERRORS])
        rest = len(verdict.errors) - _SUMMARY_ERRORS
        more = f"; and {rest} more" if rest > 0 else ""
        return f"INVALID: {_plural(len(verdict.errors), 'error')}: {shown}{more}"
    final = verdict.final
    count = len(final.nodes)
    agree = "agrees" if count == 1 else "agree"
    acknowledged = sum(kv.acknowledged for kv in final.per_key.values())
    return (
        f"VALID: {_plural(count, 'node')} {agree} on {_plural(len(final.per_key), 'key')}; "
        f"+{acknowledged:,} acknowledged, {verdict.lost:,} lost, {verdict.doubled:,} doubled, "
        f"{verdict.lost_to_wipe:,} lost to wipes; "
        f"{_plural(final.verified_individually, 'idempotency key')} verified one by one, "
        f"{final.individually_lost:,} lost, {final.individually_doubled:,} doubled; "
        f"{_plural(verdict.reads, 'read')} judged, "
        f"{verdict.violations_of('above_attempted'):,} above the attempted sum, "
        f"{verdict.violations_of('ignores_own_write'):,} ignoring an own write, "
        f"{verdict.violations_of('misses_own_dot'):,} missing an own dot, "
        f"{verdict.violations_of('version_went_back'):,} going back"
    )
