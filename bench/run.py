"""The benchmark's sections: interleaved groups of servers under the same client load.

A *group* starts its servers (each pinned to the server core, on a fresh data directory),
preloads keys where the group needs them, warms each server up once, then runs ``runs``
rounds; in each round every subject of the group runs once, in an order rotated by one per
round, so each figure is interleaved with its references and ratios can be taken pair by pair
(run i over run i). Servers are stopped by PID when the group ends, whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import drivers
from bench.cluster import ClusterDidNotConverge, run_cluster
from bench.procs import (
    CLIENT_CORE,
    Server,
    pinning,
    start_redis,
    start_reference,
    start_vvstore,
    wait_quiet,
)
from bench.report import median_of

__all__ = ["SECTIONS", "Settings", "Subject", "machine", "run_all"]

SECTIONS = ("single", "keys", "batch", "latency", "sweep", "cluster", "uvloop", "baseline")
UVLOOP = (sys.executable, "-m", "bench.uvloop_run")

Log = Callable[[str], None]


@dataclass
class Settings:
    quick: bool = False
    runs: int = 3
    seconds: int = 5
    warmup: int = 1
    connections: int = 50
    keys: int = 100_000
    loadgen: str = "wrk"
    sweep: tuple[int, ...] = (1, 5, 10, 25, 50, 100)
    sweep_runs: int = 1
    sweep_seconds: int = 3
    latency_seconds: int = 5
    cluster_keys: int = 100_000
    cluster_load_seconds: int = 5
    # If the preloaded cluster has not converged after cluster_converge_timeout s, row 7 is
    # recorded as failed and run again with cluster_fallback_keys keys (0: no second try).
    cluster_converge_timeout: float = 120.0
    cluster_fallback_keys: int = 20_000
    idle_seconds: float = 5.0
    sync_interval: float = 1.0
    fsync_count: int = 200
    # Before each measured run, wait up to quiet_wait s for a moment when other processes use
    # under 0.3 cores, within a total of quiet_budget s for the whole benchmark.
    quiet_wait: float = 10.0
    quiet_budget: float = 150.0
    # A run during which other processes used more than noisy_cores cores is run again (its
    # result kept under "discarded"), at most retries_per_run times for one run and
    # retry_budget times in the whole benchmark.
    noisy_cores: float = 0.5
    retries_per_run: int = 2
    retry_budget: int = 24
    sections: tuple[str, ...] = SECTIONS
    redis: bool = True
    # Another checkout of vvstore (its repository root) for the baseline section, or None.
    baseline: Path | None = None
    workdir: Path = field(default_factory=lambda: Path("/tmp"))

    @classmethod
    def quick_settings(cls) -> Settings:
        return cls(
            quick=True,
            runs=1,
            seconds=2,
            warmup=1,
            keys=10_000,
            sweep=(1, 50),
            sweep_seconds=1,
            latency_seconds=2,
            cluster_keys=5_000,
            cluster_fallback_keys=0,
            cluster_converge_timeout=60.0,
            cluster_load_seconds=2,
            idle_seconds=1.5,
            fsync_count=50,
            quiet_wait=2.0,
            quiet_budget=5.0,
            retry_budget=1,
            sections=tuple(s for s in SECTIONS if s != "uvloop"),
        )


@dataclass
class Subject:
    """One measured configuration: which server, which load."""

    id: str
    server: str
    kind: str = "http"  # "http" (closed loop), "open" (open loop), "redis"
    keys: int = 1
    batch: int = 0
    pipeline: int = 1
    rate: float = 0.0
    connections: int = 0  # 0: the settings' connections
    length: float = 1.0  # run length, as a multiple of the group's seconds per run
    idem: bool = False  # a fresh Idempotency-Key header on every request
    calibration: float = 0.0  # redis: requests per second seen in the warm-up


Starter = Callable[[], Server]


async def _quiet(settings: Settings) -> dict[str, float]:
    """Wait for the machine to calm down before a measured run, within the budget."""
    limit = min(settings.quiet_wait, settings.quiet_budget)
    if limit <= 0:
        return {"waited_s": 0.0}
    waited, busy = await wait_quiet(limit)
    settings.quiet_budget -= waited
    return {"waited_s": round(waited, 2), "busy_cores_before": round(busy, 2)}


def _other_cores(result: dict[str, Any]) -> float:
    cpu = result.get("cpu") or {}
    return float(cpu.get("other_cpu_s", 0.0)) / max(float(cpu.get("wall_s", 0.0)), 1e-9)


async def _measure(
    subject: Subject, server: Server, settings: Settings, seconds: int, seed: int, log: Log
) -> dict[str, Any]:
    """One measured run: wait for a quiet moment, run, and run again if it was too noisy."""
    discarded: list[dict[str, Any]] = []
    while True:
        quiet = await _quiet(settings)
        result = await _run_subject(subject, server, settings, seconds, seed)
        result["quiet"] = quiet
        other = _other_cores(result)
        if (
            other <= settings.noisy_cores
            or settings.retry_budget <= 0
            or len(discarded) >= settings.retries_per_run
        ):
            break
        settings.retry_budget -= 1
        discarded.append(result)
        log(f"  {subject.id}: other processes used {other:.2f} cores during the run; again")
    if discarded:
        result["discarded"] = discarded
    return result


async def _ready(server: Server) -> None:
    if server.name.startswith("redis"):
        await server.wait_redis()
    else:
        await server.wait_http()


async def _run_subject(
    subject: Subject, server: Server, settings: Settings, seconds: int, seed: int
) -> dict[str, Any]:
    connections = subject.connections or settings.connections
    if subject.kind == "redis":
        rate = subject.calibration or 20_000.0 * subject.pipeline
        requests = max(10_000, int(rate * seconds))
        return await drivers.run_redis(
            server.port,
            requests=requests,
            connections=connections,
            pipeline=subject.pipeline,
            server_pids=[server.pid],
        )
    if subject.kind == "open":
        return await drivers.run_open_loop(
            server.url,
            rate=subject.rate,
            seconds=seconds,
            connections=connections,
            keys=subject.keys,
            server_pids=[server.pid],
        )
    return await drivers.run_http(
        server.url,
        loadgen=settings.loadgen,
        seconds=seconds,
        connections=connections,
        keys=subject.keys,
        batch=subject.batch,
        server_pids=[server.pid],
        seed=seed,
        idem=f"{subject.id}-{seed}-{os.urandom(4).hex()}" if subject.idem else None,
    )


def _line(subject: Subject, result: dict[str, Any]) -> str:
    if subject.batch:
        figure = f"{result['ips']:>10,.0f} incr/s"
    else:
        figure = f"{result['rps']:>10,.0f} req/s"
    cpu = result["cpu"]
    other = cpu["other_cpu_s"] / max(cpu["wall_s"], 1e-9)
    return (
        f"{subject.id:<22} {figure}  p50 {result['p50_ms']:7.2f} ms  "
        f"p99 {result['p99_ms']:7.2f} ms  errors {result['errors']}  "
        f"other load {other:.2f} cores"
    )


async def run_group(
    name: str,
    starters: dict[str, Starter],
    subjects: Sequence[Subject],
    settings: Settings,
    log: Log,
    *,
    runs: int | None = None,
    seconds: int | None = None,
    preload: int = 0,
    warm: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Run ``subjects`` interleaved for ``runs`` rounds; every run's result, by subject id."""
    runs = settings.runs if runs is None else runs
    seconds = settings.seconds if seconds is None else seconds
    servers: dict[str, Server] = {}
    results: dict[str, list[dict[str, Any]]] = {s.id: [] for s in subjects}
    log(f"[{name}] starting {', '.join(starters)}")
    try:
        for server_name, start in starters.items():
            servers[server_name] = start()
        await asyncio.gather(*(_ready(s) for s in servers.values()))
        if preload:
            for server_name, server in servers.items():
                if any(s.server == server_name and s.keys > 1 for s in subjects):
                    took = await drivers.preload(server.url, preload)
                    log(f"[{name}] preloaded {preload:,} keys into {server_name} in {took:.1f} s")
        if warm:
            warmed: set[str] = set()
            for subject in subjects:
                # Once per server (and once per Redis subject: its warm-up sizes its runs).
                if subject.server in warmed and subject.kind != "redis":
                    continue
                warmed.add(subject.server)
                result = await _run_subject(
                    subject, servers[subject.server], settings, settings.warmup, seed=99
                )
                if subject.kind == "redis":
                    subject.calibration = result["rps"]
        for round_number in range(runs):
            shift = round_number % len(subjects)
            for subject in [*subjects[shift:], *subjects[:shift]]:
                server = servers[subject.server]
                if server.process.poll() is not None:
                    raise RuntimeError(f"{server.name} died:\n{server.log()}")
                result = await _measure(
                    subject,
                    server,
                    settings,
                    max(1, round(seconds * subject.length)),
                    round_number + 1,
                    log,
                )
                result["round"] = round_number
                results[subject.id].append(result)
                log(f"[{name}] run {round_number + 1}/{runs} {_line(subject, result)}")
    finally:
        await asyncio.gather(*(s.stop() for s in servers.values()), return_exceptions=True)
    return results


