"""The opt-in ``restore`` and ``churn`` kinds without processes: schedules, checks, CLI, report."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vvstore.harness.checker import History, check_faults
from vvstore.harness.faults.cli import main
from vvstore.harness.faults.nemesis import IncarnationCheck
from vvstore.harness.faults.run import (
    Checkpoint,
    RunOptions,
    RunResult,
    _judge,
    churn_run,
    report_text,
    restore_cycles,
)
from vvstore.harness.faults.schedule import (
    DEFAULT_KINDS,
    EXCLUSIVE_KINDS,
    FAULT_KINDS,
    LINK_KINDS,
    MAX_CHURN_CYCLES,
    OPT_IN_KINDS,
    Fault,
    Schedule,
    ScheduleOptions,
    generate,
    short_tier_options,
)

ALL_KINDS = tuple(FAULT_KINDS)

# The short tier's seeded schedules as docs/faults.md lists them: adding kinds to the menu
# must not change what a seed draws by default.
DOCUMENTED_SHORT_TIER = {
    1: {"bridge": 1, "flap": 1, "isolate": 1, "one_way": 1, "swallow": 1},
    2: {"isolate": 1, "restore_stale": 1, "swallow": 1, "wipe": 1},
    5: {"bridge": 1, "long_partition": 1, "one_way": 1, "pause": 1, "split": 2},
    9: {"bridge": 2, "one_way": 1, "wipe": 2},
    10: {"flap": 1, "one_way": 1, "pause": 1, "restore_stale": 1, "split": 1, "swallow": 1},
}


def test_restore_and_churn_are_on_the_menu_but_opt_in() -> None:
    assert {"restore", "churn"} == OPT_IN_KINDS - set(LINK_KINDS)
    assert set(FAULT_KINDS) >= OPT_IN_KINDS
    assert {"restore", "churn"} <= EXCLUSIVE_KINDS  # both need the whole cluster quiet
    assert set(DEFAULT_KINDS) == set(FAULT_KINDS) - OPT_IN_KINDS
    assert ScheduleOptions().kinds == DEFAULT_KINDS
    for seed, counts in DOCUMENTED_SHORT_TIER.items():
        assert dict(generate(seed, short_tier_options()).counts()) == counts, seed


def test_asked_for_they_are_drawn_and_each_churn_has_its_cycles() -> None:
    options = replace(short_tier_options(60.0), kinds=ALL_KINDS)
    counts: Counter[str] = Counter()
    for seed in range(20):
        for fault in generate(seed, options).faults:
            counts[fault.kind] += 1
            if fault.kind == "churn":
                low, high = options.churn_cycles
                assert low <= fault.cycles <= high
                assert options.down[0] <= fault.duration <= options.down[1]
            else:
                assert fault.cycles == 0
            if fault.kind == "restore":
                assert options.stale_age[0] <= fault.duration <= options.stale_age[1]
    assert counts["restore"] > 0 and counts["churn"] > 0


@given(st.integers(0, 2**32), st.floats(5.0, 120.0))
def test_with_every_kind_faults_fit_and_one_lane_never_overlaps(seed: int, duration: float) -> None:
    options = replace(short_tier_options(duration), kinds=ALL_KINDS)
    schedule = generate(seed, options)
    last_end: dict[str, float] = {}
    for fault in schedule.faults:
        assert fault.at + fault.extent <= options.duration + 1e-9
        for lane in fault.lanes:
            assert fault.at >= last_end.get(lane, 0.0), (lane, fault)
            last_end[lane] = fault.at + fault.extent
        if fault.kind in ("restore", "churn"):
            assert fault.lanes == ("network", "process")


def test_a_churn_lasts_down_and_up_for_each_cycle() -> None:
    churn = Fault(2.0, "churn", 0.5, ("B",), cycles=3)
    assert churn.extent == 3.0
    assert Fault(2.0, "restore", 1.5, ("B",)).extent == 1.5
    assert churn.text() == (
        "churn B: 3 x (converge, stop, wipe, down 0.5 s, restart as a new actor, serve 0.5 s)"
    )
    assert "restore the backup in place (same inode)" in Fault(1.0, "restore", 2.0, ("A",)).text()


def test_schedules_with_both_round_trip_and_old_documents_still_load() -> None:
    options = replace(short_tier_options(30.0), kinds=ALL_KINDS, churn_cycles=(1, 4))
    schedule = next(
        s for s in (generate(seed, options) for seed in range(50)) if {"churn"} <= set(s.counts())
    )
    again = Schedule.from_json(schedule.to_json())
    assert again == schedule
    assert again.options.churn_cycles == (1, 4)
    # Documents written before churns existed: no "cycles" on faults, no "churn_cycles".
    old = schedule.to_dict()
    del old["options"]["churn_cycles"]
    old["faults"] = [f for f in old["faults"] if f["kind"] != "churn"]
    loaded = Schedule.from_dict(old)
    assert loaded.options.churn_cycles == ScheduleOptions().churn_cycles
    assert all(f.cycles == 0 for f in loaded.faults)


def test_the_presets_restore_round_the_nodes_and_churn_one_node() -> None:
    options, schedule = restore_cycles(2)
    assert [(f.kind, f.victim) for f in schedule.faults] == [("restore", "B"), ("restore", "C")]
    assert all(f.at + f.extent <= schedule.options.duration for f in schedule.faults)
    assert options.durability == "mixed"
    options, schedule = churn_run(3)
    (churn,) = schedule.faults
    assert (churn.kind, churn.victim, churn.cycles) == ("churn", "B", 3)
    assert churn.at + churn.extent <= schedule.options.duration


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Fault(1.0, "churn", 1.0, ("A",)), "a churn needs 1 to"),
        (lambda: Fault(1.0, "churn", 1.0, ("A",), cycles=MAX_CHURN_CYCLES + 1), "a churn needs"),
        (lambda: Fault(1.0, "kill", 1.0, ("A",), cycles=2), "only a churn has cycles"),
        (lambda: ScheduleOptions(churn_cycles=(0, 2)), "churn_cycles"),
        (lambda: ScheduleOptions(churn_cycles=(3, 2)), "churn_cycles"),
        (lambda: ScheduleOptions(churn_cycles=(1.5, 2)), "churn_cycles"),  # type: ignore[arg-type]
    ],
)
def test_bad_churns_are_refused(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def _check(kind: str, after: str, backup_seq: int, peers_seq: int) -> IncarnationCheck:
    reason = None if after == "B~1" else "another node holds a seq of our actor beyond our counter"
    return IncarnationCheck("B", kind, 3, 0, 7.5, "B~1", after, reason, backup_seq, peers_seq)


def test_an_incarnation_check_requires_a_new_actor_when_peers_hold_more() -> None:
    detected = _check("restore", "B~2", backup_seq=10, peers_seq=25)
    kept = _check("restore", "B~1", backup_seq=10, peers_seq=25)
    nothing_to_find = _check("restore", "B~1", backup_seq=25, peers_seq=25)
    churn_kept = _check("churn", "B~1", backup_seq=0, peers_seq=0)
    assert detected.ok and detected.required and detected.new_actor
    assert not kept.ok and "KEPT ITS ACTOR B~1" in kept.describe()
    assert nothing_to_find.ok and not nothing_to_find.required
    assert not churn_kept.ok  # a wiped node never resumes an actor
    assert detected.describe() == (
        "restore of B in place at t=7.5 s: peers held B~1 up to seq 25, the copy at most up to "
        "seq 10; new actor B~2 (another node holds a seq of our actor beyond our counter): ok"
    )
    assert detected.to_dict()["required"] is True


def _result() -> RunResult:
    options, schedule = churn_run(2)
    history = History()
    op = history.invoke(0, "add", "k000", 2, "A", 0.1, idempotency_key="i0")
    history.complete(op, "ok", 0.2)
    result = RunResult(options, schedule, history=history)
    result.final_state = {node: {"k000": 2} for node in "ABC"}
    result.final_vectors = {
        node: {"A~a": 1, "B~b1": 3, "B~b2": 4, "B~b3": 1, "C~c": 2} for node in "ABC"
    }
    result.verdict = check_faults(history.ops, result.final_state)
    result.incarnation_checks = [
        IncarnationCheck("B", "churn", 0, 1, 3.0, "B~b1", "B~b2", "new database", 0, 3),
        IncarnationCheck("B", "churn", 0, 2, 5.0, "B~b2", "B~b3", "new database", 0, 4),
    ]
    result.checkpoints = [Checkpoint(9.0, 0, 0, 0.4, 0.25, 0.65, True, "VALID")]
    result.integrity = {node: "ok" for node in "ABC"}
    result.executed.update({"churn": 1})
    result.exit_code = 0
    return result


def test_the_report_gives_incarnations_and_vector_sizes() -> None:
    result = _result()
    figures = result.figures()
    assert figures["incarnations_checked"] == figures["incarnations_ok"] == 2
    assert figures["new_actors"] == 2
    assert figures["incarnation_reasons"] == {"new database": 2}
    assert figures["vector_actors"] == {"A": 5, "B": 5, "C": 5}
    assert figures["actors_per_node"] == {"A": 1, "B": 3, "C": 1}
    assert "2/2 restores and churn restarts took the actor they had to (2 new actors" in (
        result.closing_line()
    )
    report = report_text(result)
    for needle in (
        "restores in place and churn restarts checked: 2 (churn 2); 2 took the actor they had "
        "to, 2 new actors; reasons: 'new database' x2",
        "actors in each node's converged vector: A 5, B 5, C 5; each node's own actors in it: "
        "A 1, B 3, C 1",
    ):
        assert needle in report, needle
    document = result.to_dict()
    assert [c["cycle"] for c in document["incarnation_checks"]] == [1, 2]
    assert document["final_vectors"]["A"]["B~b2"] == 4


def test_a_failed_incarnation_check_fails_the_run() -> None:
    result = _result()
    result.incarnation_checks.append(
        IncarnationCheck("C", "restore", 1, 0, 8.0, "C~c", "C~c", None, 10, 20)
    )
    _judge(result, result.options)
    assert result.exit_code == 1
    assert result.reason is not None and "KEPT ITS ACTOR C~c" in result.reason


def test_the_cli_draws_them_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "--seed",
                "10",
                "--faults",
                "restore,churn,kill,pause,split,swallow,flap",
                "--schedule-only",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "restore the backup in place" in out and "churn " in out
    assert main(["--seed", "10", "--schedule-only"]) == 0
    out = capsys.readouterr().out
    assert "in place" not in out and "churn" not in out
    assert main(["--churn", "4", "--schedule-only"]) == 0
    assert "churn B: 4 x" in capsys.readouterr().out
    assert main(["--restore-cycles", "3", "--schedule-only"]) == 0
    assert capsys.readouterr().out.count("restore the backup in place") == 3
    assert main(["--list-faults"]) == 0
    assert "every kind but churn, lossy, restore, slow and slow_one_way" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--churn", "0"], ["--churn", "11"], ["--restore-cycles", "0"]])
def test_the_cli_refuses_counts_out_of_bounds(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--schedule-only"])
    assert exit_info.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_run_options_round_trip_with_churn_cycles() -> None:
    options = RunOptions(schedule=replace(short_tier_options(), churn_cycles=(3, 5)))
    assert RunOptions.from_dict(options.to_dict()) == options
