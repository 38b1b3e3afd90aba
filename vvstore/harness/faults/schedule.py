"""The nemesis schedule: a pure function from a seed and options to a list of timed faults.

:func:`generate` draws faults from the menu in :data:`FAULT_KINDS` with a private
``random.Random(seed)``, so one seed and one :class:`ScheduleOptions` always give the same
:class:`Schedule`; every run prints it, and a schedule (shrunk or written by hand) can be saved
as JSON and run again as it is.

Faults run in two *lanes*, as in Jepsen's combined nemesis: one network fault and one process
fault may be active at the same time, but two faults of one lane never overlap. A wipe, a
restart from a stale copy, a restore in place and a churn need the whole cluster quiet (the
nemesis waits until the other nodes hold the victim's entries first), so they take both lanes.
Times are seconds from the start of the workload; every fault ends by ``duration`` except for
the restart that follows a kill, a wipe or a restore (and the convergence waits and restarts of
a churn's cycles), which the runner performs as soon as it can.

Five kinds are *opt-in* (:data:`OPT_IN_KINDS`: ``restore``, ``churn`` and the link faults
``slow``, ``slow_one_way`` and ``lossy``): they are on the menu and drawn when asked for
(``kinds``), but not by default, so that every seed drawn with the default kinds gives the
schedule it gave before they existed.

This module is pure: standard library only, no I/O and no clock; its only randomness is the
generator seeded from the caller's seed.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "DEFAULT_KINDS",
    "EXCLUSIVE_KINDS",
    "FAULT_KINDS",
    "LINK_KINDS",
    "MAX_CHURN_CYCLES",
    "NETWORK_KINDS",
    "OPT_IN_KINDS",
    "PROCESS_KINDS",
    "Fault",
    "Schedule",
    "ScheduleOptions",
    "generate",
    "link_options",
    "short_tier_options",
    "soak_options",
]

#: The nemesis menu: kind -> what it does.
FAULT_KINDS: dict[str, str] = {
    "isolate": "one node cut off from the other nodes and from every client",
    "split": "1|2: one node cut off from the other two; clients still reach every node",
    "bridge": "one node sees both others, which cannot see each other",
    "one_way": "bytes from one node to another are dropped; the other direction passes",
    "flap": "the link between two nodes drops and passes in turn every 0.2 to 1 s",
    "swallow": "a node's replies to clients are dropped after it has applied their requests",
    "long_partition": "a 1|2 split that lasts long",
    "kill": "kill -9 of a node under load, restarted on the same data directory",
    "pause": "SIGSTOP of a node for longer than the client timeout, then SIGCONT",
    "restore_stale": "a node restarted from a copy of its data directory taken seconds earlier",
    "wipe": "a node restarted with its data directory wiped",
    "restore": "a node's online backup restored in place (same inode) seconds later (opt-in)",
    "churn": "a node stopped, wiped and restarted as a new actor, several times (opt-in)",
    "slow": "a node's every link, both directions, slowed to a narrow, late link (opt-in)",
    "slow_one_way": "bytes from one node to another slowed; the other direction passes (opt-in)",
    "lossy": "a node's every link loses chunks at random, resetting or stalling (opt-in)",
}
NETWORK_KINDS = frozenset(
    {"isolate", "split", "bridge", "one_way", "flap", "swallow", "long_partition"}
    | {"slow", "slow_one_way", "lossy"}
)
PROCESS_KINDS = frozenset({"kill", "pause"})
EXCLUSIVE_KINDS = frozenset({"restore_stale", "wipe", "restore", "churn"})
#: On the menu, but drawn only when asked for (see the module docstring).
OPT_IN_KINDS = frozenset({"restore", "churn", "slow", "slow_one_way", "lossy"})
#: The link faults: on the menu, opt-in, and drawn together by :func:`link_options`.
LINK_KINDS: tuple[str, ...] = ("slow", "slow_one_way", "lossy")
#: What a schedule draws from unless told otherwise.
DEFAULT_KINDS: tuple[str, ...] = tuple(k for k in FAULT_KINDS if k not in OPT_IN_KINDS)
#: Most stop-wipe-restart cycles of one churn fault.
MAX_CHURN_CYCLES = 10
_TWO_NODE_KINDS = frozenset({"one_way", "flap", "slow_one_way"})

# Seconds a lane stays busy after a fault that restarts a node: the restart itself, the
# crash check, and (wipe, restore) the wait until the other nodes hold the victim's entries;
# a churn needs about that for each of its cycles.
_RESTART_MARGIN_S = 1.5
_EXCLUSIVE_MARGIN_S = 3.0
_CHURN_CYCLE_MARGIN_S = 2.5

_FORMAT = "vvstore-fault-schedule"
_VERSION = 1

Range = tuple[float, float]


def _check_range(name: str, value: Range, *, low: float = 0.0) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(x, int | float) and math.isfinite(x) for x in value)
        or not low <= value[0] <= value[1]
    ):
        raise ValueError(f"{name} must be (low, high) with {low:g} <= low <= high, got {value!r}")


@dataclass(frozen=True, slots=True)
class ScheduleOptions:
    """What :func:`generate` may draw. Validated when constructed (ValueError names the field).

    Ranges are ``(low, high)`` seconds, drawn uniformly.
    """

    # Seconds of workload; every fault ends by then (restarts may run later).
    duration: float = 15.0
    # Kinds to draw from (see FAULT_KINDS; by default all but the opt-in ones).
    kinds: tuple[str, ...] = DEFAULT_KINDS
    # The nodes' names; at least three (a bridge needs three).
    nodes: tuple[str, ...] = ("A", "B", "C")
    # (kind, relative weight) for kinds that should come up more or less often than 1.
    weights: tuple[tuple[str, float], ...] = ()
    # No fault starts before this many seconds: the cluster sees healthy traffic first.
    first: float = 1.0
    # Seconds between the starts of consecutive faults.
    gap: Range = (1.5, 3.0)
    # How long a network fault other than a long partition lasts.
    partition: Range = (1.0, 4.0)
    long_partition: Range = (4.0, 5.0)
    # How long a SIGSTOP lasts: longer than the client timeout, so clients give up and retry.
    pause: Range = (1.5, 2.5)
    # How long a killed node stays down before its restart.
    down: Range = (0.5, 2.0)
    # How old the copy a node is restored from is.
    stale_age: Range = (1.0, 3.0)
    # How long each half of a flap lasts.
    flap_period: Range = (0.2, 1.0)
    # How many stop-wipe-restart cycles a churn runs (integers, low <= high); each cycle keeps
    # the node down for a time drawn from ``down``.
    churn_cycles: tuple[int, int] = (2, 3)
    # A slow link (slow, slow_one_way): bytes per second shared by every connection in one
    # direction (250,000: 2 Mbit/s), and seconds each byte arrives late on top.
    slow_bandwidth: float = 250_000.0
    slow_latency: float = 0.04
    # A lossy link: the chance that one chunk (about one HTTP message) is lost, which resets
    # its connection or stalls it until the sender's timeout, equally likely.
    loss: float = 0.1

    def __post_init__(self) -> None:
        if not (isinstance(self.duration, int | float) and 0 < self.duration <= 7 * 24 * 3600):
            raise ValueError(f"duration must be 0 to a week in seconds, got {self.duration!r}")
        unknown = sorted(set(self.kinds) - set(FAULT_KINDS))
        if unknown or not self.kinds:
            raise ValueError(
                f"kinds must be a non-empty subset of {sorted(FAULT_KINDS)}, got unknown {unknown}"
            )
        if len(self.nodes) < 3 or len(set(self.nodes)) != len(self.nodes):
            raise ValueError(f"nodes must be three or more distinct names, got {self.nodes!r}")
        for kind, weight in self.weights:
            if kind not in FAULT_KINDS or not (isinstance(weight, int | float) and weight > 0):
                raise ValueError(f"weights must be (known kind, positive number), got {kind!r}")
        if not self.first >= 0:
            raise ValueError(f"first must be >= 0 seconds, got {self.first!r}")
        _check_range("gap", self.gap, low=0.1)
        _check_range("partition", self.partition, low=0.1)
        _check_range("long_partition", self.long_partition, low=0.1)
        _check_range("pause", self.pause, low=0.1)
        _check_range("down", self.down)
        _check_range("stale_age", self.stale_age)
        _check_range("flap_period", self.flap_period, low=0.05)
        if not (
            isinstance(self.slow_bandwidth, int | float)
            and math.isfinite(self.slow_bandwidth)
            and self.slow_bandwidth >= 1_000
        ):
            raise ValueError(
                "slow_bandwidth must be at least 1,000 bytes per second, got "
                f"{self.slow_bandwidth!r}"
            )
        if not (isinstance(self.slow_latency, int | float) and 0 <= self.slow_latency <= 1):
            raise ValueError(f"slow_latency must be 0 to 1 second, got {self.slow_latency!r}")
        if not (isinstance(self.loss, int | float) and 0 < self.loss <= 0.5):
            raise ValueError(f"loss must be above 0 and at most 0.5, got {self.loss!r}")
        cycles = self.churn_cycles
        if not (
            isinstance(cycles, tuple)
            and len(cycles) == 2
            and all(isinstance(c, int) and not isinstance(c, bool) for c in cycles)
            and 1 <= cycles[0] <= cycles[1] <= MAX_CHURN_CYCLES
        ):
            raise ValueError(
                f"churn_cycles must be (low, high) integers with 1 <= low <= high <= "
                f"{MAX_CHURN_CYCLES}, got {cycles!r}"
            )

    def weight(self, kind: str) -> float:
        return dict(self.weights).get(kind, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "duration": self.duration,
            "kinds": list(self.kinds),
            "nodes": list(self.nodes),
            "weights": {kind: weight for kind, weight in self.weights},
            "first": self.first,
            "gap": list(self.gap),
            "partition": list(self.partition),
            "long_partition": list(self.long_partition),
            "pause": list(self.pause),
            "down": list(self.down),
            "stale_age": list(self.stale_age),
            "flap_period": list(self.flap_period),
            "churn_cycles": list(self.churn_cycles),
            "slow_bandwidth": self.slow_bandwidth,
            "slow_latency": self.slow_latency,
            "loss": self.loss,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScheduleOptions:
        ranges = {"gap", "partition", "long_partition", "pause", "down", "stale_age"}
        ranges.add("flap_period")
        known = ranges | {"duration", "kinds", "nodes", "weights", "first", "churn_cycles"}
        known |= {"slow_bandwidth", "slow_latency", "loss"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown schedule options: {unknown}")
        fields: dict[str, Any] = {}
        for name, value in data.items():
            if name in ranges:
                fields[name] = tuple(float(x) for x in value)
            elif name == "churn_cycles":
                fields[name] = tuple(int(x) for x in value)
            elif name in ("kinds", "nodes"):
                fields[name] = tuple(value)
            elif name == "weights":
                fields[name] = tuple(sorted((str(k), float(w)) for k, w in value.items()))
            else:
                fields[name] = float(value)
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: what, when (seconds from the workload's start), for how long, on whom.

    ``nodes`` by kind: ``one_way`` and ``slow_one_way`` (source, destination); ``flap`` the two
    ends of the link;
    ``bridge`` the node that sees both sides; every other kind (victim,). ``duration`` is how
    long the fault lasts (``kill``: how long the node stays down; ``restore_stale`` and
    ``restore``: the age of the copy; ``wipe``: how long the node stays down; ``churn``: how
    long the node stays down in *each* cycle, and then serves clients before the next).
    ``period`` is the half-period of a flap;
    ``cycles`` the number of stop-wipe-restart cycles of a churn (0 for every other kind).
    """

    at: float
    kind: str
    duration: float
    nodes: tuple[str, ...]
    period: float = 0.0
    cycles: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if not (math.isfinite(self.at) and self.at >= 0 and self.duration >= 0):
            raise ValueError(f"a fault needs at >= 0 and duration >= 0, got {self!r}")
        wanted = 2 if self.kind in _TWO_NODE_KINDS else 1
        if len(self.nodes) != wanted or len(set(self.nodes)) != wanted:
            raise ValueError(f"{self.kind} needs {wanted} distinct node(s), got {self.nodes!r}")
        if self.kind == "flap" and not self.period > 0:
            raise ValueError("a flap needs a period > 0")
        if self.kind == "churn" and not 1 <= self.cycles <= MAX_CHURN_CYCLES:
            raise ValueError(f"a churn needs 1 to {MAX_CHURN_CYCLES} cycles, got {self.cycles!r}")
        if self.kind != "churn" and self.cycles != 0:
            raise ValueError(f"only a churn has cycles, got {self.cycles!r} for {self.kind}")

    @property
    def lanes(self) -> tuple[str, ...]:
        return _lanes(self.kind)

    @property
    def extent(self) -> float:
        """Seconds the fault itself lasts, restarts aside: ``duration``, or for a churn the
        down and up times of every cycle together."""
        return self.duration * _extent_factor(self.kind, self.cycles)

    @property
    def victim(self) -> str:
        return self.nodes[0]

    def sides(self, nodes: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """For a split or a long partition: the victim alone, and the other nodes."""
        return (self.victim,), tuple(n for n in nodes if n != self.victim)

    def describe(self, nodes: Sequence[str] = ("A", "B", "C")) -> str:
        """One line: ``t=   3.2 s  isolate A from the other nodes and from clients for 2.1 s``."""
        return f"t={self.at:6.1f} s  {self.text(nodes)}"

    def text(self, nodes: Sequence[str] = ("A", "B", "C")) -> str:
        """What the fault does, without its start time."""
        d = f"{self.duration:.1f} s"
        a = self.victim
        others = ", ".join(n for n in nodes if n != a)
        text = {
            "isolate": f"isolate {a} from the other nodes and from clients for {d}",
            "split": f"split {{{a}}} | {{{others}}} for {d} (clients reach both sides)",
            "bridge": f"bridge through {a}: {others.replace(', ', ' and ')} cannot see each "
            f"other for {d}",
            "one_way": f"one-way cut {a} -> {self.nodes[-1]} for {d}",
            "flap": f"flap {a} <-> {self.nodes[-1]} every {self.period:.2f} s for {d}",
            "swallow": f"swallow {a}'s replies to clients for {d}",
            "long_partition": f"long partition {{{a}}} | {{{others}}} for {d}",
            "kill": f"kill -9 {a}, down {d}, restart on the same data directory",
            "pause": f"SIGSTOP {a} for {d}, then SIGCONT",
            "restore_stale": f"copy {a}'s data directory; {d} later restart {a} from the copy",
            "wipe": f"wipe {a}'s data directory (down {d}) and restart it",
            "restore": f"back up {a}'s database online; {d} later stop {a}, restore the backup "
            "in place (same inode) and restart it",
            "churn": f"churn {a}: {self.cycles} x (converge, stop, wipe, down {d}, restart as a "
            f"new actor, serve {d})",
            "slow": f"slow every link of {a}, both directions, for {d}",
            "slow_one_way": f"slow bytes {a} -> {self.nodes[-1]} for {d}",
            "lossy": f"lossy links of {a} (to nodes and clients) for {d}",
        }[self.kind]
        return text

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "at": self.at,
            "kind": self.kind,
            "duration": self.duration,
            "nodes": list(self.nodes),
        }
        if self.kind == "flap":
            data["period"] = self.period
        if self.kind == "churn":
            data["cycles"] = self.cycles
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        unknown = sorted(set(data) - {"at", "kind", "duration", "nodes", "period", "cycles"})
        if unknown:
            raise ValueError(f"unknown fault fields: {unknown}")
        return cls(
            at=float(data["at"]),
            kind=str(data["kind"]),
            duration=float(data["duration"]),
            nodes=tuple(str(n) for n in data["nodes"]),
            period=float(data.get("period", 0.0)),
            cycles=int(data.get("cycles", 0)),
        )


