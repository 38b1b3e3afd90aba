"""The history checker judges converged values against what a history of adds allows."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vvstore.harness.checker import (
    History,
    NodeLoss,
    Op,
    check,
    check_faults,
    check_reads,
    summarize,
    summarize_faults,
    wipe_allowance,
)

Outcome = Literal["ok", "fail", "info"]


def _add(
    h: History,
    process: int,
    key: str,
    amount: int,
    outcome: Outcome | None,
    *,
    node: str = "A",
    ik: str | None = None,
) -> None:
    """Record one add; ``outcome`` None leaves it without a completion."""
    op = h.invoke(process, "add", key, amount, node, float(len(h.ops)), idempotency_key=ik)
    if outcome is not None:
        h.complete(op, outcome, float(len(h.ops)))


def _state(value: int, key: str = "k", nodes: str = "ABC") -> dict[str, dict[str, int]]:
    return {node: {key: value} for node in nodes}


def test_a_valid_history_passes() -> None:
    h = History()
    _add(h, 1, "k", 5, "ok")
    _add(h, 2, "k", 7, "ok", node="B")
    read = h.invoke(3, "read", "k", None, "C", 10.0)
    h.complete(read, "ok", 11.0, value=5)

    verdict = check(h.ops, _state(12))

    assert verdict.valid and verdict.nodes_agree
    assert verdict.errors == []
    kv = verdict.per_key["k"]
    assert (kv.acknowledged, kv.indefinite, kv.lower, kv.upper) == (12, 0, 12, 12)
    assert (kv.value, kv.lost, kv.doubled, kv.expected) == (12, 0, 0, None)
    assert summarize(verdict) == (
        "VALID: 3 nodes agree on 1 key; 12 acknowledged, 0 indefinite, 0 lost, 0 doubled"
    )


def test_a_lost_increment_is_reported() -> None:
    h = History()
    _add(h, 1, "k2", 10, "ok")
    _add(h, 1, "k2", 2, "ok")

    verdict = check(h.ops, _state(10, key="k2"))

    assert not verdict.valid
    assert verdict.per_key["k2"].lost == 2
    assert verdict.errors == ["key 'k2': value 10 is below the 12 acknowledged (2 lost)"]
    assert summarize(verdict).startswith("INVALID: 1 error: key 'k2'")


def test_a_doubled_increment_is_reported() -> None:
    h = History()
    _add(h, 1, "k", 3, "ok")
    _add(h, 2, "k", 2, "info")

    verdict = check(h.ops, _state(8))

    assert not verdict.valid
    assert verdict.per_key["k"].doubled == 3
    assert verdict.errors == [
        "key 'k': value 8 is above the 3 acknowledged + 2 indefinite (3 doubled)"
    ]


@pytest.mark.parametrize("value", [3, 4, 5])
def test_indefinite_adds_widen_the_bounds(value: int) -> None:
    h = History()
    _add(h, 1, "k", 3, "ok")
    _add(h, 2, "k", 2, "info")

    verdict = check(h.ops, _state(value))

    assert verdict.valid
    kv = verdict.per_key["k"]
    assert (kv.acknowledged, kv.indefinite, kv.lower, kv.upper) == (3, 2, 3, 5)


def test_negative_indefinite_amounts_lower_the_lower_bound() -> None:
    h = History()
    _add(h, 1, "k", 5, "ok")
    _add(h, 2, "k", -2, "info")

    kv = check(h.ops, _state(3)).per_key["k"]

    assert (kv.lower, kv.upper) == (3, 5)


def test_nodes_disagreeing_is_invalid_and_names_the_nodes() -> None:
    h = History()
    _add(h, 1, "k1", 42, "ok")

    verdict = check(h.ops, {"A": {"k1": 42}, "B": {"k1": 41}, "C": {"k1": 42}})

    assert not verdict.valid and not verdict.nodes_agree
    kv = verdict.per_key["k1"]
    assert (kv.value, kv.lost) == (None, 1)
    assert verdict.errors == [
        "key 'k1': node B reads 41 but node A reads 42",
        "key 'k1': node B's value 41 is below the 42 acknowledged (1 lost)",
    ]


def test_a_missing_key_reads_zero() -> None:
    verdict = check([], {"A": {"k": 0}, "B": {}})

    assert verdict.valid and verdict.nodes_agree
    assert verdict.per_key["k"].value == 0


def test_a_key_never_added_to_must_read_zero() -> None:
    verdict = check([], {"A": {"ghost": 1}, "B": {"ghost": 1}})

    assert not verdict.valid
    assert verdict.per_key["ghost"].doubled == 1


def test_exact_mode_counts_one_idempotency_key_once() -> None:
    h = History()
    _add(h, 1, "k", 4, "info", ik="a")
    _add(h, 1, "k", 4, "ok", ik="a")  # the retry of the indefinite add
    _add(h, 2, "k", 6, "ok", ik="b")

    verdict = check(h.ops, _state(10), exact=True)

    assert verdict.valid, verdict.errors
    assert verdict.per_key["k"].expected == 10
    assert summarize(verdict).startswith("VALID (exact): 3 nodes agree on 1 key;")


def test_exact_mode_rejects_a_doubled_application() -> None:
    h = History()
    _add(h, 1, "k", 4, "info", ik="a")
    _add(h, 1, "k", 4, "ok", ik="a")

    verdict = check(h.ops, _state(8), exact=True)  # within the op bounds 4..8, but applied twice

    assert not verdict.valid
    assert verdict.per_key["k"].doubled == 4
    assert verdict.errors == [
        "key 'k' (only idempotency key 'a'): value 8 is above the 4 expected from 1 "
        "acknowledged idempotency key (4 doubled)"
    ]
    assert [iv.copies for iv in verdict.per_idempotency_key] == [2]


def test_exact_mode_reports_an_idempotency_key_never_acknowledged() -> None:
    h = History()
    _add(h, 1, "k", 4, "info", ik="a")

    verdict = check(h.ops, _state(0), exact=True)

    assert not verdict.valid
    assert "never acknowledged (first: 'a')" in verdict.errors[0]


def test_exact_mode_needs_idempotency_keys() -> None:
    h = History()
    _add(h, 1, "k", 4, "ok")

    with pytest.raises(ValueError, match="idempotency key"):
        check(h.ops, _state(4), exact=True)


def test_exact_mode_refuses_one_idempotency_key_with_two_amounts() -> None:
    h = History()
    _add(h, 1, "k", 4, "info", ik="a")
    _add(h, 1, "k", 5, "ok", ik="a")

    with pytest.raises(ValueError, match="carries amount 5"):
        check(h.ops, _state(5), exact=True)


def test_fail_ops_count_nothing() -> None:
    h = History()
    _add(h, 1, "k", 3, "ok")
    _add(h, 1, "k", 100, "fail")

    verdict = check(h.ops, _state(3))

    assert verdict.valid
    kv = verdict.per_key["k"]
    assert (kv.acknowledged, kv.indefinite, kv.upper) == (3, 0, 3)


def test_an_invoke_without_completion_is_indefinite() -> None:
    h = History()
    _add(h, 1, "k", 3, "ok")
    _add(h, 2, "k", 4, None)

    verdict = check(h.ops, _state(7))

    assert verdict.valid
    assert verdict.per_key["k"].indefinite == 4


def test_malformed_histories_are_refused() -> None:
    invoke = Op(1, "invoke", "add", "k", 1, "A", 0.0)
    with pytest.raises(ValueError, match="still outstanding"):
        check([invoke, invoke], _state(0))
    with pytest.raises(ValueError, match="has no invoke"):
        check([Op(1, "ok", "add", "k", 1, "A", 0.0)], _state(0))
    with pytest.raises(ValueError, match="does not match"):
        check([invoke, Op(1, "ok", "add", "other", 1, "A", 1.0)], _state(0))
    with pytest.raises(ValueError, match="at least one node"):
        check([], {})
    with pytest.raises(ValueError, match="process"):
        Op(True, "invoke", "add", "k", 1, "A", 0.0)


def test_history_refuses_a_second_outstanding_operation() -> None:
    h = History()
    h.invoke(1, "add", "k", 1, "A", 0.0)
    with pytest.raises(ValueError, match="outstanding"):
        h.invoke(1, "add", "k", 1, "A", 1.0)


def test_history_round_trips_through_json() -> None:
    h = History()
    _add(h, 1, "k", 3, "ok", ik="x")
    _add(h, 2, "j", 4, "info", node="B", ik="y")
    _add(h, 3, "k", 5, None)
    read = h.invoke(4, "read", "k", None, "C", 7.5)
    h.complete(read, "ok", 8.25, value=3)

    text = h.to_json()
    loaded = History.from_json(text)

    assert loaded.ops == h.ops
    assert json.loads(text)["version"] == 1
    # The reloaded history keeps the outstanding invoke of process 3.
    with pytest.raises(ValueError, match="outstanding"):
        loaded.invoke(3, "add", "k", 1, "A", 9.0)


def test_from_json_refuses_an_unknown_version() -> None:
    with pytest.raises(ValueError, match="unsupported history version"):
        History.from_json('{"format": "vvstore-history", "version": 99, "ops": []}')


def test_verdict_to_dict_is_json() -> None:
    h = History()
    _add(h, 1, "k", 3, "ok")
    verdict = check(h.ops, {"A": {"k": 3}, "B": {"k": 2}})

    data = json.loads(json.dumps(verdict.to_dict()))

    assert data["valid"] is False
    assert data["nodes"] == ["A", "B"]
    assert data["per_key"]["k"]["value"] is None


# (outcome, amount) pairs; None is an invoke left without completion.
_adds = st.lists(
    st.tuples(st.sampled_from(["ok", "info", "fail", None]), st.integers(1, 1_000)),
    max_size=40,
)


@given(_adds)
def test_property_bounds_are_tight(adds: list[tuple[Outcome | None, int]]) -> None:
    h = History()
    for process, (outcome, amount) in enumerate(adds):
        _add(h, process, "k", amount, outcome)
    acked = sum(amount for outcome, amount in adds if outcome == "ok")
    indefinite = sum(amount for outcome, amount in adds if outcome in ("info", None))

    assert check(h.ops, _state(acked)).valid
    assert check(h.ops, _state(acked + indefinite)).valid
    too_high = check(h.ops, _state(acked + indefinite + 1))
    assert not too_high.valid
    assert too_high.per_key["k"].doubled == 1


# --- fault runs: read bounds, node losses, lost_to_wipe ---------------------------------------


def _read(h: History, process: int, key: str, node: str, value: int | None) -> None:
    """Record one read at ``node``; ``value`` None makes it indefinite (info)."""
    op = h.invoke(process, "read", key, None, node, float(len(h.ops)))
    if value is None:
        h.complete(op, "info", float(len(h.ops)))
    else:
        h.complete(op, "ok", float(len(h.ops)), value=value)


def test_a_valid_fault_run_passes_with_reads_between_the_bounds() -> None:
    h = History()
    _add(h, 1, "k", 3, "ok", node="A", ik="a")
    _add(h, 2, "k", 4, "info", node="B", ik="b")
    _add(h, 2, "k", 4, "ok", node="C", ik="b")  # the retry elsewhere
    _read(h, 3, "k", "A", 3)  # A need not see b yet
    _read(h, 3, "k", "B", 11)  # B applied b, C too: a duplicate copy, before compensation

    verdict = check_faults(h.ops, _state(7))

    assert verdict.valid, verdict.errors
    assert (verdict.lost, verdict.doubled, verdict.lost_to_wipe, verdict.reads) == (0, 0, 0, 2)
    assert summarize_faults(verdict) == (
        "VALID: 3 nodes agree on 1 key; +7 acknowledged, 0 lost, 0 doubled, 0 lost to wipes; "
        "0 idempotency keys verified one by one, 0 lost, 0 doubled; 2 reads judged, "
        "0 above the attempted sum, 0 ignoring an own write, 0 missing an own dot, 0 going back"
    )


def test_check_faults_detects_a_lost_increment() -> None:
    h = History()
    _add(h, 1, "k", 3, "ok", ik="a")
    _add(h, 1, "k", 2, "ok", ik="b")

    verdict = check_faults(h.ops, _state(3))

    assert not verdict.valid
    assert (verdict.lost, verdict.doubled) == (2, 0)
    assert "2 lost" in verdict.errors[0]


def test_check_faults_detects_a_doubled_increment() -> None:
    h = History()
    _add(h, 1, "k", 3, "info", node="A", ik="a")
    _add(h, 1, "k", 3, "ok", node="B", ik="a")

    verdict = check_faults(h.ops, _state(6))  # both copies still count: never compensated

    assert not verdict.valid
    assert (verdict.lost, verdict.doubled) == (0, 3)


def test_a_read_above_the_attempted_sum_is_detected() -> None:
    h = History()
    _add(h, 1, "k", 3, "ok", ik="a")
    _add(h, 1, "k", 100, "fail", ik="f")  # definitely not applied: counts nowhere
    _read(h, 2, "k", "B", 4)

    verdict = check_faults(h.ops, _state(3))

    assert not verdict.valid
    [violation] = verdict.read_violations
    assert (violation.kind, violation.value, violation.bound, violation.node) == (
        "above_attempted",
        4,
        3,
        "B",
    )
    assert violation.describe().endswith("above the 3 attempted before it completed (1 too many)")
    assert verdict.errors == [violation.describe()]


def test_an_add_invoked_before_the_read_completed_counts_as_attempted() -> None:
    h = History()
    read = h.invoke(2, "read", "k", None, "B", 0.0)
    _add(h, 1, "k", 5, None, ik="a")  # invoked while the read was in flight, never completed
    h.complete(read, "ok", 2.0, value=5)
    _add(h, 3, "k", 5, "ok", ik="a")  # its retry by the final phase

    assert check_reads(h.ops).violations == ()


def test_a_read_ignoring_an_own_acknowledged_write_is_detected() -> None:
    h = History()
    _add(h, 1, "k", 3, "ok", node="A", ik="a")
    _add(h, 1, "k", 4, "ok", node="B", ik="b")
    _read(h, 2, "k", "A", 2)  # A acknowledged 3 itself before this read began
    _read(h, 2, "k", "B", 4)  # B only owes its own 4
    _read(h, 2, "k", "C", 0)  # C acknowledged nothing: no lower bound

    result = check_reads(h.ops)

    assert result.reads == 3
    [violation] = result.violations
    assert (violation.kind, violation.node, violation.value, violation.bound) == (
        "ignores_own_write",
        "A",
        2,
        3,
    )
    assert "(1 of its own writes ignored)" in violation.describe()


def test_an_acknowledgement_after_the_read_began_is_not_owed() -> None:
    h = History()
    read = h.invoke(2, "read", "k", None, "A", 0.0)
    _add(h, 1, "k", 3, "ok", node="A", ik="a")
    h.complete(read, "ok", 2.0, value=0)

    assert check_reads(h.ops).violations == ()


def test_an_idempotency_key_acknowledged_twice_by_a_node_is_owed_once() -> None:
    h = History()
    _add(h, 1, "k", 3, "ok", node="A", ik="a")
    _add(h, 1, "k", 3, "ok", node="A", ik="a")  # a replay
    _read(h, 2, "k", "A", 3)

    assert check_reads(h.ops).violations == ()


def test_a_node_loss_resets_that_nodes_own_writes() -> None:
    h = History()
    _add(h, 1, "k", 3, "ok", node="A", ik="a")
    _add(h, 1, "k", 4, "ok", node="B", ik="b")
    loss = NodeLoss(len(h.ops), "A", "wipe", 5.0)
    _read(h, 2, "k", "A", 0)  # the new incarnation of A owes nothing yet
    _read(h, 2, "k", "B", 3)  # B still owes its 4

    [violation] = check_reads(h.ops, [loss]).violations

    assert (violation.node, violation.bound) == ("B", 4)
    assert check_reads(h.ops).violations[0].node == "A"  # without the loss A's 0 breaks it


def test_a_shortfall_explained_by_a_wipe_is_lost_to_wipe_not_lost() -> None:
    h = History()
    _add(h, 1, "k", 3, "ok", node="A", ik="a")  # only A acknowledged it, then A was wiped
    _add(h, 1, "k", 4, "ok", node="B", ik="b")
    losses = [NodeLoss(len(h.ops), "A", "wipe", 5.0)]
    _add(h, 1, "k", 2, "ok", node="A", ik="c")  # the new incarnation's: not at risk

    assert wipe_allowance(h.ops, losses) == {"k": 3}
    excused = check_faults(h.ops, _state(6), losses)
    assert excused.valid, excused.errors
    assert (excused.lost, excused.lost_to_wipe) == (0, 3)
    assert excused.final.per_key["k"].lost_to_wipe == 3

    beyond = check_faults(h.ops, _state(4), losses)  # 5 short: 3 explained, 2 lost
    assert not beyond.valid
    assert (beyond.lost, beyond.lost_to_wipe) == (2, 3)
    assert "(2 lost, 3 more put down to a wipe)" in beyond.errors[0]


def test_an_add_acknowledged_by_a_surviving_node_is_not_at_risk() -> None:
    h = History()
    _add(h, 1, "k", 3, "ok", node="A", ik="a")
    _add(h, 1, "k", 3, "ok", node="B", ik="a")
    losses = [NodeLoss(len(h.ops), "A", "restore", 5.0)]

    assert wipe_allowance(h.ops, losses) == {}
    assert not check_faults(h.ops, _state(0), losses).valid


def test_check_reads_refuses_negative_amounts_and_losses_past_the_end() -> None:
    h = History()
    _add(h, 1, "k", -1, "ok", ik="a")
    with pytest.raises(ValueError, match="non-negative"):
        check_reads(h.ops)
    with pytest.raises(ValueError, match="past the history's end"):
        check_reads([], [NodeLoss(3, "A", "wipe", 0.0)])


def test_node_loss_round_trips_and_validates() -> None:
    loss = NodeLoss(7, "B", "restore", 12.5)
    assert NodeLoss.from_dict(json.loads(json.dumps(loss.to_dict()))) == loss
    with pytest.raises(ValueError, match="kind"):
        NodeLoss(7, "B", "reboot", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="position"):
        NodeLoss(-1, "B", "wipe", 1.0)
    with pytest.raises(ValueError, match="fields"):
        NodeLoss.from_dict({"position": 1, "node": "B", "kind": "wipe"})


def test_fault_verdict_to_dict_is_json() -> None:
    h = History()
    _add(h, 1, "k", 3, "ok", ik="a")
    _read(h, 2, "k", "A", 9)

    verdict = check_faults(h.ops, _state(3))
    data = json.loads(json.dumps(verdict.to_dict()))

    assert data["valid"] is False
    assert data["read_violations"][0]["kind"] == "above_attempted"
    assert data["final"]["per_key"]["k"]["lost_to_wipe"] == 0
    assert summarize_faults(verdict).startswith("INVALID: 1 error: read of 'k' at node A")


# A single node applying adds in order, with reads of its current value in between:
# (key, amount) adds and None reads.
_steps = st.lists(
    st.one_of(st.tuples(st.sampled_from("xy"), st.integers(0, 50)), st.none()), max_size=60
)


@given(_steps, st.sampled_from("xy"))
def test_property_exact_reads_of_one_node_keep_both_bounds(
    steps: list[tuple[str, int] | None], read_key: str
) -> None:
    h = History()
    totals = {"x": 0, "y": 0}
    for index, step in enumerate(steps):
        if step is None:
            _read(h, 2, read_key, "A", totals[read_key])
            continue
        key, amount = step
        _add(h, 1, key, amount, "ok", node="A", ik=f"i{index}")
        totals[key] += amount

    assert check_reads(h.ops).violations == ()
    _read(h, 2, read_key, "A", totals[read_key] + 1)
    assert [v.kind for v in check_reads(h.ops).violations] == ["above_attempted"]
    if totals[read_key] > 0:
        h2 = History(h.ops[:-2])
        _read(h2, 2, read_key, "A", totals[read_key] - 1)
        assert [v.kind for v in check_reads(h2.ops).violations] == ["ignores_own_write"]


# --- the dot rules: a node's own dots, versions that never go back -----------------------------


def _add_v(
    h: History, process: int, key: str, node: str, ik: str, own: dict[str, int], amount: int = 1
) -> None:
    """An acknowledged add whose reply showed the answering node's own actors at ``own``."""
    op = h.invoke(process, "add", key, amount, node, float(len(h.ops)), idempotency_key=ik)
    h.complete(op, "ok", float(len(h.ops)), version=own)


