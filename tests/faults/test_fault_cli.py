"""``python -m vvstore.harness.faults`` without processes: menu, schedules, recheck, bad flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vvstore.harness.checker import History
from vvstore.harness.faults.cli import main
from vvstore.harness.faults.run import (
    RunOptions,
    RunResult,
    load_replay,
    recheck,
    regression_document,
)
from vvstore.harness.faults.schedule import FAULT_KINDS, generate


def test_list_faults_prints_the_menu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-faults"]) == 0
    out = capsys.readouterr().out
    assert all(kind in out for kind in FAULT_KINDS)


def test_schedule_only_prints_the_seed_and_the_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "4", "--schedule-only"]) == 0
    out = capsys.readouterr().out.splitlines()
    options = RunOptions(seed=4)
    assert out[0] == f"seed 4: {len(generate(4, options.schedule).faults)} faults"
    assert out[1:] == ["  " + line for line in generate(4, options.schedule).describe()]


def test_flags_shape_the_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--seed", "2", "--runs", "2", "--duration", "40", "--faults", "kill,pause", "split"]
    assert main([*argv, "--partition-max", "2", "--schedule-only"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("seed")][:1] == [out[0]]
    assert {line.split(":")[0] for line in out if line.startswith("seed")} == {"seed 2", "seed 3"}
    faults = [line for line in out if line.startswith("  t=")]
    assert faults
    assert all(("kill -9" in f) or ("SIGSTOP" in f) or ("split" in f) for f in faults)
    assert all(float(f.split(" for ")[1].split()[0]) <= 2.0 for f in faults if "split" in f)


def test_an_unknown_fault_kind_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--faults", "meteor", "--schedule-only"]) == 2
    assert "unknown fault kinds ['meteor']" in capsys.readouterr().err


def _document(value: int) -> dict[str, object]:
    options = RunOptions(seed=9)
    history = History()
    op = history.invoke(0, "add", "k000", 3, "A", 0.1, idempotency_key="s9-c0-0")
    history.complete(op, "ok", 0.2)
    result = RunResult(options, generate(9, options.schedule), history=history)
    result.final_state = {name: {"k000": value} for name in "ABC"}
    return result.to_dict()


def test_recheck_judges_a_stored_history_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(_document(3)))
    bad.write_text(json.dumps(_document(6)))

    assert main(["--recheck", str(good)]) == 0
    assert capsys.readouterr().out.startswith("VALID: 3 nodes agree on 1 key")
    assert main(["--recheck", str(bad)]) == 1
    assert "(3 doubled)" in capsys.readouterr().out
    assert recheck(json.loads(bad.read_text())).doubled == 3


def test_a_run_document_and_a_regression_file_replay_the_same_schedule() -> None:
    document = _document(3)
    options, schedule = load_replay(document)
    assert schedule == generate(9, RunOptions(seed=9).schedule)
    regression = regression_document(options, schedule.without(0), "a note")
    again_options, again = load_replay(json.loads(json.dumps(regression)))
    assert again_options == options
    assert again.faults == schedule.faults[1:]
    with pytest.raises(ValueError, match="not a vvstore fault run"):
        load_replay({"format": "vvstore-history"})


def test_a_probe_share_outside_zero_to_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--probe-share", "1.5", "--schedule-only"]) == 2
    assert "probe_share must be in [0, 1], got 1.5" in capsys.readouterr().err