@dataclass(frozen=True, slots=True)
class Schedule:
    """A seed, the options it was drawn with, and the faults in order of their start."""

    seed: int
    options: ScheduleOptions
    faults: tuple[Fault, ...] = field(default_factory=tuple)

    def describe(self) -> list[str]:
        """One line per fault, in order."""
        return [fault.describe(self.options.nodes) for fault in self.faults] or ["(no faults)"]

    def counts(self) -> Counter[str]:
        return Counter(fault.kind for fault in self.faults)

    def without(self, index: int) -> Schedule:
        """This schedule without its fault number ``index`` (for shrinking)."""
        return replace(self, faults=self.faults[:index] + self.faults[index + 1 :])

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "seed": self.seed,
            "options": self.options.to_dict(),
            "faults": [fault.to_dict() for fault in self.faults],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        if data.get("format") != _FORMAT:
            raise ValueError("not a vvstore fault schedule")
        if data.get("version") != _VERSION:
            raise ValueError(f"unsupported schedule version {data.get('version')!r}")
        return cls(
            seed=int(data["seed"]),
            options=ScheduleOptions.from_dict(data["options"]),
            faults=tuple(Fault.from_dict(f) for f in data["faults"]),
        )

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        return cls.from_dict(json.loads(text))


def _draw(rng: random.Random, span: Range) -> float:
    return rng.uniform(*span)


