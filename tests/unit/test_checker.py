"""The history checker judges converged values against what a history of adds allows."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vvstore.checker import History, Op, check, summarize

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
        "key 'k': value 8 is above the 4 expected from 1 acknowledged idempotency key (4 doubled)"
    ]


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
