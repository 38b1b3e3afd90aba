"""``ServerProcess.wait_ready`` on real processes: only the node it started counts as ready.

A port that another process serves (a node started by someone else, even one with the same node
id) answers ``/health`` with 200 long before the launched process gives up on binding it. These
tests hold such a node on a port and check that a launcher aimed at that port is never ready,
and that its error names the port and who answered there.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vvstore.harness.launcher import ServerProcess, free_port

pytestmark = pytest.mark.slow

# Long enough for many polls, short enough to keep a test that expects a timeout quick.
NOT_READY_TIMEOUT_S = 1.0
START_TIMEOUT_S = 15.0


@pytest.fixture
async def holder(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """Node A, already serving on its port: the process another launcher must not adopt."""
    node = ServerProcess("A", tmp_path / "holder", free_port())
    node.start()
    try:
        await node.wait_ready()
        yield node
    finally:
        await node.stop()


def stand_in(node_id: str, port: int, tmp_path: Path, seconds: float) -> ServerProcess:
    """A launcher for ``node_id`` on ``port`` whose process lives ``seconds`` and serves nothing.

    wait_ready then meets only the holder's answers while its own process is alive, without
    depending on how fast a real node fails to bind.
    """
    process = ServerProcess(node_id, tmp_path / f"stand-in-{node_id}", port)
    process.process = subprocess.Popen(
        [sys.executable, "-c", f"import time; time.sleep({seconds})"], stdin=subprocess.DEVNULL
    )
    return process


@pytest.mark.parametrize("node_id", ["A", "B"])
async def test_a_port_answered_by_another_process_is_not_ready(
    holder: ServerProcess, tmp_path: Path, node_id: str
) -> None:
    # Same node id ("A"): only the pid tells the holder apart. Another id ("B"): /health does.
    waiting = stand_in(node_id, holder.port, tmp_path, seconds=60)
    try:
        with pytest.raises(RuntimeError) as raised:
            await waiting.wait_ready(NOT_READY_TIMEOUT_S)
        assert waiting.running()
    finally:
        await waiting.stop()

    first_line = str(raised.value).splitlines()[0]
    assert first_line == (
        f"port {holder.port} is answered by another process (node A, pid {holder.pid}), "
        f"not by node {node_id} (pid {waiting.pid}), after {NOT_READY_TIMEOUT_S} s:"
    )
    assert holder.running()


async def test_a_process_that_exits_while_another_answers_its_port_says_both(
    holder: ServerProcess, tmp_path: Path
) -> None:
    waiting = stand_in("A", holder.port, tmp_path, seconds=0.5)
    try:
        with pytest.raises(RuntimeError) as raised:
            await waiting.wait_ready(START_TIMEOUT_S)
    finally:
        await waiting.stop()

    first_line = str(raised.value).splitlines()[0]
    assert first_line == (
        f"node A exited early (port {holder.port} is answered by another process: "
        f"node A, pid {holder.pid}):"
    )


async def test_a_second_serve_on_a_taken_port_fails_with_its_log(
    holder: ServerProcess, tmp_path: Path
) -> None:
    second = ServerProcess("A", tmp_path / "second", holder.port)
    second.start()
    try:
        with pytest.raises(RuntimeError) as raised:
            await second.wait_ready(START_TIMEOUT_S)
    finally:
        await second.stop()

    message = str(raised.value)
    assert message.startswith("node A exited early"), message
    assert "address already in use" in message
    assert holder.running()


async def test_a_node_that_wants_a_token_is_ready_with_it_and_without_it(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(32)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    node = ServerProcess(
        "A", tmp_path / "A", free_port(), extra_args=["--token-file", str(token_file)], token=token
    )
    node.start()
    try:
        await node.wait_ready()  # the token on /status: node id and pid are checked
        without = ServerProcess("A", node.data_dir, node.port, process=node.process)
        await without.wait_ready()  # /status answers 401: the node id alone is checked
        wrong = ServerProcess("A", node.data_dir, node.port, process=node.process, token="x" * 32)
        with pytest.raises(RuntimeError) as raised:
            await wrong.wait_ready(NOT_READY_TIMEOUT_S)
    finally:
        await node.stop()

    assert str(raised.value).splitlines()[0] == (
        f"port {node.port} is answered by another process (node A, pid unknown: /status "
        f"refused the request (401)), not by node A (pid {node.pid}), after "
        f"{NOT_READY_TIMEOUT_S} s:"
    )
