"""The fault suite's clients: concurrent increments and reads, each attempt in the history.

Each client is one process of the :class:`~vvstore.harness.checker.History`. It increments a
random key
on a random node by a positive amount, with an idempotency key of its own; every *attempt* is
recorded as an invoke and its completion (``ok``, ``fail`` for a definite refusal, ``info``
when the outcome is unknown: a timeout, a reset connection, a 503). After an indefinite
attempt the client retries the same idempotency key on another node (failover), a few times,
then moves on and leaves the key to the final phase, which retries every key never
acknowledged until a node acknowledges it (:meth:`Workload.settle`). Now and then a client
reads a random key on a random node instead, and after some acknowledged increments it reads
the key back at once on the node that acknowledged it (read your own write: the checker's
own-dot rule bites there, and a stale read hides in the milliseconds after a commit).

A share of the increments (``probe_share``, a quarter by default, drawn from each client's
seeded generator) are *probes*: each goes to a counter key of its own, named after its
idempotency key (:func:`probe_key`), so that the checker verifies it alone: the key must end at
exactly its amount, where on a shared key one lost and one doubled increment of the same
amount would cancel out. Once a probe's attempts end, acknowledged or indefinite, the client
sends the same idempotency key once more to another node: a deliberate cross-node replay that
must not count, whether that node already knows the key (it answers with a replay) or applies
it again (a duplicate copy the cluster must then exclude).

Clients speak HTTP to the nodes through the fault proxy with aiohttp directly (not
:class:`vvstore.client.Client`), so that every attempt, its node and its outcome are recorded,
and the ``Idempotent-Replayed`` header is seen.

Counter keys are ASCII (``k000``, ``k001``, ...) or, with ``key_alphabet="unicode"``, a
non-ASCII mix (:func:`unicode_key_names`): two-, three- and four-byte UTF-8, a space and a slash
to percent-encode, the same letter precomposed and decomposed (two keys: nothing may normalise
them), and keys of four-byte characters at exactly the codec's key length limit,
:data:`~vvstore.codec.MAX_KEY_BYTES` bytes of UTF-8 as the server measures it.

Every loop here is bounded by a deadline; nothing waits on a bare sleep for another task.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

from vvstore.actor import is_actor_of
from vvstore.codec import MAX_KEY_BYTES
from vvstore.harness.checker import History, Op

__all__ = ["KEY_ALPHABETS", "Workload", "WorkloadOptions", "probe_key", "unicode_key_names"]

Outcome = Literal["ok", "fail", "info"]

# Process numbers of the final phase's retriers (the clients are 0, 1, ...).
SETTLE_PROCESS_BASE = 1000
SETTLE_WORKERS = 3
# A per-attempt timeout for the final phase: the cluster is healed by then.
SETTLE_TIMEOUT_S = 3.0
MAX_AMOUNT = 5
# Characters of an error kept as its kind.
ERROR_CHARS = 80
#: What counter keys are made of (WorkloadOptions.key_alphabet).
KEY_ALPHABETS = ("ascii", "unicode")
# Mathematical double-struck digits, U+1D7D8 to U+1D7E1: four bytes of UTF-8 each.
_WIDE_DIGITS = "".join(chr(0x1D7D8 + d) for d in range(10))
_WIDE_FILL = "\U0001f34e"  # a red apple, four bytes of UTF-8


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _at_limit(number: int) -> str:
    """A key of four-byte characters only, exactly MAX_KEY_BYTES of UTF-8: the number in wide
    digits, padded with apples (the limit is a multiple of four)."""
    digits = "".join(_WIDE_DIGITS[int(d)] for d in f"{number:03d}")
    return digits + _WIDE_FILL * ((MAX_KEY_BYTES - _utf8_len(digits)) // 4)


def unicode_key_names(count: int) -> list[str]:
    """``count`` distinct non-ASCII counter keys, in rounds of five shapes: a key at the key
    length limit; ``clé-N`` precomposed and the same decomposed (two keys); three-byte letters
    with a space and a slash; two-byte letters with a four-byte emoji."""
    shapes = (
        _at_limit,
        lambda n: f"cl\u00e9-{n:03d}",
        lambda n: f"cle\u0301-{n:03d}",
        lambda n: f"\u8ba1\u6570\u5668 /{n:03d}",
        lambda n: f"\u043a\u043b\u044e\u0447-\U0001f600-{n:03d}",
    )
    return [shapes[i % len(shapes)](i // len(shapes)) for i in range(count)]


def probe_key(idempotency_key: str, key_alphabet: str) -> str:
    """The counter key of the probe sent with ``idempotency_key``: its own, named after it.

    ASCII: ``probe-<idempotency key>``; unicode: the Russian word for probe, a space and a
    slash before it (both percent-encoded in the URL). The workload's idempotency keys are
    short ASCII, so either name is far below :data:`~vvstore.codec.MAX_KEY_BYTES`, and no
    name of :func:`unicode_key_names` or ``k000`` ... has either shape.
    """
    if key_alphabet == "unicode":
        return f"\u043f\u0440\u043e\u0431\u0430 /{idempotency_key}"
    return f"probe-{idempotency_key}"


@dataclass(frozen=True, slots=True)
class WorkloadOptions:
    """The clients' shape. Validated when constructed."""

    clients: int = 4
    keys: int = 8
    # Increments per second, all clients together (a target: faults slow clients down).
    rate: float = 30.0
    # Fraction of operations that are reads of a random key on a random node.
    read_ratio: float = 0.1
    # Chance that an acknowledged increment is read back at once on the node that acknowledged
    # it.
    read_back: float = 0.3
    # Seconds one request may take: shorter than a SIGSTOP pause, so paused nodes time out.
    timeout: float = 1.0
    # Most attempts of one idempotency key (on different nodes) before the client moves on
    # and leaves it to the final phase; each increment draws its own number from 1 to this.
    attempts: int = 3
    # What counter keys are made of: "ascii" (k000, k001, ...) or "unicode" (see the module
    # docstring: multi-byte UTF-8, and four-byte keys at the key length limit).
    key_alphabet: str = "ascii"
    # Fraction of increments that are probes: each on a key of its own, verified alone by the
    # checker, and replayed once on another node. More probes verify more idempotency keys one
    # by one but leave fewer increments to contend on the shared keys, and add a key each.
    probe_share: float = 0.25

    def __post_init__(self) -> None:
        if not 1 <= self.clients <= 64:
            raise ValueError(f"clients must be 1 to 64, got {self.clients}")
        if not 1 <= self.keys <= 1000:
            raise ValueError(f"keys must be 1 to 1000, got {self.keys}")
        if not 0 < self.rate <= 10_000:
            raise ValueError(f"rate must be above 0 and at most 10,000, got {self.rate}")
        if not 0 <= self.read_ratio < 1:
            raise ValueError(f"read_ratio must be in [0, 1), got {self.read_ratio}")
        if not 0 <= self.read_back <= 1:
            raise ValueError(f"read_back must be in [0, 1], got {self.read_back}")
        if not 0 < self.timeout <= 60:
            raise ValueError(f"timeout must be 0 to 60 seconds, got {self.timeout}")
        if not 1 <= self.attempts <= 10:
            raise ValueError(f"attempts must be 1 to 10, got {self.attempts}")
        if not 0 <= self.probe_share <= 1:
            raise ValueError(f"probe_share must be in [0, 1], got {self.probe_share}")
        if self.key_alphabet not in KEY_ALPHABETS:
            raise ValueError(
                f"key_alphabet must be one of {', '.join(KEY_ALPHABETS)}, got {self.key_alphabet!r}"
            )

    def key_names(self) -> list[str]:
        if self.key_alphabet == "unicode":
            return unicode_key_names(self.keys)
        return [f"k{i:03d}" for i in range(self.keys)]


