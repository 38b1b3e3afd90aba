"""A fault-injecting TCP proxy for loopback tests and the demo.

Real ``vvstore serve`` processes are wired to reach each other (and optionally clients to reach
them) through :class:`FaultProxy` links, so a test can partition, cut, slow down or refuse the
traffic between named nodes while the nodes themselves notice nothing but the effect: bytes stop
arriving, arrive late, or connections reset. This is the real-socket counterpart of the
in-memory network the in-process tests use (isolate/cut/heal in the style of etcd-io/raft's
test network).

Vocabulary:

- a *link* ``(src, dst)`` is one listener: connections accepted on it were opened by ``src``
  towards ``dst``; bytes src->dst are its *forward* direction, dst->src (replies) *backward*;
- a *direction* ``a -> b`` is an ordered pair of names. Policy is set per direction and applies
  to every link between a and b whoever opened the connection: forward on link (a, b),
  backward on link (b, a). Every direction starts as ``pass``.

Modes of a direction (each chunk read is judged against the policy current at that moment, so
a change applies to live connections):

- ``pass``: bytes are forwarded as they come;
- ``drop``: a blackhole. Bytes are read and discarded, the connection stays open, and an end of
  stream is swallowed as well (a partition carries no FIN either);
- ``refuse``: a new connection on link (a, b) is reset as soon as it is accepted, existing
  connections between a and b are reset when the policy is set, and a chunk travelling a -> b on
  a connection opened later by b resets that connection;
- ``delay``: bytes (and the end of stream) are forwarded ``delay`` seconds after they were read,
  in order. The proxy holds at most :data:`MAX_DELAYED_BYTES` per direction of a connection and
  stops reading beyond that, so TCP flow control pushes back on the sender.

A direction in mode ``pass`` or ``delay`` may also have a *bandwidth* (bytes per second; 0, the
default, is unlimited), set by :meth:`FaultProxy.limit` or ``set_direction(..., bandwidth=)``.
Like a real link's, it is shared by every connection in that direction: the direction has one
wire, busy until some instant, and each :data:`PIECE_BYTES` piece of a connection waits for the
wire, occupies it for ``len(piece) / bandwidth`` seconds, then is forwarded (after the delay,
when there is one: latency adds to transmission time). A pump waiting for the wire reads
nothing more, so TCP flow control pushes back on the sender, and the policy is judged again for
every piece, so a change to drop or refuse applies within one piece.

A direction in mode ``pass`` or ``delay`` may also be *lossy*: ``loss`` is the chance that a
chunk (a piece, under a bandwidth limit) is lost. A lost chunk either resets its connection or
*stalls* it: that chunk and everything after it in that direction of that connection are
discarded (the end of stream too), as behind a link that stopped delivering, until the sender
gives up. The two are equally likely. The draws come from one generator that
:meth:`FaultProxy.seed_loss` seeds, so a seed fixes the sequence of draws; which chunk meets
which draw still depends on timing.

Healing: a blackholed connection may have lost bytes in the middle of an HTTP message, so
whenever a direction leaves ``drop`` (by :meth:`FaultProxy.set_direction`,
:meth:`~FaultProxy.partition` or :meth:`~FaultProxy.heal`), every connection that dropped bytes
in that direction is reset; clients and nodes then open fresh connections, which pass. Likewise,
when a direction stops being lossy, every connection stalled in that direction is reset.

This module is an I/O shell over plain asyncio streams and the standard library. It must never
listen on or connect to anything but a 127.0.0.0/8 address, never buffer without bound, and
never leave a task running after :meth:`FaultProxy.close`. Its methods must be called from the
event loop thread that runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import math
import random
import socket
import struct
from collections import Counter, deque
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, get_args

__all__ = ["MAX_DELAYED_BYTES", "PIECE_BYTES", "FaultProxy", "Mode", "Policy"]

logger = logging.getLogger(__name__)

Mode = Literal["pass", "drop", "refuse", "delay"]
_MODES: frozenset[str] = frozenset(get_args(Mode))

Direction = tuple[str, str]

# One read per chunk: the policy is looked up once per chunk, so a chunk is the granularity at
# which a policy change takes effect on a live connection.
CHUNK_BYTES = 64 * 1024

# Bytes of one direction of one connection waiting out their delay. Beyond this the pump stops
# reading, so a delayed link costs bounded memory whatever the sender does.
MAX_DELAYED_BYTES = 1024 * 1024

# Under a bandwidth limit a chunk goes out in pieces of this size, each taking its turn on the
# direction's wire: small enough that connections sharing a direction interleave finely and a
# policy change applies promptly, large enough that pacing costs little.
PIECE_BYTES = 4 * 1024

# How long a graceful close may take to flush to a peer that does not read before the proxy
# resets the connection instead.
_CLOSE_TIMEOUT_S = 5.0

_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


@dataclass(frozen=True, slots=True)
class Policy:
    """What happens to bytes in one direction.

    ``delay`` in seconds, only for mode "delay"; ``bandwidth`` in bytes per second shared by
    every connection in the direction, 0 for unlimited, only for modes "pass" and "delay";
    ``loss`` the chance (0 to 1) that a chunk is lost, resetting or stalling its connection,
    only for modes "pass" and "delay".
    """

    mode: Mode = "pass"
    delay: float = 0.0
    bandwidth: float = 0.0
    loss: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the policy as a JSON-friendly dict."""
        return {
            "mode": self.mode,
            "delay": self.delay,
            "bandwidth": self.bandwidth,
            "loss": self.loss,
        }


