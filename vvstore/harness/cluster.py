"""The harness's one cluster fixture: real ``vvstore serve`` processes on loopback, wired
through one fault proxy. The demo, the fault suite, the benchmarks and the real-process tests
all start their nodes here.

Every node-to-node link (and, with ``client_links``, every client link) passes through the
:class:`FaultProxy`: node X reaches node Y at the port of link ``(X, Y)``, and workload clients
reach node X at the port of link ``("client", X)``. The harness's own observer (status polls,
convergence, the final state) talks to the nodes directly, like Jepsen's control connection:
it is how a test or the nemesis sees the cluster, not part of the workload, and faults never
cut it. A node is ready when the process this module started answers on its port, by node id
and PID (:meth:`ServerProcess.wait_ready`): a port another process serves is refused up front
(:class:`PortsBusy`) or never taken for one of ours.

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
import errno
import os
import shutil
import signal
import socket
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from vvstore.harness.launcher import ServerProcess
from vvstore.harness.proxy import FaultProxy

__all__ = [
    "CLIENT",
    "DB_FILE",
    "Cluster",
    "NodeDidNotStart",
    "PortsBusy",
    "durabilities",
    "reserved_ports",
    "restore_in_place",
]

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
CONVERGE_POLL_S = 0.05


def durabilities(mode: str, names: Sequence[str]) -> dict[str, str]:
    """``full``, ``normal`` or ``mixed`` (every other node normal: A full, B normal, C full)."""
    if mode in ("full", "normal"):
        return dict.fromkeys(names, mode)
    if mode == "mixed":
        return {name: ("normal" if i % 2 else "full") for i, name in enumerate(names)}
    raise ValueError(f"durability must be full, normal or mixed, got {mode!r}")


class PortsBusy(RuntimeError):
    """Wanted ports are in use on 127.0.0.1: nothing was started. The message names each."""


class NodeDidNotStart(RuntimeError):
    """A node did not come up: ``what`` happened (the launcher's line), and its log's tail."""

    def __init__(self, name: str, what: str, log_tail: str) -> None:
        super().__init__(f"{what}\n{log_tail}")
        self.name = name
        self.what = what
        self.log_tail = log_tail


@contextlib.contextmanager
def reserved_ports(wanted: Mapping[str, int]) -> Iterator[dict[str, int]]:
    """Bind each node's wanted port (0: any free one) until the block ends; yield the ports.

    Holding them keeps the proxy's own ephemeral ports from taking one before the nodes start.

    :raises PortsBusy: naming every wanted port that cannot be bound, and its node.
    """
    with contextlib.ExitStack() as stack:
        ports: dict[str, int] = {}
        busy: list[str] = []
        all_in_use = True
        for name, port in wanted.items():
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                if port == 0:
                    raise
                in_use = exc.errno == errno.EADDRINUSE
                all_in_use = all_in_use and in_use
                busy.append(f"{port} (node {name})" if in_use else f"{port} (node {name}: {exc})")
                continue
            ports[name] = int(sock.getsockname()[1])
        if busy:
            ports_are = f"port {busy[0]} is" if len(busy) == 1 else f"ports {', '.join(busy)} are"
            what = "already in use" if all_in_use else "not free"
            raise PortsBusy(f"{ports_are} {what} on 127.0.0.1, so no node was started")
        yield ports


class Cluster:
    """The nodes, the proxy between them, and the observer's direct session.

    :param durability: one mode for every node, or a mode per node.
    :param ports: the port each node must listen on (0 or missing: a free one).
    :param client_links: route workload clients through the proxy too (:attr:`client_urls`);
        without, clients use the nodes' own addresses.
    :param extra_args: more ``vvstore serve`` flags for every node.
    :param backoff_cap: None leaves the node's own default.
    :param preexec_fn: run in each node's process before it executes (CPU pinning).
    :param releases: node -> a source tree whose ``vvstore`` that node's process imports (an
        earlier release, from :func:`vvstore.harness.release.materialise`), for a mixed-version
        cluster; the other nodes run the installed package. A restart keeps the node's tree.
    """

    def __init__(
        self,
        workdir: Path,
        names: Sequence[str],
        durability: Mapping[str, str] | str = "full",
        *,
        ports: Mapping[str, int] | None = None,
        client_links: bool = True,
        extra_args: Sequence[str] = (),
        sync_interval: float = SYNC_INTERVAL_S,
        backoff_cap: float | None = BACKOFF_CAP_S,
        start_timeout: float = START_TIMEOUT_S,
        preexec_fn: Callable[[], None] | None = None,
        releases: Mapping[str, Path] | None = None,
    ) -> None:
        self.workdir = workdir
        self.names = tuple(names)
        self.releases = dict(releases or {})
        unknown = sorted(set(self.releases) - set(self.names))
        if unknown:
            raise ValueError(f"releases name nodes that are not in the cluster: {unknown}")
        self.durability = (
            dict.fromkeys(self.names, durability)
            if isinstance(durability, str)
            else dict(durability)
        )
        self.wanted_ports = {name: (ports or {}).get(name, 0) for name in self.names}
        self.client_links = client_links
        self.extra_args = ["--sync-interval", str(sync_interval)]
        if backoff_cap is not None:
            self.extra_args += ["--backoff-cap", str(backoff_cap)]
        self.extra_args += extra_args
        self.preexec_fn = preexec_fn
        self.start_timeout = start_timeout
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
        """Wire the proxy, start every node and wait until each answers its status.

        :raises PortsBusy: a wanted port is taken (nothing was started).
        :raises RuntimeError: a node did not come up (with its log's tail).
        """
        with reserved_ports(self.wanted_ports) as ports:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=OBSERVER_TIMEOUT_S)
            )
            links: dict[tuple[str, str], int] = {}
            sources = (*self.names, CLIENT) if self.client_links else self.names
            for src in sources:
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
                extra_args=self.extra_args,
                preexec_fn=self.preexec_fn,
                pythonpath=self.releases.get(name),
            )
            self.client_urls[name] = (
                f"http://127.0.0.1:{links[(CLIENT, name)]}"
                if self.client_links
                else self.processes[name].url
            )
        for process in self.processes.values():
            process.start()
        await asyncio.gather(*(self._ready(name) for name in self.names))

    async def _ready(self, name: str) -> dict[str, Any]:
        process = self.processes[name]
        self.starts[name] += 1
        try:
            await process.wait_ready(self.start_timeout)
        except RuntimeError as exc:
            raise NodeDidNotStart(name, str(exc).splitlines()[0], self.log_tail(name)) from None
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

    # -- the network --------------------------------------------------------------------------

    def partition(self, *groups: Sequence[str]) -> None:
        """Cut every link between nodes of different groups (see :meth:`FaultProxy.partition`)."""
        self.proxy.partition(*groups)

    def isolate(self, name: str) -> None:
        self.proxy.isolate(name)

    def heal(self) -> None:
        self.proxy.heal()

    # -- observation --------------------------------------------------------------------------

    async def wait_converged(self, timeout: float, names: Sequence[str] | None = None) -> float:
        """Poll until the running nodes (or ``names``) report one vector and the same values.

        :returns: seconds it took.
        :raises TimeoutError: with each node's vector and log tail.
        """
        loop = asyncio.get_running_loop()
        began = loop.time()
        watched = [n for n in (names or self.names) if self.running(n)]
        seen: dict[str, Any] = {}
        differ: dict[str, dict[str, int | None]] = {}
        rules: dict[str, Any] = {}
        while loop.time() - began < timeout:
            statuses = await asyncio.gather(*(self.status(n) for n in watched))
            seen = {n: (s or {}).get("version") for n, s in zip(watched, statuses, strict=True)}
            rules = {
                n: (s or {}).get("exactly_once") for n, s in zip(watched, statuses, strict=True)
            }
            versions = list(seen.values())
            if None not in versions and all(v == versions[0] for v in versions):
                values = await asyncio.gather(*(self.values(n) for n in watched))
                if None not in values and all(v == values[0] for v in values):
                    return loop.time() - began
                keys = sorted({k for v in values if v for k in v})
                differ = {
                    k: {n: (v or {}).get(k) for n, v in zip(watched, values, strict=True)}
                    for k in keys
                    if len({(v or {}).get(k) for v in values}) > 1
                }
            await asyncio.sleep(CONVERGE_POLL_S)
        tails = "\n".join(self.log_tail(n) for n in watched)
        shown = dict(list(differ.items())[:5])
        raise TimeoutError(
            f"not converged after {timeout} s; versions {seen}; values that differ {shown};"
            f" exactly-once rules {rules}\n{tails}"
        )

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

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the node's log, under a title naming the node."""
        tail = self.processes[name].log().rstrip().splitlines()[-lines:]
        count = "line" if len(tail) == 1 else f"{len(tail)} lines"
        return "\n".join([f"--- node {name}'s log, last {count} ---", *tail])

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


def restore_in_place(copy: Path, db: Path) -> None:
    """Copy the database ``copy`` over ``db`` keeping ``db``'s inode, as ``cp`` over an existing
    file or ``rsync --inplace`` do, and drop ``db``'s WAL files (they belong to what it held).

    The node that owns ``db`` must be stopped. From its files alone it cannot tell the
    difference: this is the restore a node has to detect through its peers.
    """
    data = copy.read_bytes()
    with open(db, "r+b") as f:
        f.truncate(0)
        f.write(data)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)


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
