"""The partition-and-heal demo on real processes: its verdict, its JSON, its failures.

The slow tests run the demo at a small size (real ``vvstore serve`` processes behind the fault
proxy) and assert what the demo claims to show: the nodes agree while healthy, the two sides'
vectors are concurrent and their values differ during the partition, every node agrees after
the heal, and the checker's verdict holds. Every test also asserts that no node process
outlives the run, and that the demo never writes to a node it did not start. The fast tests
cover flag handling and busy ports, refused before anything starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from vvstore import cli
from vvstore.client import Client
from vvstore.harness.checker import History, check
from vvstore.harness.demo import (
    DemoOptions,
    DemoResult,
    NodeInfo,
    Report,
    add_arguments,
    main,
    options_from_args,
    run_demo,
)
from vvstore.harness.launcher import ServerProcess, free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "demo" / "partition_heal.py"
SCRIPT_TIMEOUT_S = 60.0

SMALL = DemoOptions(keys=3, clients=4, increments=60, partition_seconds=1.0, seed=11)
SMALL_FLAGS = ["--keys", "3", "--clients", "4", "--increments", "60", "--partition-seconds", "1"]

TOP_LEVEL = {
    "format",
    "version",
    "ok",
    "exit_code",
    "reason",
    "log_tail",
    "options",
    "nodes",
    "phases",
    "history",
    "verdict",
    "summary",
    "figures",
    "proxy",
    "workdir",
    "closing_line",
}


def reaped(pid: int | None) -> bool:
    """True when ``pid`` (a child we started) has exited and been reaped."""
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def assert_no_node_left(pids: Sequence[int | None]) -> None:
    assert pids, "the run reported no node processes"
    alive = [pid for pid in pids if not reaped(pid)]
    assert not alive, f"node processes still running: {alive}"


def explain(result: DemoResult) -> str:
    return f"{result.closing_line()}\n{result.log_tail or ''}"


@contextlib.contextmanager
def occupied_ports(count: int, busy: Sequence[int]) -> Iterator[int]:
    """A base port with ``count - 1`` ports after it, where ``base + i`` listens for each ``i``
    in ``busy`` and the other ports of the range were free a moment ago."""
    while True:
        with contextlib.ExitStack() as stack:
            socks = [
                stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                for _ in range(count)
            ]
            socks[0].bind(("127.0.0.1", 0))
            base = int(socks[0].getsockname()[1])
            try:
                for i, sock in enumerate(socks[1:], start=1):
                    sock.bind(("127.0.0.1", base + i))
            except (OSError, OverflowError):  # a neighbour is taken, or past 65535
                continue
            for i, sock in enumerate(socks):
                if i in busy:
                    sock.listen()
                else:
                    sock.close()
            yield base
            return


def free_port_with_room(count: int) -> int:
    """A free port low enough that ``count - 1`` ports follow it (the demo's --port range)."""
    while True:
        port = free_port()
        if port + count - 1 <= 65535:
            return port


# --- the demo on real processes ---------------------------------------------------------------


@pytest.mark.slow
async def test_a_small_demo_shows_divergence_then_convergence_and_its_verdict_holds() -> None:
    result = await run_demo(SMALL)

    assert result.exit_code == 0, explain(result)
    assert result.reason is None
    assert_no_node_left([node.pid for node in result.nodes])
    assert result.workdir is None  # removed, not kept
    assert [phase.name for phase in result.phases] == ["healthy", "partition", "heal"]
    healthy, partition, heal = result.phases

    # Healthy: every node reads the same values and the same vector.
    assert healthy.converged
    assert len({json.dumps(s.to_dict()["version"]) for s in healthy.states}) == 1
    assert len({json.dumps(s.values(), sort_keys=True) for s in healthy.states}) == 1

    # Partition {A} | {B, C}: each side agrees within itself, the sides' vectors are
    # concurrent and at least one key reads differently across the cut.
    assert partition.groups == [["A"], ["B", "C"]]
    a, b, c = partition.states
    assert partition.converged, "B and C did not agree with each other during the partition"
    assert b.agrees_with(c)
    assert a.vector().concurrent_with(b.vector())
    assert a.values() != b.values()
    assert partition.dropped_bytes > 0, "the proxy blackholed no node traffic"
    assert {"a": "A", "b": "B", "ordering": "concurrent"} in partition.relations()

    # Heal: every node holds the merge of both sides.
    assert heal.converged and heal.convergence_ms is not None
    merged = a.vector().merge(b.vector())
    for state in heal.states:
        assert state.vector().descends(merged)
        assert state.agrees_with(heal.states[0])

    # The verdict: nodes agree and every key equals its distinct acknowledged keys, exactly.
    verdict = result.verdict
    assert verdict is not None and verdict.valid, verdict
    assert verdict.nodes_agree and verdict.exact
    assert verdict.nodes == ("A", "B", "C")
    for key, kv in verdict.per_key.items():
        assert kv.lower <= heal.states[0].values()[key] <= kv.upper
    adds = [op for op in result.history.ops if op.type == "invoke"]
    assert len(adds) == SMALL.increments
    assert all(op.value is not None and op.value > 0 for op in adds)
    keys = {op.idempotency_key for op in adds}
    assert None not in keys and len(keys) == len(adds), "every add needs its own key"
    figures = result.figures()
    assert figures["acknowledged"] + figures["indefinite"] + figures["failed"] == 60
    assert result.closing_line().startswith("VERDICT ok: 3 nodes agree on 3 keys; ")


@pytest.mark.slow
def test_json_output_is_one_document_that_can_be_judged_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["--json", "--nodes", "2", "--seed", "3", *SMALL_FLAGS])
    out = capsys.readouterr().out

    doc: dict[str, Any] = json.loads(out)  # all of stdout is one JSON document
    assert code == 0, doc["closing_line"]
    assert set(doc) == TOP_LEVEL
    assert (doc["format"], doc["version"], doc["ok"], doc["exit_code"]) == (
        "vvstore-demo",
        1,
        True,
        0,
    )
    assert doc["options"]["nodes"] == 2 and doc["options"]["seed"] == 3
    assert [phase["name"] for phase in doc["phases"]] == ["healthy", "partition", "heal"]
    assert doc["phases"][1]["groups"] == [["A"], ["B"]]
    assert doc["verdict"]["valid"] is True
    assert doc["summary"].startswith("VALID (exact): 2 nodes agree on 3 keys")
    assert_no_node_left([node["pid"] for node in doc["nodes"]])

    # The document carries everything needed to judge the run again.
    history = History.from_json(json.dumps(doc["history"]))
    final = {
        node["node"]: {key: c["value"] for key, c in node["counters"].items()}
        for node in doc["phases"][-1]["nodes"]
    }
    assert check(history.ops, final, exact=True).to_dict() == doc["verdict"]


