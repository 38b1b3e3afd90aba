"""The composition root: builds a node from its config and owns its lifecycle.

:class:`Node` opens the store, builds the peers and the sync loop, and serves the
:class:`~vvstore.api.NodeService` the HTTP API needs. :func:`serve` runs a node until SIGTERM or
SIGINT, then drains queued writes, commits and exits. This is the only module that knows every
concrete class; nothing imports it but the CLI, the testing helpers and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from vvstore.api import SERVICE, GuardedSite, create_app
from vvstore.auth import TokenAuth
from vvstore.clock import VersionVector
from vvstore.codec import Outcome, Write
from vvstore.config import NodeConfig, is_loopback_host, parse_peer
from vvstore.counter import CounterState
from vvstore.errors import VVStoreError
from vvstore.metrics import Metrics, PeerState, Snapshot
from vvstore.peer import HttpPeer
from vvstore.retirement import Retirements
from vvstore.signing import ClusterAuth
from vvstore.store import PurgeResult, Store
from vvstore.sync import Peer, PeerLink, SyncLoop, behind
from vvstore.wire import (
    DUPLICATE_SETS_VERSION,
    Notice,
    Page,
    PullRequest,
    RetiredPage,
    RetiredRequest,
)

__all__ = ["Node", "node_app", "serve"]

log = logging.getLogger("vvstore")


class Node:
    """One vvstore node: its store, its sync loop, and the service the API calls."""

    def __init__(
        self,
        config: NodeConfig,
        store: Store,
        peers: Sequence[Peer],
        *,
        rng: random.Random,
        clock: Callable[[], float] = time.time,
        cluster: ClusterAuth | None = None,
        token: TokenAuth | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.cluster = cluster
        self.token = token
        self._clock = clock
        self._purger: asyncio.Task[None] | None = None
        self._warned_sets = False
        self.sync = SyncLoop(
            store,
            peers,
            node_id=config.node_id,
            actor=lambda: store.actor,
            interval=config.sync_interval,
            backoff_cap=config.backoff_cap,
            round_timeout=config.round_timeout,
            page_bytes=config.page_bytes,
            min_page_bytes=config.min_page_bytes,
            yield_timeout=config.yield_timeout,
            max_pages=config.round_max_pages,
            notice_delay=config.notice_delay,
            rng=rng,
            clock=clock,
            on_all_heard=store.confirm,
        )
        store.on_local_commit.append(self.sync.local_write)
        #: This node's metrics (its own registry): the API counts requests into it.
        self.metrics = Metrics()
        store.on_commit.append(self.metrics.observe_commit)

    @classmethod
    async def open(
        cls,
        config: NodeConfig,
        *,
        peers: Sequence[Peer] = (),
        rng: random.Random | None = None,
        cluster: ClusterAuth | None = None,
        token: TokenAuth | None = None,
    ) -> Node:
        """Open the node's store; the sync loop starts with :meth:`start`."""
        store = await Store.open(config)
        if not peers:  # no peer to wait for: duplicate sets rule at once
            try:
                await store.rule_by_sets()
            except BaseException:
                await store.close()
                raise
        rng = rng or random.Random()
        return cls(config, store, peers, rng=rng, cluster=cluster, token=token)

    def start(self) -> None:
        # A resumed actor is confirmed with every peer before local writes use it (the store's
        # start-up fence); without peers there is nobody to ask.
        if self.sync.links:
            self.store.fence(self.config.identity_confirm_timeout)
        self.sync.start()
        self._purger = asyncio.create_task(self._purge_loop(), name="vvstore-purge")

    async def close(self) -> None:
        """Stop the purge and sync tasks, then drain and close the store, whatever happens."""
        try:
            if self._purger is not None:
                self._purger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._purger
                self._purger = None
            await self.sync.stop()
        finally:
            await self.store.close()

    async def purge(self) -> PurgeResult:
        """Purge idempotency records every peer holds and no retry can need any more.

        A peer that never completed a round with us covers nothing, so nothing is purged safely
        until every peer has been heard from.
        """
        vectors = [
            link.vector if link.vector is not None else VersionVector() for link in self.sync.links
        ]
        return await self.store.purge(vectors, self._clock())

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.purge_interval)
            try:
                await self.purge()
            except VVStoreError as exc:
                log.warning("purge of idempotency records failed: %s", exc)

    # --- NodeService ---------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self.config.node_id

    async def write(self, writes: Sequence[Write]) -> list[Outcome]:
        outcomes = await self.store.write(writes)
        self.metrics.observe_increments(
            sum(1 for w, o in zip(writes, outcomes, strict=True) if not w.reset and not o.replayed)
        )
        return outcomes

    async def increment(
        self, key: str, amount: int, *, idempotency_key: str | None = None
    ) -> CounterState:
        return await self.store.increment(key, amount, idempotency_key=idempotency_key)

    async def reset(self, key: str) -> CounterState:
        return await self.store.reset(key)

    async def batch(self, items: Sequence[tuple[str, int]]) -> list[CounterState]:
        return await self.store.batch(items)

    async def read(self, key: str) -> CounterState:
        return await self.store.read(key)

    async def list_counters(
        self, *, prefix: str, after: str | None, limit: int
    ) -> tuple[list[tuple[str, CounterState]], str | None]:
        return await self.store.list_counters(prefix=prefix, after=after, limit=limit)

    async def status(self) -> dict[str, Any]:
        vector, retired = await self.store.vector(), self.store.retirements
        return {
            "node": self.node_id,
            # Which process answers: a launcher checks it is talking to the node it started.
            "pid": os.getpid(),
            "actor": self.store.actor,
            "incarnation": {
                "reason": self.store.incarnation_reason,
                "writes_fenced": self.store.fenced,
            },
            "version": vector.to_dict(),
            "actors": {
                "live": _live_actors(vector, retired),
                "retired": len(retired),
                "retired_digest": retired.digest,
            },
            "peers": [{**link.to_dict(), **_identity(link.peer)} for link in self.sync.links],
            "clock_skew": dict(self.cluster.skews) if self.cluster is not None else {},
            "peer_secrets": dict(self.cluster.peer_secrets) if self.cluster is not None else {},
            "previous_token_uses": self.token.previous_uses if self.token is not None else 0,
            **await self.store.idempotency_status(self._clock()),
        }

    async def scrape(self) -> bytes:
        """The metrics exposition: the counted figures, and the state as it stands now."""
        vector, retired, now = await self.store.vector(), self.store.retirements, self._clock()
        peers = tuple(
            PeerState(
                peer=link.peer.url,
                up=link.reachable,
                behind=behind(vector, _known(link)),
                seconds_since_sync=(
                    None if link.last_success is None else max(0.0, now - link.last_success)
                ),
                rounds_complete=link.rounds,
                rounds_failed=link.failed_rounds,
                bytes_received=link.peer.bytes_received,
                bytes_sent=link.peer.bytes_sent,
            )
            for link in self.sync.links
        )
        snapshot = Snapshot(
            peers=peers,
            actors_live=_live_actors(vector, retired),
            actors_retired=len(retired),
            keys=await self.store.key_count(),
        )
        return self.metrics.render(snapshot)

    @property
    def retirements(self) -> Retirements:
        return self.store.retirements

    async def serve_pull(self, request: PullRequest) -> Page:
        """A page for ``request``, in its version and compact against its map.

        A request compact against a map we do not hold gets a page that ``differs``: the
        requester fetches our map (:meth:`serve_retired`) and asks again.
        """
        if request.differs:
            return Page(
                self.node_id,
                self.store.actor,
                VersionVector(),
                (),
                None,
                version=request.version,
                differs=self.store.retirements.digest,
            )
        page = await self.store.page(request)
        if page.duplicates and request.version < DUPLICATE_SETS_VERSION and not self._warned_sets:
            self._warned_sets = True
            log.warning(
                "a peer pulls in format version %d, which cannot carry duplicate sets: every"
                " member must run a release that speaks version %d (it misses them until then)",
                request.version,
                DUPLICATE_SETS_VERSION,
            )
        return dataclasses.replace(page, version=request.version, retired=request.retired)

    async def serve_retired(self, request: RetiredRequest) -> RetiredPage:
        items, after = self.store.retired_after(request.after)
        return RetiredPage(
            self.node_id, self.store.actor, self.store.retirements.digest, tuple(items), after
        )

    async def receive_notice(self, notice: Notice) -> VersionVector:
        ours = await self.store.vector()
        self.sync.notice_received(notice, ours)
        return ours


