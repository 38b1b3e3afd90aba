"""A Hypothesis state machine of exactly-once increments under any interleaving.

Three nodes (A, B, C) on the in-memory network, each on its own data directory, with rounds
stepped by hand. Rules: an increment with an idempotency key (a client retrying the same
request on any node), a plain increment, a reset, a partition and a heal, a complete pull round
between two nodes, a partial one (one to three pages of two items, then abandoned), a restart
(clean or crashed), an online backup and its restore as a new file, and a purge of the records
every peer holds (after which the client's retry window for the keys used so far is over).

The model is every acknowledged write that made a copy: its dot, key, amount and idempotency
key. It never looks at duplicate sets: after a heal, with every node holding the same entries,
a node's value for a key must be, from those entries' dots and floors alone,

* every plain increment that survived (its actor's entry reaches its seq) and that no floor
  covers, plus
* for every idempotency key with a surviving copy on that counter key, its amount once, unless
  a floor covers some copy (a reset observed the key: it is cancelled).

Every node must show that same value, and at every step every value is at least 0: only
positive amounts are ever added.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vvstore.clock import VersionVector
from vvstore.codec import Write
from vvstore.config import NodeConfig
from vvstore.counter import CounterState
from vvstore.harness.testing import Network, crash, open_memory_node
from vvstore.node import Node
from vvstore.store import DB_FILE
from vvstore.sync import PullRound

NAMES = ("A", "B", "C")
KEYS = ("k1", "k2")
#: Idempotency keys: K<i> always means the same request (its counter key and amount).
IDEMS = tuple(f"K{i}" for i in range(6))
SETTINGS: dict[str, Any] = {"durability": "normal", "page_entries": 2}
ROUNDS = 12
STEP_TIMEOUT_S = 60.0

T = TypeVar("T")


def request(idem: str) -> tuple[str, int]:
    """The counter key and amount the request named ``idem`` always carries."""
    i = int(idem[1:])
    return KEYS[i % len(KEYS)], i + 1


@dataclass(frozen=True)
class Copy:
    actor: str
    seq: int
    key: str
    amount: int
    idem: str | None


def expected(state: CounterState, key: str, copies: list[Copy]) -> int:
    """The model's value of ``key`` given the converged entries (see the module docstring)."""
    floors = state.floors()

    def survived(c: Copy) -> bool:
        entry = state.entries.get(c.actor)
        return entry is not None and entry.seq >= c.seq

    def covered(c: Copy) -> bool:
        floor = floors.get(c.actor)
        return floor is not None and floor.seq >= c.seq

    total = 0
    by_idem: dict[str, list[Copy]] = {}
    for c in copies:
        if c.key != key or not (survived(c) or covered(c)):
            continue
        if c.idem is None:
            total += 0 if covered(c) else c.amount
        else:
            by_idem.setdefault(c.idem, []).append(c)
    for idem, group in by_idem.items():
        if not any(covered(c) for c in group):
            total += request(idem)[1]
    return total


def backup(db: Path, to: Path) -> None:
    with (
        contextlib.closing(sqlite3.connect(db)) as src,
        contextlib.closing(sqlite3.connect(to)) as dst,
    ):
        src.backup(dst)


