"""Processes of the benchmark: servers pinned to one core, load generators to another.

Every process is started here with :class:`subprocess.Popen` (or asyncio's equivalent), kept by
its object, and stopped by that object's PID only: SIGTERM, then SIGKILL after a deadline.
Nothing here looks processes up by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from vvstore.harness.launcher import ServerProcess, free_port

#: The repository root: ``python -m bench...`` children run from here, wherever we were started.
ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "CLIENT_CORE",
    "ROOT",
    "SERVER_CORE",
    "CpuMeter",
    "Server",
    "free_port",
    "pinning",
    "preexec_for",
    "start_redis",
    "start_reference",
    "start_vvstore",
    "wait_quiet",
]


def _cores() -> tuple[int | None, int | None]:
    """(server core, client core), or (None, None) when there are not two cores to split."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[1]


SERVER_CORE, CLIENT_CORE = _cores()


def pinning() -> str:
    if SERVER_CORE is None:
        return "not pinned (fewer than two usable cores)"
    return f"servers on core {SERVER_CORE}, load generators on core {CLIENT_CORE}"


def preexec_for(core: int | None) -> Callable[[], None] | None:
    """A preexec_fn pinning the child (and every thread it starts) to ``core``."""
    if core is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {core})

    return pin


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man proc).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        parts = stat.readline().split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def wait_quiet(
    max_wait: float, *, threshold: float = 0.3, window: float = 0.25
) -> tuple[float, float]:
    """Wait (at most ``max_wait`` seconds) for a ``window`` in which the whole machine used
    less than ``threshold`` cores: our servers are idle between runs, so what is busy then is
    someone else. Returns (seconds waited, cores busy in the last window)."""
    began = time.monotonic()
    busy = 0.0
    while True:
        before, start = _machine_busy_seconds(), time.monotonic()
        await asyncio.sleep(window)
        busy = (_machine_busy_seconds() - before) / (time.monotonic() - start)
        waited = time.monotonic() - began
        if busy < threshold or waited >= max_wait:
            return waited, busy


@dataclass
class CpuMeter:
    """CPU used during one measurement: by our servers, by our children, and by the machine.

    ``other`` is the machine's busy time minus ours (servers, load generator, this process):
    the noise from everything else on a shared machine, in core-seconds.
    """

    pids: Sequence[int]
    wall: float = 0.0
    servers: float = 0.0
    children: float = 0.0
    own: float = 0.0
    machine: float = 0.0
    _start: tuple[float, ...] = field(default=(), repr=False)

    def __enter__(self) -> CpuMeter:
        self._start = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        deltas = [b - a for a, b in zip(self._start, end, strict=True)]
        self.wall, self.servers, self.children, self.own, self.machine = deltas

    def _sample(self) -> tuple[float, ...]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = resource.getrusage(resource.RUSAGE_SELF)
        return (
            time.monotonic(),
            sum(process_cpu_seconds(pid) for pid in self.pids),
            children.ru_utime + children.ru_stime,
            own.ru_utime + own.ru_stime,
            _machine_busy_seconds(),
        )

    @property
    def other(self) -> float:
        return max(0.0, self.machine - self.servers - self.children - self.own)

    def to_dict(self) -> dict[str, float]:
        return {
            "wall_s": round(self.wall, 3),
            "server_cpu_s": round(self.servers, 3),
            "client_cpu_s": round(self.children, 3),
            "bench_cpu_s": round(self.own, 3),
            "other_cpu_s": round(self.other, 3),
        }


@dataclass
class Server:
    """A server process we started: its name, URL, Popen object and log file."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    vvstore: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    async def wait_http(self, timeout: float = 30.0) -> None:
        """Poll GET /health until it answers 200, the process dies, or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited early:\n{self.log()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(self.url + "/health") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n{self.log()}")

    async def wait_redis(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()}")
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"PING\r\n")
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), 1.0)
                writer.close()
                if line.startswith(b"+PONG"):
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n{self.log()}")

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM this PID, SIGKILL it if it has not exited after ``timeout``; reap it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.process.poll() is None:
            self.process.kill()
            await asyncio.to_thread(self.process.wait, 10)
        return self.process.returncode


def _popen(name: str, argv: Sequence[str], log_path: Path, port: int) -> Server:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            preexec_fn=preexec_for(SERVER_CORE),
        )
    return Server(name, port, process, log_path)


def start_vvstore(
    name: str,
    workdir: Path,
    *,
    durability: str,
    node_id: str = "bench",
    port: int | None = None,
    peers: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    python: Sequence[str] = (sys.executable, "-m", "vvstore"),
) -> Server:
    """``vvstore serve`` on a fresh data directory, pinned to the server core.

    The command line is :class:`vvstore.harness.launcher.ServerProcess`'s; ``python`` replaces its
    ``python -m vvstore`` prefix (the uvloop experiment runs the same CLI under uvloop).
    """
    port = port or free_port()
    data_dir = workdir / name
    if data_dir.exists():
        shutil.rmtree(data_dir)
    spec = ServerProcess(
        node_id, data_dir, port, peers=peers, durability=durability, extra_args=extra_args
    )
    argv = [*python, *spec.argv()[3:]]
    server = _popen(name, argv, workdir / f"{name}.log", port)
    spec.process = server.process
    server.vvstore = spec
    return server


def start_reference(
    name: str,
    workdir: Path,
    mode: str,
    *,
    durability: str = "full",
    python: Sequence[str] = (sys.executable, "-m", "bench.servers"),
) -> Server:
    """One of :mod:`bench.servers` on a fresh data directory, pinned to the server core."""
    port = free_port()
    data_dir = workdir / name
    if data_dir.exists():
        shutil.rmtree(data_dir)
    argv = [
        *python, mode,
        "--port", str(port), "--data-dir", str(data_dir), "--durability", durability,
    ]  # fmt: skip
    return _popen(name, argv, workdir / f"{name}.log", port)


def start_redis(name: str, workdir: Path, *, fsync_always: bool) -> Server:
    """redis-server on loopback: AOF with ``appendfsync always``, or no persistence at all."""
    port = free_port()
    data_dir = workdir / name
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    argv = [
        "redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
        "--save", "", "--protected-mode", "yes", "--daemonize", "no",
    ]  # fmt: skip
    if fsync_always:
        argv += ["--appendonly", "yes", "--appendfsync", "always"]
    else:
        argv += ["--appendonly", "no"]
    return _popen(name, argv, workdir / f"{name}.log", port)