def _read_v(h: History, process: int, key: str, node: str, value: int, v: dict[str, int]) -> None:
    op = h.invoke(process, "read", key, None, node, float(len(h.ops)))
    h.complete(op, "ok", float(len(h.ops)), value=value, version=v)


def test_a_read_missing_an_own_dot_is_detected_even_when_the_value_hides_it() -> None:
    h = History()
    _add_v(h, 1, "k", "A", "a", {"A~1": 7})
    _add_v(h, 1, "k", "B", "b", {"B~1": 4}, amount=9)
    # The value (10, mostly B's) is far above A's own 1, but A's entry is older than the one
    # it acknowledged: a stale read.
    _read_v(h, 2, "k", "A", 10, {"A~1": 6, "B~1": 4})

    [violation] = check_reads(h.ops).violations

    assert (violation.kind, violation.actor, violation.value, violation.bound) == (
        "misses_own_dot",
        "A~1",
        6,
        7,
    )
    assert "shows A~1 at seq 6, but that node had acknowledged a write of it at seq 7" in (
        violation.describe()
    )


def test_a_version_that_goes_back_at_a_node_is_detected() -> None:
    h = History()
    _read_v(h, 1, "k", "A", 0, {"A~1": 3, "B~1": 9})
    _read_v(h, 2, "k", "A", 0, {"A~1": 3, "B~1": 8})  # B's entry went back at A
    _read_v(h, 2, "k", "C", 0, {})  # another node owes nothing of A's reads

    [violation] = check_reads(h.ops).violations

    assert (violation.kind, violation.actor, violation.value, violation.bound) == (
        "version_went_back",
        "B~1",
        8,
        9,
    )
    assert violation.describe().endswith("(its version went back)")