@dataclass(frozen=True, slots=True)
class _Reply:
    outcome: Outcome
    body: dict[str, Any] | None = None
    replayed: bool = False
    error: str | None = None


class Workload:
    """Runs the clients against ``urls`` (node -> URL through the proxy), recording ``history``.

    :param clock: seconds since the run began (the history's times).
    """

    def __init__(
        self,
        seed: int,
        options: WorkloadOptions,
        history: History,
        urls: Mapping[str, str],
        clock: Callable[[], float],
    ) -> None:
        self.seed = seed
        self.options = options
        self.history = history
        self.urls = dict(urls)
        self.nodes = sorted(urls)
        self.keys = options.key_names()
        self.clock = clock
        #: Completed attempts by function and outcome ("add ok", "read info", ...).
        self.outcomes: Counter[str] = Counter()
        #: Why attempts were not ok: "info: timeout", "fail: http 422 ...", ...
        self.errors: Counter[str] = Counter()
        #: Acknowledgements that were replays of an earlier application.
        self.replayed = 0
        #: Actor id -> the highest seq of that actor in any acknowledgement from its own node.
        self.acked_seq: dict[str, int] = {}
        #: Adds refused with a definite error (a bug on loopback): "node key: error".
        self.refused: list[str] = []
        #: Increments sent as probes (each on a key of its own).
        self.probes = 0
        #: Outcomes of the probes' deliberate cross-node replays: "replayed" (the node knew the
        #: key), "applied" (it applied it again: a duplicate copy), "info", "fail".
        self.probe_replays: Counter[str] = Counter()
        # Each client's generator and increment counter live as long as the workload, so a
        # client that runs again (the next window of a checkpointed run) never reuses a key.
        self._rngs = {i: random.Random(seed * 1_000 + i) for i in range(options.clients)}
        self._numbers: Counter[int] = Counter()

    # -- the main phase -----------------------------------------------------------------------

    async def run(self, duration: float) -> None:
        """Run every client for ``duration`` seconds (each finishes its current increment)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration
        await asyncio.gather(*(self._client(i, deadline) for i in range(self.options.clients)))

    async def _client(self, process: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        rng = self._rngs[process]
        interval = self.options.clients / self.options.rate
        due = loop.time()
        async with self._session(self.options.timeout) as session:
            while loop.time() < deadline:
                # Pacing shapes the load; it waits for nothing. A client that fell behind (a
                # fault held it up) starts afresh rather than bursting to catch up.
                due = max(due + interval, loop.time() - 1.0)
                await asyncio.sleep(max(0.0, min(due, deadline) - loop.time()))
                if loop.time() >= deadline:
                    break
                key = rng.choice(self.keys)
                node = rng.choice(self.nodes)
                if rng.random() < self.options.read_ratio:
                    await self.read(session, process, key, node)
                    continue
                amount = rng.randint(1, MAX_AMOUNT)
                ik = f"s{self.seed}-c{process}-{self._numbers[process]}"
                self._numbers[process] += 1
                probe = rng.random() < self.options.probe_share
                if probe:
                    key = probe_key(ik, self.options.key_alphabet)
                    self.probes += 1
                # Some increments give up after fewer attempts than others, so that the
                # final phase always has indefinite increments to settle.
                for attempt in range(rng.randint(1, self.options.attempts)):
                    reply = await self.add(session, process, key, amount, ik, node)
                    if reply.outcome == "ok" and rng.random() < self.options.read_back:
                        await self.read(session, process, key, node)
                    if reply.outcome != "info":
                        break
                    node = rng.choice([n for n in self.nodes if n != node])
                    await asyncio.sleep(min(0.5, 0.05 * 2**attempt))
                if probe and reply.outcome != "fail":
                    # After an info the loop has already moved to another node.
                    if reply.outcome == "ok":
                        node = rng.choice([n for n in self.nodes if n != node])
                    again = await self.add(session, process, key, amount, ik, node)
                    self.probe_replays[
                        again.outcome
                        if again.outcome != "ok"
                        else ("replayed" if again.replayed else "applied")
                    ] += 1

    def _session(self, timeout: float) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout),
            connector=aiohttp.TCPConnector(limit=8, force_close=False),
        )

    # -- one attempt --------------------------------------------------------------------------

    async def add(
        self,
        session: aiohttp.ClientSession,
        process: int,
        key: str,
        amount: int,
        ik: str,
        node: str,
    ) -> _Reply:
        """One attempt of an increment, recorded in the history."""
        op = self.history.invoke(process, "add", key, amount, node, self.clock(), ik)
        reply = await self._request(
            session,
            "POST",
            node,
            key,
            body=json.dumps({"amount": amount}).encode(),
            headers={"Idempotency-Key": ik, "Content-Type": "application/json"},
        )
        own: dict[str, int] | None = None
        if reply.outcome == "ok" and reply.body is not None:
            # Only this node's own actors: what the checker's own-dot rule needs, and small.
            own = {
                str(actor): int(seq)
                for actor, seq in dict(reply.body.get("version") or {}).items()
                if is_actor_of(str(actor), node)
            }
        self.history.complete(op, reply.outcome, self.clock(), version=own)
        self._count_outcome("add", reply)
        if reply.outcome == "ok" and own is not None:
            self.replayed += reply.replayed
            for actor, seq in own.items():
                if seq > self.acked_seq.get(actor, 0):
                    self.acked_seq[actor] = seq
        elif reply.outcome == "fail":
            self.refused.append(f"add of {ik} to {key!r} at {node}: {reply.error}")
        return reply

    async def read(self, session: aiohttp.ClientSession, process: int, key: str, node: str) -> None:
        """One read, recorded in the history."""
        op = self.history.invoke(process, "read", key, None, node, self.clock())
        reply = await self._request(session, "GET", node, key)
        value = version = None
        if reply.outcome == "ok" and reply.body is not None:
            value = int(reply.body["value"])
            version = {str(a): int(s) for a, s in dict(reply.body.get("version") or {}).items()}
        self.history.complete(op, reply.outcome, self.clock(), value=value, version=version)
        self._count_outcome("read", reply)

    async def _request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        node: str,
        key: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> _Reply:
        url = f"{self.urls[node]}/counters/{quote(key, safe='')}"
        try:
            async with session.request(method, url, data=body, headers=headers) as response:
                raw = await response.read()
                if response.status == 200:
                    replayed = response.headers.get("Idempotent-Replayed") == "true"
                    return _Reply("ok", json.loads(raw), replayed)
                text = raw[:ERROR_CHARS].decode("utf-8", "replace")
                error = f"http {response.status} {text}"
                # 4xx: refused, nothing applied. 5xx (503 unavailable): may have been applied.
                return _Reply("fail" if response.status < 500 else "info", error=error)
        except TimeoutError:
            return _Reply("info", error="timeout")
        except aiohttp.ClientError as exc:
            return _Reply("info", error=type(exc).__name__)
        except ValueError as exc:
            # A 200 whose body is not JSON: whatever happened, we cannot tell.
            return _Reply("info", error=f"bad reply: {exc}"[:ERROR_CHARS])

    def _count_outcome(self, f: str, reply: _Reply) -> None:
        self.outcomes[f"{f} {reply.outcome}"] += 1
        if reply.error is not None:
            self.errors[f"{f} {reply.outcome}: {reply.error}"] += 1

    # -- the final phase ----------------------------------------------------------------------

    def unacknowledged(self) -> dict[str, tuple[str, int]]:
        """Idempotency key -> (key, amount) of every add never acknowledged and never refused."""
        return unacknowledged(self.history.ops)

    async def settle(self, timeout: float) -> list[str]:
        """Retry every unacknowledged idempotency key, round-robin over the nodes, until each is
        acknowledged or ``timeout`` seconds pass; return the keys left unacknowledged."""
        pending = deque(sorted(self.unacknowledged().items()))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        left: list[str] = []

        async def worker(process: int) -> None:
            turn = process
            async with self._session(SETTLE_TIMEOUT_S) as session:
                while pending:
                    ik, (key, amount) = pending.popleft()
                    while True:
                        node = self.nodes[turn % len(self.nodes)]
                        turn += 1
                        reply = await self.add(session, process, key, amount, ik, node)
                        if reply.outcome != "info":
                            break
                        if loop.time() >= deadline:
                            left.append(ik)
                            break
                        await asyncio.sleep(0.1)

        await asyncio.gather(*(worker(SETTLE_PROCESS_BASE + i) for i in range(SETTLE_WORKERS)))
        return left


def unacknowledged(ops: Sequence[Op]) -> dict[str, tuple[str, int]]:
    """Idempotency key -> (key, amount) of every add without an ``ok`` or a ``fail``."""
    attempted: dict[str, tuple[str, int]] = {}
    settled: set[str] = set()
    for op in ops:
        if op.f != "add" or op.idempotency_key is None or op.value is None:
            continue
        if op.type == "invoke":
            attempted.setdefault(op.idempotency_key, (op.key, op.value))
        elif op.type in ("ok", "fail"):
            settled.add(op.idempotency_key)
    return {ik: what for ik, what in attempted.items() if ik not in settled}