def _identity(peer: Peer) -> dict[str, str | None]:
    """The /status fields of a peer's identity: the node named for it, and why the node that
    answers there is refused (both None for a peer that is not an HttpPeer)."""
    if not isinstance(peer, HttpPeer):
        return {"expected_node": None, "identity_error": None}
    return {"expected_node": peer.expected_node, "identity_error": peer.identity_error}


def _known(link: PeerLink) -> VersionVector:
    """What the peer is known to hold: its S of the last complete round, merged with the
    vectors of its notices since."""
    return link.heard if link.vector is None else link.heard.merge(link.vector)


def _live_actors(vector: VersionVector, retired: Retirements) -> int:
    return sum(1 for actor in vector if actor not in retired)


def node_app(config: NodeConfig) -> web.Application:
    """An aiohttp application that opens the node on startup and closes it on cleanup."""
    holder: dict[str, Node] = {}
    token = None
    if config.token is not None:
        previous_token = config.previous_token
        token = TokenAuth(
            config.token.encode(),
            previous=previous_token.encode() if previous_token is not None else None,
        )
    cluster = None
    if config.cluster_secret is not None:
        previous = config.previous_cluster_secret
        cluster = ClusterAuth(
            config.cluster_secret.encode(),
            config.node_id,
            window=config.clock_window,
            previous=previous.encode() if previous is not None else None,
        )
    app = create_app(
        _LazyService(holder),
        token=token,
        cluster=cluster,
        body_timeout=config.body_timeout,
        unauthenticated_timeout=config.unauthenticated_timeout,
        unauthenticated_connections=config.unauthenticated_connections,
        access_log=config.access_log == "on",
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            peers = [
                HttpPeer(
                    url,
                    session,
                    connect_timeout=config.peer_connect_timeout,
                    read_timeout=config.peer_read_timeout,
                    cluster=cluster,
                    expected_node=name,
                )
                for name, url in map(parse_peer, config.peers)
            ]
            node = await Node.open(config, peers=peers, cluster=cluster, token=token)
            holder["node"] = node
            node.start()
            try:
                yield
            finally:
                await node.close()

    app.cleanup_ctx.append(lifecycle)
    return app


class _LazyService:
    """Forwards to the node once the app's startup has opened it."""

    def __init__(self, holder: dict[str, Node]) -> None:
        self._holder = holder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._holder["node"], name)