@pytest.mark.slow
def test_the_script_runs_the_same_demo() -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", "--seed", "5", *SMALL_FLAGS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    doc = json.loads(completed.stdout)
    assert doc["ok"] is True and doc["verdict"]["valid"] is True
    assert doc["closing_line"].startswith("VERDICT ok: 3 nodes agree")
    assert_no_node_left([node["pid"] for node in doc["nodes"]])


@pytest.mark.slow
async def test_a_port_answered_by_another_node_is_refused_and_that_node_gets_no_demo_key(
    tmp_path: Path,
) -> None:
    # Regression: the demo used to take this node's /health for its own node A's and write
    # its keys into it.
    foreign = ServerProcess("A", tmp_path / "foreign", free_port_with_room(SMALL.nodes))
    foreign.start()
    try:
        await foreign.wait_ready()
        result = await run_demo(replace(SMALL, port=foreign.port))
        async with Client(foreign.url) as client:
            counters = (await client.list()).counters
        assert foreign.running(), f"the demo stopped a node it did not start:\n{foreign.log()}"
    finally:
        await foreign.stop()

    assert counters == (), f"the demo wrote into a node it did not start: {explain(result)}"
    assert result.exit_code == 2, explain(result)
    assert result.reason is not None
    assert f"{foreign.port} (node A)" in result.reason, result.reason
    assert "--port 0" in result.reason
    assert result.nodes == [] and result.phases == [] and result.verdict is None
    assert result.closing_line() == f"DEMO COULD NOT RUN: {result.reason}"