def _length_range(kind: str, options: ScheduleOptions) -> Range:
    return {
        "long_partition": options.long_partition,
        "pause": options.pause,
        "kill": options.down,
        "wipe": options.down,
        "churn": options.down,
        "restore_stale": options.stale_age,
        "restore": options.stale_age,
    }.get(kind, options.partition)


def _lanes(kind: str) -> tuple[str, ...]:
    """The lanes a fault of ``kind`` occupies while it lasts."""
    if kind in EXCLUSIVE_KINDS:
        return ("network", "process")
    return ("network",) if kind in NETWORK_KINDS else ("process",)


def _extent_factor(kind: str, cycles: int) -> int:
    """How many times its ``duration`` a fault lasts: a churn cycle is down, then up."""
    return 2 * cycles if kind == "churn" else 1


def _margin(kind: str, cycles: int) -> float:
    if kind == "churn":
        return _CHURN_CYCLE_MARGIN_S * cycles
    if kind in EXCLUSIVE_KINDS:
        return _EXCLUSIVE_MARGIN_S
    return _RESTART_MARGIN_S if kind == "kill" else 0.0


def generate(seed: int, options: ScheduleOptions | None = None) -> Schedule:
    """Draw a schedule. Deterministic: the same seed and options give the same schedule.

    Faults start ``gap`` apart, each in its lane(s) as soon as the lane is free; a fault that
    would not end by ``duration`` is shortened, or dropped when shortening would take it below
    its range's low end.
    """
    options = options or ScheduleOptions()
    rng = random.Random(seed)
    kinds = sorted(set(options.kinds))
    weights = [options.weight(kind) for kind in kinds]
    free = {"network": 0.0, "process": 0.0}
    faults: list[Fault] = []
    t = options.first
    end = options.duration
    while t < end:
        # Every draw happens on every turn, in this order, so that a schedule depends on the
        # seed and the options alone.
        kind = rng.choices(kinds, weights)[0]
        span = _length_range(kind, options)
        length = _draw(rng, span)
        first_node, second_node = rng.sample(list(options.nodes), 2)
        period = _draw(rng, options.flap_period) if kind == "flap" else 0.0
        # Drawn for a churn only, so schedules without one are those drawn before churns were.
        cycles = rng.randint(*options.churn_cycles) if kind == "churn" else 0
        gap = _draw(rng, options.gap)
        lanes = _lanes(kind)
        start = max(t, *(free[lane] for lane in lanes))
        length = min(length, (end - start) / _extent_factor(kind, cycles))
        if length < span[0] or length < 2 * period:
            t += gap
            continue
        nodes = (first_node, second_node) if kind in _TWO_NODE_KINDS else (first_node,)
        fault = Fault(start, kind, length, nodes, period, cycles)
        faults.append(fault)
        for lane in lanes:
            free[lane] = start + fault.extent + _margin(kind, cycles)
        t = start + gap
    return Schedule(seed, options, tuple(faults))


