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
  as an error (a ``fail`` applied nothing and needs no retry).

Reads are recorded but not judged: with multi-master writes a read at one node may legitimately
miss adds acknowledged by another, so only the converged values are held to account.

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
    "History",
    "KeyVerdict",
    "Op",
    "OpFunction",
    "OpType",
    "Verdict",
    "check",
    "summarize",
]

OpType = Literal["invoke", "ok", "fail", "info"]
OpFunction = Literal["add", "read"]

_OP_TYPES: frozenset[str] = frozenset(get_args(OpType))
_OP_FUNCTIONS: frozenset[str] = frozenset(get_args(OpFunction))
_COMPLETIONS: frozenset[str] = _OP_TYPES - {"invoke"}

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
    not by ``time``. The constructor checks field types and raises ValueError.
    """

    process: int
    type: OpType
    f: OpFunction
    key: str
    value: int | None
    node: str
    time: float
    idempotency_key: str | None = None

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

    def to_dict(self) -> dict[str, Any]:
        """Return the op as a JSON-friendly dict (the inverse of :meth:`from_dict`)."""
        return {
            "process": self.process,
            "type": self.type,
            "f": self.f,
            "key": self.key,
            "value": self.value,
            "node": self.node,
            "time": self.time,
            "idempotency_key": self.idempotency_key,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Op:
        """Build an op from :meth:`to_dict` output; unknown or missing fields raise ValueError."""
        fields = {"process", "type", "f", "key", "value", "node", "time", "idempotency_key"}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown op fields: {sorted(unknown)}")
        missing = fields - {"idempotency_key"} - set(data)
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
        )


@dataclass(frozen=True, slots=True)
class KeyVerdict:
    """What the history allows for one key and what the nodes hold.

    ``acknowledged`` and ``indefinite`` are sums of add amounts over operations (an ``info``
    completion or a missing completion is indefinite; ``fail`` counts nowhere). ``value`` is
    None when the nodes disagree; ``lost`` and ``doubled`` are then the worst over the nodes.
    ``expected`` is only set in exact mode, where ``lost`` and ``doubled`` are measured against
    it instead of the bounds; the op-level bounds are then reported but not enforced, since an
    idempotency key acknowledged twice counts twice in them and once in ``expected``.
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
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of :func:`check`. ``valid`` is true exactly when ``errors`` is empty."""

    valid: bool
    nodes_agree: bool
    exact: bool
    nodes: tuple[str, ...]
    per_key: dict[str, KeyVerdict]
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict as a JSON-friendly dict."""
        return {
            "valid": self.valid,
            "nodes_agree": self.nodes_agree,
            "exact": self.exact,
            "nodes": list(self.nodes),
            "per_key": {key: kv.to_dict() for key, kv in self.per_key.items()},
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
    outstanding: dict[int, tuple[int, Op]] = {}
    completed: dict[int, Op | None] = {}
    invokes: list[tuple[int, Op]] = []
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
            invokes.append((index, op))
            completed[index] = None
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
        completed[start] = op
    return [(index, invoke, completed[index]) for index, invoke in invokes]


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
    key: str, tally: _KeyTally, readings: dict[str, int], *, exact: bool
) -> tuple[KeyVerdict, list[str]]:
    """Compare one key's readings (node -> value, the reference node first) with its tally."""
    errors: list[str] = []
    reference = next(iter(readings))
    agree = len(set(readings.values())) == 1
    errors.extend(
        f"key {key!r}: node {node} reads {value} but node {reference} reads {readings[reference]}"
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
                f"key {key!r}: {_plural(len(unacked), 'idempotency key')} never acknowledged "
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

    lost = doubled = 0
    judged: set[int] = set()
    for node, value in readings.items():
        # Judge each distinct reading once; when the nodes disagree, name the node.
        if value in judged:
            continue
        judged.add(value)
        subject = f"value {value}" if agree else f"node {node}'s value {value}"
        if value < lowest:
            lost = max(lost, lowest - value)
            errors.append(f"key {key!r}: {subject} is below {low_basis} ({lowest - value} lost)")
        if value > highest:
            doubled = max(doubled, value - highest)
            errors.append(
                f"key {key!r}: {subject} is above {high_basis} ({value - highest} doubled)"
            )

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
    )
    return verdict, errors


def check(
    history: Sequence[Op],
    final_state: Mapping[str, Mapping[str, int]],
    *,
    exact: bool = False,
) -> Verdict:
    """Check a history of adds and reads against the converged state of every node.

    :param history: the ops in the order they happened (see :class:`History`).
    :param final_state: node name -> {key: value}, read from every node after convergence.
        A key missing on a node reads 0; a key present but never added to must read 0.
    :param exact: require ``value == expected`` (distinct acknowledged idempotency keys)
        instead of the bounds; every add must then carry an idempotency key, and one idempotency
        key must always carry the same amount on one key.
    :returns: a :class:`Verdict`; errors name the key and, when nodes disagree, the node.
        Disagreeing nodes are named against the first node in sorted order.
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
    errors: list[str] = []
    for key in sorted(_final_keys(final_state) | set(tallies)):
        readings = {node: final_state[node].get(key, 0) for node in nodes}
        verdict, key_errors = _judge_key(key, tallies.get(key, _KeyTally()), readings, exact=exact)
        per_key[key] = verdict
        errors.extend(key_errors)
    return Verdict(
        valid=not errors,
        nodes_agree=all(kv.value is not None for kv in per_key.values()),
        exact=exact,
        nodes=nodes,
        per_key=per_key,
        errors=errors,
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

    def complete(self, invoke_op: Op, type: OpType, time: float, value: int | None = None) -> Op:
        """Record the completion of ``invoke_op`` and return it.

        For an add the completion carries the invoke's amount when ``value`` is None; for a
        read, pass the value read with ``ok``.
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
