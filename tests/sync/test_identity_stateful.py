"""A Hypothesis state machine of node identity under anything done to a node's files.

Three named nodes (A, B, C), each on its own data directory, run their sync loops on the
in-memory network (the start-up fence is live, with short timeouts). Rules: increment, reset
(one that spreads a key over every live node's actor first, for resets of many siblings),
partition, heal, an online backup of a node's database (a snapshot), a restore of any snapshot
onto any node (in place, keeping the file's inode, or as a new file; the node stopped cleanly
or crashed first), a wipe of a node's directory, a copy of a node's directory started as a new
node id (D, then E: every other node is redeployed with it as a peer), a redeploy (clean stop
or crash, reopened unchanged) and a heal with rounds to convergence.

The model is every acknowledged write, by dot: ``(actor, seq) -> (key, amount, entry)``. A
write whose seq an actor issued before (a resumed actor after a restore, when no peer held
more of it) forks that actor's history: the earlier records from that seq on become dead,
which is legitimate only if nothing held them any more. A record is *held* while some live node
holds its key's entry of its actor at that seq or later. After every step:

* every entry held anywhere, and every floor it carries, is the entry the live record of its
  dot acknowledged (so no dot is held by two nodes with different contents, and no dot was
  issued twice while a node, or a floor, still held the first);
* every node's vector V is sound against the records (and against the union of held entries);
* entries never go backwards on a node whose files were left alone, and a record stops being
  held only if the one node holding it was the node just wiped or restored;
* a node's actor is its own, and is the same after a restart only when nothing changed it.

After a heal and rounds between every pair (a rule, and again at teardown) every node holds
the same entries and vector, is no longer fenced, and reads for every key the model's value:
the held increments not cancelled by a held reset's floors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vvstore.actor import is_actor_of
from vvstore.config import NodeConfig
from vvstore.counter import CounterState
from vvstore.errors import NodeIdMismatch
from vvstore.harness.cluster import restore_in_place
from vvstore.harness.testing import Network, crash, open_memory_node
from vvstore.node import Node
from vvstore.store import DB_FILE

FIRST = ("A", "B", "C")
EXTRA = ("D", "E")  # copies start as these, so at most five nodes
KEYS = ("k1", "k2", "k3")
SETTINGS: dict[str, Any] = {
    "sync_interval": 0.05,
    "backoff_cap": 0.1,
    "identity_confirm_timeout": 0.3,
    "durability": "normal",
    "page_entries": 2,  # rounds of several pages: a cut may leave one half done
}
CONVERGE_S = 10.0
STEP_TIMEOUT_S = 60.0

T = TypeVar("T")
P = ParamSpec("P")
Dot = tuple[str, int]
Floors = tuple[tuple[str, int, int], ...]  # (actor, seq, total), sorted


@dataclass(frozen=True, slots=True)
class Version:
    """One entry as held: its seq, total and floors."""

    seq: int
    total: int
    floors: Floors


@dataclass(frozen=True, slots=True)
class View:
    """What one node holds, read in one read transaction: entries by (key, actor), and V."""

    entries: dict[tuple[str, str], Version]
    vector: dict[str, int]


@dataclass(slots=True)
class Rec:
    """One acknowledged write: the entry it made (``amount`` 0 and floors for a reset)."""

    actor: str
    seq: int
    key: str
    amount: int
    total: int
    floors: Floors
    reset: bool
    dead: bool = False


def _floors(raw: str | None) -> Floors:
    if raw is None:
        return ()
    return tuple(sorted((a, s, t) for a, (s, t) in json.loads(raw).items()))


def read_db(db: Path, actor: str | None) -> View:
    """Entries and V of the database ``db`` (V of ``actor`` includes its own entries)."""
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("BEGIN")  # one snapshot: the node's writer thread may commit meanwhile
        rows = conn.execute(
            "SELECT e.key, a.name, e.seq, e.total, e.floors FROM entries e"
            " JOIN actors a ON a.id = e.actor"
        ).fetchall()
        vector = dict(conn.execute("SELECT actor, seq FROM vector").fetchall())
        conn.execute("COMMIT")
    entries = {(k, a): Version(s, t, _floors(f)) for k, a, s, t, f in rows}
    if actor is not None:
        own = max((v.seq for (_, a), v in entries.items() if a == actor), default=0)
        if own > vector.get(actor, 0):
            vector[actor] = own
    return View(entries, vector)


def read_meta(db: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT name, value FROM meta").fetchall())


def backup(db: Path, to: Path) -> None:
    """A consistent copy of a live database (SQLite's online backup API)."""
    with (
        contextlib.closing(sqlite3.connect(db)) as src,
        contextlib.closing(sqlite3.connect(to)) as dst,
    ):
        src.backup(dst)


def file_identity(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_dev}:{stat.st_ino}"


def step(
    method: Callable[Concatenate[Identities, P], None],
) -> Callable[Concatenate[Identities, P], None]:
    """Mark the machine broken while a rule runs: teardown checks only an unbroken run."""

    @functools.wraps(method)
    def wrapper(self: Identities, *args: P.args, **kwargs: P.kwargs) -> None:
        self.broken = True
        method(self, *args, **kwargs)
        self.broken = False

    return wrapper


class Identities(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.broken = True
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="vvstore-identity-"))
        self.network = Network(rng=random.Random(0))
        self.partitioned = False
        self.seeds = iter(range(10_000))
        self.configs: dict[str, NodeConfig] = {}
        self.nodes: dict[str, Node] = {}
        self.snapshots: list[Path] = []
        self.records: list[Rec] = []
        self.by_dot: dict[Dot, Rec] = {}  # the live record of each dot
        self.actors: dict[str, str] = {}  # every actor ever seen -> its node
        # A node restored in place under a resumed actor that a peer held beyond: it must not
        # write under that actor again.
        self.must_leave: dict[str, str] = {}
        # The invariant's memory of the last check, and what this step may legitimately lose.
        self.held: set[int] = set()
        self.baseline: dict[str, dict[tuple[str, str], int]] = {}
        self.may_lose: set[int] = set()
        for name in FIRST:
            self.configs[name] = self.config(name)
        for name in FIRST:
            self.run(self._open(name))
        self.broken = False

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one step; a step that hangs fails with every task's stack, not a stuck run."""

        async def watched() -> T:
            task = asyncio.ensure_future(coro)
            done, _ = await asyncio.wait([task], timeout=STEP_TIMEOUT_S)
            if not done:
                for other in asyncio.all_tasks():
                    other.print_stack(file=sys.stderr)
                task.cancel()
                raise AssertionError(f"a step did not finish within {STEP_TIMEOUT_S} s")
            return task.result()

        return self.loop.run_until_complete(watched())

    def config(self, name: str) -> NodeConfig:
        return NodeConfig(node_id=name, data_dir=str(self.tmp / name), **SETTINGS)

    def db(self, name: str) -> Path:
        return Path(self.configs[name].data_dir) / DB_FILE

    async def _open(self, name: str) -> Node:
        node = await open_memory_node(
            self.network,
            self.configs[name],
            list(self.configs),
            seed=next(self.seeds),
            start_sync=True,
        )
        self.nodes[name] = node
        self._saw(name, node.store.actor)
        return node

    async def _stop(self, name: str, crashed: bool) -> None:
        node = self.nodes.pop(name)
        self.network.nodes.pop(name, None)
        if crashed:
            await crash(node)
        await node.close()  # after a crash: stops the purge task; no clean-shutdown mark

    def _saw(self, name: str, actor: str) -> None:
        assert is_actor_of(actor, name), (name, actor)
        assert self.actors.setdefault(actor, name) == name, (actor, self.actors[actor], name)

    def pick(self, index: int) -> str:
        names = sorted(self.nodes)
        return names[index % len(names)]

    def teardown(self) -> None:
        try:
            if not self.broken:
                self.run(self._converge_and_check())
        finally:
            for name in list(self.nodes):
                self.run(self._stop(name, crashed=False))
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- reading the nodes ----------------------------------------------------------------

    def views(self, names: Iterable[str] | None = None) -> dict[str, View]:
        chosen = sorted(self.nodes) if names is None else names
        return {n: read_db(self.db(n), self.nodes[n].store.actor) for n in chosen}

    @staticmethod
    def holds(view: View, rec: Rec) -> bool:
        version = view.entries.get((rec.key, rec.actor))
        return version is not None and version.seq >= rec.seq

    def held_by(self, views: Iterable[View]) -> set[int]:
        """Indexes of the live records some of ``views`` hold."""
        views = list(views)
        return {
            i
            for i, rec in enumerate(self.records)
            if not rec.dead and any(self.holds(v, rec) for v in views)
        }

    def model_value(self, key: str, views: Iterable[View]) -> int:
        held = [self.records[i] for i in sorted(self.held_by(views))]
        held = [rec for rec in held if rec.key == key]
        cancelled: dict[str, int] = {}
        for rec in held:
            if rec.reset:
                for actor, seq, _ in rec.floors:
                    cancelled[actor] = max(cancelled.get(actor, 0), seq)
        return sum(
            rec.amount for rec in held if not rec.reset and rec.seq > cancelled.get(rec.actor, 0)
        )

    # --- the model ------------------------------------------------------------------------

    def record(self, name: str, before: str, state: CounterState, key: str, amount: int) -> None:
        """Record the write ``name`` acknowledged: ``state`` is the key's state right after."""
        after = self.nodes[name].store.actor
        self._saw(name, after)
        # The writer is the actor after the call, unless a switch came right after the write.
        actor = after if after in state.entries else before
        entry = state.entries[actor]
        assert self.must_leave.get(name) != actor, (
            f"{name} wrote {entry.dot} under an actor a peer held beyond its restored counter"
        )
        floors = tuple(sorted((a, f.seq, f.total) for a, f in entry.floors.items()))
        rec = Rec(actor, entry.seq, key, amount, entry.total, floors, reset=amount == 0)
        # An actor issuing a seq again forks its history: what it issued from there on is dead
        # (legitimate only if nothing holds it any more: the invariant checks that).
        for old in self.records:
            if old.actor == actor and old.seq >= rec.seq and not old.dead:
                old.dead = True
                del self.by_dot[(old.actor, old.seq)]
        self.records.append(rec)
        self.by_dot[(actor, rec.seq)] = rec

    async def _increment(self, name: str, key: str, amount: int) -> None:
        node = self.nodes[name]
        before = node.store.actor
        state = await node.increment(key, amount)
        self.record(name, before, state, key, amount)

    async def _reset(self, name: str, key: str) -> None:
        node = self.nodes[name]
        before = node.store.actor
        state = await node.reset(key)
        if len(state):  # a reset of a key without entries writes nothing
            self.record(name, before, state, key, 0)

    def losing(self, name: str) -> None:
        """``name`` is stopped and about to lose its files: what only it held may go."""
        others = self.views()
        everywhere = self.held
        self.may_lose |= everywhere - self.held_by(others.values())
        self.baseline.pop(name, None)

    # --- rules ----------------------------------------------------------------------------

    @rule(i=st.integers(0, 4), key=st.sampled_from(KEYS), amount=st.integers(1, 5))
    @step
    def increment(self, i: int, key: str, amount: int) -> None:
        self.run(self._increment(self.pick(i), key, amount))

    @rule(i=st.integers(0, 4), key=st.sampled_from(KEYS))
    @step
    def reset(self, i: int, key: str) -> None:
        self.run(self._reset(self.pick(i), key))

    @rule(i=st.integers(0, 4), key=st.sampled_from(KEYS))
    @step
    def spread_and_reset(self, i: int, key: str) -> None:
        """Every live node (after wipes: many actors) adds to ``key``; one then resets it."""

        async def go() -> None:
            for name in sorted(self.nodes):
                await self._increment(name, key, 1)
            await self._reset(self.pick(i), key)

        self.run(go())

    @rule(side=st.sets(st.integers(0, 4), min_size=1))
    @step
    def partition(self, side: set[int]) -> None:
        group = {self.pick(i) for i in side}
        rest = [n for n in self.nodes if n not in group]
        if rest:
            self.network.partition(group, rest)
            self.partitioned = True

    @rule()
    @step
    def heal(self) -> None:
        self.network.heal()
        self.partitioned = False

    @rule(i=st.integers(0, 4))
    @step
    def snapshot(self, i: int) -> None:
        name = self.pick(i)
        path = self.tmp / "snapshots" / f"{len(self.snapshots)}-{name}.sqlite3"
        path.parent.mkdir(exist_ok=True)
        backup(self.db(name), path)
        self.snapshots.append(path)

    @precondition(lambda self: bool(self.snapshots))
    @rule(s=st.integers(0, 100), i=st.integers(0, 4), in_place=st.booleans(), crashed=st.booleans())
    @step
    def restore(self, s: int, i: int, in_place: bool, crashed: bool) -> None:
        snap = self.snapshots[s % len(self.snapshots)]
        if self.abandoned(snap):
            return
        name = self.pick(i)
        self.run(self._restore(name, snap, in_place=in_place, crashed=crashed))

    def abandoned(self, snap: Path) -> bool:
        """Whether ``snap`` holds a dot its actor has since issued again.

        A node restored in place resumes its actor when no peer holds more of it, and then
        issues again the seqs its lost history had used. A backup taken in that lost history
        is from an abandoned branch: restoring it anywhere would bring back dots with other
        contents. docs/operations.md tells operators to discard such backups; so does the model.
        """
        view = read_db(snap, None)
        return any(
            (actor, version.seq) not in self.by_dot for (_, actor), version in view.entries.items()
        )

    async def _restore(self, name: str, snap: Path, *, in_place: bool, crashed: bool) -> None:
        old = self.nodes[name].store.actor
        await self._stop(name, crashed)
        self.losing(name)
        db = self.db(name)
        if in_place:
            restore_in_place(snap, db)
        else:  # a new file (a new inode) in the database's place, as a restore tool might
            fresh = db.with_name("restore.tmp")
            shutil.copyfile(snap, fresh)
            os.replace(fresh, db)
            for suffix in ("-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
        meta = read_meta(db)
        restored = read_db(db, meta["actor"])
        counter = restored.vector.get(meta["actor"], 0)
        same_file = meta["file_identity"] == file_identity(db)
        if meta["node_id"] != name and same_file:
            # The copy's file sits at the inode the other node's database had (the inode was
            # freed and reused): the store cannot tell it was copied and refuses the directory.
            try:
                await self._open(name)
            except NodeIdMismatch:
                shutil.rmtree(self.configs[name].data_dir)
                node = await self._open(name)
                assert node.store.incarnation_reason == "new database"
                return
            raise AssertionError(f"{name} opened node {meta['node_id']}'s database")
        node = await self._open(name)
        actor = node.store.actor
        if meta["node_id"] == name and same_file:
            # Restored in place: the node cannot tell from its files; it resumes the actor and
            # holds writes until every peer confirmed it.
            assert actor == meta["actor"], (actor, meta["actor"])
            assert node.store.fenced and node.store.incarnation_reason is None
            views = self.views(n for n in self.nodes if n != name)
            if any(
                view.vector.get(actor, 0) > counter
                or any(a == actor and v.seq > counter for (_, a), v in view.entries.items())
                for view in views.values()
            ):
                self.must_leave[name] = actor
        else:
            assert actor not in (old, meta["actor"]) and not node.store.fenced
            assert node.store.incarnation_reason is not None
            expected = "a copy of node" if meta["node_id"] != name else "copied or restored"
            assert expected in node.store.incarnation_reason, node.store.incarnation_reason

    @rule(i=st.integers(0, 4), crashed=st.booleans())
    @step
    def wipe(self, i: int, crashed: bool) -> None:
        name = self.pick(i)

        async def go() -> None:
            old = self.nodes[name].store.actor
            await self._stop(name, crashed)
            self.losing(name)
            shutil.rmtree(self.configs[name].data_dir)
            node = await self._open(name)
            assert node.store.actor != old and not node.store.fenced
            assert node.store.incarnation_reason == "new database"

        self.must_leave.pop(name, None)
        self.run(go())

    @precondition(lambda self: len(self.configs) < len(FIRST) + len(EXTRA))
    @rule(i=st.integers(0, 4), live=st.booleans())
    @step
    def copy(self, i: int, live: bool) -> None:
        """Start a copy of a node's directory as a new node id; redeploy the others with it."""
        source = self.pick(i)
        new = next(n for n in EXTRA if n not in self.configs)
        self.configs[new] = self.config(new)
        target = Path(self.configs[new].data_dir)

        async def go() -> None:
            if live:  # an online backup of the running node into the new directory
                target.mkdir()
                backup(self.db(source), target / DB_FILE)
            else:  # the whole directory, the source stopped cleanly
                await self._stop(source, crashed=False)
                shutil.copytree(self.configs[source].data_dir, target)
            copied = read_meta(target / DB_FILE)
            node = await self._open(new)
            assert node.store.actor != copied["actor"] and not node.store.fenced
            reason = node.store.incarnation_reason or ""
            assert f"a copy of node {source!r}" in reason, reason
            # The source first (if stopped): a node redeployed before it would wait for it.
            for name in sorted(self.configs, key=lambda n: (n != source, n)):
                if name != new:
                    await self._redeploy(name, crashed=False)

        self.run(go())

    @rule(i=st.integers(0, 4), crashed=st.booleans())
    @step
    def redeploy(self, i: int, crashed: bool) -> None:
        self.run(self._redeploy(self.pick(i), crashed))

    async def _redeploy(self, name: str, crashed: bool) -> None:
        """Stop (if running) and reopen ``name`` unchanged, with every node as a peer."""
        old = self.nodes[name].store.actor if name in self.nodes else None
        if name in self.nodes:
            await self._stop(name, crashed)
        node = await self._open(name)
        if old is None:
            return
        assert node.store.actor == old and node.store.fenced
        if not self.partitioned:
            # Every peer answers at once: confirmed, and the actor is kept.
            await until(lambda: not node.store.fenced, f"{name} confirmed")
            if self.must_leave.get(name) == old:  # restored in place, peers hold more of it
                assert node.store.actor != old, (name, old)
            else:
                assert node.store.actor == old, (name, old, node.store.incarnation_reason)

    @rule()
    @step
    def heal_and_converge(self) -> None:
        self.run(self._converge_and_check())

    async def _converge_and_check(self) -> None:
        self.network.heal()
        self.partitioned = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONVERGE_S
        while True:
            for node in list(self.nodes.values()):
                for link in node.sync.links:
                    await node.sync.round(link)
            views = self.views()
            first = next(iter(views.values()))
            if all(v == first for v in views.values()) and not any(
                n.store.fenced for n in self.nodes.values()
            ):
                break
            if loop.time() > deadline:
                raise AssertionError(f"no convergence within {CONVERGE_S} s: {views}")
            await asyncio.sleep(0.01)
        for name, node in self.nodes.items():
            assert self.must_leave.get(name) != node.store.actor, (name, node.store.actor)
        for key in KEYS:
            expected = self.model_value(key, views.values())
            values = {name: (await node.read(key)).value() for name, node in self.nodes.items()}
            assert set(values.values()) == {expected}, (key, values, expected)

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def identity_holds(self) -> None:
        views = self.views()
        # Every entry held, and every floor, is what the live record of its dot acknowledged.
        for name, view in views.items():
            for (key, actor), version in view.entries.items():
                rec = self.by_dot.get((actor, version.seq))
                assert rec is not None and (rec.key, rec.total, rec.floors) == (
                    key,
                    version.total,
                    version.floors,
                ), f"{name} holds {key}@{actor}:{version} but the dot's write was {rec}"
                for floor_actor, seq, total in version.floors:
                    floor = self.by_dot.get((floor_actor, seq))
                    assert floor is not None and (floor.key, floor.total) == (key, total), (
                        f"{name}'s entry {key}@{actor}:{version.seq} has a floor at"
                        f" {floor_actor}:{seq} (total {total}); that dot's write is {floor}"
                    )
        # V is sound: V[X] = s means holding X's entry of every key as new as after event s.
        union: dict[tuple[str, str], int] = {}
        for view in views.values():
            for k, version in view.entries.items():
                union[k] = max(union.get(k, 0), version.seq)
        for name, view in views.items():
            for actor, claimed in view.vector.items():
                for rec in self.records:
                    if rec.actor == actor and not rec.dead and rec.seq <= claimed:
                        assert self.holds(view, rec), (name, actor, claimed, rec)
                for (key, other), seq in union.items():
                    if other == actor and seq <= claimed:
                        held = view.entries.get((key, actor))
                        assert held is not None and held.seq >= seq, (name, key, actor, seq)
        # Entries never go backwards on a node whose files were left alone.
        for name, view in views.items():
            for k, seq in self.baseline.get(name, {}).items():
                assert k in view.entries and view.entries[k].seq >= seq, (name, k, seq)
            self.baseline[name] = {k: v.seq for k, v in view.entries.items()}
        # A record stops being held only when the one node holding it lost its files.
        held = self.held_by(views.values())
        gone = self.held - held
        assert gone <= self.may_lose, [self.records[i] for i in sorted(gone - self.may_lose)]
        self.held = held
        self.may_lose = set()
        for name, node in self.nodes.items():
            self._saw(name, node.store.actor)


async def until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.01)


TestIdentities = Identities.TestCase
TestIdentities.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