def test_overlapping_reads_may_see_versions_in_any_order() -> None:
    h = History()
    first = h.invoke(1, "read", "k", None, "A", 0.0)
    second = h.invoke(2, "read", "k", None, "A", 0.1)
    h.complete(first, "ok", 0.2, value=0, version={"A~1": 2})
    h.complete(second, "ok", 0.3, value=0, version={"A~1": 1})  # invoked before first ended

    assert check_reads(h.ops).violations == ()


def test_a_node_loss_resets_the_dot_rules() -> None:
    h = History()
    _add_v(h, 1, "k", "A", "a", {"A~1": 7})
    _read_v(h, 2, "k", "A", 1, {"A~1": 7})
    losses = [NodeLoss(len(h.ops), "A", "restore", 3.0)]
    _read_v(h, 2, "k", "A", 0, {})  # a fresh incarnation that has not pulled A~1 back yet

    assert check_reads(h.ops, losses).violations == ()
    assert {v.kind for v in check_reads(h.ops).violations} == {
        "ignores_own_write",
        "misses_own_dot",
        "version_went_back",
    }


def test_ops_carry_versions_through_json() -> None:
    h = History()
    _add_v(h, 1, "k", "A", "a", {"A~2": 3, "A~1": 9})
    h.invoke(2, "read", "k", None, "A", 5.0)

    loaded = History.from_json(h.to_json())

    assert loaded.ops == h.ops
    assert loaded.ops[1].version == (("A~1", 9), ("A~2", 3))
    assert "version" not in loaded.ops[2].to_dict()  # absent unless set
    with pytest.raises(ValueError, match="sorted by actor"):
        Op(1, "ok", "read", "k", 1, "A", 0.0, None, (("B", 1), ("A", 2)))


