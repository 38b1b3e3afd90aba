"""An in-memory network of nodes, for tests and experiments: partition, heal, drop.

Nodes built here are real :class:`~vvstore.node.Node` objects on real SQLite files; only the
wire between them is simulated. Every call still goes through the sync codec (encoded, then
decoded and validated on the other side), so payload validation and byte counts are real. A
seeded :class:`random.Random` decides drops, so a failing run is replayed from its seed.

A call between two nodes checks the network twice: the request direction (src to dst) before
the responder sees it, and the reply direction (dst to src) after the responder has acted; a
drop on the way back is the classic indefinite outcome (applied there, unknown here).

For faults on real sockets between real processes, see :mod:`vvstore.harness.proxy`.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vvstore.config import NodeConfig
from vvstore.errors import PeerTimeout, PeerUnreachable
from vvstore.node import Node
from vvstore.schema import MIGRATIONS
from vvstore.wire import (
    Notice,
    Page,
    PullRequest,
    RetiredPage,
    RetiredRequest,
    decode_notice,
    decode_page,
    decode_pull_request,
    decode_retired_page,
    decode_retired_request,
    encode_notice,
    encode_page,
    encode_pull_request,
    encode_retired_page,
    encode_retired_request,
)

__all__ = ["MemoryPeer", "Network", "crash", "open_memory_node", "write_schema_2"]


@dataclass(slots=True)
class _Stats:
    calls: int = 0
    request_bytes: int = 0
    reply_bytes: int = 0
    entries: int = 0


@dataclass(slots=True)
class Network:
    """Named nodes joined by simulated links.

    ``partition(*groups)`` cuts every link between different groups (names in no group are
    isolated from all groups but keep their links to each other); ``heal()`` restores every
    link and clears drop rates; ``drop(a, b, rate)`` loses the given fraction of messages from
    a to b.
    """

    rng: random.Random = field(default_factory=lambda: random.Random(0))
    nodes: dict[str, Node] = field(default_factory=dict)
    _cut: set[tuple[str, str]] = field(default_factory=set)
    _drop: dict[tuple[str, str], float] = field(default_factory=dict)
    stats: dict[tuple[str, str], _Stats] = field(default_factory=dict)

    def register(self, name: str, node: Node) -> None:
        self.nodes[name] = node

    def peer(self, src: str, dst: str) -> MemoryPeer:
        """A :class:`~vvstore.sync.Peer` that ``src`` uses to reach ``dst``."""
        return MemoryPeer(self, src, dst)

    def partition(self, *groups: Iterable[str]) -> None:
        sets = [set(g) for g in groups]
        names = set(self.nodes) | set().union(*sets)
        side = {name: i for i, group in enumerate(sets) for name in group}
        self._cut = {
            (a, b) for a in names for b in names if a != b and side.get(a, -1) != side.get(b, -1)
        }

    def isolate(self, name: str) -> None:
        self.partition([name], [n for n in self.nodes if n != name])

    def heal(self) -> None:
        self._cut.clear()
        self._drop.clear()

    def drop(self, src: str, dst: str, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"drop rate must be in [0, 1], got {rate}")
        self._drop[(src, dst)] = rate

    def passes(self, src: str, dst: str) -> bool:
        """Decide whether one message from src to dst gets through (draws from the rng)."""
        if (src, dst) in self._cut:
            return False
        rate = self._drop.get((src, dst), 0.0)
        return rate == 0.0 or self.rng.random() >= rate

    def link_stats(self, src: str, dst: str) -> _Stats:
        return self.stats.setdefault((src, dst), _Stats())


class MemoryPeer:
    """One node's view of another across a :class:`Network`."""

    def __init__(self, network: Network, src: str, dst: str) -> None:
        self.network = network
        self.src = src
        self.dst = dst
        self.url = f"memory://{dst}"
        self.bytes_received = 0
        self.bytes_sent = 0

    def _target(self) -> Node:
        if not self.network.passes(self.src, self.dst):
            raise PeerUnreachable(f"{self.src} -> {self.dst}: message lost")
        node = self.network.nodes.get(self.dst)
        if node is None:
            raise PeerUnreachable(f"{self.dst} is down")
        return node

    async def pull(self, request: PullRequest) -> Page:
        body = encode_pull_request(request)
        stats = self.network.link_stats(self.src, self.dst)
        stats.calls += 1
        stats.request_bytes += len(body)
        self.bytes_sent += len(body)
        target = self._target()
        page = await target.serve_pull(decode_pull_request(body, target.retirements))
        reply = encode_page(page)
        if not self.network.passes(self.dst, self.src):
            raise PeerTimeout(f"{self.dst} -> {self.src}: reply lost")
        stats.reply_bytes += len(reply)
        self.bytes_received += len(reply)
        stats.entries += len(page.entries)
        return decode_page(reply, request.retired)

    async def notify(self, notice: Notice) -> None:
        body = encode_notice(notice)
        stats = self.network.link_stats(self.src, self.dst)
        stats.calls += 1
        stats.request_bytes += len(body)
        self.bytes_sent += len(body)
        target = self._target()
        await target.receive_notice(decode_notice(body, target.retirements))

    async def retired(self, request: RetiredRequest) -> RetiredPage:
        body = encode_retired_request(request)
        stats = self.network.link_stats(self.src, self.dst)
        stats.calls += 1
        stats.request_bytes += len(body)
        self.bytes_sent += len(body)
        target = self._target()
        reply = encode_retired_page(await target.serve_retired(decode_retired_request(body)))
        if not self.network.passes(self.dst, self.src):
            raise PeerTimeout(f"{self.dst} -> {self.src}: reply lost")
        stats.reply_bytes += len(reply)
        self.bytes_received += len(reply)
        return decode_retired_page(reply)


async def open_memory_node(
    network: Network,
    config: NodeConfig,
    peer_names: Iterable[str],
    *,
    seed: int = 0,
    start_sync: bool = False,
) -> Node:
    """Open a node named by its node id on ``network``, with a peer for each of ``peer_names``.

    The sync loop starts only when ``start_sync`` is true; tests usually step rounds by hand.
    """
    name = config.node_id
    peers = [network.peer(name, other) for other in peer_names if other != name]
    node = await Node.open(config, peers=peers, rng=random.Random(seed))
    network.register(name, node)
    if start_sync:
        node.start()
    return node


async def crash(node: Node) -> None:
    """Stop ``node`` as ``kill -9`` would: no drain, no clean-shutdown mark."""
    await node.sync.stop()
    await node.store.abort()


def write_schema_2(
    path: Path,
    entries: Iterable[tuple[str, str, int, int, str]],
    vector: Iterable[tuple[str, int]] = (),
) -> None:
    """Write a database at ``path`` as a vvstore of schema 2 left it, to test an upgrade.

    ``entries`` are ``(key, actor id, seq, total, floors JSON)`` rows (schema 2 kept the actor id
    as text and ``"{}"`` for no floors); ``vector`` rows are ``(actor id, seq)``.
    """
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at REAL NOT NULL) STRICT"
        )
        for version, name, statements in MIGRATIONS[:2]:
            for statement in statements:
                db.execute(statement)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?, 0.0)", (version, name))
        db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", entries)
        db.executemany("INSERT INTO vector VALUES (?, ?)", vector)
        db.commit()
