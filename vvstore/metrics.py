"""Prometheus metrics of one node, in the text format served at ``GET /metrics``.

Two kinds of figure, kept apart on purpose:

* **Counted as they happen** (requests, increments, commits): prometheus_client instruments in
  a :class:`~prometheus_client.CollectorRegistry` of the node's own, never the process-wide
  default, so several nodes in one process (the in-process test tier) keep separate figures.
* **Read when scraped** (peers, actors, keys, sync rounds and bytes): the node hands
  :meth:`Metrics.render` a :class:`Snapshot` of what it already tracks (its sync links, its
  vector, its retirement map), so nothing here keeps a second copy of that state.

Every label is bounded by the code or the configuration: a route template of
:data:`vvstore.routes.ROUTES` (never the request path, which holds a key), a method of that
table, a status code, a peer's configured URL, a fixed set of outcomes and directions. No
label ever holds a key, a token or anything else a client chose.

This module computes and formats; it never touches SQLite or the network, and holds no
reference to the node (the node calls it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vvstore.routes import route_for

__all__ = [
    "CONTENT_TYPE",
    "UNMATCHED",
    "Metrics",
    "PeerState",
    "Snapshot",
    "route_labels",
]

#: The Content-Type of the exposition (Prometheus text format 0.0.4).
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
#: The ``route`` and ``method`` label of a request no route serves (a 404 or a 405).
UNMATCHED: Final = "unmatched"

# Seconds: a cached read takes well under a millisecond, a durable commit a few milliseconds,
# a large batch or a scrape of a big store up to seconds.
_LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Operations per transaction, up to the largest group the config allows by default (max_group).
_BATCH_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)


def route_labels(method: str, path: str) -> tuple[str, str]:
    """``(method, route)`` labels of a request: its route's method and path template, or
    :data:`UNMATCHED` twice when no route serves it (``HEAD`` counts as ``GET``)."""
    route = route_for(method, path)
    if route is None:
        return UNMATCHED, UNMATCHED
    return route.method, route.path


@dataclass(frozen=True, slots=True)
class PeerState:
    """What the node knows of one peer when scraped.

    :ivar peer: the peer's configured URL (the ``peer`` label).
    :ivar up: whether the last pull round from it succeeded.
    :ivar behind: events the peer is known to hold (from its last complete round or its
        latest notice) that this node lacks.
    :ivar seconds_since_sync: since the last complete round, or None before the first.
    :ivar rounds_complete: pull rounds completed since the node started.
    :ivar rounds_failed: pull rounds that failed or were abandoned since the node started.
    :ivar bytes_received: bytes of sync responses received from the peer.
    :ivar bytes_sent: bytes of sync requests sent to the peer.
    """

    peer: str
    up: bool
    behind: int
    seconds_since_sync: float | None
    rounds_complete: int
    rounds_failed: int
    bytes_received: int
    bytes_sent: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state a scrape reports, read by the node at scrape time."""

    peers: tuple[PeerState, ...]
    actors_live: int
    actors_retired: int
    keys: int


class Metrics:
    """One node's metrics: its instruments and registry, and the rendering of a scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "vvstore_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self._request_duration = Histogram(
            "vvstore_http_request_duration_seconds",
            "Seconds from a request's arrival to its response, by route template and method",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._increments = Counter(
            "vvstore_increments",
            "Increments this node applied for clients (replays and resets not counted)",
            registry=self.registry,
        )
        self._commit_batch = Histogram(
            "vvstore_commit_batch_size",
            "Operations (writes, sync pages, vector raises) committed in one transaction",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self._commit_duration = Histogram(
            "vvstore_commit_duration_seconds",
            "Seconds one transaction of the writer took to commit",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> str:
        """Count one answered request; return its route label (for the access log)."""
        route_method, route = route_labels(method, path)
        self._requests.labels(route, route_method, str(status)).inc()
        self._request_duration.labels(route, route_method).observe(seconds)
        return route

    def observe_increments(self, count: int) -> None:
        if count:
            self._increments.inc(count)

    def observe_commit(self, operations: int, seconds: float) -> None:
        """Record one committed transaction (the store's ``on_commit`` callback)."""
        self._commit_batch.observe(operations)
        self._commit_duration.observe(seconds)

    def render(self, snapshot: Snapshot) -> bytes:
        """The exposition of every instrument and of ``snapshot``, in the text format."""
        return generate_latest(_Scrape(self.registry, snapshot))


class _Scrape(Collector):
    """One scrape: the registry's instruments, then the snapshot's families."""

    def __init__(self, registry: CollectorRegistry, snapshot: Snapshot) -> None:
        self._registry = registry
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()
        yield from _snapshot_families(self._snapshot)


def _snapshot_families(snapshot: Snapshot) -> Iterable[Metric]:
    peers = snapshot.peers
    rounds = CounterMetricFamily(
        "vvstore_sync_rounds",
        "Pull rounds with each peer since the node started, by outcome",
        labels=["peer", "outcome"],
    )
    sync_bytes = CounterMetricFamily(
        "vvstore_sync_bytes",
        "Bytes of sync traffic with each peer since the node started, by direction",
        labels=["peer", "direction"],
    )
    up = GaugeMetricFamily(
        "vvstore_peer_up", "1 if the last pull round from the peer succeeded", labels=["peer"]
    )
    since = GaugeMetricFamily(
        "vvstore_peer_seconds_since_sync",
        "Seconds since the last complete pull round from the peer (+Inf before the first)",
        labels=["peer"],
    )
    behind = GaugeMetricFamily(
        "vvstore_peer_behind",
        "Events the peer is known to hold that this node lacks",
        labels=["peer"],
    )
    for peer in peers:
        rounds.add_metric([peer.peer, "complete"], peer.rounds_complete)
        rounds.add_metric([peer.peer, "failed"], peer.rounds_failed)
        sync_bytes.add_metric([peer.peer, "received"], peer.bytes_received)
        sync_bytes.add_metric([peer.peer, "sent"], peer.bytes_sent)
        up.add_metric([peer.peer], 1.0 if peer.up else 0.0)
        elapsed = peer.seconds_since_sync
        since.add_metric([peer.peer], math.inf if elapsed is None else elapsed)
        behind.add_metric([peer.peer], peer.behind)
    actors = GaugeMetricFamily(
        "vvstore_actors", "Actors in this node's vector, live or retired", labels=["state"]
    )
    actors.add_metric(["live"], snapshot.actors_live)
    actors.add_metric(["retired"], snapshot.actors_retired)
    keys = GaugeMetricFamily("vvstore_keys", "Counter keys this node holds entries for")
    keys.add_metric([], snapshot.keys)
    return (rounds, sync_bytes, up, since, behind, actors, keys)
