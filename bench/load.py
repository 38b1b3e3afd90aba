"""The built-in load generators of the benchmark.

``python -m bench.load closed URL [--connections 50] [--seconds 5] [--keys 1] [--batch 0]
[--idem PREFIX]``
    Closed loop on aiohttp's client (used when wrk is not installed): each of the keep-alive
    connections posts, waits for the answer, posts again. ``--keys 1`` posts ``{"amount": 1}``
    to the hot key ``/counters/hot``; ``--keys N`` draws keys ``k0 .. k<N-1>`` uniformly;
    ``--batch N`` posts ``/batch`` bodies of N items instead; ``--idem PREFIX`` gives every
    single increment a fresh ``Idempotency-Key`` header (``PREFIX-<connection>-<n>``).

``python -m bench.load open URL --rate R [--connections 50] [--seconds 5] [--keys 1]``
    Open loop at a fixed offered rate: request ``i`` is due at ``t0 + i / R`` whatever happened
    to the others, and its latency is measured from that scheduled time, so a stalled server
    is charged for every request it delayed (no coordinated omission). A due request goes out
    on an idle keep-alive connection, or waits for the first one to free up. wrk cannot do this
    (wrk2 can, and is not packaged here), and aiohttp's client costs too much CPU per request
    to keep a schedule of thousands of requests a second on one core, so this one speaks
    HTTP/1.1 itself over asyncio protocols (enough of it for these servers: Content-Length
    bodies, keep-alive). The timer wakes at most about once a millisecond, so a request may go
    out up to about 1 ms after its scheduled time; that lateness counts in its latency.

Both print one line, ``BENCH_RESULT {json}``, with the fields of the wrk script
(``bench/post.lua``): requests, duration_us, errors_*, lat_mean_us, lat_p50_us, lat_p90_us,
lat_p99_us, lat_max_us.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import statistics
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

__all__ = ["closed_loop", "open_loop", "summarize"]

BODY = b'{"amount": 1}'
HEADERS = {"Content-Type": "application/json"}
# Deadline after the last scheduled send for the answers still outstanding.
DRAIN_SECONDS = 10.0


def summarize(
    latencies: list[float], duration: float, errors: dict[str, int], **extra: Any
) -> dict[str, Any]:
    """The wrk script's result fields from latencies in seconds."""
    latencies = sorted(latencies)

    def pct(q: float) -> int:
        if not latencies:
            return 0
        return round(1e6 * latencies[min(len(latencies) - 1, int(q * len(latencies)))])

    result: dict[str, Any] = {
        "requests": len(latencies) + errors.get("status", 0),
        "duration_us": round(duration * 1e6),
        "errors_connect": errors.get("connect", 0),
        "errors_read": errors.get("read", 0),
        "errors_write": 0,
        "errors_status": errors.get("status", 0),
        "errors_timeout": errors.get("timeout", 0),
        "lat_mean_us": round(1e6 * statistics.fmean(latencies), 1) if latencies else 0.0,
        "lat_p50_us": pct(0.50),
        "lat_p90_us": pct(0.90),
        "lat_p99_us": pct(0.99),
        "lat_max_us": round(1e6 * latencies[-1]) if latencies else 0,
    }
    result.update(extra)
    return result


def _batch_bodies(batch: int, keys: int, rng: random.Random, count: int = 16) -> list[bytes]:
    bodies = []
    for _ in range(count):
        items = [{"key": f"k{rng.randrange(keys)}", "amount": 1} for _ in range(batch)]
        bodies.append(json.dumps({"increments": items}, separators=(",", ":")).encode())
    return bodies


# --- closed loop (aiohttp) --------------------------------------------------------------------


async def closed_loop(
    url: str,
    *,
    connections: int,
    seconds: float,
    keys: int,
    batch: int = 0,
    seed: int = 1,
    idem: str | None = None,
) -> dict[str, Any]:
    """Closed loop on ``connections`` keep-alive connections for ``seconds``."""
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    rng = random.Random(seed)
    bodies = _batch_bodies(batch, keys, rng) if batch else [BODY]
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.perf_counter()
        deadline = began + seconds

        async def worker(number: int) -> None:
            local = random.Random(seed * 1000 + number)
            count = 0
            while time.perf_counter() < deadline:
                count += 1
                if batch:
                    target, body = f"{url}/batch", bodies[count % len(bodies)]
                elif keys <= 1:
                    target, body = f"{url}/counters/hot", BODY
                else:
                    target, body = f"{url}/counters/k{local.randrange(keys)}", BODY
                headers = HEADERS
                if idem and not batch:
                    headers = {**HEADERS, "Idempotency-Key": f"{idem}-{number}-{count}"}
                start = time.perf_counter()
                try:
                    async with session.post(target, data=body, headers=headers) as response:
                        await response.read()
                        ok = response.status == 200
                except TimeoutError:
                    errors["timeout"] += 1
                    continue
                except aiohttp.ClientError:
                    errors["read"] += 1
                    await asyncio.sleep(0.01)
                    continue
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors["status"] += 1

        await asyncio.gather(*(worker(i) for i in range(connections)))
        elapsed = time.perf_counter() - began
    return summarize(latencies, elapsed, errors)


