"""One exception tree for vvstore.

Every error the package raises on purpose is a :class:`VVStoreError`. Each class says when it
is raised, carries a stable machine ``code`` (the ``code`` of the HTTP JSON error body) and
says whether the outcome of the operation that raised it is *definite*: a definite failure
changed nothing; an indefinite one (a timeout, a failed commit, a lost reply) may or may not
have been applied, and only a retry with the same idempotency key is safe.

::

    VVStoreError
    ├── ClockError                 invalid version-vector id or counter (also a ValueError)
    ├── ConfigError                a NodeConfig field is out of range (also a ValueError)
    ├── RequestError               the caller sent something we refuse; nothing was applied
    │   ├── InvalidRequest         400 malformed JSON, unknown field, wrong type, bad key
    │   ├── Unauthorized           401 missing or wrong credentials
    │   ├── NotFound               404 no such route
    │   ├── MethodNotAllowed       405 the route exists, the method does not
    │   ├── RequestTimeout         408 the request body did not arrive in time
    │   ├── PayloadTooLarge        413 body over the route's limit
    │   ├── Overflow               422 an amount or total would leave int64
    │   ├── IdempotencyKeyReused   422 an idempotency key came back with another request
    │   └── ConflictingEntry       409 two entries with one dot and different contents
    ├── CodecError                 a payload from another process is not one we accept
    │   ├── UnsupportedVersion     its format version is unknown
    │   └── MalformedPayload       its shape, types or ranges are wrong
    ├── StoreError                 the durable store could not do its job
    │   ├── Unavailable            503 commit failed, disk full, queue full (indefinite)
    │   ├── SchemaTooNew           the database was written by a newer vvstore
    │   ├── DataDirLocked          another process serves this data directory
    │   ├── DataDirUnusable        the data directory cannot be created, opened or written
    │   └── NodeIdMismatch         the data directory belongs to another node id
    ├── PeerError                  a call to another node failed (indefinite)
    │   ├── PeerUnreachable        connection refused or reset
    │   ├── PeerTimeout            no answer within the call timeout
    │   └── PeerMismatch           another node answers at the peer's address
    └── RoundAbandoned             a pull round stopped at its page budget (indefinite)

This module is part of the pure core: standard library only, no I/O.
"""

from __future__ import annotations

__all__ = [
    "ClockError",
    "CodecError",
    "ConfigError",
    "ConflictingEntry",
    "DataDirLocked",
    "DataDirUnusable",
    "IdempotencyKeyReused",
    "InvalidRequest",
    "MalformedPayload",
    "MethodNotAllowed",
    "NodeIdMismatch",
    "NotFound",
    "Overflow",
    "PayloadTooLarge",
    "PeerError",
    "PeerMismatch",
    "PeerTimeout",
    "PeerUnreachable",
    "RequestError",
    "RequestTimeout",
    "RoundAbandoned",
    "SchemaTooNew",
    "StoreError",
    "Unauthorized",
    "Unavailable",
    "UnsupportedVersion",
    "VVStoreError",
]


class VVStoreError(Exception):
    """Base of every error vvstore raises on purpose.

    :ivar code: stable machine-readable code, used in HTTP error bodies.
    :ivar definite: True when the failed operation certainly changed nothing.
    """

    code: str = "error"
    definite: bool = True

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ClockError(VVStoreError, ValueError):
    """Raised by :mod:`vvstore.clock` for an invalid id or counter, or an increment past 2**63-1."""

    code = "invalid_vector"


class ConfigError(VVStoreError, ValueError):
    """Raised when a :class:`~vvstore.config.NodeConfig` field is out of range."""

    code = "invalid_config"


class RequestError(VVStoreError):
    """The request was refused as sent; nothing was applied (definite)."""

    code = "bad_request"


class InvalidRequest(RequestError):
    """Malformed JSON, an unknown field, a wrong type or an invalid key."""

    code = "invalid_request"


class Unauthorized(RequestError):
    """Missing or wrong credentials."""

    code = "unauthorized"


class NotFound(RequestError):
    """No route matches the path."""

    code = "not_found"


class MethodNotAllowed(RequestError):
    """The path exists but not with this method."""

    code = "method_not_allowed"


class RequestTimeout(RequestError):
    """The client took longer than the body timeout to send its request body."""

    code = "request_timeout"


class PayloadTooLarge(RequestError):
    """The body is larger than the route accepts."""

    code = "payload_too_large"


class Overflow(RequestError):
    """An amount, this node's entry total, or the value would leave int64 (moving away from 0)."""

    code = "overflow"


class IdempotencyKeyReused(RequestError):
    """An idempotency key was reused with a different counter key or amount."""

    code = "idempotency_key_reused"


class ConflictingEntry(RequestError):
    """Two entries carry the same dot with different contents: a protocol violation.

    The receiver keeps its own entry and refuses the other.
    """

    code = "conflicting_entry"


class CodecError(VVStoreError):
    """A payload from another process does not have a shape we accept."""

    code = "invalid_payload"


class UnsupportedVersion(CodecError):
    """The payload's format version is not one this code speaks."""

    code = "unsupported_version"


class MalformedPayload(CodecError):
    """The payload's shape, types or ranges are wrong."""

    code = "invalid_payload"


class StoreError(VVStoreError):
    """The durable store could not do its job."""

    code = "store_error"


class Unavailable(StoreError):
    """The write could not be committed (commit failed, disk full, queue full).

    The outcome is indefinite: it may have been applied. ``retry_after`` is a hint in seconds
    (every 503 answer carries it as ``Retry-After``).
    """

    code = "unavailable"
    definite = False

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SchemaTooNew(StoreError):
    """The database's schema version is newer than this code knows; it is not opened."""

    code = "schema_too_new"


class DataDirLocked(StoreError):
    """Another process holds the exclusive lock on this data directory."""

    code = "data_dir_locked"


class DataDirUnusable(StoreError):
    """The data directory or its database cannot be created or opened (permissions, a file
    where a directory should be, a full or read-only disk): the message names the path and the
    operating system's reason."""

    code = "data_dir_unusable"


class NodeIdMismatch(StoreError):
    """The data directory was created for a different node id."""

    code = "node_id_mismatch"


class PeerError(VVStoreError):
    """A call to another node failed; whether it had an effect there is unknown."""

    code = "peer_error"
    definite = False


class PeerUnreachable(PeerError):
    """The connection to the other node was refused, reset or closed early."""

    code = "peer_unreachable"


class PeerTimeout(PeerError):
    """The other node did not answer within the call timeout."""

    code = "peer_timeout"


class PeerMismatch(PeerError):
    """Raised when the node that proves its identity at a peer's address is not the node named
    for it (``--peer b=http://...``): a moved or reused address. Nothing was sent to it."""

    code = "peer_mismatch"


class RoundAbandoned(VVStoreError):
    """A pull round stopped before its last page, though every call and payload was fine.

    Raised by :class:`vvstore.sync.PullRound` when the round reaches its page budget
    (``round_max_pages``): the peer has more to send than one round may take. V is not raised;
    the pages already applied stay applied (each is sound on its own), so the outcome is
    indefinite. The sync loop logs it and tries again; it never reaches the HTTP API, so it
    has no status of its own.
    """

    code = "round_abandoned"
    definite = False