# --- sections ---------------------------------------------------------------------------------


def _starters(settings: Settings, names: Sequence[str]) -> dict[str, Starter]:
    w = settings.workdir
    table: dict[str, Starter] = {
        "ceiling": lambda: start_reference("ceiling", w, "ceiling"),
        "durable_full": lambda: start_reference("durable_full", w, "durable", durability="full"),
        "durable_normal": lambda: start_reference(
            "durable_normal", w, "durable", durability="normal"
        ),
        "prc_full": lambda: start_reference("prc_full", w, "per-request", durability="full"),
        "vv_full": lambda: start_vvstore("vv_full", w, durability="full"),
        "vv_normal": lambda: start_vvstore("vv_normal", w, durability="normal"),
        "durable_uvloop": lambda: start_reference(
            "durable_uvloop", w, "durable", python=(*UVLOOP, "servers")
        ),
        "vv_uvloop": lambda: start_vvstore(
            "vv_uvloop", w, durability="full", python=(*UVLOOP, "vvstore")
        ),
        "vv_base": lambda: start_vvstore(
            "vv_base", w, durability="full", python=baseline_python(settings.baseline)
        ),
        "redis_always": lambda: start_redis("redis_always", w, fsync_always=True),
        "redis_none": lambda: start_redis("redis_none", w, fsync_always=False),
    }
    return {n: table[n] for n in names}


