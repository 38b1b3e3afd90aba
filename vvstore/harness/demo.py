"""The partition-and-heal demo: real nodes, a fault proxy, a workload and a verdict.

``vvstore demo`` (and ``python demo/partition_heal.py``, the same code) starts ``--nodes`` real
``vvstore serve`` processes on loopback, routes every node-to-node link through a
:class:`~vvstore.harness.proxy.FaultProxy` and runs three phases:

1. **healthy**: concurrent clients add to a few keys on every node, then the nodes converge;
2. **partition** ``{A} | {B, C, ...}``: the proxy blackholes every link between the two sides
   while the clients keep adding, each on its own side; the sides' version vectors become
   concurrent and their values differ;
3. **heal**: the proxy passes traffic again and the demo times how long the nodes take to agree.

Every add is recorded in a :class:`~vvstore.harness.checker.History` (invoke, then ok, fail or
info, with its idempotency key) and the converged values are judged by
:func:`~vvstore.harness.checker.check`:
after the heal the demo retries every indefinite add with its idempotency key until it is
acknowledged, so the verdict is exact by default: every key's value equals the sum over its
distinct acknowledged idempotency keys (``--bounds`` judges by ``acknowledged <= value <=
acknowledged + indefinite`` instead). Exit status: 0 the verdict holds, 1 it does not, 2 the
demo could not run (a node did not start, say).

The nodes never learn that they are partitioned: their bytes simply stop arriving, as on a real
network. Clients talk to the nodes directly, not through the proxy, so a partition never fails a
client's add; the clients do not cross the partition either, so both sides keep accepting
writes.

This module is an orchestration shell over :mod:`vvstore.harness.launcher`,
:mod:`vvstore.harness.proxy`,
:mod:`vvstore.client` and :mod:`vvstore.harness.checker`. It must never signal a process it did not
start, write to a node it did not start, listen on anything but loopback, or return (even on
Ctrl-C) with a node or the proxy still running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, TextIO

from vvstore.actor import node_of
from vvstore.client import Client, Sibling
from vvstore.clock import Ordering, VersionVector
from vvstore.errors import VVStoreError
from vvstore.harness.checker import History, Op, Verdict, check, summarize
from vvstore.harness.cluster import Cluster, NodeDidNotStart, PortsBusy

__all__ = [
    "DESCRIPTION",
    "CounterReading",
    "DemoOptions",
    "DemoResult",
    "NodeInfo",
    "NodeState",
    "PhaseResult",
    "Report",
    "TextReport",
    "add_arguments",
    "main",
    "options_from_args",
    "run",
    "run_args",
    "run_demo",
]

NODE_NAMES = ("A", "B", "C", "D", "E")

# Anti-entropy settings of the demo's nodes: short, so that a heal converges in well under a
# second; a real deployment keeps the defaults (1 s and 2 s) and trades latency for traffic.
SYNC_INTERVAL_S = 0.2
BACKOFF_CAP_S = 0.5

# Amounts are positive so that the checker's bounds are meaningful: a lost add can only lower
# the value and a doubled one only raise it.
MAX_AMOUNT = 5

START_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_S = 5.0
# How often convergence is polled; the convergence time is measured to this granularity.
POLL_INTERVAL_S = 0.05
# Final retries of indefinite adds: process numbers of their own, and attempts per add.
RETRY_PROCESS_BASE = 1_000_000
RETRY_ATTEMPTS = 20
# Log lines quoted when a node fails.
LOG_TAIL_LINES = 20
# Characters of an error message kept in the report.
ERROR_CHARS = 120
# A plain (not a terminal) progress line is printed at most this often.
PLAIN_PROGRESS_EVERY_S = 1.0

DESCRIPTION = (
    "Start real vvstore nodes on loopback behind a fault proxy, partition and heal them under "
    "concurrent increments, and check the converged values. Exit status: 0 the verdict holds, "
    "1 it does not, 2 the demo could not run."
)

_JSON_FORMAT = "vvstore-demo"
_JSON_VERSION = 1


# --- options ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What one demo run does. Validated when constructed (ValueError names the field).

    Each field but ``converge_timeout`` is one ``vvstore demo`` flag (``exact`` is
    ``--bounds``, inverted).
    """

    # Nodes, named A, B, C, ...; the partition is {A} | {the rest}.
    nodes: int = 3
    # Keys the clients add to, named k1, k2, ...
    keys: int = 4
    # Concurrent clients; client i lives next to node i mod nodes (its side of the partition).
    clients: int = 6
    # Adds across the healthy and partition phases, half in each.
    increments: int = 300
    # Seconds the partition lasts; the partition's adds are spread over it.
    partition_seconds: float = 3.0
    # Seeds the workload plan (which client adds what amount to which key on which node).
    seed: int = 7
    # Port of node A (B gets port + 1, ...); 0 picks free ports.
    port: int = 0
    # Print one JSON document instead of the tables.
    json: bool = False
    # Keep the data directories and logs, and print where they are.
    keep: bool = False
    # Judge value == the sum over distinct acknowledged idempotency keys (after the heal the
    # demo retries every indefinite add with its key until it is acknowledged); False: judge by
    # acknowledged <= value <= acknowledged + indefinite.
    exact: bool = True
    # Seconds to wait for the nodes to agree, in each phase.
    converge_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not 2 <= self.nodes <= len(NODE_NAMES):
            raise ValueError(f"nodes must be 2 to {len(NODE_NAMES)}, got {self.nodes}")
        if not 1 <= self.keys <= 100:
            raise ValueError(f"keys must be 1 to 100, got {self.keys}")
        if not 2 <= self.clients <= 100:
            # One client per side at least, or one side of the partition sees no writes.
            raise ValueError(f"clients must be 2 to 100, got {self.clients}")
        if not 2 * self.clients <= self.increments <= 1_000_000:
            raise ValueError(
                f"increments must be 2 * clients ({2 * self.clients}) to 1,000,000, so that "
                f"every client adds in both phases; got {self.increments}"
            )
        if not 0.1 <= self.partition_seconds <= 600:
            raise ValueError(f"partition seconds must be 0.1 to 600, got {self.partition_seconds}")
        if self.port != 0 and not 1024 <= self.port <= 65535 - (self.nodes - 1):
            raise ValueError(
                f"port must be 0 (free ports) or 1024 to {65535 - (self.nodes - 1)}, "
                f"got {self.port}"
            )
        if not self.converge_timeout > 0:
            raise ValueError(f"converge timeout must be positive, got {self.converge_timeout}")

    @property
    def names(self) -> tuple[str, ...]:
        return NODE_NAMES[: self.nodes]

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(f"k{i}" for i in range(1, self.keys + 1))

    @property
    def groups(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The two sides of the partition: the first node alone, and the rest."""
        return self.names[:1], self.names[1:]


# --- what a run observed ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CounterReading:
    """One key as one node reads it: value, the key's vector, and one sibling per actor."""

    value: int
    version: dict[str, int]
    siblings: tuple[Sibling, ...]

    def to_dict(self) -> dict[str, Any]:
        # Each sibling as the node sent it.
        return {
            "value": self.value,
            "version": self.version,
            "siblings": [sibling.raw for sibling in self.siblings],
        }


@dataclass(frozen=True, slots=True)
class NodeState:
    """What one node reported at one moment: its actor, its vector and every demo key."""

    node: str
    actor: str
    version: dict[str, int]
    counters: dict[str, CounterReading]

    def values(self) -> dict[str, int]:
        return {key: reading.value for key, reading in self.counters.items()}

    def vector(self) -> VersionVector:
        return VersionVector.from_dict(self.version)

    def agrees_with(self, other: NodeState) -> bool:
        return self.version == other.version and self.values() == other.values()

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "actor": self.actor,
            "version": self.version,
            "counters": {key: reading.to_dict() for key, reading in self.counters.items()},
        }


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node process of the run."""

    node: str
    url: str
    pid: int | None
    actor: str | None = None
    exit_status: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class PhaseResult:
    """One phase: its adds, whether (and how fast) the nodes agreed, and their states.

    ``convergence_ms`` counts from the end of the phase's adds (healthy), from the end of the
    partition's length for agreement within each side (partition), or from the heal (heal); it
    is measured when the poll that found agreement returned, so it is an upper bound with the
    granularity of :data:`POLL_INTERVAL_S`; None when the nodes did not agree in time.
    """

    name: str
    groups: list[list[str]]
    seconds: float = 0.0
    completions: dict[str, int] = field(default_factory=dict)
    amounts: dict[str, int] = field(default_factory=dict)
    # "ErrorClass: message" -> how many adds ended with it (fail or info)
    errors: dict[str, int] = field(default_factory=dict)
    converged: bool = False
    convergence_ms: float | None = None
    states: list[NodeState] = field(default_factory=list)
    dropped_bytes: int = 0

    def relations(self) -> list[dict[str, str]]:
        """How every pair of nodes' vectors relate (before, after, equal, concurrent)."""
        return [
            {"a": a.node, "b": b.node, "ordering": a.vector().compare(b.vector()).value}
            for a, b in combinations(self.states, 2)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "groups": self.groups,
            "seconds": round(self.seconds, 3),
            "completions": self.completions,
            "amounts": self.amounts,
            "errors": self.errors,
            "converged": self.converged,
            "convergence_ms": _round_ms(self.convergence_ms),
            "dropped_bytes": self.dropped_bytes,
            "nodes": [state.to_dict() for state in self.states],
            "relations": self.relations(),
        }