_PASS = Policy()


def _check_loopback(host: str) -> None:
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"host must be an IPv4 address in 127.0.0.0/8, got {host!r}") from None
    if address not in _LOOPBACK:
        raise ValueError(f"host must be in 127.0.0.0/8 (loopback only), got {host!r}")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a name must be a non-empty str, got {name!r}")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close the socket with an RST, discarding buffers: the peer sees a reset, not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _shut_down(*writers: asyncio.StreamWriter, graceful: bool) -> None:
    """Close ``writers`` (flushing them, or by reset) and wait until they really are closed.

    A graceful close that cannot flush within _CLOSE_TIMEOUT_S (the peer does not read) and a
    cancellation (the proxy is closing) both end in a reset, so no socket is left behind.
    """
    for writer in writers:
        if graceful:
            writer.close()
        else:
            _reset(writer)
    try:
        for writer in writers:
            try:
                await asyncio.wait_for(writer.wait_closed(), _CLOSE_TIMEOUT_S)
            except TimeoutError:
                _reset(writer)
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            except OSError:
                # The peer reset the connection first: it is closed, which is all we wanted.
                pass
    except asyncio.CancelledError:
        for writer in writers:
            _reset(writer)
        raise


@dataclass(eq=False, slots=True)
class _Link:
    src: str
    dst: str
    host: str
    target_port: int
    server: asyncio.Server
    port: int


@dataclass(eq=False, slots=True)
class _Connection:
    """One accepted connection and its upstream twin."""

    link: _Link
    number: int
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    lost: set[Direction] = field(default_factory=set)  # directions that dropped bytes
    stalled: set[Direction] = field(default_factory=set)  # directions a loss stalled
    reset: bool = False

    def abort(self) -> None:
        self.reset = True
        _reset(self.client)
        _reset(self.upstream)


def _delay(policy: Policy) -> float:
    return policy.delay if policy.mode == "delay" else 0.0