# --- open loop (raw HTTP/1.1 over asyncio protocols) -----------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, generator: _OpenLoop) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.scheduled = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, scheduled: float, request: bytes) -> None:
        assert self.transport is not None
        self.scheduled = scheduled
        self.busy = True
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.busy:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            mark = head.find(b"\r\ncontent-length:")
            if mark < 0:
                self.generator.failed(self, "read")
                return
            line_end = head.find(b"\r\n", mark + 2)
            length = int(head[mark + 17 : line_end if line_end >= 0 else None])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            status = int(head[9:12])
            del self.buffer[:total]
            self.busy = False
            self.generator.completed(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.generator.failed(self, "read")


class _OpenLoop:
    def __init__(self, host: str, port: int, *, keys: int, seed: int) -> None:
        self.host, self.port, self.keys = host, port, keys
        self.rng = random.Random(seed)
        self.idle: collections.deque[_Connection] = collections.deque()
        self.backlog: collections.deque[float] = collections.deque()
        self.latencies: list[float] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.sent = 0
        self.done = 0
        self.last_completion = 0.0
        self._hot = self._request("/counters/hot")

    def _request(self, path: str) -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
        )
        return head.encode() + BODY

    def next_request(self) -> bytes:
        if self.keys <= 1:
            return self._hot
        return self._request(f"/counters/k{self.rng.randrange(self.keys)}")

    def dispatch(self, scheduled: float) -> None:
        self.sent += 1
        if self.idle:
            self.idle.popleft().send(scheduled, self.next_request())
        else:
            self.backlog.append(scheduled)

    def completed(self, connection: _Connection, status: int) -> None:
        now = time.perf_counter()
        self.done += 1
        self.last_completion = now
        if status == 200:
            self.latencies.append(now - connection.scheduled)
        else:
            self.errors["status"] += 1
        if self.backlog:
            connection.send(self.backlog.popleft(), self.next_request())
        else:
            self.idle.append(connection)

    def failed(self, connection: _Connection, kind: str) -> None:
        if connection.busy:
            connection.busy = False
            self.done += 1
            self.errors[kind] += 1
        if connection in self.idle:
            self.idle.remove(connection)


async def open_loop(
    url: str, *, rate: float, connections: int, seconds: float, keys: int, seed: int = 1
) -> dict[str, Any]:
    """Offer ``rate`` requests a second for ``seconds`` on ``connections`` connections."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    generator = _OpenLoop(host, port, keys=keys, seed=seed)
    transports = []
    for _ in range(connections):
        transport, protocol = await loop.create_connection(
            lambda: _Connection(generator), host, port
        )
        transports.append(transport)
        generator.idle.append(protocol)
    total = max(1, int(rate * seconds))
    t0 = time.perf_counter() + 0.01
    issued = 0
    try:
        while issued < total:
            now = time.perf_counter()
            due = min(total, int((now - t0) * rate) + 1) if now >= t0 else 0
            while issued < due:
                generator.dispatch(t0 + issued / rate)
                issued += 1
            if issued < total:
                await asyncio.sleep(max(0.0, t0 + issued / rate - time.perf_counter()))
        drain_deadline = time.perf_counter() + DRAIN_SECONDS
        while generator.done < generator.sent and time.perf_counter() < drain_deadline:
            await asyncio.sleep(0.005)
    finally:
        for transport in transports:
            transport.close()
    missing = generator.sent - generator.done
    errors = dict(generator.errors)
    if missing:
        errors["timeout"] = errors.get("timeout", 0) + missing
    achieved = len(generator.latencies) / max(1e-9, generator.last_completion - t0)
    return summarize(
        generator.latencies,
        seconds,
        errors,
        offered_rate=rate,
        achieved_rate=round(achieved, 1),
        backlog_left=len(generator.backlog),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="loop", required=True)
    for name in ("closed", "open"):
        p = sub.add_parser(name)
        p.add_argument("url", help="base URL, e.g. http://127.0.0.1:8080")
        p.add_argument("--connections", type=int, default=50)
        p.add_argument("--seconds", type=float, default=5.0)
        p.add_argument("--keys", type=int, default=1)
        p.add_argument("--seed", type=int, default=1)
        if name == "closed":
            p.add_argument("--batch", type=int, default=0, help="items per /batch body")
            p.add_argument("--idem", help="Idempotency-Key prefix (one fresh key per request)")
        else:
            p.add_argument("--rate", type=float, required=True, help="requests per second")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    if args.loop == "closed":
        coro = closed_loop(
            url,
            connections=args.connections,
            seconds=args.seconds,
            keys=args.keys,
            batch=args.batch,
            seed=args.seed,
            idem=args.idem,
        )
    else:
        coro = open_loop(
            url,
            rate=args.rate,
            connections=args.connections,
            seconds=args.seconds,
            keys=args.keys,
            seed=args.seed,
        )
    print("BENCH_RESULT " + json.dumps(asyncio.run(coro)), flush=True)


if __name__ == "__main__":
    main()