async def section_single(settings: Settings, log: Log) -> dict[str, list[dict[str, Any]]]:
    """Rows 1-5 on the hot key: every single-increment server, and Redis unpipelined."""
    names = ["ceiling", "durable_full", "vv_full", "prc_full", "durable_normal", "vv_normal"]
    subjects = [Subject(n, n) for n in names]
    subjects.insert(3, Subject("vv_full_idem", "vv_full", idem=True))
    if settings.redis:
        names += ["redis_always", "redis_none"]
        subjects += [
            Subject("redis_always_p1", "redis_always", kind="redis"),
            Subject("redis_none_p1", "redis_none", kind="redis"),
        ]
    return await run_group("single", _starters(settings, names), subjects, settings, log)


async def section_keys(settings: Settings, log: Log) -> dict[str, list[dict[str, Any]]]:
    """Rows 2-4 on ``keys`` keys drawn uniformly (every key preloaded first)."""
    names = ["durable_full", "vv_full", "prc_full", "durable_normal", "vv_normal"]
    subjects = [Subject(n, n, keys=settings.keys) for n in names]
    return await run_group(
        "keys", _starters(settings, names), subjects, settings, log, preload=settings.keys
    )


async def section_batch(settings: Settings, log: Log) -> dict[str, list[dict[str, Any]]]:
    """Row 6 (and Redis pipelined, row 5): /batch of 100 and 1000 items over ``keys`` keys."""
    names = ["durable_full", "vv_full"]
    subjects = []
    for size in (100, 1000):
        # 50 connections of 1000 items keep 50,000 increments in flight: answers come in
        # bursts, so those runs are three times as long to hold several bursts each.
        length = 3.0 if size == 1000 else 1.0
        subjects += [
            Subject(
                f"batchref_{size}", "durable_full", keys=settings.keys, batch=size, length=length
            ),
            Subject(f"vv_batch_{size}", "vv_full", keys=settings.keys, batch=size, length=length),
        ]
    if settings.redis:
        names += ["redis_always", "redis_none"]
        subjects += [
            Subject("redis_always_p16", "redis_always", kind="redis", pipeline=16),
            Subject("redis_none_p16", "redis_none", kind="redis", pipeline=16),
        ]
    return await run_group(
        "batch", _starters(settings, names), subjects, settings, log, preload=settings.keys
    )