# --- exactly once per idempotency key: probes, alone on their key ------------------------------


def _lost_and_doubled(keys: dict[str, str]) -> History:
    """Two increments of 3 under idempotency keys ``a`` and ``b``, on the counter keys
    ``keys`` names: ``a`` acknowledged by A, ``b`` indefinite at A then acknowledged by B, and
    ``a`` replayed on B (it already knew it)."""
    h = History()
    _add(h, 1, keys["a"], 3, "ok", node="A", ik="a")
    _add(h, 1, keys["a"], 3, "ok", node="B", ik="a")
    _add(h, 2, keys["b"], 3, "info", node="A", ik="b")
    _add(h, 2, keys["b"], 3, "ok", node="B", ik="b")
    return h


def test_a_lost_and_a_doubled_increment_cancel_on_a_shared_key_but_not_alone() -> None:
    # The cluster loses a and applies b twice. On one shared key the sum is right: the
    # per-key exact check passes, and nothing was verified one by one.
    shared = _lost_and_doubled({"a": "k000", "b": "k000"})
    passed = check_faults(shared.ops, _state(6, key="k000"))
    assert passed.valid, passed.errors
    assert passed.verified_individually == 0
    assert "0 idempotency keys verified one by one" in summarize_faults(passed)

    # The same increments and the same faults, each on a key of its own: both are caught and
    # named by their idempotency key.
    alone = _lost_and_doubled({"a": "probe-a", "b": "probe-b"})
    state = {node: {"probe-a": 0, "probe-b": 6} for node in "ABC"}
    failed = check_faults(alone.ops, state)
    assert not failed.valid
    assert failed.verified_individually == 2
    assert (failed.final.individually_lost, failed.final.individually_doubled) == (1, 1)
    a, b = failed.final.per_idempotency_key
    assert (a.idempotency_key, a.key, a.amount, a.value, a.copies, a.lost, a.doubled) == (
        "a",
        "probe-a",
        3,
        0,
        0,
        3,
        0,
    )
    assert (b.idempotency_key, b.copies, b.lost, b.doubled) == ("b", 2, 0, 3)
    assert failed.errors == [
        "key 'probe-a' (only idempotency key 'a'): value 0 is below the 3 expected from 1 "
        "acknowledged idempotency key (3 lost)",
        "key 'probe-b' (only idempotency key 'b'): value 6 is above the 3 expected from 1 "
        "acknowledged idempotency key (3 doubled)",
    ]
    data = json.loads(json.dumps(failed.to_dict()))
    assert (data["verified_individually"], data["individually_lost"]) == (2, 1)
    assert data["individually_doubled"] == 1
    assert [entry["copies"] for entry in data["final"]["per_idempotency_key"]] == [0, 2]


