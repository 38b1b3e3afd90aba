"""docs/operations.md's three-machine deployment, run on loopback exactly as the guide says.

The guide's code blocks marked ``<!-- tested: NAME -->`` are read from the page, not copied
here: the secrets are made by its commands, each machine's ``node.env`` is its block, each node
runs the ``ExecStart`` line of docs/vvstore.service expanded as systemd expands it, and the
check is its ``vvstore incr`` and ``vvstore get`` commands. Only the machines change: each
example address becomes a loopback address of its own (``127.0.0.11`` to ``127.0.0.13``) with a
free port, and ``/etc/vvstore``, ``/var/lib/vvstore`` and ``/opt/vvstore`` become directories of
that machine under the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vvstore.client import Client
from vvstore.harness.launcher import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operations.md"
UNIT = ROOT / "docs" / "vvstore.service"

#: The guide's machines (node id -> example address) and the loopback address each gets here.
MACHINES = {"node-1": "192.0.2.11", "node-2": "192.0.2.12", "node-3": "192.0.2.13"}
LOOPBACK = {"node-1": "127.0.0.11", "node-2": "127.0.0.12", "node-3": "127.0.0.13"}
GUIDE_PORT = 8080
PROGRAM = "/opt/vvstore/bin/vvstore"

_TESTED_BLOCK = re.compile(r"<!-- tested: ([^>]+?) -->\n```[a-z]*\n(.*?)^```", re.S | re.M)


def guide_blocks() -> dict[str, str]:
    blocks: dict[str, str] = {}
    for name, body in _TESTED_BLOCK.findall(GUIDE.read_text(encoding="utf-8")):
        assert name not in blocks, f"two blocks marked 'tested: {name}' in {GUIDE.name}"
        blocks[name] = body
    return blocks


def unit_setting(text: str, key: str) -> str:
    values = re.findall(rf"^{key}=(.*)$", text, re.M)
    assert len(values) == 1, f"expected one {key}= in {UNIT.name}, found {values}"
    return values[0]


def environment_file(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines as systemd's EnvironmentFile reads them (one pair of quotes removed)."""
    env = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def expand(command: str, env: dict[str, str]) -> list[str]:
    """An ExecStart line as systemd expands it: ``${X}`` is one word, ``$X`` splits on spaces."""
    argv: list[str] = []
    for word in shlex.split(command):
        if braced := re.fullmatch(r"\$\{(\w+)\}", word):
            argv.append(env[braced[1]])
        elif bare := re.fullmatch(r"\$(\w+)", word):
            argv.extend(env[bare[1]].split())
        else:
            assert "$" not in word, f"{UNIT.name}: a variable this test cannot expand: {word!r}"
            argv.append(word)
    return argv


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Machine:
    """One of the guide's machines, played by a loopback address and a directory."""

    node_id: str
    root: Path
    address: str
    port: int

    @property
    def etc(self) -> Path:
        return self.root / "etc" / "vvstore"

    @property
    def data(self) -> Path:
        return self.root / "var" / "lib" / "vvstore"


@dataclass
class GuideNode(ServerProcess):
    """A node started with the unit's command line rather than the launcher's."""

    command: list[str] = field(default_factory=list)
    address: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def argv(self) -> list[str]:
        return self.command


@dataclass
class Deployment:
    root: Path
    machines: dict[str, Machine]
    program: Path
    nodes: dict[str, GuideNode] = field(default_factory=dict)

    def localise(self, text: str, here: Machine) -> str:
        """``text`` with the guide's addresses and paths replaced by this test's ones."""
        for node_id, public in MACHINES.items():
            there = self.machines[node_id]
            text = text.replace(f"{public}:{GUIDE_PORT}", f"{there.address}:{there.port}")
            text = text.replace(public, there.address)
        text = text.replace(f"PORT={GUIDE_PORT}", f"PORT={here.port}")
        text = text.replace(PROGRAM, str(self.program))
        text = text.replace("/etc/vvstore", str(here.etc))
        return text.replace("/var/lib/vvstore", str(here.data))

    def shell(self, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PATH=f"{self.program.parent}{os.pathsep}{os.environ['PATH']}")
        env.pop("VVSTORE_TOKEN", None)
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{p.log()[-3000:]}" for n, p in self.nodes.items())