class KillNodeB(Report):
    """Kills node B (SIGKILL, by the pid the demo reported) as the partition begins."""

    def __init__(self) -> None:
        self.nodes: Sequence[NodeInfo] = ()

    def nodes_ready(self, nodes: Sequence[NodeInfo]) -> None:
        self.nodes = nodes

    def phase_started(self, number: int, title: str) -> None:
        if number == 2:
            pid = self.nodes[1].pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
async def test_a_node_that_dies_mid_run_exits_2_and_the_others_are_stopped() -> None:
    result = await run_demo(SMALL, KillNodeB())

    assert result.exit_code == 2, explain(result)
    assert result.reason == "node B exited unexpectedly (status -9)"
    assert result.log_tail is not None and "node B's log" in result.log_tail
    assert [phase.name for phase in result.phases] == ["healthy"]
    assert result.verdict is None
    assert [node.exit_status for node in result.nodes] == [0, -signal.SIGKILL, 0]
    assert_no_node_left([node.pid for node in result.nodes])
    assert result.closing_line() == "DEMO COULD NOT RUN: node B exited unexpectedly (status -9)"


# --- flags and busy ports (nothing is started) ------------------------------------------------


def test_vvstore_demo_is_a_subcommand_with_the_demo_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["demo", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--nodes", "--keys", "--clients", "--increments", "--partition-seconds"):
        assert flag in out
    for flag in ("--seed", "--port", "--json", "--keep"):
        assert flag in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--clients", "10", "--increments", "5"], "increments must be 2 * clients (20)"),
        (["--clients", "1"], "clients must be 2 to 100"),
        (["--partition-seconds", "0"], "partition seconds must be 0.1 to 600"),
        (["--port", "80"], "port must be 0 (free ports) or 1024"),
    ],
)
def test_flags_that_do_not_fit_exit_2_before_anything_starts(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_busy_ports_are_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with occupied_ports(3, busy=[0, 2]) as port:
        code = main(["--json", "--port", str(port), *SMALL_FLAGS])
    captured = capsys.readouterr()

    assert code == 2
    doc = json.loads(captured.out)  # still one JSON document
    assert set(doc) == TOP_LEVEL
    assert doc["ok"] is False and doc["exit_code"] == 2
    assert doc["reason"] == (
        f"ports {port} (node A), {port + 2} (node C) are already in use on 127.0.0.1, so no "
        "node was started; use --port 0 for free ports, or another --port"
    )
    assert doc["nodes"] == [] and doc["phases"] == [] and doc["verdict"] is None
    assert doc["log_tail"] is None
    assert doc["closing_line"] == f"DEMO COULD NOT RUN: {doc['reason']}"
    assert captured.err == f"vvstore demo: could not run: {doc['reason']}\n"


def test_one_busy_port_is_named_in_the_text_report(capsys: pytest.CaptureFixture[str]) -> None:
    with occupied_ports(2, busy=[1]) as port:
        code = main(["--nodes", "2", "--port", str(port), *SMALL_FLAGS])
    captured = capsys.readouterr()

    assert code == 2
    assert captured.out.startswith("vvstore demo: 2 nodes,")
    assert captured.err == (
        f"vvstore demo: could not run: port {port + 1} (node B) is already in use on "
        "127.0.0.1, so no node was started; use --port 0 for free ports, or another --port\n"
    )


def test_a_node_count_out_of_range_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["demo", "--nodes", "6"])
    assert exited.value.code == 2
    assert "--nodes" in capsys.readouterr().err


def test_the_verdict_is_exact_unless_bounds_are_asked_for() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert options_from_args(parser.parse_args([])).exact
    assert not options_from_args(parser.parse_args(["--bounds"])).exact
