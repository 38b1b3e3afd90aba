"""Start and stop real ``vvstore serve`` processes on loopback (demo, fault suite, tests).

Each process is started with ``sys.executable -m vvstore serve``, its output goes to a log
file, and :meth:`ServerProcess.wait_ready` polls ``/health`` and ``/status`` against a deadline
until the node answering on the port is the one it started (its node id and its PID): a port
that another process already serves must never pass for a node that came up. Processes are
only ever signalled by the PID this module started; nothing here searches for processes by
name. Ports are picked by binding port 0 on 127.0.0.1 and releasing it, so that every node's
URL is known before any node starts (nodes need their peers' URLs on the command line).

A process may run another source tree of the package (an earlier release, extracted by
:mod:`vvstore.harness.release`): with ``pythonpath``, that directory goes first on the child's
``PYTHONPATH`` and the interpreter runs with ``-P``, so that the current directory (a checkout
holding the working tree's ``vvstore``) is not put before it on ``sys.path``. An editable
install's finder comes after ``sys.path``, and site-packages after ``PYTHONPATH``, so the
child imports that tree's ``vvstore``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["ServerProcess", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class _Answer:
    """Who answered on a node's port: /health's ``node``, /status's HTTP status and ``pid``."""

    node: object
    status: int
    pid: object

    def __str__(self) -> str:
        node = "no node id" if self.node is None else f"node {self.node}"
        if self.status == 200:
            return f"{node}, pid {self.pid}"
        if self.status == 401:
            return f"{node}, pid unknown: /status refused the request (401)"
        return f"{node}, pid unknown: /status answered {self.status}"


async def _json_object(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The response's JSON object, or {} when the body is not one (whoever sent it)."""
    try:
        body = await response.json(content_type=None)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


@dataclass
class ServerProcess:
    """One ``vvstore serve`` process: its node id, data directory, port and peers.

    ``token`` is the bearer token the node requires (when it was started with one), sent on
    ``/status`` by :meth:`wait_ready`; the launcher does not pass it to the node itself.

    ``pythonpath`` is a directory holding another ``vvstore`` package (an earlier release, see
    :func:`vvstore.harness.release.materialise`) that the process imports instead of the
    installed one; None runs the installed package. Its ``argv`` must be one that release's
    ``serve`` understands.
    """

    node_id: str
    data_dir: Path
    port: int
    peers: Sequence[str] = ()
    durability: str = "full"
    extra_args: Sequence[str] = ()
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    #: Run in the child before it executes (the benchmarks pin it to a CPU core).
    preexec_fn: Callable[[], None] | None = field(default=None, repr=False)
    #: A source tree to import ``vvstore`` from instead of the installed package.
    pythonpath: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def interpreter(self) -> list[str]:
        """The interpreter and its flags: ``-P`` with :attr:`pythonpath` (no current directory
        first on ``sys.path``, where a checkout's own ``vvstore`` would win)."""
        return [sys.executable] if self.pythonpath is None else [sys.executable, "-P"]

    def env(self) -> dict[str, str] | None:
        """The child's environment: ours, with :attr:`pythonpath` first on ``PYTHONPATH``.

        None (ours, unchanged) without :attr:`pythonpath`.
        """
        if self.pythonpath is None:
            return None
        env = dict(os.environ)
        paths = [str(self.pythonpath.resolve())]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def argv(self) -> list[str]:
        argv = [
            *self.interpreter(), "-m", "vvstore", "serve",
            "--node-id", self.node_id,
            "--data-dir", str(self.data_dir),
            "--port", str(self.port),
            "--durability", self.durability,
        ]  # fmt: skip
        for peer in self.peers:
            argv += ["--peer", peer]
        return argv + list(self.extra_args)

    def start(self) -> None:
        """Start the process (appending to its log file)."""
        if self.log_path is None:
            self.log_path = self.data_dir.parent / f"{self.node_id}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env(),
                preexec_fn=self.preexec_fn,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, timeout: float = 15.0) -> None:
        """Poll until this node answers on its port, the process dies, or ``timeout`` passes.

        The node answering must be the one this object started: ``GET /health`` names
        :attr:`node_id` and ``GET /status`` names the PID of :attr:`process`. Another process
        serving the port (a node started by someone else, with any node id) is not this node
        coming up: polling goes on, and the error then names the port and who answered. When
        the node requires a token and :attr:`token` is None, /status answers 401 and only the
        node id is checked: a node with the same node id on the same port then passes.

        :raises RuntimeError: with the node's log when it did not come up (first line: what
            happened, including the other process seen on the port, if any).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen: _Answer | None = None
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while loop.time() < deadline:
                if not self.running():
                    why = ""
                    if seen is not None:
                        why = f" (port {self.port} is answered by another process: {seen})"
                    raise RuntimeError(f"node {self.node_id} exited early{why}:\n{self.log()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    answer = await self._who_answers(session)
                    if answer is not None:
                        if self._is_mine(answer):
                            return
                        seen = answer
                await asyncio.sleep(0.05)
        if seen is not None:
            raise RuntimeError(
                f"port {self.port} is answered by another process ({seen}), not by node "
                f"{self.node_id} (pid {self.pid}), after {timeout} s:\n{self.log()}"
            )
        raise RuntimeError(f"node {self.node_id} not ready after {timeout} s:\n{self.log()}")

    async def _who_answers(self, session: aiohttp.ClientSession) -> _Answer | None:
        """Who answers on the port; None while nothing does, or this node id is still starting."""
        async with session.get(self.url + "/health") as response:
            if response.status != 200:
                return None
            node = (await _json_object(response)).get("node")
        headers = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        async with session.get(self.url + "/status", headers=headers) as response:
            if response.status == 200:
                return _Answer(node, 200, (await _json_object(response)).get("pid"))
            if response.status != 401 and node == self.node_id:
                return None
            return _Answer(node, response.status, None)

    def _is_mine(self, answer: _Answer) -> bool:
        if answer.node != self.node_id:
            return False
        if answer.status == 401:
            # /status wants a token: without one, the node id is all there is to check; with
            # one, the node refused it, so it is not the node that was started with it.
            return self.token is None
        return answer.pid == self.pid

    def signal(self, sig: int) -> None:
        """Send ``sig`` to this process (only the one we started)."""
        if self.running():
            assert self.process is not None
            os.kill(self.process.pid, sig)

    async def wait_exit(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the process to exit; its status, or None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.process is not None and loop.time() < deadline:
            code = self.process.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.02)
        return None

    async def stop(self, timeout: float = 8.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``; its exit status."""
        if self.process is None:
            return None
        self.signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
        self.signal(signal.SIGTERM)
        code = await self.wait_exit(timeout)
        if code is None:
            self.kill()
            code = await self.wait_exit(timeout)
        return code

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=10)