def vvstore_program(bin_dir: Path) -> Path:
    """A ``vvstore`` executable running this interpreter's vvstore (what pip would install)."""
    bin_dir.mkdir(parents=True)
    program = bin_dir / "vvstore"
    program.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m vvstore "$@"\n')
    program.chmod(program.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return program


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    machines = {
        node_id: Machine(
            node_id, tmp_path / node_id, LOOPBACK[node_id], free_port(LOOPBACK[node_id])
        )
        for node_id in MACHINES
    }
    setup = Deployment(tmp_path, machines, vvstore_program(tmp_path / "opt" / "bin"))
    try:
        yield setup
    finally:
        await asyncio.gather(*(node.stop() for node in setup.nodes.values()))


@pytest.mark.slow
async def test_the_guide_deploys_three_nodes_that_converge(deployment: Deployment) -> None:
    blocks = guide_blocks()
    expected = {"secrets", "check-write", "check-read"} | {f"node.env {n}" for n in MACHINES}
    assert set(blocks) == expected, f"tested blocks in {GUIDE.name}: {sorted(blocks)}"
    unit = UNIT.read_text(encoding="utf-8")

    # Step 2: the secrets, made by the guide's commands, then copied to every machine.
    admin = deployment.root / "admin"
    admin.mkdir()
    made = deployment.shell(blocks["secrets"], cwd=admin)
    assert made.returncode == 0, made.stderr
    for name in ("cluster-secret", "token"):
        assert re.fullmatch(r"[0-9a-f]{64}\n", (admin / name).read_text()), name
        assert stat.S_IMODE((admin / name).stat().st_mode) == 0o600, "umask 077 keeps it private"
    token = (admin / "token").read_text().strip()

    # Steps 3 and 5: each machine's node.env, and the unit's command line expanded with it.
    for node_id, machine in deployment.machines.items():
        machine.etc.mkdir(parents=True)
        machine.data.mkdir(parents=True, mode=0o700)  # StateDirectory=, StateDirectoryMode=
        for name in ("cluster-secret", "token"):
            shutil.copy(admin / name, machine.etc / name)
            (machine.etc / name).chmod(0o640)
        env_path = Path(deployment.localise(unit_setting(unit, "EnvironmentFile"), machine))
        assert env_path.parent == machine.etc
        env_path.write_text(deployment.localise(blocks[f"node.env {node_id}"], machine))
        env = environment_file(env_path.read_text())
        assert env["NODE_ID"] == node_id
        command = expand(deployment.localise(unit_setting(unit, "ExecStart"), machine), env)
        assert command[0] == str(deployment.program)
        node = GuideNode(
            node_id,
            machine.data,
            machine.port,
            log_path=deployment.root / f"{node_id}.log",
            token=token,
            command=command,
            address=machine.address,
        )
        deployment.nodes[node_id] = node
    for node in deployment.nodes.values():
        node.start()
    for node in deployment.nodes.values():
        await node.wait_ready()

    # Step 6: the guide's check, from the first machine.
    first = deployment.machines["node-1"]
    wrote = deployment.shell(deployment.localise(blocks["check-write"], first), cwd=admin)
    assert wrote.returncode == 0, f"{wrote.stderr}\n{deployment.logs()}"
    read = deployment.localise(blocks["check-read"], first)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    seen = ""
    while loop.time() < deadline:
        answer = deployment.shell(read, cwd=admin)
        seen = answer.stdout + answer.stderr
        if answer.returncode == 0 and answer.stdout.split() == ["3", "3", "3"]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the nodes did not converge to 3: {seen!r}\n{deployment.logs()}")

    for node in deployment.nodes.values():
        async with Client(node.url, token=token) as client:
            status = await client.status()
        assert [p.raw["reachable"] for p in status.peers] == [True, True], deployment.logs()
        others = {n for n in MACHINES if n != node.node_id}
        assert status.raw["peer_secrets"] == dict.fromkeys(others, "current")


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd): unit not verified")
    # verify checks that ExecStart's program exists: point it at one that does.
    program = vvstore_program(tmp_path / "bin")
    unit = UNIT.read_text(encoding="utf-8").replace(PROGRAM, str(program))

    def verify(text: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "vvstore.service"
        path.write_text(text)
        return subprocess.run(
            [analyze, "verify", str(path)], capture_output=True, text=True, timeout=60
        )

    result = verify(unit)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    # The check can fail: a setting systemd does not understand is reported.
    broken = verify(unit.replace("Type=exec", "Type=sometimes"))
    assert "sometimes" in broken.stdout + broken.stderr
