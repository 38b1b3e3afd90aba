"""The nemesis: runs a :class:`~vvstore.harness.faults.schedule.Schedule` against a live cluster.

Network faults become proxy policies. Several may be active at once (a flap during a
partition, the quiet period of a wipe during a swallow), so :class:`Network` composes them:
each active fault contributes directions, a direction is refused when any fault refuses it,
dropped when any drops it, and passes otherwise; only directions whose effective mode changes
are set on the proxy, so one fault ending never heals another.

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
  met within the timeout is skipped, not forced.

Every fault is undone by its own task, even when cancelled, and :meth:`Nemesis.heal` (the final
phase) heals every link, resumes paused nodes and restarts dead ones.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from vvstore.harness.checker import History, NodeLoss
from vvstore.harness.cluster import CLIENT, Cluster
from vvstore.harness.faults.schedule import Fault, Schedule
from vvstore.harness.faults.workload import Workload
from vvstore.harness.proxy import FaultProxy

__all__ = ["KillCheck", "Nemesis", "NemesisEvent", "Network"]

Mode = Literal["drop", "refuse"]
Direction = tuple[str, str]
Policies = Mapping[Direction, Mode]

# How long a wipe or a restore waits for the other nodes to cover the victim's vector.
COVERAGE_TIMEOUT_S = 45.0
POLL_S = 0.1


class Network:
    """The network faults active at once, composed onto the proxy (see the module docstring)."""

    def __init__(self, proxy: FaultProxy) -> None:
        self._proxy = proxy
        self._active: dict[int, dict[Direction, Mode]] = {}
        self._applied: dict[Direction, Mode] = {}
        self._tokens = itertools.count(1)

    def add(self, policies: Policies) -> int:
        """Activate ``policies``; returns the token that :meth:`remove` takes."""
        token = next(self._tokens)
        self._active[token] = dict(policies)
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

    def effective(self) -> dict[Direction, Mode]:
        wanted: dict[Direction, Mode] = {}
        for policies in self._active.values():
            for direction, mode in policies.items():
                if wanted.get(direction) != "refuse":
                    wanted[direction] = mode
        return wanted

    def _apply(self) -> None:
        wanted = self.effective()
        for direction in self._applied.keys() - wanted.keys():
            self._proxy.set_direction(*direction, "pass")
        for direction, mode in wanted.items():
            if self._applied.get(direction) != mode:
                self._proxy.set_direction(*direction, mode)
        self._applied = wanted


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
    ) -> None:
        self.cluster = cluster
        self.workload = workload
        self.history = history
        self.clock = clock
        self.coverage_timeout = coverage_timeout
        self.network = Network(cluster.proxy)
        self.events: list[NemesisEvent] = []
        self.losses: list[NodeLoss] = []
        self.kill_checks: list[KillCheck] = []
        #: Faults that did not do what they should (a node that would not restart, ...).
        self.problems: list[str] = []
        self.executed: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.paused: set[str] = set()
        self._copies = itertools.count(1)
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
        elif fault.kind == "flap":
            await self._flap(index, fault)
        elif fault.kind == "kill":
            await self._kill(index, fault)
        elif fault.kind == "pause":
            await self._pause(index, fault)
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
