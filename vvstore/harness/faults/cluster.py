"""Three real ``vvstore serve`` processes on loopback, wired through one fault proxy.

Every node-to-node link and every client link passes through the :class:`FaultProxy`: node X
reaches node Y at the port of link ``(X, Y)``, and workload clients reach node X at the port of
link ``("client", X)``. The harness's own observer (status polls, convergence, the final
state) talks to the nodes directly, like Jepsen's control connection: it is how the nemesis
sees the cluster, not part of the workload, and faults never cut it.

Process faults act on the processes this module started, by PID only: SIGKILL (then a restart
on the same data directory, a wiped one or a stale copy), SIGSTOP and SIGCONT. A stale copy is
taken with SQLite's online backup API from a plain ``sqlite3`` connection, which reads one
consistent snapshot of a live WAL database (copying the files of a running node would not).

This module must never signal a process it did not start, listen on anything but loopback, or
leave a process or the proxy running after :meth:`Cluster.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from vvstore.harness.launcher import ServerProcess
from vvstore.harness.proxy import FaultProxy

__all__ = ["CLIENT", "DB_FILE", "Cluster", "durabilities"]

#: The proxy's name for every workload client.
CLIENT = "client"
#: The database file inside a data directory (vvstore.store.DB_FILE; not imported, so that
#: the harness does not load the store module and its SQLite driver).
DB_FILE = "vvstore.sqlite3"

# Short anti-entropy settings, as in the demo: a heal converges in well under a second.
SYNC_INTERVAL_S = 0.2
BACKOFF_CAP_S = 0.5
START_TIMEOUT_S = 20.0
OBSERVER_TIMEOUT_S = 2.0
LIST_PAGE = 1000
# Most pages of keys the observer reads from one node (bounds the loop; 1,000 keys a page).
MAX_LIST_PAGES = 1000
LOG_TAIL_LINES = 25


def durabilities(mode: str, names: Sequence[str]) -> dict[str, str]:
    """``full``, ``normal`` or ``mixed`` (every other node normal: A full, B normal, C full)."""
    if mode in ("full", "normal"):
        return dict.fromkeys(names, mode)
    if mode == "mixed":
        return {name: ("normal" if i % 2 else "full") for i, name in enumerate(names)}
    raise ValueError(f"durability must be full, normal or mixed, got {mode!r}")


@contextlib.contextmanager
def _reserved_ports(count: int) -> Iterator[list[int]]:
    """Hold ``count`` free loopback ports until the block ends, so that the proxy's own
    ephemeral ports cannot take one of them before the nodes start."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        yield ports