def short_tier_options(duration: float = 15.0) -> ScheduleOptions:
    """The CI tier's options: every kind, faults 1 to 2.5 s apart, partitions of at most 5 s."""
    return ScheduleOptions(
        duration=duration,
        gap=(1.0, 2.5),
        partition=(1.0, 3.0),
        long_partition=(4.0, 5.0),
        pause=(1.5, 2.5),
        down=(0.5, 1.5),
        stale_age=(1.0, 2.5),
    )


def link_options(duration: float = 15.0, *, kinds: tuple[str, ...] = LINK_KINDS) -> ScheduleOptions:
    """The short tier's options drawing link faults (by default only those), twice as often as
    any other kind named in ``kinds``."""
    return replace(
        short_tier_options(duration),
        kinds=kinds,
        weights=tuple(sorted((kind, 2.0) for kind in LINK_KINDS if kind in kinds)),
    )


def soak_options(minutes: float) -> ScheduleOptions:
    """The soak's options: a fault every 5 to 10 s, long partitions of 10 to 30 s, and kills
    three times as often as any other kind (the soak must check at least 20 of them)."""
    return ScheduleOptions(
        duration=minutes * 60.0,
        first=5.0,
        weights=(("kill", 3.0),),
        gap=(5.0, 10.0),
        partition=(1.0, 5.0),
        long_partition=(10.0, 30.0),
        pause=(1.5, 5.0),
        down=(0.5, 3.0),
        stale_age=(2.0, 5.0),
    )