async def section_latency(
    settings: Settings, log: Log, single: dict[str, list[dict[str, Any]]] | None
) -> dict[str, list[dict[str, Any]]]:
    """Row 8: open loop at half the maximum measured for the same server (row 1-3 medians).

    Without those medians (the single section skipped), the warm-up run (closed loop, same
    length as a measured run) gives the maximum.
    """
    names = ["ceiling", "durable_full", "vv_full", "vv_normal"]
    subjects = [Subject(n, n, kind="open") for n in names]
    maxima = {n: median_of(single.get(n, []), "rps") for n in names} if single else {}

    def calibrate(subject: Subject, warmup: dict[str, Any]) -> None:
        maximum = maxima.get(subject.id) or warmup["rps"]
        subject.rate = round(maximum / 2, 1)
        log(f"[latency] {subject.id}: offered rate {subject.rate:,.0f} req/s (max {maximum:,.0f})")

    # The warm-up of an open-loop subject is a closed-loop run (it also measures the maximum).
    warm_subjects = [Subject(s.id, s.server) for s in subjects]
    starters = _starters(settings, names)
    results: dict[str, list[dict[str, Any]]] = {}
    servers: dict[str, Server] = {}
    log(f"[latency] starting {', '.join(names)}")
    try:
        for n in names:
            servers[n] = starters[n]()
        await asyncio.gather(*(_ready(s) for s in servers.values()))
        for warm, subject in zip(warm_subjects, subjects, strict=True):
            seconds = settings.warmup if maxima.get(subject.id) else settings.seconds
            warmup = await _run_subject(warm, servers[warm.server], settings, seconds, seed=99)
            calibrate(subject, warmup)
        for round_number in range(settings.runs):
            shift = round_number % len(subjects)
            for subject in [*subjects[shift:], *subjects[:shift]]:
                result = await _measure(
                    subject, servers[subject.server], settings, settings.latency_seconds, 1, log
                )
                result["round"] = round_number
                results.setdefault(subject.id, []).append(result)
                log(
                    f"[latency] run {round_number + 1}/{settings.runs} {subject.id:<14} offered "
                    f"{subject.rate:>8,.0f} achieved {result.get('achieved_rate', 0):>8,.0f} "
                    f"req/s  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
                    f"errors {result['errors']}"
                )
    finally:
        await asyncio.gather(*(s.stop() for s in servers.values()), return_exceptions=True)
    return results


async def section_sweep(settings: Settings, log: Log) -> dict[str, list[dict[str, Any]]]:
    """The plot: throughput and p99 against concurrent clients, durable ref vs vvstore full."""
    names = ["durable_full", "vv_full"]
    subjects = [Subject(f"{n}_c{c}", n, connections=c) for c in settings.sweep for n in names]
    return await run_group(
        "sweep",
        _starters(settings, names),
        subjects,
        settings,
        log,
        runs=settings.sweep_runs,
        seconds=settings.sweep_seconds,
    )


def have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


async def section_uvloop(settings: Settings, log: Log) -> dict[str, list[dict[str, Any]]]:
    """What uvloop would give: the durable reference and vvstore full, each on asyncio's
    default event loop and on uvloop's (``bench/uvloop_run.py``), hot key, interleaved."""
    names = ["durable_full", "durable_uvloop", "vv_full", "vv_uvloop"]
    subjects = [Subject(n, n) for n in names]
    return await run_group("uvloop", _starters(settings, names), subjects, settings, log)


def baseline_python(checkout: Path | None) -> tuple[str, ...]:
    """A command prefix that runs the vvstore CLI of ``checkout`` instead of the installed one
    (it refuses to start if ``vvstore`` would still come from elsewhere)."""
    if checkout is None:
        raise ValueError("the baseline section needs --baseline DIR")
    root = str(checkout.resolve())
    code = (
        f"import sys; sys.path.insert(0, {root!r}); import vvstore.cli as cli; "
        f"assert cli.__file__.startswith({root!r}), cli.__file__; sys.exit(cli.main())"
    )
    return (sys.executable, "-c", code)


async def section_baseline(settings: Settings, log: Log) -> dict[str, list[dict[str, Any]]]:
    """vvstore full from this checkout against the same from ``--baseline DIR`` (another
    commit, say), interleaved: hot key, ``keys`` keys, and /batch of 1000 items."""
    names = ["vv_full", "vv_base"]
    subjects = []
    for name in names:
        subjects += [
            Subject(f"{name}_hot", name),
            Subject(f"{name}_keys", name, keys=settings.keys),
            Subject(f"{name}_batch", name, keys=settings.keys, batch=1000, length=3.0),
        ]
    return await run_group(
        "baseline", _starters(settings, names), subjects, settings, log, preload=settings.keys
    )


# --- machine ------------------------------------------------------------------------------------