# The cyclic collector's first threshold for a serving process (the default is 700).
GC_THRESHOLD = (10_000, 50, 50)


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the write path of a serving process.

    Every write allocates short-lived objects (request, body, reply, a new state) while the
    process holds a large cache of long-lived ones; with the default thresholds the collector
    ran often and walked the whole cache (a third of the CPU of a 1000-item ``/batch`` in the
    profile of docs/performance.md). What startup built is frozen out of every collection, and
    collections run after 10,000 allocations instead of 700. Only :func:`serve` calls this:
    it changes the whole process.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


async def serve(config: NodeConfig, *, ready: Callable[[str], None] | None = None) -> int:
    """Run a node until SIGTERM or SIGINT; drain, commit and return 0."""
    app = node_app(config)
    # A body refused unread is read and dropped (so that the caller can read the refusal) for
    # at most the unauthenticated timeout, not aiohttp's 10 s.
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        lingering_time=config.unauthenticated_timeout,
    )
    await runner.setup()
    tune_gc()
    site = GuardedSite(runner, config.host, config.port)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else config.port
    status = await app[SERVICE].status()
    url = f"http://{config.host}:{port}"
    if config.token is None and not is_loopback_host(config.host):
        log.warning(
            "WARNING: node %s listens on %s with no token: anyone who can reach it can read"
            " and write every counter. Give --token-file (and put TLS in front of it).",
            config.node_id,
            url,
        )
    log.info(
        "vvstore node %s actor %s listening on %s data-dir %s durability %s peers %s",
        config.node_id,
        status["actor"],
        url,
        config.data_dir,
        config.durability,
        ",".join(config.peers) or "-",
    )
    if ready is not None:
        ready(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
    return 0
