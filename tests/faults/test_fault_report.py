"""Run results without processes: checkpoint windows, figures, the closing line, the report."""

from __future__ import annotations

import json

from vvstore.harness.checker import History, check_faults
from vvstore.harness.faults.nemesis import KillCheck
from vvstore.harness.faults.run import (
    Checkpoint,
    RunOptions,
    RunResult,
    checkpoint_windows,
    report_text,
    soak_run_options,
)
from vvstore.harness.faults.schedule import generate, soak_options


def test_checkpoint_windows_cover_the_schedule_once() -> None:
    schedule = generate(5, soak_options(5))
    windows = checkpoint_windows(schedule, 120.0)

    assert [(low, high) for low, high, _ in windows] == [(0, 120), (120, 240), (240, 300)]
    moved = [(fault.at + low, fault.kind) for low, _, window in windows for fault in window.faults]
    assert moved == [(fault.at, fault.kind) for fault in schedule.faults]
    assert all(window.options.duration == high - low for low, high, window in windows)
    assert checkpoint_windows(schedule, 0.0)[0][2] == schedule


def _result() -> RunResult:
    options = RunOptions(seed=3)
    history = History()
    for n, node in enumerate("ABC"):
        op = history.invoke(n, "add", "k000", 2, node, float(n), idempotency_key=f"i{n}")
        history.complete(op, "ok", n + 0.5)
    # A probe: acknowledged by A, replayed on B (which knew it).
    for process, node in enumerate("AB", start=3):
        op = history.invoke(process, "add", "probe-p", 4, node, 3.0, idempotency_key="p")
        history.complete(op, "ok", 3.5)
    result = RunResult(options, generate(3, options.schedule), history=history)
    result.probes = 1
    result.probe_replays.update({"replayed": 1})
    result.final_state = {node: {"k000": 6, "probe-p": 4} for node in "ABC"}
    result.verdict = check_faults(history.ops, result.final_state)
    result.kill_checks = [KillCheck("B", "normal", 4.0, "B~1", "B~1", 10, 12)]
    result.checkpoints = [Checkpoint(9.0, 1, 0, 0.4, 0.25, 0.65, True, "VALID")]
    result.integrity = {node: "ok" for node in "ABC"}
    result.resources = {
        "A": {"start": {"pid": 1, "rss_kib": 40960, "fds": 14}, "end": None, "starts": 2}
    }
    result.executed.update({"kill": 1, "split": 2})
    result.exit_code = 0
    return result


def test_figures_and_closing_line_of_a_run() -> None:
    result = _result()
    figures = result.figures()

    assert (figures["increments"], figures["acknowledged"]) == (4, 4)
    assert (figures["lost"], figures["doubled"], figures["lost_to_wipe"]) == (0, 0, 0)
    assert (figures["verified_individually"], figures["probes"]) == (1, 1)
    assert (figures["individually_lost"], figures["individually_doubled"]) == (0, 0)
    assert figures["kills_by_durability"] == {"normal": 1}
    assert figures["longest_convergence_ms"] == 250.0
    line = result.closing_line()
    assert line.startswith("VERDICT ok: seed 3: 4 increments acknowledged of 4")
    assert (
        "1 idempotency key verified one by one (0 lost, 0 doubled); probes replayed on another "
        "node: 1 (replayed 1); "
    ) in line
    assert "3 faults (kill 1, split 2)" in line
    assert "1/1 kills kept every acknowledged write" in line
    assert "converged 250 ms after the final phase (within the 5 s goal)" in line
    json.dumps(result.to_dict())  # the run document is JSON


def test_the_report_names_every_figure_the_issue_asks_for() -> None:
    report = report_text(_result())
    for needle in (
        "4 acknowledged of 4",
        "idempotency keys verified one by one: 1 of 4 acknowledged; 0 lost, 0 doubled; "
        "probes: 1 sent, each replayed on another node, answered: replayed 1",
        "faults injected: 3 (kill 1, split 2)",
        "kills checked: 1 (normal 1); 1 kept every acknowledged write",
        "lost 0, doubled 0, lost_to_wipe 0",
        "longest 250 ms",
        "PRAGMA integrity_check: A ok, B ok, C ok",
        "A: RSS 40.0 MiB -> ? (max ?), fds 14 -> ? (max ?), 2 starts",
        "problems: none",
    ):
        assert needle in report, needle


def test_the_soak_preset_matches_the_issue() -> None:
    options = soak_run_options(20)
    assert options.schedule.duration == 1200
    assert options.schedule.gap == (5.0, 10.0)
    assert options.schedule.long_partition == (10.0, 30.0)
    assert options.durability == "mixed"
    assert options.workload.timeout < options.schedule.pause[0]
