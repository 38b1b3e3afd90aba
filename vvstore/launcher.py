"""Start and stop real ``vvstore serve`` processes on loopback (demo, fault suite, tests).

Each process is started with ``sys.executable -m vvstore serve``, its output goes to a log
file, and :meth:`ServerProcess.wait_ready` polls ``/health`` against a deadline. Processes are
only ever signalled by the PID this module started; nothing here searches for processes by
name. Ports are picked by binding port 0 on 127.0.0.1 and releasing it, so that every node's
URL is known before any node starts (nodes need their peers' URLs on the command line).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

__all__ = ["ServerProcess", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """One ``vvstore serve`` process: its node id, data directory, port and peers."""

    node_id: str
    data_dir: Path
    port: int
    peers: Sequence[str] = ()
    durability: str = "full"
    extra_args: Sequence[str] = ()
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def argv(self) -> list[str]:
        argv = [
            sys.executable, "-m", "vvstore", "serve",
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
                self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, timeout: float = 15.0) -> None:
        """Poll ``/health`` until it answers, the process dies, or ``timeout`` passes.

        :raises RuntimeError: with the node's log when it did not come up.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while loop.time() < deadline:
                if not self.running():
                    raise RuntimeError(f"node {self.node_id} exited early:\n{self.log()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(self.url + "/health") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"node {self.node_id} not ready after {timeout} s:\n{self.log()}")

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
