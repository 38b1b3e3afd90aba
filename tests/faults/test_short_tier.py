"""The CI short tier: seeded fault schedules and kill cycles against real processes.

Each case starts three ``vvstore serve`` processes behind the fault proxy, runs one schedule
under concurrent retried increments, and requires the whole verdict: every node agrees, every
key equals the sum over its acknowledged idempotency keys (0 lost, 0 doubled), no read broke
its bounds, every kill kept every acknowledged write, ``PRAGMA integrity_check`` is ok and the
nodes converged within the 30 s CI limit. A failing case writes its run document (history,
schedule, verdict) and names the command that replays it.

Schedules in ``regressions/`` are shrunk schedules that once caught a bug: each runs as is.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from vvstore.harness.faults.run import RunOptions, RunResult, load_replay, run_faults, short_tier
from vvstore.harness.faults.schedule import Schedule

pytestmark = pytest.mark.slow

REGRESSIONS = sorted((Path(__file__).parent / "regressions").glob("*.json"))


def _case_id(run: tuple[RunOptions, Schedule]) -> str:
    options, schedule = run
    kinds = set(schedule.counts())
    return f"kill-cycles-{len(schedule.faults)}" if kinds == {"kill"} else f"seed-{options.seed}"


def _failure(result: RunResult, document: Path, lines: list[str]) -> str:
    return "\n".join(
        [
            result.closing_line(),
            *(f"problem: {p}" for p in result.problems),
            *(f"error: {e}" for e in (result.verdict.errors[:10] if result.verdict else [])),
            f"run document: {document}",
            f"replay: python -m vvstore.harness.faults --replay {document}",
            *lines,
            *result.log_tails.values(),
        ]
    )


async def _run(options: RunOptions, schedule: Schedule, tmp_path: Path) -> RunResult:
    lines: list[str] = []
    result = await run_faults(replace(options, workdir=str(tmp_path)), schedule, out=lines.append)
    document = tmp_path / f"faults-seed{options.seed}.json"
    if not result.ok:
        result.write(document)
    assert result.ok, _failure(result, document, lines)
    verdict = result.verdict
    assert verdict is not None and verdict.valid and verdict.final.nodes_agree
    assert (verdict.lost, verdict.doubled) == (0, 0)
    assert set(result.integrity.values()) == {"ok"}
    assert result.longest_convergence_s is not None
    assert result.longest_convergence_s < options.converge_limit
    assert all(check.ok for check in result.kill_checks)
    return result


@pytest.mark.parametrize("run", short_tier(), ids=_case_id)
async def test_short_tier(run: tuple[RunOptions, Schedule], tmp_path: Path) -> None:
    options, schedule = run
    result = await _run(options, schedule, tmp_path)

    figures = result.figures()
    assert figures["acknowledged"] >= 200  # a few hundred increments per schedule
    assert figures["reads_judged"] > 0
    assert sum(result.executed.values()) + sum(result.skipped.values()) == len(schedule.faults)
    if set(schedule.counts()) == {"kill"}:
        # Every kill was checked, on full and on normal durability nodes.
        assert len(result.kill_checks) == len(schedule.faults) == 5
        assert {check.durability for check in result.kill_checks} == {"full", "normal"}


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda path: path.stem)
async def test_regression(path: Path, tmp_path: Path) -> None:
    options, schedule = load_replay(json.loads(path.read_text()))
    await _run(options, schedule, tmp_path)
