"""NodeConfig: everything one vvstore node is told, in one frozen, validated object.

Each CLI flag of ``vvstore serve`` maps to exactly one field. Validation happens at
construction and names the field, the value and the allowed range, so a bad flag fails before
anything is opened.

Pure core: standard library and :mod:`vvstore.errors` only; no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from vvstore.errors import ConfigError

__all__ = ["NODE_ID_RE", "Durability", "NodeConfig", "is_loopback_host"]

NODE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")

Durability = Literal["full", "normal"]


def is_loopback_host(host: str) -> bool:
    """True when ``host`` names a loopback address (127.0.0.0/8, ::1 or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """The configuration of one node. Frozen; validated when constructed.

    :raises ConfigError: naming the first field out of range.
    """

    # The operator's name for this node: [A-Za-z0-9_-]{1,40}. Stored in the database on first
    # start; a later start with another node id is refused.
    node_id: str
    # Directory holding the SQLite database and the lock file. Created if missing.
    data_dir: str
    # Address to bind. Loopback by default: exposing a node is an explicit choice.
    host: str = "127.0.0.1"
    # TCP port; 0 picks a free one (the start-up line and /status report it).
    port: int = 8080
    # "full": SQLite synchronous=FULL, an acknowledged write survives a power loss.
    # "normal": synchronous=NORMAL, survives a process crash, not a power loss; faster.
    durability: Durability = "full"
    # Base URLs of the other nodes (http://host:port). Empty: a single node.
    peers: tuple[str, ...] = ()
    # Seconds between anti-entropy rounds with each peer (jittered by +-20%).
    sync_interval: float = 1.0
    # Upper bound, in seconds, of the backoff on a failing peer (it doubles from sync_interval).
    backoff_cap: float = 2.0
    # Seconds a call to a peer may wait for its TCP connection before it counts as failed.
    peer_connect_timeout: float = 2.0
    # Seconds a call to a peer may go without receiving a byte (for the reply to begin, or
    # between two reads of it) before it counts as failed. It measures progress, not the
    # call's total time, so a slow link that keeps delivering completes any page; a dead or
    # blackholed peer is noticed after this long. Raise it for links that stall for seconds.
    peer_read_timeout: float = 2.0
    # Seconds a whole pull round may take before it is abandoned (V is then not raised).
    # Long enough for a node started empty to pull a large state in one round; a round cut
    # short starts again from V.
    round_timeout: float = 600.0
    # Most pages one pull round may fetch before it is abandoned.
    round_max_pages: int = 10_000
    # Seconds to wait after a local write before notifying peers (coalesces bursts).
    notice_delay: float = 0.05
    # Most writes waiting for the writer; beyond it a write gets 503 with Retry-After.
    queue_limit: int = 10_000
    # Most writes the writer applies in one transaction (one commit, one fsync).
    max_group: int = 2_000
    # Most entries, and most encoded bytes of entries, records and marks, in one sync page this
    # node sends (at most 5,000 and 1 MiB, the most any node accepts: vvstore.codec's
    # MAX_PAGE_ENTRIES and MAX_PAGE_BYTES). A single entry larger than page_bytes still goes,
    # alone on its page. Smaller pages suit slow links: each is one request.
    page_entries: int = 5_000
    page_bytes: int = 1 << 20
    # Keys whose state the writer keeps in memory (an LRU); misses read SQLite.
    cache_keys: int = 100_000
    # Seconds SIGTERM may spend draining the queue before exit.
    shutdown_timeout: float = 5.0
    # Bearer token every client route but GET /health requires (at least 32 bytes); None: open.
    token: str | None = field(default=None, repr=False)
    # Shared secret that signs sync traffic between nodes (at least 32 bytes). Required when a
    # peer is not on a loopback address.
    cluster_secret: str | None = field(default=None, repr=False)
    # Seconds a signed sync request's timestamp may differ from our clock.
    clock_window: float = 30.0
    # Seconds an idempotency record is kept at least (it is purged only once older than this
    # and covered by the vector last received from every peer).
    idempotency_retention: float = 24 * 3600.0
    # Most idempotency records kept; beyond it the oldest purgeable go first, then the oldest.
    idempotency_cap: int = 1_000_000
    # Seconds between purges of old idempotency records.
    purge_interval: float = 60.0
    # Seconds a client may take to send a request body before the request is refused.
    body_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, str) or not NODE_ID_RE.fullmatch(self.node_id):
            raise ConfigError(f"node id must match [A-Za-z0-9_-]{{1,40}}, got {self.node_id!r}")
        if not self.data_dir:
            raise ConfigError("data_dir must not be empty")
        if self.durability not in ("full", "normal"):
            raise ConfigError(f"durability must be 'full' or 'normal', got {self.durability!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in [0, 65535], got {self.port}")
        for url in self.peers:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"peer URL must look like http://host:port, got {url!r}")
        positive = {
            "sync_interval": self.sync_interval,
            "backoff_cap": self.backoff_cap,
            "peer_connect_timeout": self.peer_connect_timeout,
            "peer_read_timeout": self.peer_read_timeout,
            "round_timeout": self.round_timeout,
            "shutdown_timeout": self.shutdown_timeout,
            "clock_window": self.clock_window,
            "idempotency_retention": self.idempotency_retention,
            "purge_interval": self.purge_interval,
            "body_timeout": self.body_timeout,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value}")
        for name, secret in (("token", self.token), ("cluster secret", self.cluster_secret)):
            if secret is not None and len(secret.encode()) < 32:
                raise ConfigError(f"the {name} must be at least 32 bytes")
        if self.cluster_secret is None and not all(
            is_loopback_host(urlsplit(url).hostname or "") for url in self.peers
        ):
            raise ConfigError(
                "peers on non-loopback addresses need a cluster secret (--cluster-secret-file):"
                " sync traffic would otherwise be unauthenticated"
            )
        if self.cluster_secret is None and not is_loopback_host(self.host):
            raise ConfigError(
                f"binding {self.host} beyond loopback needs a cluster secret"
                " (--cluster-secret-file): the sync routes would otherwise serve every counter"
                " to anyone who can reach the node"
            )
        if self.notice_delay < 0:
            raise ConfigError(f"notice_delay must be >= 0 seconds, got {self.notice_delay}")
        bounded = {
            "round_max_pages": (self.round_max_pages, 1, 10_000_000),
            "queue_limit": (self.queue_limit, 1, 10_000_000),
            "max_group": (self.max_group, 1, 100_000),
            "page_entries": (self.page_entries, 1, 5000),
            "page_bytes": (self.page_bytes, 1024, 1 << 20),
            "cache_keys": (self.cache_keys, 0, 100_000_000),
            "idempotency_cap": (self.idempotency_cap, 1, 1_000_000_000),
        }
        for name, (value, low, high) in bounded.items():
            if not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be an int in [{low}, {high}], got {value!r}")