class Cluster:
    """The nodes, the proxy between everything, and the observer's direct session."""

    def __init__(self, workdir: Path, names: Sequence[str], durability: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.names = tuple(names)
        self.durability = dict(durability)
        self.proxy = FaultProxy()
        self.processes: dict[str, ServerProcess] = {}
        #: Node -> the URL workload clients use (through the proxy).
        self.client_urls: dict[str, str] = {}
        #: Node -> its actor id as last seen by the observer.
        self.actors: dict[str, str] = {}
        #: Node -> how many times it was started.
        self.starts: dict[str, int] = dict.fromkeys(self.names, 0)
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Wire the proxy, start every node and wait until each answers its status."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=OBSERVER_TIMEOUT_S)
        )
        with _reserved_ports(len(self.names)) as reserved:
            ports = dict(zip(self.names, reserved, strict=True))
            links: dict[tuple[str, str], int] = {}
            for src in (*self.names, CLIENT):
                for dst in self.names:
                    if src != dst:
                        links[(src, dst)] = await self.proxy.add_link(src, dst, ports[dst])
        for name in self.names:
            peers = [
                f"http://127.0.0.1:{links[(name, other)]}" for other in self.names if other != name
            ]
            self.processes[name] = ServerProcess(
                name,
                self.data_dir(name),
                ports[name],
                peers=peers,
                durability=self.durability[name],
                extra_args=[
                    "--sync-interval", str(SYNC_INTERVAL_S),
                    "--backoff-cap", str(BACKOFF_CAP_S),
                ],
            )  # fmt: skip
            self.client_urls[name] = f"http://127.0.0.1:{links[(CLIENT, name)]}"
        for process in self.processes.values():
            process.start()
        for name in self.names:
            await self._ready(name)

    async def _ready(self, name: str) -> dict[str, Any]:
        process = self.processes[name]
        self.starts[name] += 1
        try:
            await process.wait_ready(START_TIMEOUT_S)
        except RuntimeError as exc:
            raise RuntimeError(f"{str(exc).splitlines()[0]}\n{self.log_tail(name)}") from None
        status = await self.status(name)
        if status is None:
            raise RuntimeError(f"node {name} answers /health but not /status")
        return status

    async def close(self) -> dict[str, int | None]:
        """Stop every node (SIGTERM, then SIGKILL) and the proxy; each node's exit status."""
        codes: dict[str, int | None] = {}
        try:
            results = await asyncio.gather(
                *(p.stop() for p in self.processes.values()), return_exceptions=True
            )
            codes = {
                name: result if isinstance(result, int) else None
                for name, result in zip(self.processes, results, strict=True)
            }
        finally:
            for process in self.processes.values():
                process.kill()
            if self._session is not None:
                await self._session.close()
                self._session = None
            await self.proxy.close()
        return codes

    # -- observation --------------------------------------------------------------------------

    def data_dir(self, name: str) -> Path:
        return self.workdir / "data" / name

    def url(self, name: str) -> str:
        """The node's own address (the observer's; clients use :attr:`client_urls`)."""
        return self.processes[name].url

    def running(self, name: str) -> bool:
        return self.processes[name].running()

    async def _get(self, name: str, path: str) -> Any:
        assert self._session is not None, "the cluster is not started"
        async with self._session.get(self.url(name) + path) as response:
            if response.status != 200:
                raise aiohttp.ClientResponseError(response.request_info, (), status=response.status)
            return await response.json()

    async def status(self, name: str) -> dict[str, Any] | None:
        """The node's /status, or None when it does not answer in time."""
        try:
            status: dict[str, Any] = await self._get(name, "/status")
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        self.actors[name] = str(status["actor"])
        return status

    async def values(self, name: str) -> dict[str, int] | None:
        """Every key's value at the node (all pages), or None when it does not answer."""
        values: dict[str, int] = {}
        after: str | None = None
        try:
            for _ in range(MAX_LIST_PAGES):
                query = f"/counters?limit={LIST_PAGE}"
                if after is not None:
                    query += "&after=" + quote(after, safe="")
                page = await self._get(name, query)
                for item in page["counters"]:
                    values[str(item["key"])] = int(item["value"])
                after = page.get("next")
                if after is None:
                    return values
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            return None
        raise RuntimeError(f"node {name} listed more than {MAX_LIST_PAGES} pages of keys")

    def log_tail(self, name: str) -> str:
        lines = self.processes[name].log().rstrip().splitlines()[-LOG_TAIL_LINES:]
        return "\n".join([f"--- last {len(lines)} lines of node {name}'s log ---", *lines])

    def resources(self, name: str) -> dict[str, int] | None:
        """Resident memory (KiB) and open file descriptors of the node's process, or None."""
        pid = self.processes[name].pid
        if pid is None or not self.running(name):
            return None
        try:
            rss = 0
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, ValueError):
            return None
        return {"pid": pid, "rss_kib": rss, "fds": fds}

    # -- process faults -----------------------------------------------------------------------

    def kill(self, name: str) -> None:
        """SIGKILL the node (a crash) and reap it."""
        self.processes[name].kill()

    def pause(self, name: str) -> None:
        self.processes[name].signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.processes[name].signal(signal.SIGCONT)

    async def restart(self, name: str) -> dict[str, Any]:
        """Start the (dead) node again on whatever its data directory now holds; its status."""
        if self.running(name):
            raise RuntimeError(f"node {name} is still running")
        self.processes[name].start()
        return await self._ready(name)

    async def backup(self, name: str, destination: Path) -> None:
        """Copy the live node's database to ``destination`` (a directory) as one snapshot."""
        source = self.data_dir(name) / DB_FILE
        destination.mkdir(parents=True)
        await asyncio.to_thread(_backup, source, destination / DB_FILE)

    def replace_data(self, name: str, copy: Path | None) -> None:
        """Replace the dead node's data directory by ``copy`` (moved), or by nothing (a wipe)."""
        if self.running(name):
            raise RuntimeError(f"node {name} must be dead before its data directory is replaced")
        target = self.data_dir(name)
        shutil.rmtree(target, ignore_errors=True)
        if copy is None:
            target.mkdir(parents=True)
        else:
            shutil.move(str(copy), str(target))

    async def integrity(self, name: str) -> str:
        """``PRAGMA integrity_check`` of the node's database (the node must be stopped)."""
        return await asyncio.to_thread(_integrity_check, self.data_dir(name) / DB_FILE)


def _backup(source: Path, destination: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=10)
    try:
        dst = sqlite3.connect(destination)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _integrity_check(path: Path) -> str:
    if not path.exists():
        return f"missing: {path}"
    db = sqlite3.connect(path, timeout=10)
    try:
        rows = db.execute("PRAGMA integrity_check").fetchall()
    finally:
        db.close()
    return "; ".join(str(row[0]) for row in rows)
