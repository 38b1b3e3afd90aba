"""Load drivers: wrk with bench/post.lua (or the built-in generator), redis-benchmark, and the
open-loop generator; each run pinned to the client core and measured with a :class:`CpuMeter`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import CLIENT_CORE, ROOT, CpuMeter, preexec_for

__all__ = [
    "LUA",
    "fsync_profile",
    "have_redis",
    "have_wrk",
    "preload",
    "run_http",
    "run_open_loop",
    "run_redis",
]

LUA = Path(__file__).with_name("post.lua")
PREFIX = "BENCH_RESULT "


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def have_redis() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-benchmark") is not None


async def _client(
    argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run a load generator pinned to the client core; kill it (by PID) past ``timeout``."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
        preexec_fn=preexec_for(CLIENT_CORE),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{argv[0]} did not finish within {timeout:.0f} s") from None
    except BaseException:  # cancelled (Ctrl-C): do not leave the load generator running
        if proc.returncode is None:
            proc.kill()
        raise
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def _parse(out: str, err: str, argv: Sequence[str]) -> dict[str, Any]:
    for line in out.splitlines():
        if line.startswith(PREFIX):
            parsed: dict[str, Any] = json.loads(line[len(PREFIX) :])
            return parsed
    raise RuntimeError(f"no result from {' '.join(argv)}:\n{out[-2000:]}\n{err[-2000:]}")


def _finish(raw: dict[str, Any], meter: CpuMeter, *, items: int) -> dict[str, Any]:
    duration = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in raw if k.startswith("errors_"))
    ok = raw["requests"] - raw["errors_status"]
    rps = ok / duration if duration > 0 else 0.0
    result = {
        "rps": round(rps, 1),
        "ips": round(rps * items, 1),  # increments per second
        "requests": raw["requests"],
        "errors": errors,
        "p50_ms": raw["lat_p50_us"] / 1000,
        "p90_ms": raw["lat_p90_us"] / 1000,
        "p99_ms": raw["lat_p99_us"] / 1000,
        "max_ms": raw["lat_max_us"] / 1000,
        "cpu": meter.to_dict(),
        "server_cpu_ms_per_1k": round(1e6 * meter.servers / ok, 1) if ok else None,
    }
    for extra in ("offered_rate", "achieved_rate", "backlog_left"):
        if extra in raw:
            result[extra] = raw[extra]
    return result


async def run_http(
    url: str,
    *,
    loadgen: str,
    seconds: int,
    connections: int,
    keys: int,
    batch: int = 0,
    server_pids: Sequence[int] = (),
    seed: int = 1,
    idem: str | None = None,
) -> dict[str, Any]:
    """One closed-loop run: wrk (``loadgen="wrk"``) or the built-in aiohttp generator.

    ``idem``: a prefix, unique to this run, for a fresh Idempotency-Key on every request.
    """
    env = None
    if loadgen == "wrk":
        argv = [
            "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
            "-s", str(LUA), url,
        ]  # fmt: skip
        env = {
            **os.environ,
            "MODE": "batch" if batch else "counter",
            "KEYS": str(keys),
            "BATCH": str(batch or 100),
            "SEED": str(seed),
            "IDEM": idem or "",
        }
    else:
        argv = [
            sys.executable, "-m", "bench.load", "closed", url,
            "--connections", str(connections), "--seconds", str(seconds),
            "--keys", str(keys), "--batch", str(batch), "--seed", str(seed),
            *(["--idem", idem] if idem else []),
        ]  # fmt: skip
    with CpuMeter(server_pids) as meter:
        _, out, err = await _client(argv, timeout=seconds + 60, env=env)
    raw = _parse(out, err, argv)
    return _finish(raw, meter, items=batch or 1)


async def run_open_loop(
    url: str,
    *,
    rate: float,
    seconds: int,
    connections: int,
    keys: int,
    server_pids: Sequence[int] = (),
) -> dict[str, Any]:
    """One open-loop run at ``rate`` requests a second (``python -m bench.load open``)."""
    argv = [
        sys.executable, "-m", "bench.load", "open", url, "--rate", f"{rate:.1f}",
        "--connections", str(connections), "--seconds", str(seconds), "--keys", str(keys),
    ]  # fmt: skip
    with CpuMeter(server_pids) as meter:
        _, out, err = await _client(argv, timeout=seconds + 60)
    return _finish(_parse(out, err, argv), meter, items=1)


async def run_redis(
    port: int,
    *,
    requests: int,
    connections: int,
    pipeline: int,
    server_pids: Sequence[int] = (),
) -> dict[str, Any]:
    """redis-benchmark ``-t incr`` (one hot key) with ``requests`` requests."""
    argv = [
        "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(connections),
        "-n", str(requests), "-P", str(pipeline), "-t", "incr", "--csv",
    ]  # fmt: skip
    with CpuMeter(server_pids) as meter:
        _, out, err = await _client(argv, timeout=300)
    rows = [line for line in out.splitlines() if line.startswith('"INCR"')]
    if not rows:
        raise RuntimeError(f"no INCR line from redis-benchmark:\n{out[-2000:]}\n{err[-2000:]}")
    fields = [f.strip('"') for f in rows[0].split(",")]
    rps = float(fields[1])
    return {
        "rps": rps,
        "ips": rps,
        "requests": requests,
        "errors": 0,
        "p50_ms": float(fields[4]),
        "p99_ms": float(fields[6]),
        "max_ms": float(fields[7]),
        "cpu": meter.to_dict(),
        "server_cpu_ms_per_1k": round(1e6 * meter.servers / requests, 1),
    }


async def preload(url: str, keys: int, *, batch: int = 1000) -> float:
    """Create keys k0 .. k<keys-1> through POST /batch (1000 items a request); seconds taken."""
    began = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for start in range(0, keys, batch):
            items = [{"key": f"k{i}", "amount": 1} for i in range(start, min(keys, start + batch))]
            async with session.post(f"{url}/batch", json={"increments": items}) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"preload of {url} answered {response.status}")
    return time.monotonic() - began


def fsync_profile(directory: Path, count: int) -> dict[str, Any]:
    """This machine's commit latency in ``directory``: SQLite WAL FULL commits and raw fsyncs.

    ``count`` one-row upserts, each its own transaction (WAL, synchronous=FULL: one fsync of
    the WAL per commit), and ``count`` 4 KiB appends each followed by os.fsync. Milliseconds.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fsync-probe.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    commits = []
    for i in range(count):
        start = time.perf_counter()
        db.execute("BEGIN")
        db.execute(
            "INSERT INTO t VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET v = v + 1", (f"k{i % 10}",)
        )
        db.execute("COMMIT")
        commits.append(time.perf_counter() - start)
    db.close()
    fsyncs = []
    raw = directory / "fsync-probe.bin"
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        block = b"x" * 4096
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            fsyncs.append(time.perf_counter() - start)
    finally:
        os.close(fd)

    def stats(values: list[float]) -> dict[str, float]:
        values = sorted(values)
        return {
            "p50_ms": round(1000 * statistics.median(values), 3),
            "p99_ms": round(1000 * values[min(len(values) - 1, int(0.99 * len(values)))], 3),
            "max_ms": round(1000 * values[-1], 3),
        }

    return {"count": count, "sqlite_full_commit": stats(commits), "fsync_4k": stats(fsyncs)}