@dataclass(slots=True)
class DemoResult:
    """The whole run. ``exit_code``: 0 the verdict holds, 1 it does not, 2 could not run."""

    options: DemoOptions
    nodes: list[NodeInfo] = field(default_factory=list)
    phases: list[PhaseResult] = field(default_factory=list)
    history: History = field(default_factory=History)
    verdict: Verdict | None = None
    exit_code: int = 2
    # Why the verdict failed or the demo could not run; None when all is well.
    reason: str | None = None
    # The failing node's last log lines, when a node is to blame.
    log_tail: str | None = None
    wall_seconds: float = 0.0
    workdir: str | None = None
    proxy: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def phase(self, name: str) -> PhaseResult | None:
        return next((phase for phase in self.phases if phase.name == name), None)

    def figures(self) -> dict[str, Any]:
        """The closing line's numbers: completions and amounts over the run, and the heal."""
        completions, amounts = _tally(self.history.ops)
        keys = self.verdict.per_key.values() if self.verdict is not None else ()
        heal = self.phase("heal")
        return {
            "nodes": self.options.nodes,
            "keys": self.options.keys,
            "acknowledged": completions["ok"],
            "indefinite": completions["info"],
            "failed": completions["fail"],
            "acknowledged_amount": amounts["ok"],
            "indefinite_amount": amounts["info"],
            "lost": sum(kv.lost for kv in keys),
            "doubled": sum(kv.doubled for kv in keys),
            "heal_convergence_ms": _round_ms(heal.convergence_ms if heal is not None else None),
            "wall_seconds": round(self.wall_seconds, 2),
        }

    def closing_line(self) -> str:
        """One line: the verdict and the figures."""
        if self.exit_code == 2:
            return f"DEMO COULD NOT RUN: {self.reason}"
        f = self.figures()
        heal_ms = f["heal_convergence_ms"]
        converged = (
            f"converged {heal_ms:,.0f} ms after heal"
            if heal_ms is not None
            else "did not converge after heal"
        )
        figures = (
            f"{f['acknowledged']:,} increments acknowledged (+{f['acknowledged_amount']:,}), "
            f"{f['indefinite']:,} indefinite (+{f['indefinite_amount']:,}), "
            f"{f['failed']:,} failed; {f['lost']:,} lost, {f['doubled']:,} doubled; "
            f"{converged}; {f['wall_seconds']:.1f} s in all"
        )
        if self.ok:
            agree = f"{f['nodes']} nodes agree on {f['keys']} keys"
            return f"VERDICT ok: {agree}; {figures}"
        return f"VERDICT FAILED: {self.reason}; {figures}"

    def to_dict(self) -> dict[str, Any]:
        """The whole run as one JSON-friendly document (what ``--json`` prints)."""
        return {
            "format": _JSON_FORMAT,
            "version": _JSON_VERSION,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "log_tail": self.log_tail,
            "options": asdict(self.options),
            "nodes": [node.to_dict() for node in self.nodes],
            "phases": [phase.to_dict() for phase in self.phases],
            "history": json.loads(self.history.to_json()),
            "verdict": self.verdict.to_dict() if self.verdict is not None else None,
            "summary": summarize(self.verdict) if self.verdict is not None else None,
            "figures": self.figures(),
            "proxy": self.proxy,
            "workdir": self.workdir,
            "closing_line": self.closing_line(),
        }