def test_a_probe_applied_once_and_replayed_elsewhere_is_verified() -> None:
    h = _lost_and_doubled({"a": "probe-a", "b": "probe-b"})
    _add(h, 3, "k000", 2, "ok", node="C", ik="c")
    _add(h, 3, "k000", 4, "ok", node="C", ik="d")
    state = {node: {"probe-a": 3, "probe-b": 3, "k000": 6} for node in "ABC"}

    verdict = check_faults(h.ops, state)

    assert verdict.valid, verdict.errors
    assert [iv.idempotency_key for iv in verdict.final.per_idempotency_key] == ["a", "b"]
    assert [iv.copies for iv in verdict.final.per_idempotency_key] == [1, 1]
    assert "2 idempotency keys verified one by one, 0 lost, 0 doubled" in summarize_faults(verdict)


def test_only_acknowledged_idempotency_keys_alone_on_their_key_are_verified() -> None:
    h = History()
    _add(h, 1, "refused", 3, "fail", ik="f")  # applied nothing, must read 0: not an increment
    _add(h, 1, "never", 3, "info", ik="n")  # an error of its own: never acknowledged
    _add(h, 1, "k", 3, "ok", ik="x")
    _add(h, 1, "k", 3, "ok", ik="y")

    exact = check(h.ops, {"A": {"k": 6, "never": 3}}, exact=True)
    assert exact.per_idempotency_key == ()
    assert [e for e in exact.errors if "never acknowledged" in e]
    assert check(h.ops, {"A": {"k": 6, "never": 3}}).per_idempotency_key == ()  # bounds mode


