"""Signed node-to-node sync: the cluster secret's HMAC over each request and its response.

The sync routes (``/sync/pull``, ``/sync/notice``) are called by other nodes, which sign each
request with a cluster secret shared by every node (:class:`ClusterAuth`). The signature is
HMAC-SHA256 over a canonical string, one field per line (no field may hold a newline, so the
encoding is unambiguous)::

    vvstore-sync-v1                      the scheme and its version (domain separation)
    POST                                 the method, upper case
    /sync/pull?a=1&b=2                   the path and its query, canonical (see below)
    1712345678901                        X-VV-Timestamp: integer milliseconds since the epoch
    0123456789abcdef0123456789abcdef     X-VV-Nonce: 16 to 64 lower-case hex digits
    node-a                               X-VV-Node: the sender's node id
    node-b                               the recipient's node id (never sent: the recipient
                                         verifies with its own, so a request made for B is
                                         refused by C)
    e3b0c442...                          hex SHA-256 of the body bytes, also sent in
                                         X-VV-Content-SHA256 (see "Verify before reading")

The path is normalised as RFC 3986 section 6.2.2 says (percent-escapes in upper case,
escapes of unreserved characters decoded, everything else escaped), so ``%2F`` and ``/``
stay different. Query pairs are split on ``&`` and the first ``=``, ``+`` reads as a space,
each side is escaped the same way (only unreserved characters stay literal), and the pairs
are sorted by key, then value: the order of the query does not matter, its contents do.

The responder signs its answer too, over ``vvstore-sync-response-v1``, its own node id, the
request's nonce, the status code and the hex SHA-256 of the response body, in
``X-VV-Response-Signature`` (with ``X-VV-Node``). The requester checks it with
:meth:`ClusterAuth.verify_response` *before* parsing the body. Responders sign only answers
to requests that passed :meth:`ClusterAuth.verify_request`: a refusal goes out unsigned, so
an outsider cannot use a node as a signing oracle, and the requester reports it as
:class:`~vvstore.errors.Unauthorized` without trusting its body.

Verify before reading: the sender also sends the body's hash in ``X-VV-Content-SHA256``, so
the recipient checks the signature from the headers alone (:meth:`ClusterAuth.verify_headers`)
before it reads a byte of the body, then reads the body and checks it has that hash
(:func:`check_body`). An outsider is refused before the body costs anything. A request
without the header (from a release before it) is verified the old way, on a body read first,
which the API allows only up to a small limit.

Identity: a node that does not yet know who answers at a peer's address asks with a *hello*
(``POST /sync/hello``), the one request signed for :data:`ANY_RECIPIENT` instead of a node
id; the signed answer names the responder. Every other request is signed for the node id
expected at the address and its answer is checked to be signed by that node, so every sync
call proves who answered; a hello only finds out whom to ask.

What this protects against, for someone on the network who does not hold the secrets: calling
client routes; forging, altering or redirecting a sync request (method, path, query, body,
sender or recipient); replaying one (within the window the nonce cache refuses it, after it the
timestamp does); forging or altering a sync response, or passing off the answer to one request
as the answer to another. It does **not** hide anything: the token travels in clear and bodies
are readable, so confidentiality (and protection of the token itself) needs TLS, which vvstore
leaves to a reverse proxy in front of each node. Every node holds the cluster secret, so a
compromised node can impersonate any other; node ids in signatures name, they do not isolate.

Rotation: a node may also hold a *previous* cluster secret for the time it takes to give every
node a new one. It then accepts requests signed with either, signs its own requests with the
current one, and answers each request with the secret that request was verified with, so a node
that knows only the previous secret can check the answer. A requester whose current secret is
refused may sign again with the previous one (:mod:`vvstore.peer` does, once per call).
:attr:`ClusterAuth.peer_secrets` says which of the two each sender used last, for ``/status``:
once no sender uses the previous secret, it can be dropped.

Clocks: timestamps are wall-clock seconds (``time.time()`` in the caller), compared across
nodes, so the nodes' clocks must agree within ``window`` (NTP). The measured skew of every
correctly signed request is recorded per sender (:attr:`ClusterAuth.skews`) for ``/status``.

Pure core: standard library, :mod:`vvstore.errors` and :mod:`vvstore.auth` (what a usable
secret is) only. No I/O, and no clock or randomness: ``now`` and nonces are passed in (a nonce
is ``secrets.token_hex(16)`` in the caller). Every refusal is an
:class:`~vvstore.errors.Unauthorized` (HTTP 401) with its own ``code``; a bad argument from our
own side (a nonce we generated, a secret we were configured with) is a ``ValueError``
(:class:`~vvstore.errors.ConfigError` for configuration).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from vvstore.auth import check_secret_length
from vvstore.errors import ConfigError, Unauthorized

__all__ = [
    "ANY_RECIPIENT",
    "CONTENT_HASH_HEADER",
    "NODE_HEADER",
    "NONCE_HEADER",
    "REQUEST_SCHEME",
    "RESPONSE_SCHEME",
    "RESPONSE_SIGNATURE_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ClusterAuth",
    "check_body",
]

#: The sender's node id on a sync request; the responder's node id on its response.
NODE_HEADER: Final = "X-VV-Node"
#: When the sync request was signed: integer milliseconds since the Unix epoch.
TIMESTAMP_HEADER: Final = "X-VV-Timestamp"
#: A value the sender never reuses: 16 to 64 lower-case hex digits.
NONCE_HEADER: Final = "X-VV-Nonce"
#: Hex HMAC-SHA256 of the canonical request.
SIGNATURE_HEADER: Final = "X-VV-Signature"
#: Hex SHA-256 of the request body (lower case): what the signature covers, sent ahead of it.
CONTENT_HASH_HEADER: Final = "X-VV-Content-SHA256"
#: The recipient of a hello: any node (not a node id, which never holds ``*``).
ANY_RECIPIENT: Final = "*"
#: Hex HMAC-SHA256 of the canonical response.
RESPONSE_SIGNATURE_HEADER: Final = "X-VV-Response-Signature"
#: First line of every signed request; a new format gets a new tag.
REQUEST_SCHEME: Final = "vvstore-sync-v1"
#: First line of every signed response, distinct so a request signature is never a response one.
RESPONSE_SCHEME: Final = "vvstore-sync-response-v1"
# Longest request target (path and query) verified; longer ones are refused, not hashed.
_MAX_TARGET_CHARS: Final = 8192
# Node ids are the operator's names ([A-Za-z0-9_-]{1,40} in NodeConfig); here any visible
# ASCII up to 64 characters is accepted, which keeps them header-safe and free of newlines.
_NODE_ID_RE: Final = re.compile(r"[!-~]{1,64}")
_NONCE_RE: Final = re.compile(r"[0-9a-f]{16,64}")
# Canonical decimal, no sign, no leading zero; 15 digits reach beyond the year 30000.
_TIMESTAMP_RE: Final = re.compile(r"0|[1-9][0-9]{0,14}")
_SIGNATURE_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
_DIGEST_RE: Final = re.compile(r"[0-9a-f]{64}")
_METHOD_RE: Final = re.compile(r"[A-Za-z]{1,16}")
_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")
_UNRESERVED: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
# RFC 3986 pchar minus percent-escapes, plus "/" between segments.
_PATH_LITERAL: Final = _UNRESERVED | frozenset(b"!$&'()*+,;=:@/")


class ClusterAuth:
    """Signs and verifies node-to-node sync requests and their responses for one node.

    :param secret: the cluster secret, the same on every node, at least
        :data:`MIN_SECRET_BYTES` bytes.
    :param node_id: this node's id: the sender of what it signs, the recipient of what it
        verifies.
    :param window: seconds a request's timestamp may differ from the verifier's clock, either
        way. Larger tolerates worse clocks; smaller shortens how long a request lives.
    :param previous: the cluster secret being replaced, accepted alongside ``secret`` during a
        rotation, or None. Never used to sign a request unless asked (``previous=True``).
    :param max_nonces: most nonces remembered. The nonce of each accepted request is kept
        until its timestamp leaves the window; if the cache is full, the entry that would
        expire first is evicted, and a replay of *that* request is then refused only once its
        timestamp is older than the window, not before. Size it to at least the accepted
        request rate times ``2 * window`` (a timestamp may be up to ``window`` ahead); each
        entry costs roughly 200 bytes. Only correctly signed requests enter the cache, so
        only a holder of the secret can fill it.
    :raises ConfigError: when a parameter is out of range.

    Not thread-safe; in asyncio, each call runs to completion without yielding.
    """

    __slots__ = (
        "_expiry_heap",
        "_max_nonces",
        "_node_id",
        "_previous",
        "_secret",
        "_seen",
        "_skews",
        "_used",
        "_window",
    )

    def __init__(
        self,
        secret: bytes,
        node_id: str,
        window: float = 30.0,
        max_nonces: int = 100_000,
        *,
        previous: bytes | None = None,
    ) -> None:
        if not isinstance(secret, bytes):
            raise TypeError(f"cluster secret must be bytes, got {type(secret).__name__}")
        check_secret_length(secret, "cluster secret")
        if previous is not None:
            if not isinstance(previous, bytes):
                raise TypeError(
                    f"previous cluster secret must be bytes, got {type(previous).__name__}"
                )
            check_secret_length(previous, "previous cluster secret")
            if hmac.compare_digest(previous, secret):
                raise ConfigError(
                    "the previous cluster secret is the current one: give the new secret as the"
                    " current one, or drop the previous"
                )
        if not isinstance(node_id, str) or not _NODE_ID_RE.fullmatch(node_id):
            raise ConfigError(
                f"node id must be 1 to 64 visible ASCII characters, got {node_id!r:.80}"
            )
        if isinstance(window, bool) or not isinstance(window, int | float):
            raise ConfigError(f"window must be a number of seconds, got {window!r:.80}")
        if not (math.isfinite(window) and window > 0):
            raise ConfigError(f"window must be a finite number of seconds > 0, got {window!r}")
        if isinstance(max_nonces, bool) or not isinstance(max_nonces, int) or max_nonces < 1:
            raise ConfigError(f"max_nonces must be an int >= 1, got {max_nonces!r:.80}")
        self._secret = secret
        self._previous = previous
        self._node_id = node_id
        self._window = float(window)
        self._max_nonces = max_nonces
        # (expires_at, sender, nonce): a heap so the first to expire is the first to go.
        self._expiry_heap: list[tuple[float, str, str]] = []
        # (sender, nonce) -> whether the previous secret verified it (the answer is signed so).
        self._seen: dict[tuple[str, str], bool] = {}
        self._skews: dict[str, float] = {}
        self._used: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"ClusterAuth(<redacted>, node_id={self._node_id!r}, window={self._window!r})"

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self._node_id

    @property
    def window(self) -> float:
        """Seconds a timestamp may be off, either way."""
        return self._window

    @property
    def skews(self) -> Mapping[str, float]:
        """Clock skew in seconds per sender, from its latest correctly signed request.

        Positive: the sender's clock is ahead of ours. Recorded for stale requests too, so a
        node refused for its clock shows here. A replay of an old captured request is also
        correctly signed and stale, so it can make a sender's skew read high until that sender's
        next request; treat a large value as a hint to check NTP, not as proof.
        """
        return MappingProxyType(self._skews)

    @property
    def rotating(self) -> bool:
        """True while a previous cluster secret is accepted alongside the current one."""
        return self._previous is not None

    @property
    def peer_secrets(self) -> Mapping[str, str]:
        """``"current"`` or ``"previous"`` per sender: the secret its latest accepted request was
        signed with. A sender still on ``"previous"`` has not been given the current secret."""
        return MappingProxyType(self._used)

    @property
    def last_skew(self) -> float | None:
        """The skew measured on the latest correctly signed request, or None before the first."""
        if not self._skews:
            return None
        return next(reversed(self._skews.values()))

    @property
    def nonce_count(self) -> int:
        """How many nonces are remembered now (expired ones go on the next verification)."""
        return len(self._seen)

    # --- requests -------------------------------------------------------------------------

    def sign_request(
        self,
        method: str,
        path_qs: str,
        body: bytes,
        *,
        recipient: str,
        now: float,
        nonce: str,
        previous: bool = False,
    ) -> dict[str, str]:
        """Headers that authenticate a sync request from this node to ``recipient``.

        ``path_qs`` is the path and query as sent; ``body`` the exact bytes sent; ``now`` the
        wall clock in seconds; ``nonce`` 16 to 64 lower-case hex digits never used before
        (``secrets.token_hex(16)``). Keep the nonce: the response is signed over it.
        ``previous`` signs with the previous secret, for a recipient that refused the current one.
        ``recipient`` is :data:`ANY_RECIPIENT` for a hello only.

        :raises ValueError: when an argument is malformed, ``recipient`` is this node, or
            ``previous`` is asked for without a previous secret.
        """
        if not _METHOD_RE.fullmatch(method):
            raise ValueError(f"method must be 1 to 16 ASCII letters, got {method!r:.80}")
        if not _NODE_ID_RE.fullmatch(recipient):
            raise ValueError(f"recipient must be a node id, got {recipient!r:.80}")
        if recipient == self._node_id:
            raise ValueError(f"a node does not sign requests to itself ({recipient!r})")
        if not _NONCE_RE.fullmatch(nonce):
            raise ValueError("nonce must be 16 to 64 lower-case hex digits")
        if isinstance(now, bool) or not isinstance(now, int | float):
            raise ValueError(f"now must be a number of seconds, got {now!r:.80}")
        if not (math.isfinite(now) and now >= 0):
            raise ValueError(f"now must be finite and >= 0, got {now!r}")
        target = _canonical_target(path_qs)
        if target is None:
            raise ValueError(f"path must start with '/' and be short, got {path_qs!r:.80}")
        timestamp = str(math.floor(now * 1000))
        digest = _sha256(body)
        message = _request_message(
            method.upper(), target, timestamp, nonce, self._node_id, recipient, digest
        )
        return {
            NODE_HEADER: self._node_id,
            TIMESTAMP_HEADER: timestamp,
            NONCE_HEADER: nonce,
            CONTENT_HASH_HEADER: digest,
            SIGNATURE_HEADER: self._mac(message, previous=previous).hex(),
        }

    def verify_request(
        self,
        method: str,
        path_qs: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        now: float,
        any_recipient: bool = False,
    ) -> str:
        """Accept a sync request made to this node and return its sender's node id.

        ``path_qs`` is the request target as received (``request.raw_path`` in aiohttp),
        ``body`` the bytes read, ``headers`` the request's headers (looked up without regard to
        case), ``now`` the wall clock in seconds. Checks, in order: every header present and
        well-formed; the timestamp within ``window`` of ``now``; the signature (constant time),
        with the current secret, then the previous one if there is one; the nonce not seen
        before. The nonce is remembered only once the signature is valid. An
        ``X-VV-Content-SHA256`` header is ignored: the hash of ``body`` is computed here.
        ``any_recipient``: see :meth:`verify_headers`.

        :raises Unauthorized: with code ``missing_auth_header``, ``malformed_auth_header``,
            ``clock_skew``, ``bad_signature`` or ``replayed_nonce``.
        """
        return self._verify(
            method, path_qs, _sha256(body), headers, now=now, any_recipient=any_recipient
        )

    def verify_headers(
        self,
        method: str,
        path_qs: str,
        headers: Mapping[str, str],
        *,
        now: float,
        any_recipient: bool = False,
    ) -> tuple[str, str]:
        """Accept a sync request from its headers alone: ``(sender, body hash)``.

        The signature covers the body's hash that ``X-VV-Content-SHA256`` announces; the
        caller then reads the body and refuses it unless :func:`check_body` accepts it.
        Otherwise as :meth:`verify_request`; ``any_recipient`` (for a hello, and only that)
        accepts a request signed for :data:`ANY_RECIPIENT` as well as one signed for this node.

        :raises Unauthorized: as :meth:`verify_request`, ``missing_auth_header`` and
            ``malformed_auth_header`` for the hash header too.
        """
        digest = _required(headers, CONTENT_HASH_HEADER)
        if not _DIGEST_RE.fullmatch(digest):
            raise _malformed(CONTENT_HASH_HEADER, "64 lower-case hex digits")
        sender = self._verify(
            method, path_qs, digest, headers, now=now, any_recipient=any_recipient
        )
        return sender, digest

    def _verify(
        self,
        method: str,
        path_qs: str,
        digest: str,
        headers: Mapping[str, str],
        *,
        now: float,
        any_recipient: bool,
    ) -> str:
        """The checks of :meth:`verify_request`, over the body's hash ``digest``."""
        if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
            raise ValueError(f"now must be a finite number of seconds, got {now!r:.80}")
        sender = _required(headers, NODE_HEADER)
        timestamp = _required(headers, TIMESTAMP_HEADER)
        nonce = _required(headers, NONCE_HEADER)
        signature = _required(headers, SIGNATURE_HEADER)
        if not _NODE_ID_RE.fullmatch(sender):
            raise _malformed(NODE_HEADER, "a node id of 1 to 64 visible ASCII characters")
        if not _TIMESTAMP_RE.fullmatch(timestamp):
            raise _malformed(TIMESTAMP_HEADER, "integer milliseconds since the epoch")
        if not _NONCE_RE.fullmatch(nonce):
            raise _malformed(NONCE_HEADER, "16 to 64 lower-case hex digits")
        if not _SIGNATURE_RE.fullmatch(signature):
            raise _malformed(SIGNATURE_HEADER, "64 hex digits")
        if not (isinstance(method, str) and _METHOD_RE.fullmatch(method)):
            raise Unauthorized("malformed request method", code="malformed_auth_header")
        target = _canonical_target(path_qs)
        if target is None:
            raise Unauthorized("malformed request path", code="malformed_auth_header")
        if sender == self._node_id:
            raise Unauthorized(
                f"request claims to come from this node ({sender!r}): duplicate node ids?",
                code="malformed_auth_header",
            )

        message = _request_message(
            method.upper(), target, timestamp, nonce, sender, self._node_id, digest
        )
        # The MAC is computed before the window is checked, though a stale request is refused
        # as stale whatever its signature: only a correctly signed one may record its skew.
        presented = bytes.fromhex(signature)
        messages = [message]
        if any_recipient:
            messages.append(
                _request_message(
                    method.upper(), target, timestamp, nonce, sender, ANY_RECIPIENT, digest
                )
            )
        signed = any(hmac.compare_digest(self._mac(m), presented) for m in messages)
        by_previous = (
            not signed
            and self._previous is not None
            and any(hmac.compare_digest(self._mac(m, previous=True), presented) for m in messages)
        )
        signed = signed or by_previous
        sent_at = int(timestamp) / 1000
        skew = sent_at - now
        if abs(skew) > self._window:
            if signed:
                self._record_skew(sender, skew)
            raise Unauthorized(
                f"timestamp is {skew:+.1f} s from this node's clock, outside the "
                f"+-{self._window:g} s window: check clock skew between {sender!r} and "
                f"{self._node_id!r} (NTP)",
                code="clock_skew",
            )
        if not signed:
            raise Unauthorized(
                "bad signature: wrong cluster secret, or the request was altered or made "
                "for another node",
                code="bad_signature",
            )
        self._record_skew(sender, skew)
        self._expire(now)
        key = (sender, nonce)
        if key in self._seen:
            raise Unauthorized("replayed nonce", code="replayed_nonce")
        self._remember(key, sent_at + self._window, by_previous)
        self._used[sender] = "previous" if by_previous else "current"
        return sender

    # --- responses ------------------------------------------------------------------------

    def sign_response(
        self, request_nonce: str, status: int, body: bytes, *, sender: str | None = None
    ) -> dict[str, str]:
        """Headers that authenticate this node's response to a verified sync request.

        ``sender``, the node id :meth:`verify_request` returned, picks the secret the request
        was verified with (the current one when the request is not remembered).

        :raises ValueError: when the nonce or the status is malformed.
        """
        if not _NONCE_RE.fullmatch(request_nonce):
            raise ValueError("request nonce must be 16 to 64 lower-case hex digits")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"status must be an int from 100 to 599, got {status!r:.80}")
        message = _response_message(self._node_id, request_nonce, status, body)
        previous = sender is not None and self._seen.get((sender, request_nonce), False)
        mac = self._mac(message, previous=previous)
        return {NODE_HEADER: self._node_id, RESPONSE_SIGNATURE_HEADER: mac.hex()}

    def verify_response(
        self,
        request_nonce: str,
        status: int,
        body: bytes,
        headers: Mapping[str, str],
        *,
        expected_node: str | None,
        previous: bool = False,
    ) -> str:
        """Accept the response to the request this node signed with ``request_nonce``; return
        the node id of the responder.

        Call it before parsing ``body``. ``expected_node``, when given, is the node id the
        response must come from; ``previous`` is the ``previous`` the request was signed with.

        :raises Unauthorized: ``unsigned_response`` when a header is missing or malformed,
            ``unexpected_responder`` when another node signed it, ``tampered_response`` when
            the signature does not match.
        :raises ValueError: when ``request_nonce`` is not one this node could have made.
        """
        if not _NONCE_RE.fullmatch(request_nonce):
            raise ValueError("request nonce must be 16 to 64 lower-case hex digits")
        responder = _header(headers, NODE_HEADER)
        signature = _header(headers, RESPONSE_SIGNATURE_HEADER)
        if responder is None or signature is None:
            raise Unauthorized(
                f"tampered or unsigned response: no {NODE_HEADER} or "
                f"{RESPONSE_SIGNATURE_HEADER} header (HTTP {status})",
                code="unsigned_response",
            )
        if not _NODE_ID_RE.fullmatch(responder) or not _SIGNATURE_RE.fullmatch(signature):
            raise Unauthorized(
                "tampered or unsigned response: malformed signature headers",
                code="unsigned_response",
            )
        if responder == self._node_id or (expected_node is not None and responder != expected_node):
            raise Unauthorized(
                f"response signed by node {responder!r}, expected {expected_node!r}",
                code="unexpected_responder",
            )
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise Unauthorized(
                "tampered or unsigned response: bad status", code="unsigned_response"
            )
        message = _response_message(responder, request_nonce, status, body)
        if not hmac.compare_digest(self._mac(message, previous=previous), bytes.fromhex(signature)):
            raise Unauthorized("tampered or unsigned response", code="tampered_response")
        return responder

    # --- internals ------------------------------------------------------------------------

    def _mac(self, message: bytes, *, previous: bool = False) -> bytes:
        if not previous:
            return hmac.new(self._secret, message, hashlib.sha256).digest()
        if self._previous is None:
            raise ValueError("no previous cluster secret to sign with")
        return hmac.new(self._previous, message, hashlib.sha256).digest()

    def _record_skew(self, sender: str, skew: float) -> None:
        # Re-inserted so the dict's last entry is the latest measurement (for last_skew).
        self._skews.pop(sender, None)
        self._skews[sender] = skew

    def _expire(self, now: float) -> None:
        heap = self._expiry_heap
        while heap and heap[0][0] < now:
            _, sender, nonce = heapq.heappop(heap)
            self._seen.pop((sender, nonce), None)

    def _remember(self, key: tuple[str, str], expires_at: float, by_previous: bool) -> None:
        while len(self._seen) >= self._max_nonces:
            _, sender, nonce = heapq.heappop(self._expiry_heap)
            self._seen.pop((sender, nonce), None)
        heapq.heappush(self._expiry_heap, (expires_at, *key))
        self._seen[key] = by_previous


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name``, looked up exactly, then without regard to case."""
    value: object = headers.get(name)
    if value is None:
        folded = name.casefold()
        value = next(
            (v for k, v in headers.items() if isinstance(k, str) and k.casefold() == folded), None
        )
    return value if isinstance(value, str) else None


def _required(headers: Mapping[str, str], name: str) -> str:
    value = _header(headers, name)
    if value is None:
        raise Unauthorized(f"missing {name} header", code="missing_auth_header")
    return value


def _malformed(name: str, expected: str) -> Unauthorized:
    return Unauthorized(
        f"malformed {name} header: expected {expected}", code="malformed_auth_header"
    )


def _request_message(
    method: str,
    target: str,
    timestamp: str,
    nonce: str,
    sender: str,
    recipient: str,
    digest: str,
) -> bytes:
    fields = (REQUEST_SCHEME, method, target, timestamp, nonce, sender, recipient, digest)
    return "\n".join(fields).encode("ascii")


def _response_message(responder: str, nonce: str, status: int, body: bytes) -> bytes:
    fields = (RESPONSE_SCHEME, responder, nonce, str(status), _sha256(body))
    return "\n".join(fields).encode("ascii")


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def check_body(body: bytes, digest: str) -> None:
    """Refuse a body read after :meth:`ClusterAuth.verify_headers` unless it has the hash
    ``digest`` that the verified signature covers.

    :raises Unauthorized: ``bad_signature``: the body was altered on the way, or is not the
        one signed.
    """
    if not hmac.compare_digest(_sha256(body), digest):
        raise Unauthorized(
            f"bad signature: the body is not the one signed (its SHA-256 is not the"
            f" {CONTENT_HASH_HEADER} header's)",
            code="bad_signature",
        )


def _canonical_target(path_qs: str) -> str | None:
    """The canonical path and query of a request target, or None if it cannot be one.

    The result is ASCII without whitespace, so it never holds the newline that separates the
    fields of the signed message. Raw bytes that a server decoded with ``surrogateescape`` are
    recovered; any other lone surrogate makes the target malformed.
    """
    if not isinstance(path_qs, str) or not path_qs.startswith("/"):
        return None
    if len(path_qs) > _MAX_TARGET_CHARS:
        return None
    try:
        raw = path_qs.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None
    path, has_query, query = raw.partition(b"?")
    canonical = _escape(path, _PATH_LITERAL, plus_is_space=False)
    if not has_query:
        return canonical
    pairs = []
    for item in query.split(b"&"):
        if not item:
            continue
        key, _, value = item.partition(b"=")
        pairs.append(
            (
                _escape(key, _UNRESERVED, plus_is_space=True),
                _escape(value, _UNRESERVED, plus_is_space=True),
            )
        )
    pairs.sort()
    return canonical + "?" + "&".join(f"{key}={value}" for key, value in pairs)


def _escape(raw: bytes, literal: frozenset[int], *, plus_is_space: bool) -> str:
    """``raw`` with percent-escapes normalised (RFC 3986 section 6.2.2).

    Escaped unreserved characters are decoded, other escapes keep their byte in upper-case
    hex, bytes outside ``literal`` are escaped, and a ``%`` not followed by two hex digits is
    taken literally (so escaped as ``%25``).
    """
    out: list[str] = []
    i = 0
    while i < len(raw):
        byte = raw[i]
        escaped = False
        if byte == 0x25 and _is_hex_pair(raw, i + 1):
            byte = int(raw[i + 1 : i + 3], 16)
            escaped = True
            i += 3
        else:
            i += 1
        if byte == 0x2B and plus_is_space and not escaped:
            byte = 0x20
        if byte in _UNRESERVED or (byte in literal and not escaped):
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def _is_hex_pair(raw: bytes, at: int) -> bool:
    return at + 1 < len(raw) and raw[at] in _HEX_DIGITS and raw[at + 1] in _HEX_DIGITS