class _Pump:
    """Copies one direction of one connection, judging every chunk (every piece, under a
    bandwidth limit) against the policy."""

    def __init__(
        self,
        proxy: FaultProxy,
        conn: _Connection,
        direction: Direction,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._proxy = proxy
        self._conn = conn
        self._direction = direction
        self._reader = reader
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        # Delayed chunks with their due times, in read order; due times never decrease, and a
        # single timer delivers them in order (two timers due at the same instant could fire in
        # either order).
        self._queue: deque[tuple[float, bytes]] = deque()
        self._queued_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._progress = asyncio.Event()

    async def run(self) -> bool:
        """Pump until end of stream or error; return True when the connection should close."""
        try:
            while True:
                chunk = await self._reader.read(CHUNK_BYTES)
                policy = self._proxy.policy(*self._direction)
                if chunk:
                    if not await self._carry(chunk, policy):
                        return True
                    continue
                if policy.mode == "refuse":
                    self._proxy._abort(self._conn)
                    return True
                if policy.mode == "drop" or self._direction in self._conn.stalled:
                    # The end of stream is blackholed too: the other side keeps waiting, as it
                    # would behind a real partition, until a heal resets the connection.
                    self._conn.lost.add(self._direction)
                    return False
                await self._finish(_delay(policy))
                return True
        except OSError:
            # Reset or broken pipe on either socket: the connection is over.
            return True

    async def _carry(self, chunk: bytes, policy: Policy) -> bool:
        """Pass, drop or delay ``chunk``; False when a refuse policy reset the connection.

        Under a bandwidth limit the chunk goes a piece at a time, each piece judged against the
        policy current once it has had its turn on the wire.
        """
        offset = 0
        while offset < len(chunk):
            if policy.mode == "refuse":
                self._proxy._abort(self._conn)
                return False
            if policy.mode == "drop" or self._direction in self._conn.stalled:
                self._conn.lost.add(self._direction)
                self._proxy._dropped[self._direction] += len(chunk) - offset
                return True
            if policy.loss > 0 and self._proxy._lose(self._conn, self._direction, policy.loss):
                if self._conn.reset:
                    return False
                continue
            size = len(chunk) - offset
            if policy.bandwidth > 0:
                size = min(size, PIECE_BYTES)
                await self._proxy._transmit(self._direction, size, policy.bandwidth)
                policy = self._proxy.policy(*self._direction)
                if policy.mode in ("drop", "refuse"):
                    continue
            await self._forward(chunk[offset : offset + size], _delay(policy))
            offset += size
        return True

    async def _forward(self, chunk: bytes, delay: float) -> None:
        if delay <= 0 and not self._queue:
            self._deliver(chunk)
        else:
            due = self._loop.time() + delay
            if self._queue:
                # A shorter delay set mid-stream must not let bytes overtake earlier ones.
                due = max(due, self._queue[-1][0])
            self._queue.append((due, chunk))
            self._queued_bytes += len(chunk)
            self._proxy._delayed[self._direction] += len(chunk)
            if self._timer is None:
                self._timer = self._loop.call_at(due, self._flush)
            while self._queued_bytes >= MAX_DELAYED_BYTES:
                self._progress.clear()
                await self._progress.wait()
        await self._writer.drain()

    async def _finish(self, delay: float) -> None:
        """Let the bytes still waiting out their delay through, then the end of stream."""
        if delay > 0:
            await asyncio.sleep(delay)
        while self._queue and not self._writer.is_closing():
            self._progress.clear()
            await self._progress.wait()

    def _deliver(self, chunk: bytes) -> None:
        if self._writer.is_closing():
            return
        self._writer.write(chunk)
        self._proxy._carried[self._direction] += len(chunk)

    def _flush(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._queue and self._queue[0][0] <= now:
            _, chunk = self._queue.popleft()
            self._queued_bytes -= len(chunk)
            self._proxy._delayed[self._direction] -= len(chunk)
            self._deliver(chunk)
        if self._queue:
            self._timer = self._loop.call_at(self._queue[0][0], self._flush)
        self._progress.set()

    def discard(self) -> None:
        """Forget delayed bytes; called once the connection is being torn down."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()
        self._proxy._delayed[self._direction] -= self._queued_bytes
        self._queued_bytes = 0


class FaultProxy:
    """Forwards loopback TCP links between named endpoints and injects faults per direction.

    >>> async with FaultProxy() as proxy:                       # doctest: +SKIP
    ...     port = await proxy.add_link("A", "B", target_port=node_b_port)
    ...     # start node A with B's address set to 127.0.0.1:port
    ...     proxy.partition({"A"}, {"B", "C"})
    ...     proxy.heal()

    See the module docstring for the meaning of links, directions and modes.
    """

    def __init__(self) -> None:
        self._links: dict[Direction, _Link] = {}
        self._policies: dict[Direction, Policy] = {}
        self._conns: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._carried: Counter[Direction] = Counter()
        self._dropped: Counter[Direction] = Counter()
        self._delayed: Counter[Direction] = Counter()
        # Per direction, the loop time until which its wire carries pieces already sent.
        self._busy_until: dict[Direction, float] = {}
        self._accepted = 0
        self._refused = 0
        self._aborted = 0
        self._numbers = itertools.count(1)
        self._closed = False
        # Seeded by seed_loss; a fixed default keeps a run without it reproducible too.
        self._loss_rng = random.Random(0)
        self._loss_resets = 0
        self._loss_stalls = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- links ------------------------------------------------------------------------------

    async def add_link(
        self, src: str, dst: str, target_port: int, *, host: str = "127.0.0.1"
    ) -> int:
        """Listen on ``host`` at an ephemeral port, forwarding to ``host:target_port``.

        Connections accepted on the link are treated as opened by ``src`` towards ``dst``.
        Returns the listening port. ``host`` must be in 127.0.0.0/8 (ValueError otherwise);
        one link per (src, dst) pair.
        """
        _check_loopback(host)
        _check_name(src)
        _check_name(dst)
        if src == dst:
            raise ValueError(f"a link joins two different names, got {src!r} twice")
        if not isinstance(target_port, int) or not 0 < target_port < 65536:
            raise ValueError(f"target_port must be in 1..65535, got {target_port!r}")
        if (src, dst) in self._links:
            raise ValueError(f"link ({src}, {dst}) already exists")
        if self._closed:
            raise RuntimeError("the proxy is closed")
        # The accept callback needs the link, which needs the server: fill the holder once both
        # exist (no client can connect before this method returns the port).
        holder: list[_Link] = []

        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # A plain callback, not a coroutine, so that the task is ours to track and cancel.
            self._spawn(self._serve(holder[0], reader, writer), f"faultproxy {src}->{dst}")

        server = await asyncio.start_server(accepted, host, 0)
        link = _Link(src, dst, host, target_port, server, server.sockets[0].getsockname()[1])
        holder.append(link)
        self._links[(src, dst)] = link
        return link.port

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("fault proxy task %s failed", task.get_name(), exc_info=task.exception())

    async def _serve(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._closed or self.policy(link.src, link.dst).mode == "refuse":
            self._refused += 1
            await _shut_down(writer, graceful=False)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(link.host, link.target_port)
        except OSError:
            # The target is down: the opener sees a reset, as it would without the proxy.
            await _shut_down(writer, graceful=False)
            return
        except BaseException:
            _reset(writer)
            raise
        self._accepted += 1
        conn = _Connection(link, next(self._numbers), writer, up_writer)
        self._conns.add(conn)
        forward = _Pump(self, conn, (link.src, link.dst), reader, up_writer)
        backward = _Pump(self, conn, (link.dst, link.src), up_reader, writer)
        label = f"faultproxy {link.src}->{link.dst} #{conn.number}"
        pumps = [
            asyncio.create_task(forward.run(), name=f"{label} forward"),
            asyncio.create_task(backward.run(), name=f"{label} backward"),
        ]
        try:
            pending: set[asyncio.Task[bool]] = set(pumps)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(task.result() for task in done):
                    break
        finally:
            for task in pumps:
                task.cancel()
            for result in await asyncio.gather(*pumps, return_exceptions=True):
                if isinstance(result, Exception):
                    logger.error("fault proxy pump of %s failed", label, exc_info=result)
            forward.discard()
            backward.discard()
            self._conns.discard(conn)
            await _shut_down(writer, up_writer, graceful=not conn.reset)

    def _lose(self, conn: _Connection, direction: Direction, loss: float) -> bool:
        """Draw whether the next chunk from ``direction`` on ``conn`` is lost; if it is, reset
        the connection or stall that direction of it (equally likely) and return True."""
        if self._loss_rng.random() >= loss:
            return False
        if self._loss_rng.random() < 0.5:
            self._loss_resets += 1
            self._abort(conn)
        else:
            self._loss_stalls += 1
            conn.stalled.add(direction)
        return True

    async def _transmit(self, direction: Direction, size: int, bandwidth: float) -> None:
        """Wait until ``size`` bytes have been sent on ``direction``'s wire at ``bandwidth``,
        after the pieces that took the wire before them."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        end = max(now, self._busy_until.get(direction, now)) + size / bandwidth
        self._busy_until[direction] = end
        await asyncio.sleep(end - now)

    # -- policy -----------------------------------------------------------------------------

    def policy(self, a: str, b: str) -> Policy:
        """The policy for bytes flowing from ``a`` to ``b`` (pass unless set otherwise)."""
        return self._policies.get((a, b), _PASS)

    def policies(self) -> dict[Direction, Policy]:
        """Every direction whose policy is not pass."""
        return dict(self._policies)

    @property
    def names(self) -> frozenset[str]:
        """Every name that appears in a link."""
        return frozenset(name for pair in self._links for name in pair)

    def set_direction(
        self,
        a: str,
        b: str,
        mode: Mode,
        delay: float = 0.0,
        bandwidth: float = 0.0,
        *,
        loss: float = 0.0,
    ) -> None:
        """Set what happens to bytes flowing from ``a`` to ``b`` on every link between them.

        ``delay`` (seconds, > 0) is required for mode "delay" and refused for the others.
        ``bandwidth`` (bytes per second, shared by every connection from ``a`` to ``b``; 0 for
        unlimited) and ``loss`` (the chance, 0 to 1, that a chunk is lost: see the module
        docstring) apply to modes "pass" and "delay" and are refused for the others.
        Names need not have a link yet: the policy applies to links added later.
        """
        policies = dict(self._policies)
        policies[(a, b)] = self._make_policy(a, b, mode, delay, bandwidth, loss)
        self._replace(policies)

    def seed_loss(self, seed: int) -> None:
        """Seed the generator that decides which chunks of lossy directions are lost."""
        self._loss_rng = random.Random(seed)

    def limit(self, a: str, b: str, bytes_per_second: float, delay: float = 0.0) -> None:
        """Let bytes from ``a`` to ``b`` through at ``bytes_per_second`` (> 0), shared by every
        connection in that direction, each byte ``delay`` seconds late on top (mode "delay"
        when ``delay`` > 0, else "pass"). The other direction is left as it is.
        """
        if (
            isinstance(bytes_per_second, bool)
            or not isinstance(bytes_per_second, int | float)
            or not bytes_per_second > 0
        ):
            raise ValueError(
                f"limit needs bytes_per_second > 0, got {bytes_per_second!r} "
                "(for no limit, set the direction to 'pass')"
            )
        mode: Mode = "delay" if isinstance(delay, int | float) and delay > 0 else "pass"
        self.set_direction(a, b, mode, delay, bytes_per_second)

    def cut(self, a: str, b: str, mode: Literal["drop", "refuse"] = "drop") -> None:
        """Stop bytes from ``a`` to ``b`` only; the other direction is left as it is."""
        if mode not in ("drop", "refuse"):
            raise ValueError(f"cut mode must be 'drop' or 'refuse', got {mode!r}")
        self.set_direction(a, b, mode)

    def partition(self, *groups: Iterable[str]) -> None:
        """Replace every policy by this partition.

        Exact rule: all policies are first reset to pass (as by :meth:`heal`); then every
        direction between two names of *different* groups becomes drop. Directions inside a
        group, and every direction involving a name in no group (a client, say), pass. A name
        may appear in one group only. ``partition({"A"}, {"B", "C"})`` drops A<->B and A<->C.
        """
        members: dict[str, int] = {}
        for index, group in enumerate(groups):
            if isinstance(group, str):
                raise ValueError(f"a group is a collection of names, got the string {group!r}")
            for name in group:
                _check_name(name)
                if members.setdefault(name, index) != index:
                    raise ValueError(f"{name!r} is in more than one group")
        self._replace(
            {
                (a, b): Policy("drop")
                for a, group_a in members.items()
                for b, group_b in members.items()
                if group_a != group_b
            }
        )

    def isolate(self, name: str) -> None:
        """Drop both directions between ``name`` and every other name that has a link.

        Unlike :meth:`partition` this adds to the current policies. Clients routed through the
        proxy are cut off from ``name`` too; use partition to keep them connected.
        """
        if name not in self.names:
            raise ValueError(f"no link involves {name!r}")
        others = self.names - {name}
        policies = dict(self._policies)
        for other in others:
            policies[(name, other)] = Policy("drop")
            policies[(other, name)] = Policy("drop")
        self._replace(policies)

    def heal(self) -> None:
        """Set every direction back to pass (no delay, no bandwidth limit), resetting the
        connections that dropped bytes."""
        self._replace({})

    @staticmethod
    def _make_policy(
        a: str, b: str, mode: Mode, delay: float, bandwidth: float, loss: float = 0.0
    ) -> Policy:
        _check_name(a)
        _check_name(b)
        if a == b:
            raise ValueError(f"a direction joins two different names, got {a!r} twice")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        if not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
        if mode == "delay" and delay <= 0:
            raise ValueError("mode 'delay' needs delay > 0")
        if mode != "delay" and delay != 0:
            raise ValueError(f"delay only applies to mode 'delay', not {mode!r}")
        if (
            isinstance(bandwidth, bool)
            or not isinstance(bandwidth, int | float)
            or not math.isfinite(bandwidth)
            or bandwidth < 0
        ):
            raise ValueError(
                f"bandwidth must be a finite number of bytes per second >= 0, got {bandwidth!r}"
            )
        if mode not in ("pass", "delay") and bandwidth != 0:
            raise ValueError(f"bandwidth only applies to modes 'pass' and 'delay', not {mode!r}")
        if isinstance(loss, bool) or not isinstance(loss, int | float) or not 0 <= loss <= 1:
            raise ValueError(f"loss must be a chance from 0 to 1, got {loss!r}")
        if mode not in ("pass", "delay") and loss != 0:
            raise ValueError(f"loss only applies to modes 'pass' and 'delay', not {mode!r}")
        return Policy(mode, float(delay), float(bandwidth), float(loss))

    def _replace(self, policies: dict[Direction, Policy]) -> None:
        """Install ``policies`` and apply what the change means for live connections."""
        previous = self._policies
        self._policies = {d: p for d, p in policies.items() if p != _PASS}
        for direction in previous.keys() | self._policies.keys():
            old, new = previous.get(direction, _PASS), self.policy(*direction)
            a, b = direction
            for conn in list(self._conns):
                if {conn.link.src, conn.link.dst} != {a, b}:
                    continue
                if (
                    new.mode == "refuse"
                    or (old.mode == "drop" and new.mode != "drop" and direction in conn.lost)
                    or (new.loss == 0 and new.mode != "drop" and direction in conn.stalled)
                ):
                    self._abort(conn)

    def _abort(self, conn: _Connection) -> None:
        if not conn.reset:
            self._aborted += 1
            conn.abort()

    # -- counters ---------------------------------------------------------------------------

    def bytes_carried(self, a: str, b: str) -> int:
        """Bytes delivered from ``a`` to ``b``, over all links and connections."""
        return self._carried[(a, b)]

    def bytes_dropped(self, a: str, b: str) -> int:
        """Bytes from ``a`` to ``b`` read and discarded by a drop policy."""
        return self._dropped[(a, b)]

    def bytes_delayed(self, a: str, b: str) -> int:
        """Bytes from ``a`` to ``b`` read and now waiting out a delay (a gauge, not a total)."""
        return self._delayed[(a, b)]

    def stats(self) -> dict[str, Any]:
        """A JSON-friendly snapshot of links, directions and connection counts."""
        directions = (
            set(self._policies)
            | set(self._carried)
            | set(self._dropped)
            | {d for link in self._links for d in (link, (link[1], link[0]))}
        )
        open_per_link = Counter((c.link.src, c.link.dst) for c in self._conns)
        return {
            "links": [
                {
                    "src": link.src,
                    "dst": link.dst,
                    "port": link.port,
                    "target_port": link.target_port,
                    "open_connections": open_per_link[pair],
                }
                for pair, link in sorted(self._links.items())
            ],
            "directions": [
                {
                    "from": a,
                    "to": b,
                    **self.policy(a, b).to_dict(),
                    "carried": self._carried[(a, b)],
                    "dropped": self._dropped[(a, b)],
                    "delayed": self._delayed[(a, b)],
                }
                for a, b in sorted(directions)
            ],
            "connections": {
                "accepted": self._accepted,
                "refused": self._refused,
                "aborted": self._aborted,
                "reset_by_loss": self._loss_resets,
                "stalled_by_loss": self._loss_stalls,
                "open": len(self._conns),
            },
        }

    # -- lifecycle --------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop listening, reset every connection and wait for every task to finish.

        Idempotent. The proxy cannot be reused afterwards.
        """
        self._closed = True
        for link in self._links.values():
            link.server.close()
        for conn in list(self._conns):
            conn.abort()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for link in self._links.values():
            await link.server.wait_closed()