def test_a_probe_lost_with_the_only_node_that_acknowledged_it_is_lost_to_a_wipe() -> None:
    h = History()
    _add(h, 1, "probe-a", 3, "ok", node="A", ik="a")
    losses = [NodeLoss(len(h.ops), "A", "wipe", 5.0)]
    _add(h, 1, "probe-b", 2, "ok", node="A", ik="b")  # the new incarnation's

    verdict = check_faults(h.ops, {node: {"probe-b": 2} for node in "ABC"}, losses)

    assert verdict.valid, verdict.errors
    a, b = verdict.final.per_idempotency_key
    assert (a.value, a.copies, a.lost, a.lost_to_wipe) == (0, 0, 0, 3)
    assert (b.copies, b.lost_to_wipe) == (1, 0)
    assert verdict.final.individually_lost == 0


def test_a_probe_the_nodes_disagree_on_has_no_value() -> None:
    h = History()
    _add(h, 1, "probe-a", 2, "ok", ik="a")

    verdict = check_faults(h.ops, {"A": {"probe-a": 2}, "B": {"probe-a": 4}})

    (a,) = verdict.final.per_idempotency_key
    assert (a.value, a.copies, a.doubled) == (None, None, 2)
    assert verdict.final.individually_doubled == 1 and not verdict.valid


@given(st.lists(st.tuples(st.integers(1, 5), st.integers(0, 3)), min_size=1, max_size=20))
def test_property_each_probe_is_judged_by_its_own_copies(probes: list[tuple[int, int]]) -> None:
    h = History()
    for n, (amount, _) in enumerate(probes):
        _add(h, n, f"probe-{n:02d}", amount, "ok", ik=f"i{n}")
    state = {"A": {f"probe-{n:02d}": amount * copies for n, (amount, copies) in enumerate(probes)}}

    verdict = check_faults(h.ops, state)

    assert [iv.copies for iv in verdict.final.per_idempotency_key] == [c for _, c in probes]
    assert verdict.final.individually_lost == sum(copies == 0 for _, copies in probes)
    assert verdict.final.individually_doubled == sum(copies > 1 for _, copies in probes)
    assert verdict.valid == all(copies == 1 for _, copies in probes)