def _version(argv: Sequence[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "?"


def _source() -> dict[str, Any]:
    """The vvstore source measured: commit, and files of vvstore/ changed since it."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "vvstore"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": "?", "vvstore_uncommitted_files": None}
    return {"commit": commit or "?", "vvstore_uncommitted_files": len(changed)}


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import aiosqlite

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "aiohttp": aiohttp.__version__,
        "aiosqlite": getattr(aiosqlite, "__version__", "?"),
        "wrk": _version(["wrk", "-v"]),
        "redis": _version(["redis-server", "--version"]),
        "pinning": pinning(),
        "source": _source(),
        "loadavg_start": os.getloadavg(),
    }


# --- everything -------------------------------------------------------------------------------


async def run_all(
    settings: Settings, log: Log, checkpoint: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Every selected section in order; ``checkpoint`` gets the results after each one."""
    began = time.monotonic()
    if CLIENT_CORE is not None:
        os.sched_setaffinity(0, {CLIENT_CORE})  # this process (and the proxy) with the clients
    results: dict[str, Any] = {
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine(),
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()
        },
        "groups": {},
    }
    log(f"machine: {results['machine']['nproc']} cores, {results['machine']['cpu']}; {pinning()}")
    results["fsync"] = drivers.fsync_profile(settings.workdir / "fsync", settings.fsync_count)
    f = results["fsync"]
    log(
        f"fsync probe: SQLite WAL FULL commit p50 {f['sqlite_full_commit']['p50_ms']:.2f} ms "
        f"p99 {f['sqlite_full_commit']['p99_ms']:.2f} ms; 4 KiB write+fsync p50 "
        f"{f['fsync_4k']['p50_ms']:.2f} ms p99 {f['fsync_4k']['p99_ms']:.2f} ms"
    )
    groups = results["groups"]
    results["errors"] = {}

    async def section(name: str, make: Callable[[], Any]) -> None:
        """Run one section; a failure is recorded and logged, and the others still run."""
        if name not in settings.sections:
            return
        try:
            await make()
        except Exception as exc:
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
            log(f"[{name}] FAILED: {type(exc).__name__}: {str(exc)[:2000]}")
        if checkpoint is not None:
            checkpoint(results)

    async def single() -> None:
        groups["single"] = await section_single(settings, log)

    async def keys() -> None:
        groups["keys"] = await section_keys(settings, log)

    async def batch() -> None:
        groups["batch"] = await section_batch(settings, log)

    async def latency() -> None:
        # The fsync budget of row 8 is measured again right before it, on the same disk.
        results["fsync_latency"] = drivers.fsync_profile(
            settings.workdir / "fsync", settings.fsync_count
        )
        groups["latency"] = await section_latency(settings, log, groups.get("single"))

    async def sweep() -> None:
        groups["sweep"] = await section_sweep(settings, log)

    async def uvloop() -> None:
        if have_uvloop():
            groups["uvloop"] = await section_uvloop(settings, log)
        else:
            log("[uvloop] uvloop is not installed: skipping the uvloop comparison")

    async def baseline() -> None:
        if settings.baseline is None:
            log("[baseline] no --baseline DIR given: skipping the comparison with another checkout")
            return
        results["baseline"] = str(settings.baseline)
        groups["baseline"] = await section_baseline(settings, log)

    async def cluster() -> None:
        log("[cluster] three nodes through the fault proxy")
        sizes = [settings.cluster_keys]
        if settings.cluster_fallback_keys and settings.cluster_fallback_keys < sizes[0]:
            sizes.append(settings.cluster_fallback_keys)
        for attempt, size in enumerate(sizes):
            results["cluster"] = partial = {}
            solo = groups.get("keys", {}).get("vv_full")
            if solo and size == settings.keys:
                partial["solo_cpu_ms_per_1k"] = median_of(solo, "server_cpu_ms_per_1k")
            try:
                await run_cluster(
                    settings.workdir,
                    keys=size,
                    load_seconds=settings.cluster_load_seconds,
                    idle_seconds=settings.idle_seconds,
                    connections=settings.connections,
                    loadgen=settings.loadgen,
                    sync_interval=settings.sync_interval,
                    log=log,
                    result=partial,
                    converge_timeout=settings.cluster_converge_timeout,
                )
                return
            except ClusterDidNotConverge as exc:
                results.setdefault("cluster_failed", []).append(partial)
                if attempt + 1 == len(sizes):
                    raise
                log(f"[cluster] {exc}; again with {sizes[attempt + 1]:,} keys")

    for name, make in (
        ("single", single),
        ("keys", keys),
        ("batch", batch),
        ("latency", latency),
        ("sweep", sweep),
        ("uvloop", uvloop),
        ("cluster", cluster),
        ("baseline", baseline),
    ):
        await section(name, make)
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["wall_s"] = round(time.monotonic() - began, 1)
    return results
