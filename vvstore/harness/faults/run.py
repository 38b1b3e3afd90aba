"""One fault run from start to verdict, its figures, and the JSON document that records it.

:func:`run_faults` starts the cluster, runs the workload and the nemesis side by side for the
schedule's duration, then the **final phase**: heal every link, resume paused nodes, restart
dead ones, and retry every idempotency key never acknowledged until a node acknowledges it.
It then times convergence (every node the same vector and the same values) from the end of the
final phase, reads the final state, judges the history with
:func:`vvstore.harness.checker.check_faults`, stops the nodes with SIGTERM and runs
``PRAGMA integrity_check`` on every data directory.

Exit codes: 0 the verdict holds, 1 it does not (the verdict, a kill check, integrity,
convergence past its limit, a refused add, a node that would not restart), 2 the run could not
start. A run document (:meth:`RunResult.to_dict`) holds the options, the schedule, the nemesis
log, the whole history and the verdict; :func:`load_replay` turns one back into the options
and schedule that replay it, and :func:`recheck` judges its history again without processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vvstore.actor import is_actor_of
from vvstore.harness.checker import FaultVerdict, History, NodeLoss, check_faults, summarize_faults
from vvstore.harness.cluster import Cluster, durabilities
from vvstore.harness.faults.nemesis import IncarnationCheck, KillCheck, Nemesis, NemesisEvent
from vvstore.harness.faults.schedule import (
    LINK_KINDS,
    Fault,
    Schedule,
    ScheduleOptions,
    generate,
    link_options,
    short_tier_options,
    soak_options,
)
from vvstore.harness.faults.workload import Workload, WorkloadOptions

__all__ = [
    "Checkpoint",
    "RunOptions",
    "RunResult",
    "checkpoint_windows",
    "churn_run",
    "kill_cycles",
    "link_run",
    "load_replay",
    "recheck",
    "restore_cycles",
    "run_faults",
    "shrink",
]

_RUN_FORMAT = "vvstore-fault-run"
_REGRESSION_FORMAT = "vvstore-fault-regression"
_VERSION = 1

#: The CI tier's clients: 4 clients at ~30 increments/s; 10% random reads, and 30% of the
#: acknowledged increments read back at once where they were acknowledged.
SHORT_TIER_WORKLOAD = WorkloadOptions(read_ratio=0.1, read_back=0.3)

# How often convergence is polled; its time is measured to this granularity.
POLL_S = 0.05
# Give up waiting for convergence after this many times the limit.
CONVERGE_PATIENCE = 2.0

Out = Callable[[str], None]


def _quiet(_: str) -> None:
    """Discard a line of output."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Everything one run needs besides its schedule. Validated when constructed."""

    seed: int = 1
    schedule: ScheduleOptions = field(default_factory=short_tier_options)
    workload: WorkloadOptions = field(default_factory=WorkloadOptions)
    # "full", "normal", or "mixed" (A full, B normal, C full).
    durability: str = "mixed"
    # Seconds the final phase may spend retrying unacknowledged keys.
    settle_timeout: float = 60.0
    # Seconds from the end of the final phase to convergence: reported against the goal,
    # a failure past the limit.
    converge_goal: float = 5.0
    converge_limit: float = 30.0
    # Seconds of faults between checkpoints (0: one final phase only). At a checkpoint the
    # nemesis stops, the final phase runs (heal, settle, converge) and the history so far is
    # judged; then faults resume on the same cluster. The soak uses them to time many
    # convergences and check exactness many times over.
    checkpoint_every: float = 0.0
    # Seconds between samples of each node's memory and open files.
    sample_every: float = 10.0
    # Seconds between progress lines (0: none).
    progress_every: float = 0.0
    # Print every nemesis event as it happens.
    verbose: bool = False
    # Keep the work directory (data directories, copies, logs) and print where it is.
    keep: bool = False
    # Where to create the work directory (the system's temporary directory by default).
    workdir: str | None = None

    def __post_init__(self) -> None:
        durabilities(self.durability, self.schedule.nodes)
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every!r}")
        for name in ("settle_timeout", "converge_goal", "converge_limit", "sample_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.progress_every < 0:
            raise ValueError(f"progress_every must be >= 0, got {self.progress_every!r}")

    def to_dict(self) -> dict[str, Any]:
        w = self.workload
        return {
            "seed": self.seed,
            "schedule": self.schedule.to_dict(),
            "workload": {
                "clients": w.clients,
                "keys": w.keys,
                "rate": w.rate,
                "read_ratio": w.read_ratio,
                "read_back": w.read_back,
                "timeout": w.timeout,
                "attempts": w.attempts,
                "key_alphabet": w.key_alphabet,
                "probe_share": w.probe_share,
            },
            "durability": self.durability,
            "settle_timeout": self.settle_timeout,
            "converge_goal": self.converge_goal,
            "converge_limit": self.converge_limit,
            "checkpoint_every": self.checkpoint_every,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunOptions:
        known = {"seed", "schedule", "workload", "durability", "settle_timeout"}
        known |= {"converge_goal", "converge_limit", "checkpoint_every"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown run options: {unknown}")
        fields: dict[str, Any] = {
            k: v for k, v in data.items() if k not in ("schedule", "workload")
        }
        if "schedule" in data:
            fields["schedule"] = ScheduleOptions.from_dict(data["schedule"])
        if "workload" in data:
            fields["workload"] = WorkloadOptions(**data["workload"])
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One final phase: when it ended, what it settled, how fast the nodes converged after it,
    and the verdict on the history up to it."""

    time: float
    settled: int
    left_unacknowledged: int
    final_phase_s: float
    convergence_s: float | None
    heal_convergence_s: float | None
    valid: bool | None
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": round(self.time, 3),
            "settled": self.settled,
            "left_unacknowledged": self.left_unacknowledged,
            "final_phase_ms": _ms(self.final_phase_s),
            "convergence_ms": _ms(self.convergence_s),
            "heal_convergence_ms": _ms(self.heal_convergence_s),
            "valid": self.valid,
            "summary": self.summary,
        }


@dataclass(slots=True)
class RunResult:
    """Everything one run observed. ``exit_code``: 0 valid, 1 invalid, 2 could not run."""

    options: RunOptions
    schedule: Schedule
    history: History = field(default_factory=History)
    events: list[NemesisEvent] = field(default_factory=list)
    losses: list[NodeLoss] = field(default_factory=list)
    kill_checks: list[KillCheck] = field(default_factory=list)
    incarnation_checks: list[IncarnationCheck] = field(default_factory=list)
    final_state: dict[str, dict[str, int]] = field(default_factory=dict)
    # node -> its /status vector when the nodes last converged (a final phase).
    final_vectors: dict[str, dict[str, int]] = field(default_factory=dict)
    verdict: FaultVerdict | None = None
    problems: list[str] = field(default_factory=list)
    executed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    replayed: int = 0
    probes: int = 0
    probe_replays: Counter[str] = field(default_factory=Counter)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    left_unacknowledged: list[str] = field(default_factory=list)
    integrity: dict[str, str] = field(default_factory=dict)
    exit_statuses: dict[str, int | None] = field(default_factory=dict)
    # node -> {"start": sample, "end": sample, "max_rss_kib", "max_fds", "starts"}
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    log_tails: dict[str, str] = field(default_factory=dict)
    wall_seconds: float = 0.0
    exit_code: int = 2
    reason: str | None = None
    workdir: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def convergence_s(self) -> float | None:
        """Seconds from the end of the last final phase to convergence (None: it did not)."""
        return self.checkpoints[-1].convergence_s if self.checkpoints else None

    @property
    def longest_convergence_s(self) -> float | None:
        times = [c.convergence_s for c in self.checkpoints]
        if not times or any(t is None for t in times):
            return None
        return max(t for t in times if t is not None)

    def figures(self) -> dict[str, Any]:
        """The run's numbers (what the closing line, the soak report and the docs quote)."""
        ops = self.history.ops
        iks = {op.idempotency_key for op in ops if op.f == "add" and op.type == "invoke"}
        acked = {op.idempotency_key for op in ops if op.f == "add" and op.type == "ok"}
        v = self.verdict
        checks = self.kill_checks
        incarnations = self.incarnation_checks
        return {
            "seed": self.options.seed,
            "duration_s": self.schedule.options.duration,
            "durability": durabilities(self.options.durability, self.schedule.options.nodes),
            "increments": len(iks),
            "acknowledged": len(acked),
            "left_unacknowledged": len(self.left_unacknowledged),
            "attempts": self.outcomes["add ok"]
            + self.outcomes["add info"]
            + self.outcomes["add fail"],
            "attempts_indefinite": self.outcomes["add info"],
            "attempts_refused": self.outcomes["add fail"],
            "replayed": self.replayed,
            "probes": self.probes,
            # The probes' deliberate replays on another node, by what the node answered.
            "probe_replays": dict(sorted(self.probe_replays.items())),
            "verified_individually": v.verified_individually if v else 0,
            "individually_lost": v.final.individually_lost if v else None,
            "individually_doubled": v.final.individually_doubled if v else None,
            "settled_in_final_phase": sum(c.settled for c in self.checkpoints),
            "reads": self.outcomes["read ok"] + self.outcomes["read info"],
            "reads_judged": v.reads if v else 0,
            "reads_above_attempted": v.violations_of("above_attempted") if v else 0,
            "reads_ignoring_own_write": v.violations_of("ignores_own_write") if v else 0,
            "reads_missing_own_dot": v.violations_of("misses_own_dot") if v else 0,
            "reads_version_went_back": v.violations_of("version_went_back") if v else 0,
            "faults": dict(sorted(self.executed.items())),
            "faults_total": sum(self.executed.values()),
            "faults_skipped": dict(sorted(self.skipped.items())),
            "kills_checked": len(checks),
            "kills_ok": sum(c.ok for c in checks),
            "kills_by_durability": dict(sorted(Counter(c.durability for c in checks).items())),
            "incarnations_checked": len(incarnations),
            "incarnations_ok": sum(c.ok for c in incarnations),
            "new_actors": sum(c.new_actor for c in incarnations),
            "incarnations_by_kind": dict(sorted(Counter(c.kind for c in incarnations).items())),
            "incarnation_reasons": dict(
                sorted(Counter(c.reason or "(none)" for c in incarnations).items())
            ),
            # Actors in each node's vector when the nodes last converged, and how many of
            # them are each node's own (its incarnations seen by the cluster).
            "vector_actors": {n: len(vec) for n, vec in sorted(self.final_vectors.items())},
            "actors_per_node": _actors_per_node(self.final_vectors),
            "lost": v.lost if v else None,
            "doubled": v.doubled if v else None,
            "lost_to_wipe": v.lost_to_wipe if v else None,
            "convergence_ms": _ms(self.convergence_s),
            "longest_convergence_ms": _ms(self.longest_convergence_s),
            "checkpoints": len(self.checkpoints),
            "converge_goal_ms": self.options.converge_goal * 1000,
            "integrity": self.integrity,
            "resources": self.resources,
            "wall_seconds": round(self.wall_seconds, 1),
        }

    def closing_line(self) -> str:
        if self.exit_code == 2:
            return f"RUN COULD NOT START: seed {self.options.seed}: {self.reason}"
        f = self.figures()
        faults = ", ".join(f"{k} {n}" for k, n in f["faults"].items()) or "none"
        longest = self.longest_convergence_s
        if longest is None:
            converged = "did NOT converge"
        else:
            goal = "within" if longest <= self.options.converge_goal else "OVER"
            after = (
                "the final phase"
                if len(self.checkpoints) == 1
                else f"each of {len(self.checkpoints)} final phases (the longest)"
            )
            converged = (
                f"converged {longest * 1000:,.0f} ms after {after} "
                f"({goal} the {self.options.converge_goal:g} s goal)"
            )
        integrity = (
            "integrity ok"
            if self.integrity and all(r == "ok" for r in self.integrity.values())
            else "integrity NOT ok"
        )
        incarnations = (
            f"{f['incarnations_ok']}/{f['incarnations_checked']} restores and churn restarts "
            f"took the actor they had to ({f['new_actors']} new actors, vectors of "
            + ", ".join(f"{n} {k}" for n, k in f["vector_actors"].items())
            + " actors); "
            if self.incarnation_checks
            else ""
        )
        replays = ", ".join(f"{k} {n:,}" for k, n in f["probe_replays"].items()) or "none"
        figures = (
            f"{f['acknowledged']:,} increments acknowledged of {f['increments']:,} "
            f"({f['attempts_indefinite']:,} indefinite attempts, {f['replayed']:,} replays, "
            f"{f['settled_in_final_phase']:,} settled in the final phase); "
            f"{f['faults_total']} faults ({faults}); {f['lost']} lost, {f['doubled']} doubled, "
            f"{f['lost_to_wipe']} lost to wipes; {f['verified_individually']:,} idempotency "
            f"key{'' if f['verified_individually'] == 1 else 's'} verified one by one "
            f"({f['individually_lost']} lost, {f['individually_doubled']} doubled); probes "
            f"replayed on another node: {sum(f['probe_replays'].values()):,} ({replays}); "
            f"{f['reads_judged']:,} reads judged, "
            f"{len(self.verdict.read_violations) if self.verdict else 0} violations; "
            f"{f['kills_ok']}/{f['kills_checked']} kills kept every acknowledged write; "
            f"{incarnations}{converged}; {integrity}; {f['wall_seconds']:.1f} s"
        )
        head = "VERDICT ok" if self.ok else "VERDICT FAILED"
        return f"{head}: seed {self.options.seed}: {figures}"

    def to_dict(self) -> dict[str, Any]:
        """The run document: enough to replay the run and to judge its history again."""
        return {
            "format": _RUN_FORMAT,
            "version": _VERSION,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "closing_line": self.closing_line(),
            "summary": summarize_faults(self.verdict) if self.verdict else None,
            "problems": self.problems,
            "options": self.options.to_dict(),
            "schedule": self.schedule.to_dict(),
            "figures": self.figures(),
            "events": [event.to_dict() for event in self.events],
            "losses": [loss.to_dict() for loss in self.losses],
            "kill_checks": [check.to_dict() for check in self.kill_checks],
            "incarnation_checks": [check.to_dict() for check in self.incarnation_checks],
            "final_vectors": self.final_vectors,
            "checkpoints": [checkpoint.to_dict() for checkpoint in self.checkpoints],
            "errors": dict(self.errors.most_common()),
            "final_state": self.final_state,
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "log_tails": self.log_tails,
            "workdir": self.workdir,
            "history": json.loads(self.history.to_json()),
        }

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _actors_per_node(vectors: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Node -> how many of its own actors (incarnations) the converged vectors hold."""
    actors = {actor for vector in vectors.values() for actor in vector}
    return {
        node: sum(1 for actor in actors if is_actor_of(actor, node)) for node in sorted(vectors)
    }


# --- replay, recheck, regression files -------------------------------------------------------


def load_replay(data: Mapping[str, Any]) -> tuple[RunOptions, Schedule]:
    """The options and the exact schedule of a run document or a regression file."""
    if data.get("format") not in (_RUN_FORMAT, _REGRESSION_FORMAT):
        raise ValueError("not a vvstore fault run or regression file")
    if data.get("version") != _VERSION:
        raise ValueError(f"unsupported version {data.get('version')!r}")
    return RunOptions.from_dict(data["options"]), Schedule.from_dict(data["schedule"])


def regression_document(options: RunOptions, schedule: Schedule, note: str) -> dict[str, Any]:
    """A regression file: a (shrunk) schedule that once failed, with the options to run it."""
    return {
        "format": _REGRESSION_FORMAT,
        "version": _VERSION,
        "note": note,
        "options": options.to_dict(),
        "schedule": schedule.to_dict(),
    }


def recheck(data: Mapping[str, Any]) -> FaultVerdict:
    """Judge a run document's history and final state again (no processes involved)."""
    if data.get("format") != _RUN_FORMAT:
        raise ValueError("not a vvstore fault run document")
    history = History.from_json(json.dumps(data["history"]))
    losses = [NodeLoss.from_dict(loss) for loss in data["losses"]]
    final_state = {node: dict(values) for node, values in data["final_state"].items()}
    if not final_state:
        raise ValueError("the run document has no final state (the run did not get that far)")
    return check_faults(history.ops, final_state, losses)


def kill_cycles(count: int = 5, every: float = 3.0, seed: int = 100) -> tuple[RunOptions, Schedule]:
    """``count`` kill -9 and restart cycles, one every ``every`` seconds, round the nodes
    (so with mixed durability both ``full`` and ``normal`` nodes are killed)."""
    schedule_options = replace(
        short_tier_options(), duration=1.0 + count * every + 1.0, kinds=("kill",)
    )
    nodes = schedule_options.nodes
    faults = tuple(
        Fault(1.0 + i * every, "kill", 0.5 + 0.25 * (i % 3), (nodes[i % len(nodes)],))
        for i in range(count)
    )
    return (
        RunOptions(seed=seed, schedule=schedule_options, workload=SHORT_TIER_WORKLOAD),
        Schedule(seed, schedule_options, faults),
    )


def restore_cycles(
    count: int = 2, every: float = 5.0, seed: int = 200
) -> tuple[RunOptions, Schedule]:
    """``count`` restores in place, one every ``every`` seconds, round the nodes: each takes an
    online backup, lets 1.5 s of writes go by, then restores it over the same file."""
    schedule_options = replace(
        short_tier_options(), duration=1.0 + count * every, kinds=("restore",)
    )
    nodes = schedule_options.nodes
    faults = tuple(
        Fault(1.0 + i * every, "restore", 1.5, (nodes[(i + 1) % len(nodes)],)) for i in range(count)
    )
    return (
        RunOptions(seed=seed, schedule=schedule_options, workload=SHORT_TIER_WORKLOAD),
        Schedule(seed, schedule_options, faults),
    )


def churn_run(cycles: int = 3, seed: int = 300, node: str = "B") -> tuple[RunOptions, Schedule]:
    """One churn of ``node`` (B: durability normal in the mixed default): ``cycles`` times
    converge, stop, wipe, 0.5 s down and restart, under the short tier's workload."""
    schedule_options = replace(short_tier_options(), duration=2.0 + cycles * 3.5, kinds=("churn",))
    faults = (Fault(1.0, "churn", 0.5, (node,), cycles=cycles),)
    return (
        RunOptions(seed=seed, schedule=schedule_options, workload=SHORT_TIER_WORKLOAD),
        Schedule(seed, schedule_options, faults),
    )


# --- one run ---------------------------------------------------------------------------------


async def run_faults(
    options: RunOptions, schedule: Schedule | None = None, out: Out = _quiet
) -> RunResult:
    """Run one schedule (drawn from ``options.seed`` when None) and judge it.

    Never raises for a failure of the system under test; ``exit_code`` and ``problems`` say
    what went wrong. Cancellation propagates once every process has been stopped.
    """
    schedule = schedule or generate(options.seed, options.schedule)
    loop = asyncio.get_running_loop()
    began = loop.time()

    def clock() -> float:
        return loop.time() - began

    result = RunResult(options, schedule)
    names = schedule.options.nodes
    durability = durabilities(options.durability, names)
    _header(options, schedule, durability, out)
    workdir = Path(tempfile.mkdtemp(prefix=f"vvstore-faults-{options.seed}-", dir=options.workdir))
    cluster = Cluster(workdir, names, durability)
    sampler: asyncio.Task[None] | None = None
    started = False
    try:
        try:
            await cluster.start()
            started = True
        except (RuntimeError, OSError) as exc:
            result.reason = str(exc).splitlines()[0]
            result.log_tails = {name: cluster.log_tail(name) for name in cluster.processes}
            return result
        workload = Workload(
            options.seed, options.workload, result.history, cluster.client_urls, clock
        )
        nemesis = Nemesis(cluster, workload, result.history, clock)
        if options.verbose:
            nemesis.on_event(lambda event: out("  " + event.describe()))
        _sample(cluster, result, first=True)
        sampler = asyncio.create_task(_sampler(cluster, result, workload, nemesis, options, out))
        out(f"workload and nemesis for {schedule.options.duration:g} s ...")
        for low, high, window in checkpoint_windows(schedule, options.checkpoint_every):
            start = loop.time()
            await asyncio.gather(
                workload.run(high - low),
                nemesis.run(
                    window, start, start + high - low, first_index=_first_index(schedule, low)
                ),
            )
            checkpoint = await _final_phase(cluster, workload, nemesis, result, options)
            out(
                f"checkpoint at t={checkpoint.time:.1f} s: {checkpoint.settled} settled, converged "
                f"{_fmt_ms(checkpoint.convergence_s)} after the final phase; {checkpoint.summary}"
            )
            if checkpoint.left_unacknowledged or checkpoint.convergence_s is None:
                break
        _collect(result, workload, nemesis)
    finally:
        if sampler is not None:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        if started:
            _sample(cluster, result, first=False)
        result.exit_statuses = await cluster.close()
        if started:
            for name in names:
                result.integrity[name] = await cluster.integrity(name)
            _judge(result, options)
            if not result.ok:
                result.log_tails = {name: cluster.log_tail(name) for name in names}
        result.wall_seconds = loop.time() - began
        if options.keep:
            result.workdir = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def _header(
    options: RunOptions, schedule: Schedule, durability: Mapping[str, str], out: Out
) -> None:
    w = options.workload
    nodes = ", ".join(f"{n} {d}" for n, d in durability.items())
    out(
        f"vvstore faults: seed {options.seed}: nodes {nodes}; {w.clients} clients, {w.keys} keys, "
        f"~{w.rate:g} increments/s, client timeout {w.timeout:g} s, "
        f"{schedule.options.duration:g} s of faults"
    )
    out(f"schedule ({len(schedule.faults)} faults):")
    for line in schedule.describe():
        out("  " + line)


def checkpoint_windows(schedule: Schedule, every: float) -> list[tuple[float, float, Schedule]]:
    """Cut the schedule at every ``every`` seconds: (start, end, the faults starting in the
    window with times relative to its start). ``every`` 0: one window."""
    duration = schedule.options.duration
    step = every if every > 0 else duration
    windows = []
    low = 0.0
    while low < duration:
        high = min(duration, low + step)
        faults = tuple(replace(f, at=f.at - low) for f in schedule.faults if low <= f.at < high)
        windows.append(
            (
                low,
                high,
                replace(
                    schedule, options=replace(schedule.options, duration=high - low), faults=faults
                ),
            )
        )
        low = high
    return windows


def _first_index(schedule: Schedule, low: float) -> int:
    """The schedule index of the first fault at or after ``low``."""
    return sum(1 for f in schedule.faults if f.at < low)


def _fmt_ms(seconds: float | None) -> str:
    return "NOT" if seconds is None else f"{seconds * 1000:,.0f} ms"


async def _final_phase(
    cluster: Cluster,
    workload: Workload,
    nemesis: Nemesis,
    result: RunResult,
    options: RunOptions,
) -> Checkpoint:
    """Heal, settle every unacknowledged increment, time convergence, judge the history so far."""
    loop = asyncio.get_running_loop()
    heal_at = loop.time()
    try:
        await nemesis.heal()
    except RuntimeError as exc:
        result.problems.append(f"final phase: a node would not restart: {exc}")
        checkpoint = Checkpoint(
            workload.clock(), 0, 0, 0.0, None, None, None, "a node would not restart"
        )
        result.checkpoints.append(checkpoint)
        return checkpoint
    pending = len(workload.unacknowledged())
    left = await workload.settle(options.settle_timeout)
    result.left_unacknowledged = left
    ended = loop.time()
    patience = options.converge_limit * CONVERGE_PATIENCE
    convergence: float | None = None
    heal_convergence: float | None = None
    while True:
        states = await asyncio.gather(*(_state(cluster, name) for name in cluster.names))
        if all(s is not None for s in states) and all(s == states[0] for s in states):
            now = loop.time()
            convergence, heal_convergence = now - ended, now - heal_at
            result.final_state = {
                name: dict(state[1])
                for name, state in zip(cluster.names, states, strict=True)
                if state is not None
            }
            result.final_vectors = {
                name: dict(state[0])
                for name, state in zip(cluster.names, states, strict=True)
                if state is not None
            }
            break
        if loop.time() - ended > patience:
            # Judge what the nodes hold anyway: the verdict then says how they differ.
            values = await asyncio.gather(*(cluster.values(name) for name in cluster.names))
            result.final_state = {
                name: v for name, v in zip(cluster.names, values, strict=True) if v is not None
            }
            break
        await asyncio.sleep(POLL_S)
    valid: bool | None = None
    summary = "not judged: no node answered"
    if result.final_state:
        try:
            verdict = check_faults(result.history.ops, result.final_state, nemesis.losses)
            valid, summary = verdict.valid, summarize_faults(verdict)
        except ValueError as exc:
            summary = f"could not judge: {exc}"
    checkpoint = Checkpoint(
        time=workload.clock(),
        settled=pending - len(left),
        left_unacknowledged=len(left),
        final_phase_s=ended - heal_at,
        convergence_s=convergence,
        heal_convergence_s=heal_convergence,
        valid=valid,
        summary=summary,
    )
    result.checkpoints.append(checkpoint)
    return checkpoint


async def _state(cluster: Cluster, name: str) -> tuple[dict[str, int], dict[str, int]] | None:
    """(vector, values) of one node, the vector read first: nodes that agree on both hold the
    same entries."""
    status = await cluster.status(name)
    values = await cluster.values(name)
    if status is None or values is None:
        return None
    return dict(status["version"]), values


def _collect(result: RunResult, workload: Workload, nemesis: Nemesis) -> None:
    result.events = nemesis.events
    result.losses = nemesis.losses
    result.kill_checks = nemesis.kill_checks
    result.incarnation_checks = nemesis.incarnation_checks
    result.executed = nemesis.executed
    result.skipped = nemesis.skipped
    result.outcomes = workload.outcomes
    result.errors = workload.errors
    result.replayed = workload.replayed
    result.probes = workload.probes
    result.probe_replays = workload.probe_replays
    result.problems.extend(nemesis.problems)
    result.problems.extend(f"an add was refused: {refusal}" for refusal in workload.refused[:5])
    if len(workload.refused) > 5:
        result.problems.append(f"... and {len(workload.refused) - 5} more adds were refused")


def _judge(result: RunResult, options: RunOptions) -> None:
    problems = result.problems
    if result.final_state:
        try:
            result.verdict = check_faults(result.history.ops, result.final_state, result.losses)
        except ValueError as exc:
            problems.append(f"the history could not be judged: {exc}")
    if result.left_unacknowledged:
        problems.append(
            f"{len(result.left_unacknowledged)} increments were still unacknowledged after "
            f"{options.settle_timeout:g} s of retries (first: {result.left_unacknowledged[0]})"
        )
    for checkpoint in result.checkpoints:
        when = f"after the final phase at t={checkpoint.time:.1f} s"
        if checkpoint.convergence_s is None:
            limit = options.converge_limit * CONVERGE_PATIENCE
            problems.append(f"the nodes did not converge within {limit:g} s {when}")
        elif checkpoint.convergence_s > options.converge_limit:
            problems.append(
                f"convergence took {checkpoint.convergence_s:.1f} s {when}, past the "
                f"{options.converge_limit:g} s limit"
            )
        if checkpoint.valid is False and checkpoint is not result.checkpoints[-1]:
            problems.append(f"the checkpoint {when} failed: {checkpoint.summary}")
    if not result.checkpoints:
        problems.append("the run never reached its final phase")
    problems.extend(check.describe() for check in result.kill_checks if not check.ok)
    problems.extend(check.describe() for check in result.incarnation_checks if not check.ok)
    problems.extend(
        f"PRAGMA integrity_check on {name}: {report}"
        for name, report in result.integrity.items()
        if report != "ok"
    )
    problems.extend(
        f"node {name} exited with status {code} on SIGTERM"
        for name, code in result.exit_statuses.items()
        if code != 0
    )
    invalid = result.verdict is None or not result.verdict.valid
    result.exit_code = 1 if problems or invalid else 0
    reasons = list(problems)
    if result.verdict is not None and not result.verdict.valid:
        reasons.insert(0, summarize_faults(result.verdict))
    result.reason = "; ".join(reasons) or None


# --- resources and progress ------------------------------------------------------------------


def _sample(cluster: Cluster, result: RunResult, *, first: bool) -> None:
    for name in cluster.names:
        sample = cluster.resources(name)
        entry = result.resources.setdefault(name, {"start": None, "end": None})
        entry["starts"] = cluster.starts[name]
        if sample is None:
            continue
        if first or entry["start"] is None:
            entry["start"] = sample
        entry["end"] = sample
        entry["max_rss_kib"] = max(entry.get("max_rss_kib", 0), sample["rss_kib"])
        entry["max_fds"] = max(entry.get("max_fds", 0), sample["fds"])


async def _sampler(
    cluster: Cluster,
    result: RunResult,
    workload: Workload,
    nemesis: Nemesis,
    options: RunOptions,
    out: Out,
) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    next_progress = began + options.progress_every
    while True:
        await asyncio.sleep(options.sample_every)
        _sample(cluster, result, first=False)
        if options.progress_every and loop.time() >= next_progress:
            next_progress += options.progress_every
            o = workload.outcomes
            faults = ", ".join(f"{k} {n}" for k, n in sorted(nemesis.executed.items()))
            rss = " ".join(
                f"{n}:{(cluster.resources(n) or {}).get('rss_kib', 0) // 1024}MiB"
                for n in cluster.names
            )
            out(
                f"  t={loop.time() - began:6.0f} s: {o['add ok']:,} adds ok, "
                f"{o['add info']:,} indefinite, {o['read ok']:,} reads; "
                f"{len(nemesis.kill_checks)} kills checked; faults: {faults or '-'}; rss {rss}"
            )


# --- shrinking -------------------------------------------------------------------------------


async def shrink(
    options: RunOptions, schedule: Schedule, out: Out = _quiet, tries: int = 2
) -> Schedule:
    """Drop faults (last first) while the run still fails, then cut the workload short.

    A candidate counts as failing when any of ``tries`` runs fails (exit code 1): failures
    that depend on timing do not reproduce every time. Each try is a whole run, so shrinking a
    schedule of n faults costs up to ``(n + 1) * tries`` runs.
    """

    async def fails(candidate: Schedule) -> bool:
        for attempt in range(tries):
            result = await run_faults(options, candidate)
            out(
                f"  {len(candidate.faults)} faults, try {attempt + 1}: "
                f"{'fails' if result.exit_code == 1 else 'passes'}"
            )
            if result.exit_code == 1:
                return True
        return False

    current = schedule
    for index in reversed(range(len(current.faults))):
        candidate = current.without(index)
        out(f"without fault #{index}: {current.faults[index].describe(current.options.nodes)}")
        if await fails(candidate):
            current = candidate
    if current.faults:
        # Move the faults forward so that the first starts as early as the options allow, and
        # end the workload 3 s after the last fault.
        shift = current.faults[0].at - current.options.first
        faults = tuple(replace(f, at=f.at - shift) for f in current.faults)
        last = max(f.at + f.extent for f in faults)
        duration = min(current.options.duration, last + 3.0)
        shorter = replace(
            current, options=replace(current.options, duration=duration), faults=faults
        )
        if shorter != current:
            out(
                f"with the faults from t={faults[0].at:.1f} s and the workload cut to "
                f"{duration:.1f} s"
            )
            if await fails(shorter):
                current = shorter
    return current


# --- presets and the text report -------------------------------------------------------------

#: The seeds of the CI short tier.
SHORT_TIER_SEEDS = tuple(range(1, 11))


def short_tier_run(seed: int) -> tuple[RunOptions, Schedule]:
    """One seeded schedule of the CI short tier: 15 s of every kind of fault, partitions of at
    most 5 s, 4 clients at ~30 increments/s (a few hundred increments)."""
    options = RunOptions(seed=seed, workload=SHORT_TIER_WORKLOAD)
    return options, generate(seed, options.schedule)


#: The short tier's link runs: (seed, kinds). Each draws its link faults twice as often as the
#: other kinds named, under non-ASCII keys; the seeds are ones whose schedule holds every link
#: kind named (tests/faults/test_schedule.py checks that).
LINK_RUNS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (11, ("slow", "slow_one_way", "split", "kill")),
    (12, ("lossy", "pause", "one_way", "swallow")),
)
#: The CI tier's workload under link faults: the short tier's, with non-ASCII keys.
LINK_WORKLOAD = replace(SHORT_TIER_WORKLOAD, key_alphabet="unicode")


def link_run(
    seed: int, kinds: tuple[str, ...] = LINK_KINDS, duration: float = 15.0
) -> tuple[RunOptions, Schedule]:
    """A schedule of link faults (slow, one-way slow, lossy) among ``kinds``, with non-ASCII
    keys: the short tier's shape otherwise."""
    options = RunOptions(
        seed=seed, schedule=link_options(duration, kinds=kinds), workload=LINK_WORKLOAD
    )
    return options, generate(seed, options.schedule)


def short_tier() -> list[tuple[RunOptions, Schedule]]:
    """The whole CI short tier: every seeded schedule, five kill-and-restart cycles, then the
    link runs (slow and lossy links, non-ASCII keys)."""
    return (
        [short_tier_run(seed) for seed in SHORT_TIER_SEEDS]
        + [kill_cycles(5)]
        + [link_run(seed, kinds) for seed, kinds in LINK_RUNS]
    )


def soak_run_options(minutes: float, seed: int = 1) -> RunOptions:
    """The soak: the combined nemesis for ``minutes``, a fault every 5 to 10 s, long partitions
    of 10 to 30 s, kills weighted up, 6 clients on 50 keys at ~150 increments/s, mixed
    durability, a checkpoint every 5 minutes, progress every minute."""
    return RunOptions(
        seed=seed,
        schedule=soak_options(minutes),
        workload=WorkloadOptions(clients=6, keys=50, rate=150.0, read_ratio=0.03, read_back=0.1),
        settle_timeout=180.0,
        checkpoint_every=300.0,
        sample_every=10.0,
        progress_every=60.0,
    )


def _mib(kib: int | None) -> str:
    return "?" if kib is None else f"{kib / 1024:.1f} MiB"


def report_text(result: RunResult) -> str:
    """A plain-text report of a run's figures (the soak writes it with ``--report``)."""
    f = result.figures()
    o = result.options
    lines = [
        f"vvstore fault run: seed {o.seed}, {f['duration_s'] / 60:.1f} min of faults, "
        f"{result.wall_seconds / 60:.1f} min wall",
        "nodes: "
        + ", ".join(f"{n} {d}" for n, d in f["durability"].items())
        + f"; {o.workload.clients} clients, {o.workload.keys} keys, client timeout "
        f"{o.workload.timeout:g} s",
        f"verdict: {'ok' if result.ok else 'FAILED'}"
        + (f" ({summarize_faults(result.verdict)})" if result.verdict else ""),
        f"increments: {f['acknowledged']:,} acknowledged of {f['increments']:,} "
        f"({f['attempts']:,} attempts, {f['attempts_indefinite']:,} indefinite, "
        f"{f['replayed']:,} replays, {f['settled_in_final_phase']:,} settled in final phases, "
        f"{f['left_unacknowledged']:,} left unacknowledged)",
        f"reads: {f['reads_judged']:,} judged: {f['reads_above_attempted']:,} above the attempted "
        f"sum, {f['reads_ignoring_own_write']:,} ignoring an own write, "
        f"{f['reads_missing_own_dot']:,} missing an own dot, "
        f"{f['reads_version_went_back']:,} going back",
        f"faults injected: {f['faults_total']} ("
        + ", ".join(f"{k} {n}" for k, n in f["faults"].items())
        + ")"
        + (
            "; skipped: " + ", ".join(f"{k} {n}" for k, n in f["faults_skipped"].items())
            if f["faults_skipped"]
            else ""
        ),
        f"kills checked: {f['kills_checked']} ("
        + ", ".join(f"{d} {n}" for d, n in f["kills_by_durability"].items())
        + f"); {f['kills_ok']} kept every acknowledged write",
        f"restores in place and churn restarts checked: {f['incarnations_checked']} ("
        + ", ".join(f"{k} {n}" for k, n in f["incarnations_by_kind"].items())
        + f"); {f['incarnations_ok']} took the actor they had to, {f['new_actors']} new actors"
        + (
            "; reasons: " + "; ".join(f"{r!r} x{n}" for r, n in f["incarnation_reasons"].items())
            if f["incarnation_reasons"]
            else ""
        ),
        "actors in each node's converged vector: "
        + (", ".join(f"{n} {k}" for n, k in f["vector_actors"].items()) or "?")
        + "; each node's own actors in it: "
        + (", ".join(f"{n} {k}" for n, k in f["actors_per_node"].items()) or "?"),
        f"lost {f['lost']}, doubled {f['doubled']}, lost_to_wipe {f['lost_to_wipe']}",
        f"idempotency keys verified one by one: {f['verified_individually']:,} of "
        f"{f['acknowledged']:,} acknowledged; {f['individually_lost']} lost, "
        f"{f['individually_doubled']} doubled; probes: {f['probes']:,} sent, each replayed on "
        "another node, answered: "
        + (", ".join(f"{k} {n}" for k, n in f["probe_replays"].items()) or "none"),
        f"convergence after each final phase (goal {o.converge_goal:g} s, limit "
        f"{o.converge_limit:g} s): "
        + ", ".join(_fmt_ms(c.convergence_s) for c in result.checkpoints)
        + f"; longest {_fmt_ms(result.longest_convergence_s)}",
        "PRAGMA integrity_check: "
        + ", ".join(f"{n} {r}" for n, r in sorted(result.integrity.items())),
        "memory and open files per node (start -> end, max; process starts):",
    ]
    for name, r in sorted(result.resources.items()):
        start, end = r.get("start") or {}, r.get("end") or {}
        lines.append(
            f"  {name}: RSS {_mib(start.get('rss_kib'))} -> {_mib(end.get('rss_kib'))} "
            f"(max {_mib(r.get('max_rss_kib'))}), fds {start.get('fds', '?')} -> "
            f"{end.get('fds', '?')} (max {r.get('max_fds', '?')}), {r.get('starts', '?')} starts"
        )
    lines.append("problems: " + ("; ".join(result.problems) if result.problems else "none"))
    return "\n".join(lines) + "\n"