class ExactlyOnce(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="vvstore-exactly-once-"))
        self.network = Network(rng=random.Random(0))
        self.nodes: dict[str, Node] = {}
        # By dot: a later write with the same dot replaces the earlier one. A restored file can
        # resume its actor when the copy happens to get the inode the original had, and nothing
        # started the fence here; it then issues again the dots its lost history used, which is
        # legitimate when no other node held them (issue 10), and the earlier write is dead.
        self.copies: dict[tuple[str, int], Copy] = {}
        self.closed: set[str] = set()  # idempotency keys whose retry window is over
        self.snapshots: dict[str, list[Path]] = {name: [] for name in NAMES}
        for name in NAMES:
            self.run(self._open(name))
        # Everyone speaks to everyone once: duplicate sets rule from here on.
        self.run(self._rounds_between_all(1))
        assert all(node.store.sets_rule for node in self.nodes.values())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
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

    async def _open(self, name: str) -> None:
        self.nodes[name] = await open_memory_node(self.network, self.config(name), NAMES)

    async def _stop(self, name: str, crashed: bool) -> None:
        node = self.nodes.pop(name)
        self.network.nodes.pop(name, None)
        if crashed:
            await crash(node)
        await node.close()

    def teardown(self) -> None:
        try:
            if len(self.nodes) == len(NAMES):
                self.run(self._heal_and_check())
        finally:
            for name in list(self.nodes):
                self.run(self._stop(name, crashed=False))
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    async def _round(self, dst: str, src: str) -> bool:
        node = self.nodes[dst]
        [link] = [link for link in node.sync.links if link.peer.url == f"memory://{src}"]
        return await node.sync.round(link) is not None

    async def _rounds_between_all(self, rounds: int) -> None:
        for _ in range(rounds):
            for dst in NAMES:
                for src in NAMES:
                    if src != dst:
                        await self._round(dst, src)

    async def _heal_and_check(self) -> None:
        self.network.heal()
        for _ in range(ROUNDS):
            await self._rounds_between_all(1)
            vectors = [await node.store.vector() for node in self.nodes.values()]
            if all(v == vectors[0] for v in vectors):
                break
        else:
            raise AssertionError(f"no convergence after {ROUNDS} rounds: {vectors}")
        for key in KEYS:
            states = {name: await node.read(key) for name, node in self.nodes.items()}
            want = expected(states["A"], key, list(self.copies.values()))
            got = {name: state.value() for name, state in states.items()}
            assert set(got.values()) == {want}, (key, got, want, states["A"])
            duplicated = sum(len(c) >= 2 for c in states["A"].duplicates.values())
            event(f"keys counted once despite several copies: {min(duplicated, 3)}+")

    # --- rules ------------------------------------------------------------------------------

    @rule(n=st.sampled_from(NAMES), idem=st.sampled_from(IDEMS))
    def increment_with_key(self, n: str, idem: str) -> None:
        if idem in self.closed:
            return
        key, amount = request(idem)
        node = self.nodes[n]
        [outcome] = self.run(node.write([Write(key, amount, idem)]))
        if not outcome.replayed:
            actor = node.store.actor
            seq = outcome.state.entries[actor].seq
            self.copies[(actor, seq)] = Copy(actor, seq, key, amount, idem)

    @rule(idem=st.sampled_from(IDEMS), first=st.sampled_from(NAMES), second=st.sampled_from(NAMES))
    def retry_across_a_partition(self, idem: str, first: str, second: str) -> None:
        """The reply of ``first`` is lost while it is cut off; the client retries on ``second``."""
        if first != second:
            self.network.isolate(first)
            self.increment_with_key(first, idem)
            self.increment_with_key(second, idem)

    @rule(n=st.sampled_from(NAMES), key=st.sampled_from(KEYS), amount=st.integers(1, 3))
    def increment(self, n: str, key: str, amount: int) -> None:
        node = self.nodes[n]
        state = self.run(node.increment(key, amount))
        actor = node.store.actor
        seq = state.entries[actor].seq
        self.copies[(actor, seq)] = Copy(actor, seq, key, amount, None)

    @rule(n=st.sampled_from(NAMES), key=st.sampled_from(KEYS))
    def reset(self, n: str, key: str) -> None:
        self.run(self.nodes[n].reset(key))

    @rule(split=st.sampled_from([(("A",), ("B", "C")), (("B",), ("A", "C")), (("C",), ("A", "B"))]))
    def partition(self, split: tuple[tuple[str, ...], ...]) -> None:
        self.network.partition(*split)

    @rule()
    def heal(self) -> None:
        self.network.heal()

    @rule(dst=st.sampled_from(NAMES), src=st.sampled_from(NAMES))
    def complete_round(self, dst: str, src: str) -> None:
        if dst != src:
            self.run(self._round(dst, src))

    @rule(dst=st.sampled_from(NAMES), src=st.sampled_from(NAMES), pages=st.integers(1, 3))
    def partial_round(self, dst: str, src: str, pages: int) -> None:
        if dst != src:
            self.run(self._partial(dst, src, pages))

    async def _partial(self, dst: str, src: str, pages: int) -> None:
        node = self.nodes[dst]
        round_ = PullRound(node.store, self.network.peer(dst, src), max_pages=pages)
        with contextlib.suppress(Exception):  # an unreachable peer ends it like any cut
            await round_.start()
            for _ in range(pages):
                if await round_.next_page():
                    return  # a complete round that was not finished: V stays where it was

    @rule(n=st.sampled_from(NAMES), crashed=st.booleans())
    def restart(self, n: str, crashed: bool) -> None:
        self.run(self._stop(n, crashed))
        self.run(self._open(n))
        assert self.nodes[n].store.sets_rule  # recorded: it holds from the next start too

    @rule(n=st.sampled_from(NAMES))
    def snapshot(self, n: str) -> None:
        path = self.tmp / "snapshots" / f"{n}-{len(self.snapshots[n])}.sqlite3"
        path.parent.mkdir(exist_ok=True)
        backup(Path(self.config(n).data_dir) / DB_FILE, path)
        self.snapshots[n].append(path)

    @precondition(lambda self: any(self.snapshots.values()))
    @rule(n=st.sampled_from(NAMES), which=st.integers(0, 50), crashed=st.booleans())
    def restore(self, n: str, which: int, crashed: bool) -> None:
        """Restore a node's own backup as a new file: it starts under a fresh actor."""
        if not self.snapshots[n]:
            return
        snap = self.snapshots[n][which % len(self.snapshots[n])]
        self.run(self._stop(n, crashed))
        db = Path(self.config(n).data_dir) / DB_FILE
        fresh = db.with_name("restore.tmp")
        shutil.copyfile(snap, fresh)
        os.replace(fresh, db)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(db.with_name(db.name + suffix))
        self.run(self._open(n))

    @rule(n=st.sampled_from(NAMES))
    def purge(self, n: str) -> None:
        node = self.nodes[n]
        vectors = [link.vector or VersionVector() for link in node.sync.links]
        self.run(node.store.purge(vectors, time.time() + 10**9))
        # The window of every key used so far is over: no client retries them any more.
        self.closed.update(c.idem for c in self.copies.values() if c.idem is not None)

    @invariant()
    def never_below_zero(self) -> None:
        for name, node in self.nodes.items():
            for key in KEYS:
                value = self.run(node.read(key)).value()
                assert value >= 0, (name, key, value)


TestExactlyOnce = ExactlyOnce.TestCase
TestExactlyOnce.settings = settings(max_examples=50, stateful_step_count=40, deadline=None)
