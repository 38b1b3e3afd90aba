"""Real processes: the opt-in ``restore`` and ``churn`` nemeses under the short tier's workload.

- ``restore``: an online backup of a live node is copied back *in place* (same path, same
  inode) a second and a half later, after the cluster converged. The node cannot tell from its
  files; it resumes its old actor under the start-up fence and must switch to a new one,
  because its peers hold more of that actor than the backup does.
- ``churn``: one node is stopped, wiped and restarted with the same node id three times in a
  row, each time after the cluster converged. Every restart is a new actor.

Each run must hold the whole verdict exactly: 0 lost, 0 doubled and also 0 lost to wipes or
restores, because the nemesis lets the cluster converge (every client refused) before it
destroys anything, so every write the victim acknowledged is held by its peers. Each case
takes 12 to 20 s, about 3 s of it starting the processes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from vvstore.harness.faults.run import (
    SHORT_TIER_WORKLOAD,
    RunOptions,
    RunResult,
    churn_run,
    restore_cycles,
    run_faults,
)
from vvstore.harness.faults.schedule import Schedule, generate, short_tier_options

pytestmark = pytest.mark.slow

#: A seeded schedule that mixes both opt-in kinds with pauses, a split and a swallow
#: (``--seed 10 --faults restore,churn,kill,pause,split,swallow,flap``).
MIXED_SEED = 10
MIXED_KINDS = ("restore", "churn", "kill", "pause", "split", "swallow", "flap")


async def _run(options: RunOptions, schedule: Schedule, tmp_path: Path) -> RunResult:
    lines: list[str] = []
    result = await run_faults(replace(options, workdir=str(tmp_path)), schedule, out=lines.append)
    document = tmp_path / f"faults-seed{options.seed}.json"
    if not result.ok:
        result.write(document)
    details = "\n".join(
        [
            result.closing_line(),
            *(f"problem: {p}" for p in result.problems),
            *(f"error: {e}" for e in (result.verdict.errors[:10] if result.verdict else [])),
            *(e.describe() for e in result.events),
            f"run document: {document}",
            *lines,
            *result.log_tails.values(),
        ]
    )
    assert result.ok, details
    verdict = result.verdict
    assert verdict is not None and verdict.valid and verdict.final.nodes_agree, details
    # Exact: the convergence wait leaves nothing that only the victim held.
    assert (verdict.lost, verdict.doubled, verdict.lost_to_wipe) == (0, 0, 0), details
    assert set(result.integrity.values()) == {"ok"}
    assert result.longest_convergence_s is not None
    assert result.longest_convergence_s < options.converge_limit
    assert all(check.ok for check in result.incarnation_checks), details
    assert not result.skipped, details
    return result


def _vectors_agree_and_hold_at_most_every_actor(result: RunResult) -> None:
    """The converged vectors are one vector, with at most the three first actors plus every
    new one (an incarnation that never wrote is in no vector)."""
    figures = result.figures()
    sizes = set(figures["vector_actors"].values())
    assert len(sizes) == 1, figures["vector_actors"]
    assert 3 <= sizes.pop() <= 3 + figures["new_actors"], figures["vector_actors"]
    assert sum(figures["actors_per_node"].values()) == figures["vector_actors"]["A"]


async def test_a_backup_restored_in_place_is_detected_and_loses_nothing(tmp_path: Path) -> None:
    options, schedule = restore_cycles(2)
    result = await _run(options, schedule, tmp_path)

    checks = result.incarnation_checks
    assert [(c.kind, c.node) for c in checks] == [("restore", "B"), ("restore", "C")]
    for check in checks:
        # Writes went out between the backup and the stop, so the peers held more of the old
        # actor than the restored file: the fence must have found it.
        assert check.peers_seq > check.backup_seq, check
        assert check.required and check.new_actor, check
        assert check.reason is not None and "of our actor beyond our" in check.reason, check
    losses = [(loss.node, loss.kind) for loss in result.losses]
    assert losses == [("B", "restore"), ("C", "restore")]
    figures = result.figures()
    assert figures["acknowledged"] >= 200
    assert figures["new_actors"] == 2
    _vectors_agree_and_hold_at_most_every_actor(result)


async def test_churn_restarts_a_wiped_node_as_a_new_actor_each_time(tmp_path: Path) -> None:
    options, schedule = churn_run(3)
    result = await _run(options, schedule, tmp_path)

    checks = result.incarnation_checks
    assert [(c.node, c.cycle) for c in checks] == [("B", 1), ("B", 2), ("B", 3)]
    assert all(c.reason == "new database" for c in checks)
    actors = [checks[0].actor_before, *(c.actor_after for c in checks)]
    assert len(set(actors)) == 4, actors  # never the same actor twice
    assert [c.actor_before for c in checks[1:]] == [c.actor_after for c in checks[:-1]]
    assert [loss.kind for loss in result.losses] == ["wipe"] * 3
    figures = result.figures()
    assert figures["acknowledged"] >= 200
    assert figures["new_actors"] == 3
    _vectors_agree_and_hold_at_most_every_actor(result)


async def test_a_seeded_schedule_mixes_restore_and_churn_with_other_faults(
    tmp_path: Path,
) -> None:
    schedule_options = replace(short_tier_options(), kinds=MIXED_KINDS)
    options = RunOptions(seed=MIXED_SEED, schedule=schedule_options, workload=SHORT_TIER_WORKLOAD)
    schedule = generate(MIXED_SEED, schedule_options)
    counts = schedule.counts()
    assert counts["restore"] == 1 and counts["churn"] == 1 and len(counts) >= 4, counts

    result = await _run(options, schedule, tmp_path)
    churn = next(f for f in schedule.faults if f.kind == "churn")
    kinds = [c.kind for c in result.incarnation_checks]
    assert kinds == ["restore"] + ["churn"] * churn.cycles
    assert sum(result.executed.values()) == len(schedule.faults)
