"""vvstore.metrics on its own: labels from the route table, the exposition of a snapshot, and
one registry per Metrics object. The exposition is parsed back with prometheus_client's parser,
so the tests read what a Prometheus server would."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vvstore.metrics import UNMATCHED, Metrics, PeerState, Snapshot, route_labels
from vvstore.routes import ROUTES


def samples(exposition: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition.decode())
        for sample in family.samples
    }


def value(exposition: bytes, name: str, **labels: str) -> float:
    return samples(exposition)[(name, frozenset(labels.items()))]


EMPTY = Snapshot(peers=(), actors_live=0, actors_retired=0, keys=0)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/counters/likes", ("GET", "/counters/{key}")),
        ("POST", "/counters/a/b%2Fc", ("POST", "/counters/{key}")),
        ("HEAD", "/counters/x", ("GET", "/counters/{key}")),
        ("get", "/status?x=1", ("GET", "/status")),
        ("GET", "/metrics", ("GET", "/metrics")),
        ("PUT", "/counters/secret-key", (UNMATCHED, UNMATCHED)),
        ("GET", "/no/such/route", (UNMATCHED, UNMATCHED)),
        ("GET", "/counters/", (UNMATCHED, UNMATCHED)),
    ],
)
def test_route_labels_are_templates_of_the_route_table(
    method: str, path: str, expected: tuple[str, str]
) -> None:
    assert route_labels(method, path) == expected


def test_every_route_labels_itself() -> None:
    for route in ROUTES:
        assert route_labels(route.method, route.path) == (route.method, route.path)


def test_requests_are_counted_by_template_and_never_by_key() -> None:
    metrics = Metrics()
    metrics.observe_request("POST", "/counters/user%3A42", 200, 0.003)
    metrics.observe_request("POST", "/counters/user%3A43", 200, 0.2)
    metrics.observe_request("GET", "/nowhere", 404, 0.001)
    out = metrics.render(EMPTY)
    post = {"route": "/counters/{key}", "method": "POST"}
    assert value(out, "vvstore_http_requests_total", **post, status="200") == 2
    assert (
        value(out, "vvstore_http_requests_total", route=UNMATCHED, method=UNMATCHED, status="404")
        == 1
    )
    assert value(out, "vvstore_http_request_duration_seconds_count", **post) == 2
    assert value(out, "vvstore_http_request_duration_seconds_sum", **post) == pytest.approx(0.203)
    assert value(out, "vvstore_http_request_duration_seconds_bucket", **post, le="0.005") == 1
    assert b"user" not in out and b"nowhere" not in out


def test_commits_and_increments_are_observed() -> None:
    metrics = Metrics()
    metrics.observe_commit(3, 0.002)
    metrics.observe_commit(500, 0.03)
    metrics.observe_increments(0)
    metrics.observe_increments(7)
    out = metrics.render(EMPTY)
    assert value(out, "vvstore_commit_batch_size_count") == 2
    assert value(out, "vvstore_commit_batch_size_sum") == 503
    assert value(out, "vvstore_commit_batch_size_bucket", le="5.0") == 1
    assert value(out, "vvstore_commit_duration_seconds_bucket", le="0.0025") == 1
    assert value(out, "vvstore_commit_duration_seconds_count") == 2
    assert value(out, "vvstore_increments_total") == 7


def test_a_snapshot_is_rendered_per_peer() -> None:
    synced = PeerState("http://10.0.0.2:8001", True, 0, 1.5, 12, 1, 4000, 900)
    never = PeerState("http://10.0.0.3:8001", False, 42, None, 0, 5, 0, 300)
    out = Metrics().render(Snapshot((synced, never), actors_live=3, actors_retired=2, keys=17))
    a, b = synced.peer, never.peer
    assert value(out, "vvstore_peer_up", peer=a) == 1
    assert value(out, "vvstore_peer_up", peer=b) == 0
    assert value(out, "vvstore_peer_behind", peer=a) == 0
    assert value(out, "vvstore_peer_behind", peer=b) == 42
    assert value(out, "vvstore_peer_seconds_since_sync", peer=a) == 1.5
    assert math.isinf(value(out, "vvstore_peer_seconds_since_sync", peer=b))
    assert value(out, "vvstore_sync_rounds_total", peer=a, outcome="complete") == 12
    assert value(out, "vvstore_sync_rounds_total", peer=b, outcome="failed") == 5
    assert value(out, "vvstore_sync_bytes_total", peer=a, direction="received") == 4000
    assert value(out, "vvstore_sync_bytes_total", peer=b, direction="sent") == 300
    assert value(out, "vvstore_actors", state="live") == 3
    assert value(out, "vvstore_actors", state="retired") == 2
    assert value(out, "vvstore_keys") == 17


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.observe_increments(5)
    assert value(first.render(EMPTY), "vvstore_increments_total") == 5
    assert value(second.render(EMPTY), "vvstore_increments_total") == 0
    assert first.registry is not second.registry
