"""The CI short tier: seeded fault schedules and kill cycles against real processes.

Each case starts three ``vvstore serve`` processes behind the fault proxy, runs one schedule
under concurrent retried increments, and requires the whole verdict: every node agrees, every
key equals the sum over its acknowledged idempotency keys (0 lost, 0 doubled), every probe (an
increment on a key of its own, replayed once on another node) was applied exactly once, no
read broke its bounds, every kill kept every acknowledged write, ``PRAGMA integrity_check`` is
ok and the nodes converged within the 30 s CI limit. A failing case writes its run document
(history, schedule, verdict) and names the command that replays it.

The last cases are the link runs: slow links (2 Mbit/s, 40 ms, both directions and one way)
and lossy ones (connections reset or stalled at random, seeded), under non-ASCII keys, some of
them four-byte characters at the key length limit.

Schedules in ``regressions/`` are shrunk schedules that once caught a bug: each runs as is.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from vvstore.codec import MAX_KEY_BYTES
from vvstore.harness.faults.run import RunOptions, RunResult, load_replay, run_faults, short_tier
from vvstore.harness.faults.schedule import LINK_KINDS, Schedule
from vvstore.harness.faults.workload import probe_key

pytestmark = pytest.mark.slow

REGRESSIONS = sorted((Path(__file__).parent / "regressions").glob("*.json"))


def _case_id(run: tuple[RunOptions, Schedule]) -> str:
    options, schedule = run
    kinds = set(schedule.counts())
    if kinds == {"kill"}:
        return f"kill-cycles-{len(schedule.faults)}"
    links = "-".join(sorted(kinds & set(LINK_KINDS)))
    return f"seed-{options.seed}" + (f"-{links}" if links else "")


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
    # A share of the increments were probes, each replayed once on another node and then
    # verified alone on its key: applied exactly once.
    figures = result.figures()
    assert figures["probes"] > 0 and sum(figures["probe_replays"].values()) == figures["probes"]
    assert figures["verified_individually"] >= figures["probes"]
    assert (figures["individually_lost"], figures["individually_doubled"]) == (0, 0)
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
    if options.workload.key_alphabet == "unicode":
        # Every non-ASCII key, those at the limit included, was written and converged, and so
        # was every probe's key of its own, non-ASCII too.
        keys = options.workload.key_names()
        assert max(len(key.encode("utf-8")) for key in keys) == MAX_KEY_BYTES
        probes = {
            probe_key(op.idempotency_key, "unicode")
            for op in result.history.ops
            if op.idempotency_key is not None
        } & {op.key for op in result.history.ops}
        assert probes and not any(key.isascii() for key in probes)
        for values in result.final_state.values():
            assert set(values) == set(keys) | probes
    if "lossy" in schedule.counts():
        losses = [e.detail for e in result.events if e.kind == "lossy" and e.what == "losses"]
        assert losses and any(not d.startswith("0 connections reset, 0 stalled") for d in losses)


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda path: path.stem)
async def test_regression(path: Path, tmp_path: Path) -> None:
    options, schedule = load_replay(json.loads(path.read_text()))
    await _run(options, schedule, tmp_path)
