"""The nemesis: runs a :class:`~vvstore.harness.faults.schedule.Schedule` against a live cluster.

Network faults become proxy policies. Several may be active at once (a flap during a
partition, the quiet period of a wipe during a swallow), so :class:`Network` composes them:
each active fault contributes directions, a direction is refused when any fault refuses it,
dropped when any drops it, and passes otherwise, as slowly and as lossily as the slowest and
lossiest fault on it wants (the longest latency, the narrowest bandwidth, the highest loss);
only directions whose effective policy changes are set on the proxy, so one fault ending never
heals another.

The link faults (opt-in) slow or degrade links without cutting them:

- ``slow``: every direction between the victim and the other nodes and clients carries
  ``slow_bandwidth`` bytes per second, each byte ``slow_latency`` seconds late (the schedule's
  options: 2 Mbit/s and 40 ms by default); ``slow_one_way``: only bytes from one node to another;
- ``lossy``: every direction between the victim and the other nodes and clients loses a chunk
  with chance ``loss``; a lost chunk resets its connection or stalls it until the sender times
  out. The proxy's generator is seeded from the schedule's seed and the fault's index, so one
  seed draws the same losses in the same order.

Process faults act on the node processes:

- ``kill``: SIGKILL under load; after the downtime the node restarts on the same data
  directory *cut off from the other nodes*, and its status is read before it can pull anything
  back: it must have kept its actor id and hold its own actor at least up to the highest seq it
  acknowledged (a :class:`KillCheck`, one per kill). Then the cut is lifted;
- ``pause``: SIGSTOP for longer than the client timeout, then SIGCONT;
- ``wipe`` and ``restore_stale``: the nemesis refuses client traffic to the victim, waits until
  every other node's vector covers the victim's (so every write it acknowledged lives
  elsewhere), records a :class:`~vvstore.harness.checker.NodeLoss`, kills it, empties its data
  directory or puts back the copy taken ``duration`` seconds earlier, and restarts it. The
  node must come back as a new incarnation (a new actor id); a wipe whose precondition is not
  met within the timeout is skipped, not forced;
- ``restore`` (opt-in): an online backup of the live node (SQLite's backup API); ``duration``
  seconds later every client is refused, the cluster converges (so every write the node
  acknowledged is held by its peers), a :class:`~vvstore.harness.checker.NodeLoss` is
  recorded, the node is stopped with SIGTERM, the backup is copied *in place* over its
  database file (same path, same inode: :func:`~vvstore.harness.cluster.restore_in_place`)
  and it restarts with the same flags. It resumes its old actor under the start-up fence, and
  must switch to a new one because its peers hold more of it; an :class:`IncarnationCheck`
  records the actor it came back as and the reason its /status gives;
- ``churn`` (opt-in): ``cycles`` times in a row, the same quiet convergence, a NodeLoss, a
  SIGTERM, the data directory wiped, ``duration`` seconds down and a restart with the same
  node id: every restart is a new actor (an IncarnationCheck each), which then serves clients
  for ``duration`` seconds before the next cycle.

A restore or a churn whose cluster does not converge within ``converge_timeout`` leaves the
node as it is and is reported as a problem: every link is healthy then (the fault holds both
lanes) and no client writes, so a cluster that does not converge is a bug.

Every fault is undone by its own task, even when cancelled, and :meth:`Nemesis.heal` (the final
phase) heals every link, resumes paused nodes and restarts dead ones.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from vvstore.harness.checker import History, NodeLoss, NodeLossKind
from vvstore.harness.cluster import CLIENT, DB_FILE, Cluster, restore_in_place
from vvstore.harness.faults.schedule import Fault, Schedule
from vvstore.harness.faults.workload import Workload
from vvstore.harness.proxy import FaultProxy, Policy

__all__ = ["IncarnationCheck", "KillCheck", "Nemesis", "NemesisEvent", "Network"]

Mode = Literal["drop", "refuse"]
Direction = tuple[str, str]
Policies = Mapping[Direction, Mode | Policy]

# How long a wipe or a restore waits for the other nodes to cover the victim's vector.
COVERAGE_TIMEOUT_S = 45.0
# How long a restore in place or a churn cycle waits for the quiet cluster to converge.
CONVERGE_TIMEOUT_S = 45.0
# How long a restarted node may hold its writes for the start-up fence (the node gives up on
# its peers after its --identity-confirm-timeout, 5 s by default, and takes a fresh actor).
FENCE_TIMEOUT_S = 15.0
POLL_S = 0.1


class Network:
    """The network faults active at once, composed onto the proxy (see the module docstring)."""

    def __init__(self, proxy: FaultProxy) -> None:
        self._proxy = proxy
        self._active: dict[int, dict[Direction, Policy]] = {}
        self._applied: dict[Direction, Policy] = {}
        self._tokens = itertools.count(1)

    def add(self, policies: Policies) -> int:
        """Activate ``policies``; returns the token that :meth:`remove` takes."""
        token = next(self._tokens)
        self._active[token] = {
            d: p if isinstance(p, Policy) else Policy(p) for d, p in policies.items()
        }
        self._apply()
        return token

    def remove(self, token: int) -> None:
        self._active.pop(token, None)
        self._apply()

    def clear(self) -> None:
        """Every direction passes again (the final heal)."""
        self._active.clear()
        self._apply()
        self._proxy.heal()

    def effective(self) -> dict[Direction, Policy]:
        wanted: dict[Direction, Policy] = {}
        for policies in self._active.values():
            for direction, policy in policies.items():
                wanted[direction] = _compose(wanted.get(direction, Policy()), policy)
        return {d: p for d, p in wanted.items() if p != Policy()}

    def _apply(self) -> None:
        wanted = self.effective()
        for direction in self._applied.keys() - wanted.keys():
            self._proxy.set_direction(*direction, "pass")
        for direction, policy in wanted.items():
            if self._applied.get(direction) != policy:
                if policy.mode in ("drop", "refuse"):
                    self._proxy.set_direction(*direction, policy.mode)
                else:
                    self._proxy.set_direction(
                        *direction, policy.mode, policy.delay, policy.bandwidth, loss=policy.loss
                    )
        self._applied = wanted


def _compose(a: Policy, b: Policy) -> Policy:
    """Both policies at once: refuse over drop over the rest; of two passing policies the
    longer delay, the narrower bandwidth (0 is none) and the higher loss."""
    for mode in ("refuse", "drop"):
        if mode in (a.mode, b.mode):
            return Policy(mode)
    delay = max(a.delay, b.delay)
    bandwidths = [x for x in (a.bandwidth, b.bandwidth) if x > 0]
    return Policy(
        "delay" if delay > 0 else "pass",
        delay,
        min(bandwidths, default=0.0),
        max(a.loss, b.loss),
    )


@dataclass(frozen=True, slots=True)
class NemesisEvent:
    """One line of the nemesis log: ``fault`` is the schedule index (-1: the final phase)."""

    time: float
    fault: int
    kind: str
    what: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "time": round(self.time, 3)}

    def describe(self) -> str:
        label = f"#{self.fault}" if self.fault >= 0 else "final"
        return f"t={self.time:7.2f} s  {label:>5} {self.kind:<14} {self.what:<9} {self.detail}"


@dataclass(frozen=True, slots=True)
class KillCheck:
    """What a killed node held when it came back, before it could pull from anyone.

    ``acknowledged_seq``: the highest seq of ``actor_before`` in any acknowledgement the node
    sent; ``held_seq``: its vector's entry for that actor after the restart. Crash safety holds
    when the actor is unchanged and ``held_seq >= acknowledged_seq``.
    """

    node: str
    durability: str
    time: float
    actor_before: str
    actor_after: str
    acknowledged_seq: int
    held_seq: int

    @property
    def ok(self) -> bool:
        return self.actor_after == self.actor_before and self.held_seq >= self.acknowledged_seq

    def describe(self) -> str:
        actor = (
            f"actor {self.actor_after} kept"
            if self.actor_after == self.actor_before
            else f"actor changed from {self.actor_before} to {self.actor_after}"
        )
        held = f"holds seq {self.held_seq}, acknowledged up to {self.acknowledged_seq}"
        verdict = "ok" if self.ok else "LOST ACKNOWLEDGED WRITES"
        return (
            f"kill of {self.node} (durability {self.durability}) at t={self.time:.1f} s: "
            f"{actor}, {held}: {verdict}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "time": round(self.time, 3), "ok": self.ok}


@dataclass(frozen=True, slots=True)
class IncarnationCheck:
    """What a node restored in place (``restore``) or wiped (``churn``) came back as.

    ``actor_before``: its actor when the backup was taken (restore) or when it was stopped
    (churn). ``backup_seq``: restore only, that actor's seq in the node's /status read just
    after the backup, so at least what the copy holds. ``peers_seq``: the most of that actor
    any other node held once the cluster had converged, before the stop. ``reason`` and
    ``actor_after``: the restarted node's /status once its start-up fence was lifted.

    A new actor is *required* after a churn (the database is new) and after a restore when
    ``peers_seq > backup_seq`` (a peer holds dots of the old actor that the restored counter
    would issue again). The check holds when a required new actor was taken.
    """

    node: str
    kind: str
    fault: int
    cycle: int
    time: float
    actor_before: str
    actor_after: str
    reason: str | None
    backup_seq: int
    peers_seq: int

    @property
    def required(self) -> bool:
        return self.kind == "churn" or self.peers_seq > self.backup_seq

    @property
    def new_actor(self) -> bool:
        return self.actor_after != self.actor_before

    @property
    def ok(self) -> bool:
        return self.new_actor or not self.required

    def describe(self) -> str:
        what = (
            f"restore of {self.node} in place"
            if self.kind == "restore"
            else f"churn of {self.node}, cycle {self.cycle}"
        )
        held = f"peers held {self.actor_before} up to seq {self.peers_seq}"
        if self.kind == "restore":
            held += f", the copy at most up to seq {self.backup_seq}"
        if self.new_actor:
            outcome = f"new actor {self.actor_after} ({self.reason or 'no reason given'}): ok"
        elif self.required:
            outcome = (
                f"KEPT ITS ACTOR {self.actor_before}: it may issue a dot that a peer holds "
                "with other contents"
            )
        else:
            outcome = f"kept {self.actor_before}: ok, nothing of it was written after the copy"
        return f"{what} at t={self.time:.1f} s: {held}; {outcome}"

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "time": round(self.time, 3),
            "required": self.required,
            "ok": self.ok,
        }


class Nemesis:
    """Executes one schedule; collects its log, node losses, kill checks and problems."""

    def __init__(
        self,
        cluster: Cluster,
        workload: Workload,
        history: History,
        clock: Callable[[], float],
        *,
        coverage_timeout: float = COVERAGE_TIMEOUT_S,
        converge_timeout: float = CONVERGE_TIMEOUT_S,
        fence_timeout: float = FENCE_TIMEOUT_S,
    ) -> None:
        self.cluster = cluster
        self.workload = workload
        self.history = history
        self.clock = clock
        self.coverage_timeout = coverage_timeout
        self.converge_timeout = converge_timeout
        self.fence_timeout = fence_timeout
        self.network = Network(cluster.proxy)
        self.events: list[NemesisEvent] = []
        self.losses: list[NodeLoss] = []
        self.kill_checks: list[KillCheck] = []
        #: One per restore in place and per churn cycle.
        self.incarnation_checks: list[IncarnationCheck] = []
        #: Faults that did not do what they should (a node that would not restart, ...).
        self.problems: list[str] = []
        self.executed: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.paused: set[str] = set()
        self._copies = itertools.count(1)
        self._schedule: Schedule | None = None
        self._listeners: list[Callable[[NemesisEvent], None]] = []

    def on_event(self, listener: Callable[[NemesisEvent], None]) -> None:
        self._listeners.append(listener)

    def _log(self, index: int, kind: str, what: str, detail: str = "") -> None:
        event = NemesisEvent(self.clock(), index, kind, what, detail)
        self.events.append(event)
        for listener in self._listeners:
            listener(event)

    # -- the schedule -------------------------------------------------------------------------

    async def run(
        self, schedule: Schedule, began: float, until: float, *, first_index: int = 0
    ) -> None:
        """Start each fault at ``began + fault.at`` (loop time) once its lanes are free; skip
        those whose lanes free up only after ``until``; return when every fault is over.

        ``first_index`` numbers the faults in the log when ``schedule`` is a window of a longer
        one (a checkpointed run).
        """
        loop = asyncio.get_running_loop()
        busy: dict[str, asyncio.Task[None]] = {}
        self._schedule = schedule
        try:
            for index, fault in enumerate(schedule.faults, start=first_index):
                await asyncio.sleep(max(0.0, began + fault.at - loop.time()))
                for lane in fault.lanes:
                    if lane in busy:
                        await busy[lane]
                if loop.time() >= until:
                    self.skipped[fault.kind] += 1
                    self._log(index, fault.kind, "skip", "its lane was busy until the end")
                    continue
                task = asyncio.create_task(self._execute(index, fault), name=f"fault {index}")
                for lane in fault.lanes:
                    busy[lane] = task
            await asyncio.gather(*set(busy.values()))
        finally:
            for task in busy.values():
                task.cancel()
            await asyncio.gather(*busy.values(), return_exceptions=True)

    async def _execute(self, index: int, fault: Fault) -> None:
        try:
            self.executed[fault.kind] += 1
            await self._dispatch(index, fault)
        except Exception as exc:  # a fault that went wrong must not end the run unjudged
            message = f"fault #{index} ({fault.describe(self.cluster.names)}) failed: {exc}"
            self.problems.append(message)
            self._log(index, fault.kind, "error", str(exc).splitlines()[0])

    async def _dispatch(self, index: int, fault: Fault) -> None:
        names = self.cluster.names
        a = fault.victim
        others = [n for n in names if n != a]
        if fault.kind == "isolate":
            cut: dict[Direction, Mode] = {
                d: "drop" for o in (*others, CLIENT) for d in ((a, o), (o, a))
            }
            await self._network(index, fault, cut)
        elif fault.kind in ("split", "long_partition"):
            await self._network(index, fault, {d: "drop" for o in others for d in ((a, o), (o, a))})
        elif fault.kind == "bridge":
            p, q = others[:2]
            await self._network(index, fault, {(p, q): "drop", (q, p): "drop"})
        elif fault.kind == "one_way":
            await self._network(index, fault, {(a, fault.nodes[1]): "drop"})
        elif fault.kind == "swallow":
            await self._network(index, fault, {(a, CLIENT): "drop"})
        elif fault.kind in ("slow", "slow_one_way"):
            await self._network(index, fault, self._link_policies(index, fault))
        elif fault.kind == "lossy":
            await self._lossy(index, fault)
        elif fault.kind == "flap":
            await self._flap(index, fault)
        elif fault.kind == "kill":
            await self._kill(index, fault)
        elif fault.kind == "pause":
            await self._pause(index, fault)
        elif fault.kind == "restore":
            await self._restore(index, fault)
        elif fault.kind == "churn":
            await self._churn(index, fault)
        else:
            await self._replace(index, fault)

    # -- network faults -----------------------------------------------------------------------

    async def _network(self, index: int, fault: Fault, policies: Policies) -> None:
        token = self.network.add(policies)
        self._log(index, fault.kind, "start", fault.text(self.cluster.names))
        try:
            await asyncio.sleep(fault.duration)
        finally:
            self.network.remove(token)
            self._log(index, fault.kind, "end")

    async def _lossy(self, index: int, fault: Fault) -> None:
        """A lossy link fault, and how many connections its losses reset and stalled."""
        counters = ("reset_by_loss", "stalled_by_loss")
        before = self.cluster.proxy.stats()["connections"]
        try:
            await self._network(index, fault, self._link_policies(index, fault))
        finally:
            after = self.cluster.proxy.stats()["connections"]
            reset, stalled = (after[c] - before[c] for c in counters)
            self._log(index, fault.kind, "losses", f"{reset} connections reset, {stalled} stalled")

    def _link_policies(self, index: int, fault: Fault) -> dict[Direction, Policy]:
        """The directions a link fault degrades, and how (see the module docstring)."""
        assert self._schedule is not None, "a fault runs inside run()"
        options = self._schedule.options
        a = fault.victim
        if fault.kind == "slow_one_way":
            directions = [(a, fault.nodes[1])]
        else:
            others = [n for n in self.cluster.names if n != a]
            directions = [d for o in (*others, CLIENT) for d in ((a, o), (o, a))]
        if fault.kind == "lossy":
            self.cluster.proxy.seed_loss(self._schedule.seed * 1_000 + index)
            policy = Policy("pass", loss=options.loss)
        else:
            latency = options.slow_latency
            mode: Literal["pass", "delay"] = "delay" if latency > 0 else "pass"
            policy = Policy(mode, latency, options.slow_bandwidth)
        return dict.fromkeys(directions, policy)

    async def _flap(self, index: int, fault: Fault) -> None:
        loop = asyncio.get_running_loop()
        a, b = fault.nodes
        end = loop.time() + fault.duration
        flips = 0
        self._log(index, fault.kind, "start", fault.text(self.cluster.names))
        try:
            while loop.time() < end:
                token = self.network.add({(a, b): "drop", (b, a): "drop"})
                flips += 1
                try:
                    await asyncio.sleep(min(fault.period, max(0.0, end - loop.time())))
                finally:
                    self.network.remove(token)
                await asyncio.sleep(min(fault.period, max(0.0, end - loop.time())))
        finally:
            self._log(index, fault.kind, "end", f"{flips} cuts")

    # -- process faults -----------------------------------------------------------------------

    async def _kill(self, index: int, fault: Fault) -> None:
        name = fault.victim
        status = await self.cluster.status(name)
        actor_before = str(status["actor"]) if status else self.cluster.actors[name]
        self.cluster.kill(name)
        self._log(index, fault.kind, "kill", f"kill -9 {name} ({actor_before})")
        await asyncio.sleep(fault.duration)
        # What the dead process acknowledged: read before the restart, because clients go on
        # writing to the new process (its acknowledgements carry higher seqs), and after the
        # downtime, so that replies still in flight at the kill have arrived or been lost.
        acknowledged = self.workload.acked_seq.get(actor_before, 0)
        # Restart cut off from the other nodes, so that what it holds is what it kept.
        token = self.network.add(self._isolated(name))
        try:
            status = await self.cluster.restart(name)
            check = KillCheck(
                node=name,
                durability=self.cluster.durability[name],
                time=self.clock(),
                actor_before=actor_before,
                actor_after=str(status["actor"]),
                acknowledged_seq=acknowledged,
                held_seq=int(status["version"].get(actor_before, 0)),
            )
            self.kill_checks.append(check)
            self._log(index, fault.kind, "restart", check.describe())
        finally:
            self.network.remove(token)

    def _isolated(self, name: str) -> dict[Direction, Mode]:
        return {
            d: "drop"
            for other in self.cluster.names
            if other != name
            for d in ((name, other), (other, name))
        }

    async def _pause(self, index: int, fault: Fault) -> None:
        name = fault.victim
        self.cluster.pause(name)
        self.paused.add(name)
        self._log(index, fault.kind, "start", f"SIGSTOP {name}")
        try:
            await asyncio.sleep(fault.duration)
        finally:
            self.cluster.resume(name)
            self.paused.discard(name)
            self._log(index, fault.kind, "end", f"SIGCONT {name}")

    async def _replace(self, index: int, fault: Fault) -> None:
        name = fault.victim
        copy: Path | None = None
        if fault.kind == "restore_stale":
            copy = self.cluster.workdir / "copies" / f"{name}-{next(self._copies)}"
            await self.cluster.backup(name, copy)
            status = await self.cluster.status(name)
            seq = status["version"].get(status["actor"], 0) if status else "?"
            self._log(index, fault.kind, "copy", f"copied {name}'s database at its seq {seq}")
            await asyncio.sleep(fault.duration)
        # Quiet: no client reaches the victim any more, so all it acknowledged is known.
        token = self.network.add({(CLIENT, name): "refuse", (name, CLIENT): "refuse"})
        try:
            waited = await self._wait_covered(name)
            if waited is None:
                self.skipped[fault.kind] += 1
                self._log(
                    index,
                    fault.kind,
                    "skip",
                    f"the other nodes did not cover {name}'s vector in {self.coverage_timeout:g} s",
                )
                return
            actor_before = self.cluster.actors[name]
            self._log(index, fault.kind, "covered", f"after {waited:.2f} s")
            kind: Literal["wipe", "restore"] = "wipe" if copy is None else "restore"
            self.losses.append(NodeLoss(len(self.history.ops), name, kind, self.clock()))
            self.cluster.kill(name)
            self.cluster.replace_data(name, copy)
            what = "wiped" if copy is None else "restored a stale copy"
            source = "a wiped data directory" if copy is None else "a stale copy of its data"
            self._log(index, fault.kind, "kill", f"kill -9 {name}, {what}")
            if copy is None:
                await asyncio.sleep(fault.duration)
            status = await self.cluster.restart(name)
            actor_after = str(status["actor"])
            self._log(index, fault.kind, "restart", f"{name} is now {actor_after}")
            if actor_after == actor_before:
                self.problems.append(
                    f"node {name} came back from {source} with its old actor id "
                    f"{actor_before}: it may reuse sequence numbers (fault #{index})"
                )
        finally:
            self.network.remove(token)

    async def _wait_covered(self, name: str) -> float | None:
        """Seconds until every other node's vector covers ``name``'s, or None on timeout.

        Coverage must hold on two polls in a row, the victim's vector read afresh each time: a
        node's /status may lag its commits by a moment (a read can see an older snapshot of
        the database), and one lagging reading must not let a wipe through.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self.coverage_timeout
        others = [n for n in self.cluster.names if n != name]
        in_a_row = 0
        while loop.time() < deadline:
            status = await self.cluster.status(name)
            covered = False
            if status is not None:
                wanted: dict[str, int] = status["version"]
                statuses = [await self.cluster.status(other) for other in others]
                covered = all(
                    s is not None and all(s["version"].get(a, 0) >= q for a, q in wanted.items())
                    for s in statuses
                )
            in_a_row = in_a_row + 1 if covered else 0
            if in_a_row >= 2:
                return loop.time() - start
            await asyncio.sleep(POLL_S)
        return None

    async def _restore(self, index: int, fault: Fault) -> None:
        name = fault.victim
        copy = self.cluster.workdir / "copies" / f"{name}-{next(self._copies)}"
        await self.cluster.backup(name, copy)
        # Read after the backup, so the seq is at least what the copy holds.
        status = await self._status(name)
        actor_before = str(status["actor"])
        backup_seq = int(status["version"].get(actor_before, 0))
        self._log(
            index,
            fault.kind,
            "backup",
            f"online backup of {name} ({actor_before} at seq {backup_seq} at most)",
        )
        await asyncio.sleep(fault.duration)
        token = self.network.add(self._no_clients((name,)))
        try:
            statuses = await self._converge_and_stop(index, fault, "restore")
            if statuses is None:
                return
            peers_seq = self._peers_seq(statuses, name, actor_before)
            db = self.cluster.data_dir(name) / DB_FILE
            inode = db.stat().st_ino
            await asyncio.to_thread(restore_in_place, copy / DB_FILE, db)
            if db.stat().st_ino != inode:
                raise RuntimeError(f"restoring {name}'s backup in place changed its inode")
            shutil.rmtree(copy, ignore_errors=True)
            self._log(
                index,
                fault.kind,
                "restore",
                f"backup copied over {name}'s database (same inode); peers hold "
                f"{actor_before} up to seq {peers_seq}",
            )
            await self.cluster.restart(name)
        finally:
            # Clients reach it again at once: writes that arrive while its start-up fence
            # holds wait (none is refused), and go out under whatever actor it ends up with.
            self.network.remove(token)
        await self._check_incarnation(
            index, fault, 0, actor_before, backup_seq=backup_seq, peers_seq=peers_seq
        )

    async def _churn(self, index: int, fault: Fault) -> None:
        name = fault.victim
        for cycle in range(1, fault.cycles + 1):
            token = self.network.add(self._no_clients((name,)))
            try:
                statuses = await self._converge_and_stop(index, fault, "wipe")
                if statuses is None:
                    return
                actor_before = str(statuses[name]["actor"])
                peers_seq = self._peers_seq(statuses, name, actor_before)
                self.cluster.replace_data(name, None)
                self._log(
                    index,
                    fault.kind,
                    "wipe",
                    f"cycle {cycle}/{fault.cycles}: wiped {name}'s data directory "
                    f"(was {actor_before}), down {fault.duration:.1f} s",
                )
                await asyncio.sleep(fault.duration)
                await self.cluster.restart(name)
            finally:
                self.network.remove(token)
            await self._check_incarnation(
                index, fault, cycle, actor_before, backup_seq=0, peers_seq=peers_seq
            )
            # The new incarnation takes writes of its own before the next cycle ends it.
            await asyncio.sleep(fault.duration)

    def _no_clients(self, names: Iterable[str]) -> dict[Direction, Mode]:
        """Refuse every client connection to ``names``, in both directions (live ones reset)."""
        return {d: "refuse" for name in names for d in ((CLIENT, name), (name, CLIENT))}

    async def _converge_and_stop(
        self, index: int, fault: Fault, loss: NodeLossKind
    ) -> dict[str, dict[str, Any]] | None:
        """Refuse every client, wait until the cluster converges, then record a NodeLoss of the
        victim and stop it with SIGTERM; every node's /status at convergence.

        None when the cluster did not converge within ``converge_timeout``: the victim is left
        running and the problem is reported. Clients reach the other nodes again on return
        (the caller keeps the victim's own clients out).
        """
        name = fault.victim
        token = self.network.add(self._no_clients(self.cluster.names))
        try:
            try:
                took = await self.cluster.wait_converged(self.converge_timeout)
            except TimeoutError as exc:
                self.skipped[fault.kind] += 1
                self.problems.append(
                    f"fault #{index} ({fault.kind} of {name}): the cluster did not converge "
                    f"within {self.converge_timeout:g} s with every client refused, so {name} "
                    f"was left as it was: {str(exc).splitlines()[0]}"
                )
                self._log(
                    index, fault.kind, "skip", f"not converged in {self.converge_timeout:g} s"
                )
                return None
            statuses = {n: await self._status(n) for n in self.cluster.names}
            self._log(index, fault.kind, "converged", f"after {took:.2f} s, clients refused")
            self.losses.append(NodeLoss(len(self.history.ops), name, loss, self.clock()))
            code = await self.cluster.processes[name].stop()
            self._log(index, fault.kind, "stop", f"SIGTERM {name}: exit status {code}")
            if code != 0:
                self.problems.append(
                    f"node {name} exited with status {code} on SIGTERM (fault #{index})"
                )
            return statuses
        finally:
            self.network.remove(token)

    @staticmethod
    def _peers_seq(statuses: Mapping[str, Mapping[str, Any]], name: str, actor: str) -> int:
        """The most of ``actor`` any node but ``name`` holds."""
        return max(
            (int(s["version"].get(actor, 0)) for n, s in statuses.items() if n != name),
            default=0,
        )

    async def _status(self, name: str) -> dict[str, Any]:
        status = await self.cluster.status(name)
        if status is None:
            raise RuntimeError(f"node {name} did not answer /status")
        return status

    async def _unfenced(self, name: str) -> dict[str, Any]:
        """The node's /status once its start-up fence no longer holds its writes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.fence_timeout
        while True:
            status = await self.cluster.status(name)
            if status is not None and not (status.get("incarnation") or {}).get("writes_fenced"):
                return status
            if loop.time() >= deadline:
                raise RuntimeError(
                    f"node {name} still held its writes for the start-up fence (or did not "
                    f"answer) {self.fence_timeout:g} s after its restart"
                )
            await asyncio.sleep(POLL_S)

    async def _check_incarnation(
        self,
        index: int,
        fault: Fault,
        cycle: int,
        actor_before: str,
        *,
        backup_seq: int,
        peers_seq: int,
    ) -> None:
        name = fault.victim
        status = await self._unfenced(name)
        check = IncarnationCheck(
            node=name,
            kind=fault.kind,
            fault=index,
            cycle=cycle,
            time=self.clock(),
            actor_before=actor_before,
            actor_after=str(status["actor"]),
            reason=(status.get("incarnation") or {}).get("reason"),
            backup_seq=backup_seq,
            peers_seq=peers_seq,
        )
        self.incarnation_checks.append(check)
        self._log(index, fault.kind, "restart", check.describe())

    # -- the final phase ----------------------------------------------------------------------

    async def heal(self) -> None:
        """Heal every link, resume every paused node and restart every dead one."""
        self.network.clear()
        self._log(-1, "heal", "heal", "every link passes")
        for name in sorted(self.paused):
            self.cluster.resume(name)
            self._log(-1, "heal", "resume", f"SIGCONT {name}")
        self.paused.clear()
        for name in self.cluster.names:
            if not self.cluster.running(name):
                await self.cluster.restart(name)
                self._log(-1, "heal", "restart", f"{name} is {self.cluster.actors[name]}")
