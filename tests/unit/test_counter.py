"""The counter model: examples, join laws, and a state machine against a plain model of dots."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vvstore.clock import VersionVector
from vvstore.counter import INT64_MAX, CounterState, Entry, Floor
from vvstore.errors import ConflictingEntry, Overflow

A, B, C = "a~0000000000000001", "b~0000000000000002", "c~0000000000000003"


def test_empty_state_reads_zero() -> None:
    state = CounterState()
    assert state.value() == 0
    assert state.version() == VersionVector()
    assert state.siblings() == []


def test_increments_of_two_actors_are_siblings_that_sum() -> None:
    state = CounterState()
    state = state.with_entry(state.increment(A, 1, 5))
    state = state.with_entry(state.increment(B, 1, -2))
    assert state.value() == 3
    assert state.version() == VersionVector({A: 1, B: 1})
    assert [(s.actor, s.value) for s in state.siblings()] == [(A, 5), (B, -2)]


def test_merge_keeps_the_higher_seq_per_actor_and_ignores_older() -> None:
    newer = Entry(A, 5, 10)
    older = Entry(A, 3, 7)
    state = CounterState([newer])
    assert state.with_entry(older) is state
    assert state.with_entry(newer) is state
    assert CounterState([older]).with_entry(newer).value() == 10


def test_same_dot_with_other_contents_is_a_conflict() -> None:
    state = CounterState([Entry(A, 5, 10)])
    with pytest.raises(ConflictingEntry):
        state.with_entry(Entry(A, 5, 11))


def test_reset_cancels_what_the_resetter_saw_and_nothing_else() -> None:
    at_b = CounterState([Entry(A, 2, 7), Entry(B, 1, 3)])
    reset = at_b.reset(B, 2)
    assert reset.total == 3
    assert reset.floors == {A: Floor(2, 7), B: Floor(1, 3)}
    at_b = at_b.with_entry(reset)
    assert at_b.value() == 0
    # A concurrently added 4 more (seq 3): the reset never saw it, so it survives (add wins).
    assert at_b.with_entry(Entry(A, 3, 11)).value() == 4


def test_a_floor_beyond_the_entry_we_hold_cancels_it() -> None:
    # B reset after seeing A at seq 4; we hold only A's seq 2: everything we hold is cancelled.
    state = CounterState([Entry(A, 2, 5), Entry(B, 1, 0, {A: Floor(4, 9)})])
    assert state.value() == 0
    assert state.with_entry(Entry(A, 4, 9)).value() == 0
    assert state.with_entry(Entry(A, 5, 10)).value() == 1


def test_an_increment_keeps_its_actor_floors() -> None:
    state = CounterState([Entry(A, 1, 5)])
    state = state.with_entry(state.reset(A, 2))
    state = state.with_entry(state.increment(A, 3, 2))
    assert state.entries[A].floors == {A: Floor(1, 5)}
    assert state.value() == 2


def test_overflow_of_the_amount_the_total_and_the_value() -> None:
    state = CounterState([Entry(A, 1, INT64_MAX)])
    with pytest.raises(Overflow):
        state.increment(A, 2, 1)
    with pytest.raises(Overflow):
        state.increment(B, 1, INT64_MAX + 1)
    # Two actors together beyond int64: allowed through merge, refused moving further out.
    big = CounterState([Entry(A, 1, INT64_MAX), Entry(B, 1, 10)])
    assert big.value() == INT64_MAX + 10
    with pytest.raises(Overflow):
        big.increment(B, 2, 1)
    assert big.with_entry(big.increment(B, 2, -5)).value() == INT64_MAX + 5


def test_a_reset_never_overflows() -> None:
    state = CounterState([Entry(A, 1, INT64_MAX), Entry(B, 1, INT64_MAX)])
    state = state.with_entry(state.reset(A, 2))
    assert state.value() == 0


# --- join laws over reachable states ------------------------------------------------------

ACTORS = [A, B, C]


@st.composite
def histories(draw: st.DrawFn) -> list[CounterState]:
    """Three replicas (one actor each) after a random run of increments, resets and merges."""
    replicas = [CounterState() for _ in ACTORS]
    seqs = [0, 0, 0]
    for _ in range(draw(st.integers(0, 12))):
        i = draw(st.integers(0, 2))
        kind = draw(st.sampled_from(["inc", "inc", "reset", "merge"]))
        if kind == "merge":
            j = draw(st.integers(0, 2))
            replicas[i] = replicas[i].merge(replicas[j])
            continue
        seqs[i] += 1
        if kind == "inc":
            entry = replicas[i].increment(ACTORS[i], seqs[i], draw(st.integers(-5, 9)))
        else:
            entry = replicas[i].reset(ACTORS[i], seqs[i])
        replicas[i] = replicas[i].with_entry(entry)
    return replicas


@given(histories())
def test_merge_is_commutative_associative_idempotent(replicas: list[CounterState]) -> None:
    a, b, c = replicas
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a
    assert a.merge(b).version().descends(a.version())


@given(histories())
def test_a_value_carried_through_with_entry_equals_one_summed_afresh(
    replicas: list[CounterState],
) -> None:
    # with_entry moves a known value by the new entry's change in total when no entry has a
    # floor; the states it builds must read what a state built from the same entries reads.
    for state in replicas:
        assert state.value() == CounterState(list(state)).value()
    merged = replicas[0].merge(replicas[1]).merge(replicas[2])
    assert merged.value() == CounterState(list(merged)).value()


# --- a state machine against the model: a reset cancels every dot its node holds ---------


class CounterModel(RuleBasedStateMachine):
    """Replicas of one key, checked against a model where an increment is a dot."""

    def __init__(self) -> None:
        super().__init__()
        self.states = [CounterState() for _ in ACTORS]
        self.seqs = [0, 0, 0]
        self.amounts: dict[tuple[str, int], int] = {}
        self.seen: list[set[tuple[str, int]]] = [set() for _ in ACTORS]
        self.cancelled: list[set[tuple[str, int]]] = [set() for _ in ACTORS]

    @rule(i=st.integers(0, 2), amount=st.integers(-1000, 1000))
    def increment(self, i: int, amount: int) -> None:
        self.seqs[i] += 1
        dot = (ACTORS[i], self.seqs[i])
        self.states[i] = self.states[i].with_entry(
            self.states[i].increment(ACTORS[i], self.seqs[i], amount)
        )
        self.amounts[dot] = amount
        self.seen[i].add(dot)

    @rule(i=st.integers(0, 2))
    def reset(self, i: int) -> None:
        self.seqs[i] += 1
        self.states[i] = self.states[i].with_entry(self.states[i].reset(ACTORS[i], self.seqs[i]))
        self.cancelled[i] |= self.seen[i]

    @precondition(lambda self: any(self.seen))
    @rule(i=st.integers(0, 2), j=st.integers(0, 2))
    def merge(self, i: int, j: int) -> None:
        self.states[i] = self.states[i].merge(self.states[j])
        self.seen[i] |= self.seen[j]
        self.cancelled[i] |= self.cancelled[j]

    @invariant()
    def every_replica_reads_the_model(self) -> None:
        for i in range(3):
            expected = sum(self.amounts[d] for d in self.seen[i] - self.cancelled[i])
            assert self.states[i].value() == expected

    @invariant()
    def merging_everything_converges(self) -> None:
        one = self.states[0].merge(self.states[1]).merge(self.states[2])
        other = self.states[2].merge(self.states[0]).merge(self.states[1])
        assert one == other
        everything = set().union(*self.seen) - set().union(*self.cancelled)
        assert one.value() == sum(self.amounts[d] for d in everything)


TestCounterModel = CounterModel.TestCase
TestCounterModel.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