def _round_ms(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 1)


def _tally(ops: Sequence[Op]) -> tuple[Counter[str], Counter[str]]:
    """Completions of adds by type, and their amounts by type."""
    completions: Counter[str] = Counter({"ok": 0, "fail": 0, "info": 0})
    amounts: Counter[str] = Counter({"ok": 0, "fail": 0, "info": 0})
    for op in ops:
        if op.type != "invoke" and op.f == "add":
            completions[op.type] += 1
            amounts[op.type] += op.value or 0
    return completions, amounts


class _CouldNotRun(Exception):
    """The demo itself failed (exit 2), as opposed to the system it demonstrates (exit 1)."""

    def __init__(self, reason: str, log_tail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_tail = log_tail


# --- the report ------------------------------------------------------------------------------


class Report:
    """Receives the run's events; this base class ignores them (tests, ``--json``)."""

    def header(self, options: DemoOptions) -> None:
        """The run is about to start."""

    def nodes_ready(self, nodes: Sequence[NodeInfo]) -> None:
        """Every node answered its health check."""

    def phase_started(self, number: int, title: str) -> None:
        """A phase begins."""

    def progress(self, text: str) -> None:
        """Something is being waited for; ``text`` replaces the previous progress text."""

    def adds_progress(self, done: int, total: int) -> None:
        """Another add of the current phase completed."""

    def phase_finished(self, phase: PhaseResult) -> None:
        """A phase ended; its states are final."""

    def finished(self, result: DemoResult) -> None:
        """The run is over and every process is stopped."""


class _Style:
    """ANSI colours, or plain text when ``enabled`` is false."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)


def _short_actor(actor: str) -> str:
    """``A~661ad8f904446a49`` -> ``A~661a``: enough to tell actors apart in a table."""
    node = node_of(actor)
    # The node id, the separator and four hex digits; anything not an actor id stays whole.
    return actor[: len(node) + 5] if node != actor else actor


def _vector_text(version: Mapping[str, int]) -> str:
    return " ".join(f"{_short_actor(actor)}:{count}" for actor, count in sorted(version.items()))


class TextReport(Report):
    """Tables per phase, a progress line while waiting and one closing line.

    Colour and in-place progress only on a terminal; colour also not when NO_COLOR is set.
    Problems (a node that failed, its log) go to ``err``.
    """

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        tty = out.isatty()
        self.in_place = tty
        self.style = _Style(tty and not os.environ.get("NO_COLOR"))
        self._progress_width = 0
        self._last_plain = -PLAIN_PROGRESS_EVERY_S
        defaults = DemoOptions()
        self._timeout = defaults.converge_timeout
        self._partition = defaults.partition_seconds

    def _print(self, text: str = "") -> None:
        self._clear_progress()
        print(text, file=self.out, flush=True)
        # Plain progress lines only fill silences of a second or more.
        self._last_plain = time.monotonic()

    def _clear_progress(self) -> None:
        if self._progress_width:
            self.out.write("\r" + " " * self._progress_width + "\r")
            self._progress_width = 0

    def header(self, options: DemoOptions) -> None:
        self._timeout = options.converge_timeout
        self._partition = options.partition_seconds
        groups = " | ".join("{" + ", ".join(group) + "}" for group in options.groups)
        self._print(
            self.style.bold("vvstore demo")
            + f": {options.nodes} nodes, {options.keys} keys, {options.clients} clients, "
            f"{options.increments:,} increments, partition {groups} for "
            f"{options.partition_seconds:g} s, seed {options.seed}"
        )

    def nodes_ready(self, nodes: Sequence[NodeInfo]) -> None:
        self._print()
        self._print("Started (every node-to-node link passes through the fault proxy):")
        for node in nodes:
            actor = _short_actor(node.actor or "?")
            self._print(f"  {node.node}  {node.url}  actor {actor}  pid {node.pid}")

    def phase_started(self, number: int, title: str) -> None:
        self._print()
        self._print(self.style.bold(f"{number}. {title}"))

    def progress(self, text: str) -> None:
        if self.in_place:
            line = f"   {text}"
            pad = max(0, self._progress_width - len(line))
            self.out.write("\r" + line + " " * pad)
            self.out.flush()
            self._progress_width = len(line)
            return
        if time.monotonic() - self._last_plain >= PLAIN_PROGRESS_EVERY_S:
            self._print(f"   {text}")

    def adds_progress(self, done: int, total: int) -> None:
        # Only in place: a plain line per second of adds would bury the tables in a log. An add
        # is activity, so the plain progress of a wait that follows starts a second later.
        if self.in_place:
            self.progress(f"adds {done:,}/{total:,}")
        else:
            self._last_plain = time.monotonic()

    def phase_finished(self, phase: PhaseResult) -> None:
        s = self.style
        done = phase.completions
        if phase.name != "heal":
            self._print(
                f"   adds: {done.get('ok', 0):,} acknowledged, "
                f"{done.get('info', 0):,} indefinite, {done.get('fail', 0):,} failed"
            )
        for error, count in list(phase.errors.items())[:3]:
            self._print(s.red(f"   {count:,} x {error}"))
        if phase.name == "partition":
            self._print(
                f"   the proxy dropped {phase.dropped_bytes:,} bytes of node traffic between "
                "the sides"
            )
        subject, since = {
            "healthy": ("the nodes", "after the last add"),
            "partition": ("each side", f"after the partition's {self._partition:g} s were up"),
            "heal": ("the nodes", "after heal"),
        }[phase.name]
        if phase.convergence_ms is not None:
            line = f"   {subject} converged {phase.convergence_ms:,.0f} ms {since}"
            self._print(s.green(line))
        else:
            line = f"   {subject} did NOT converge within {self._timeout:g} s {since}"
            self._print(s.red(line))
        self._table(phase)
        if phase.name == "partition":
            self._partition_notes(phase)
        elif phase.converged and phase.states:
            self._print(s.green("   every node reads the same values and the same vector"))

    def _table(self, phase: PhaseResult) -> None:
        s = self.style
        if not phase.states:
            return
        keys = list(phase.states[0].counters)
        header = ["node", *keys, "total", "version vector"]
        rows = [
            [
                state.node,
                *(f"{state.counters[key].value:,}" for key in keys),
                f"{sum(state.values().values()):,}",
                _vector_text(state.version),
            ]
            for state in phase.states
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        numeric = range(1, len(header) - 1)

        def cell(i: int, text: str) -> str:
            return text.rjust(widths[i]) if i in numeric else text.ljust(widths[i])

        self._print("   " + s.dim("  ".join(cell(i, h) for i, h in enumerate(header)).rstrip()))
        for row in rows:
            cells = [cell(i, text) for i, text in enumerate(row)]
            for i, key in enumerate(keys, start=1):
                others = {other.counters[key].value for other in phase.states}
                if len(others) > 1:
                    cells[i] = s.yellow(cells[i])
            cells[-1] = s.dim(cells[-1].rstrip())
            self._print(("   " + "  ".join(cells)).rstrip())

    def _partition_notes(self, phase: PhaseResult) -> None:
        s = self.style
        key = next(iter(phase.states[0].counters))
        self._print(f"   siblings of {key} (one entry per actor that added to it; value = sum):")
        for state in phase.states:
            reading = state.counters[key]
            entries = "  ".join(
                f"{_short_actor(sib.actor)}#{sib.seq}={sib.value}" for sib in reading.siblings
            )
            self._print(f"     {state.node}  {entries or '-'}  -> {reading.value:,}")
        first = phase.states[0]
        for other in phase.states[1:]:
            ordering = first.vector().compare(other.vector())
            text = f"   vectors of {first.node} and {other.node}: {ordering.value}"
            if ordering is Ordering.CONCURRENT:
                text += " (each has seen adds the other has not)"
            self._print(s.yellow(text) if ordering is Ordering.CONCURRENT else text)

    def finished(self, result: DemoResult) -> None:
        s = self.style
        self._clear_progress()
        if result.workdir is not None:
            self._print(f"\nData directories and logs kept in {result.workdir}")
        if result.exit_code == 2:
            print(f"vvstore demo: could not run: {result.reason}", file=self.err)
            if result.log_tail:
                print(result.log_tail, file=self.err)
            return
        self._print()
        line = result.closing_line()
        self._print(s.bold(s.green(line)) if result.ok else s.bold(s.red(line)))
        if result.verdict is not None and not result.verdict.valid:
            for error in result.verdict.errors:
                self._print(s.red(f"  {error}"))


# --- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Add:
    key: str
    amount: int
    node: str


def _plan(
    rng: random.Random,
    options: DemoOptions,
    count: int,
    nodes_for: Callable[[int], Sequence[str]],
) -> list[list[_Add]]:
    """Each client's adds for one phase: ``count`` adds split as evenly as possible."""
    keys = options.key_names
    plan: list[list[_Add]] = []
    for client in range(options.clients):
        share = count // options.clients + (1 if client < count % options.clients else 0)
        nodes = nodes_for(client)
        plan.append(
            [
                _Add(rng.choice(keys), rng.randint(1, MAX_AMOUNT), rng.choice(nodes))
                for _ in range(share)
            ]
        )
    return plan


class _Run:
    """One demo run's moving parts; :func:`run_demo` owns its lifecycle."""

    def __init__(self, options: DemoOptions, report: Report, result: DemoResult) -> None:
        self.options = options
        self.report = report
        self.result = result
        self.loop = asyncio.get_running_loop()
        self.workdir = Path(tempfile.mkdtemp(prefix="vvstore-demo-"))
        base = options.port
        self.cluster = Cluster(
            self.workdir,
            options.names,
            ports={name: base + i if base else 0 for i, name in enumerate(options.names)},
            client_links=False,
            sync_interval=SYNC_INTERVAL_S,
            backoff_cap=BACKOFF_CAP_S,
            start_timeout=START_TIMEOUT_S,
        )
        self.proxy = self.cluster.proxy
        self.clients: dict[str, Client] = {}
        self.rng = random.Random(options.seed)
        self.began = self.loop.time()
        # Why adds of the current phase failed; moved into the phase when it ends.
        self.errors: Counter[str] = Counter()

    def now(self) -> float:
        """Seconds since the run began: the times recorded in the history."""
        return self.loop.time() - self.began

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.cluster.start()
        except PortsBusy as exc:
            raise _CouldNotRun(f"{exc}; use --port 0 for free ports, or another --port") from None
        except NodeDidNotStart as exc:
            # The launcher's line says what happened, the log's last line (the exception,
            # usually) says why.
            process = self.cluster.processes[exc.name]
            why = process.log().strip().splitlines()[-1:] or ["(empty log)"]
            raise _CouldNotRun(
                f"{exc.what.rstrip(':')}: {why[0]}", self._log_tail(exc.name)
            ) from None
        processes = self.cluster.processes
        self.clients = {
            name: Client(p.url, timeout=REQUEST_TIMEOUT_S) for name, p in processes.items()
        }
        statuses = await asyncio.gather(*(c.status() for c in self.clients.values()))
        self.result.nodes = [
            NodeInfo(name, p.url, p.pid, status.actor)
            for (name, p), status in zip(processes.items(), statuses, strict=True)
        ]
        self.report.nodes_ready(self.result.nodes)

    def _log_tail(self, name: str) -> str:
        return self.cluster.log_tail(name, LOG_TAIL_LINES)

    async def close(self) -> None:
        """Stop everything this run started; safe to call after any failure."""
        try:
            for client in self.clients.values():
                await client.close()
            codes = await self.cluster.close()
            actors = {node.node: node.actor for node in self.result.nodes}
            self.result.nodes = [
                NodeInfo(name, p.url, p.pid, actors.get(name), codes.get(name))
                for name, p in self.cluster.processes.items()
            ]
        finally:
            if self.options.keep:
                self.result.workdir = str(self.workdir)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def check_alive(self) -> None:
        for name, process in self.cluster.processes.items():
            if not process.running():
                assert process.process is not None
                code = process.process.poll()
                raise _CouldNotRun(
                    f"node {name} exited unexpectedly (status {code})", self._log_tail(name)
                )

    # -- workload -----------------------------------------------------------------------------

    async def _client(
        self,
        phase: str,
        process: int,
        adds: Sequence[_Add],
        done: Callable[[], None],
        spread_over: float | None,
    ) -> None:
        """Run one client's adds in order, recording each in the history.

        Every add carries its own idempotency key, recorded with it, so that the client's
        retries of an indefinite add are counted once and exact mode can judge the history.

        With ``spread_over`` the adds are paced evenly over that many seconds, so that the
        partition sees writes throughout; pacing shapes the workload, it synchronises nothing.
        """
        start = self.loop.time()
        history = self.result.history
        for index, add in enumerate(adds):
            if spread_over is not None:
                due = start + spread_over * index / len(adds)
                await asyncio.sleep(max(0.0, due - self.loop.time()))
            idempotency_key = f"{phase}-c{process}-{index}"
            op = history.invoke(
                process, "add", add.key, add.amount, add.node, self.now(), idempotency_key
            )
            try:
                await self.clients[add.node].increment(
                    add.key, add.amount, idempotency_key=idempotency_key
                )
            except VVStoreError as exc:
                history.complete(op, "fail" if exc.definite else "info", self.now())
                # One line per distinct error, however the node formatted its message.
                message = " ".join(exc.message.split())[:ERROR_CHARS]
                self.errors[f"{type(exc).__name__}: {message}"] += 1
            else:
                history.complete(op, "ok", self.now())
            done()

    async def workload(self, phase: str, plan: list[list[_Add]], spread_over: float | None) -> None:
        total = sum(len(adds) for adds in plan)
        finished = 0

        def done() -> None:
            nonlocal finished
            finished += 1
            self.report.adds_progress(finished, total)

        await asyncio.gather(
            *(self._client(phase, i, adds, done, spread_over) for i, adds in enumerate(plan))
        )

    # -- observation --------------------------------------------------------------------------

    async def read_state(self, name: str) -> NodeState | None:
        """One node's state, or None when it did not answer."""
        client = self.clients[name]
        keys = self.options.key_names
        try:
            # The vector first: values read after it include at least the entries it counts,
            # so nodes that agree on both vector and values hold the same entries.
            status = await client.status()
            replies = await asyncio.gather(*(client.get(key) for key in keys))
        except VVStoreError:
            return None
        return NodeState(
            node=name,
            actor=status.actor,
            version=status.version,
            counters={
                key: CounterReading(reply.value, reply.version, reply.siblings)
                for key, reply in zip(keys, replies, strict=True)
            },
        )

    async def wait_agreement(
        self, groups: Sequence[Sequence[str]], label: str
    ) -> tuple[bool, float, list[NodeState]]:
        """Poll until the nodes of each group agree, or the deadline passes.

        Returns whether they agreed, the seconds it took and the last states read (in node
        order). A node process that dies meanwhile ends the run (exit 2).
        """
        start = self.loop.time()
        deadline = start + self.options.converge_timeout
        names = [name for group in groups for name in group]
        while True:
            read = await asyncio.gather(*(self.read_state(name) for name in names))
            states = {state.node: state for state in read if state is not None}
            agreeing = 0
            for group in groups:
                present = [states[name] for name in group if name in states]
                largest = max(
                    (sum(1 for other in present if s.agrees_with(other)) for s in present),
                    default=0,
                )
                agreeing += largest
            elapsed = self.loop.time() - start
            if agreeing == len(names):
                return True, elapsed, [states[name] for name in names]
            self.check_alive()
            if self.loop.time() >= deadline:
                silent = [name for name in names if name not in states]
                if silent:
                    raise _CouldNotRun(
                        f"node {silent[0]} did not answer reads for "
                        f"{self.options.converge_timeout:g} s",
                        self._log_tail(silent[0]),
                    )
                return False, elapsed, [states[name] for name in names]
            self.report.progress(
                f"{label}: {elapsed:.1f} s, {agreeing} of {len(names)} nodes agree"
            )
            await asyncio.sleep(POLL_INTERVAL_S)

    # -- phases -------------------------------------------------------------------------------

    def _phase_tally(self, phase: PhaseResult, first_op: int) -> None:
        completions, amounts = _tally(self.result.history.ops[first_op:])
        phase.completions = dict(completions)
        phase.amounts = dict(amounts)
        phase.errors = dict(self.errors.most_common())
        self.errors.clear()

    async def healthy(self) -> PhaseResult:
        options = self.options
        names = options.names
        count = options.increments // 2
        self.report.phase_started(
            1, f"Healthy: {options.clients} clients add {count:,} increments on every node"
        )
        phase = PhaseResult("healthy", [list(names)])
        plan = _plan(self.rng, options, count, lambda _client: names)
        first_op, start = len(self.result.history.ops), self.loop.time()
        await self.workload(phase.name, plan, spread_over=None)
        self._phase_tally(phase, first_op)
        phase.converged, seconds, phase.states = await self.wait_agreement([names], "converging")
        phase.convergence_ms = seconds * 1000 if phase.converged else None
        phase.seconds = self.loop.time() - start
        self.report.phase_finished(phase)
        return phase

    async def partition(self) -> PhaseResult:
        options = self.options
        groups = options.groups
        count = options.increments - options.increments // 2
        text = " | ".join("{" + ", ".join(group) + "}" for group in groups)
        self.report.phase_started(
            2,
            f"Partition {text} for {options.partition_seconds:g} s: {options.clients} clients "
            f"add {count:,} increments, each on its own side",
        )
        phase = PhaseResult("partition", [list(group) for group in groups])
        side = {name: group for group in groups for name in group}
        dropped_before = self._dropped_between(groups)
        self.proxy.partition(*groups)
        start = self.loop.time()
        # Client i lives next to node i mod n and stays on that node's side.
        plan = _plan(self.rng, options, count, lambda c: side[options.names[c % options.nodes]])
        first_op = len(self.result.history.ops)
        await self.workload(phase.name, plan, spread_over=options.partition_seconds)
        self._phase_tally(phase, first_op)
        end_of_adds = self.loop.time()
        # Hold the partition for its full length even when the adds finish early.
        await asyncio.sleep(max(0.0, start + options.partition_seconds - end_of_adds))
        phase.converged, seconds, phase.states = await self.wait_agreement(
            groups, "each side converging"
        )
        phase.convergence_ms = seconds * 1000 if phase.converged else None
        phase.dropped_bytes = self._dropped_between(groups) - dropped_before
        phase.seconds = self.loop.time() - start
        self.report.phase_finished(phase)
        return phase

    async def retry_indefinite(self) -> None:
        """Retry every add whose outcome is still unknown, with its own idempotency key, on
        every node in turn, until one acknowledges it: each then counts exactly once."""
        pending: list[Op] = []
        invokes: dict[int, Op] = {}
        for op in list(self.result.history.ops):
            if op.type == "invoke":
                invokes[op.process] = op
            elif op.type == "info":
                pending.append(invokes[op.process])
        # Retries run as processes of their own, after every client process has finished.
        for number, invoke in enumerate(pending):
            await self._retry(RETRY_PROCESS_BASE + number, invoke)

    async def _retry(self, process: int, invoke: Op) -> None:
        history = self.result.history
        names = self.options.names
        for attempt in range(RETRY_ATTEMPTS):
            node = names[attempt % len(names)]
            op = history.invoke(
                process, "add", invoke.key, invoke.value, node, self.now(), invoke.idempotency_key
            )
            try:
                await self.clients[node].increment(
                    invoke.key, invoke.value or 0, idempotency_key=invoke.idempotency_key
                )
            except VVStoreError as exc:
                history.complete(op, "fail" if exc.definite else "info", self.now())
                if exc.definite:
                    return
            else:
                history.complete(op, "ok", self.now())
                return
        raise _CouldNotRun(f"an indefinite add stayed indefinite after {RETRY_ATTEMPTS} tries", "")

    def _dropped_between(self, groups: Sequence[Sequence[str]]) -> int:
        a_side, b_side = groups
        return sum(
            self.proxy.bytes_dropped(a, b) + self.proxy.bytes_dropped(b, a)
            for a in a_side
            for b in b_side
        )

    async def heal(self) -> PhaseResult:
        names = self.options.names
        self.report.phase_started(3, "Heal: the proxy lets node traffic through again")
        phase = PhaseResult("heal", [list(names)])
        self.proxy.heal()
        start = self.loop.time()
        if self.options.exact:
            await self.retry_indefinite()
        phase.converged, seconds, phase.states = await self.wait_agreement(
            [names], "converging after heal"
        )
        phase.convergence_ms = seconds * 1000 if phase.converged else None
        phase.seconds = self.loop.time() - start
        self.report.phase_finished(phase)
        return phase


def _unmet_expectations(phases: Sequence[PhaseResult], options: DemoOptions) -> list[str]:
    """What the demo set out to show and did not, besides the checker's verdict.

    The bounds hold trivially when nothing was written, so the demo also requires that adds
    were acknowledged, that none was refused (on loopback, with no fault between client and
    node, a refusal is a bug), that the partition made the two sides' vectors concurrent, and
    that every phase converged.
    """
    problems: list[str] = []
    for phase in phases:
        if phase.name != "heal" and not phase.completions.get("ok"):
            problems.append(f"no add was acknowledged in the {phase.name} phase")
        refused = phase.completions.get("fail", 0)
        if refused:
            first = next(iter(phase.errors), "?")
            problems.append(
                f"{refused:,} adds were refused in the {phase.name} phase (first: {first})"
            )
        if not phase.converged:
            problems.append(
                f"the nodes did not converge in the {phase.name} phase within "
                f"{options.converge_timeout:g} s"
            )
        if phase.name == "partition" and phase.converged:
            alone, *others = phase.states
            not_concurrent = [
                other.node for other in others if not alone.vector().concurrent_with(other.vector())
            ]
            if not_concurrent:
                problems.append(
                    f"during the partition the vector of {alone.node} was not concurrent with "
                    f"that of {', '.join(not_concurrent)}"
                )
    return problems


async def run_demo(options: DemoOptions, report: Report | None = None) -> DemoResult:
    """Run the demo and return everything it observed, with ``exit_code`` set.

    Never raises for a failure of the demo itself (``exit_code`` 2 and ``reason`` say what);
    cancellation propagates once every process has been stopped.
    """
    report = report or Report()
    loop = asyncio.get_running_loop()
    began = loop.time()
    result = DemoResult(options)
    report.header(options)
    run = _Run(options, report, result)
    try:
        try:
            await run.start()
            # Each phase is kept as soon as it ends, so a run that stops early still reports it.
            for phase in (run.healthy, run.partition, run.heal):
                result.phases.append(await phase())
            heal = result.phases[-1]
            final_state = {state.node: state.values() for state in heal.states}
            result.verdict = check(result.history.ops, final_state, exact=options.exact)
            problems = _unmet_expectations(result.phases, options)
            if not result.verdict.valid:
                problems.append(summarize(result.verdict))
            result.exit_code = 1 if problems else 0
            result.reason = "; ".join(problems) or None
        except _CouldNotRun as exc:
            result.exit_code = 2
            result.reason = exc.reason
            result.log_tail = exc.log_tail
        except OSError as exc:
            result.exit_code = 2
            result.reason = f"{type(exc).__name__}: {exc}"
        result.proxy = run.proxy.stats()
    finally:
        await run.close()
        result.wall_seconds = loop.time() - began
    report.finished(result)
    return result


# --- command line ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's flags to ``parser`` (``vvstore demo`` and the script share them)."""
    defaults = DemoOptions()
    parser.add_argument(
        "--nodes",
        type=int,
        default=defaults.nodes,
        choices=range(2, len(NODE_NAMES) + 1),
        metavar="N",
        help=f"nodes to start, 2 to {len(NODE_NAMES)} (default {defaults.nodes})",
    )
    parser.add_argument(
        "--keys", type=int, default=defaults.keys, metavar="N",
        help=f"keys to add to (default {defaults.keys})",
    )  # fmt: skip
    parser.add_argument(
        "--clients", type=int, default=defaults.clients, metavar="N",
        help=f"concurrent clients, at least 2 (default {defaults.clients})",
    )  # fmt: skip
    parser.add_argument(
        "--increments", type=int, default=defaults.increments, metavar="N",
        help="adds in all, half while healthy and half during the partition "
        f"(default {defaults.increments})",
    )  # fmt: skip
    parser.add_argument(
        "--partition-seconds", type=float, default=defaults.partition_seconds, metavar="SECONDS",
        help=f"how long the partition lasts (default {defaults.partition_seconds:g})",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=defaults.seed,
        help=f"seed of the workload plan (default {defaults.seed})",
    )  # fmt: skip
    parser.add_argument(
        "--port", type=int, default=defaults.port,
        help="port of node A, B gets the next one and so on (default: free ports)",
    )  # fmt: skip
    parser.add_argument(
        "--json", action="store_true",
        help="print the whole run as one JSON document instead of the tables",
    )  # fmt: skip
    parser.add_argument(
        "--keep", action="store_true",
        help="keep the data directories and logs, and print where they are",
    )  # fmt: skip
    parser.add_argument(
        "--bounds", action="store_true",
        help="judge by acknowledged <= value <= acknowledged + indefinite, without the final"
        " retries, instead of exactly",
    )  # fmt: skip


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    """The options parsed by :func:`add_arguments`; ValueError when they do not fit together."""
    return DemoOptions(
        nodes=args.nodes,
        keys=args.keys,
        clients=args.clients,
        increments=args.increments,
        partition_seconds=args.partition_seconds,
        seed=args.seed,
        port=args.port,
        json=args.json,
        keep=args.keep,
        exact=not args.bounds,
    )


def run(options: DemoOptions, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the demo with its output on ``out`` (stdout) and ``err`` (stderr); the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    report: Report = Report() if options.json else TextReport(out, err)
    try:
        result = asyncio.run(run_demo(options, report))
    except KeyboardInterrupt:
        print("vvstore demo: interrupted; every node was stopped", file=err)
        return 130
    if options.json:
        if result.exit_code == 2:
            print(f"vvstore demo: could not run: {result.reason}", file=err)
            if result.log_tail:
                print(result.log_tail, file=err)
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False), file=out)
    return result.exit_code


def run_args(args: argparse.Namespace) -> int:
    """Run the demo from parsed flags; the exit status (2 for flags that do not fit)."""
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"vvstore demo: error: {exc}", file=sys.stderr)
        return 2
    return run(options)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``vvstore demo`` (and of ``python demo/partition_heal.py``)."""
    parser = argparse.ArgumentParser(prog="vvstore demo", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python demo/partition_heal.py`` and ``vvstore demo``: parse, run, return the status."""
    return run_args(build_parser().parse_args(argv))
