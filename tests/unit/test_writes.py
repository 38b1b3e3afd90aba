"""vvstore.writes: the decisions of a write group, driven directly, without a database.

Each test builds a :class:`Group` as the store would have loaded it (committed states, held
copies and replies, held dots), calls the decisions, and checks what they would write.
"""

from __future__ import annotations

import copy

import pytest

from vvstore.clock import VersionVector
from vvstore.codec import (
    Outcome,
    Reply,
    Write,
    counter_body,
    decode_reply,
    encode_reply,
    reply_body,
)
from vvstore.counter import INT64_MAX, CounterState, Entry, Floor
from vvstore.errors import ConflictingEntry, IdempotencyKeyReused, Overflow
from vvstore.idempotency import Record, fingerprint, key_hash
from vvstore.retirement import Retirements
from vvstore.wire import MAX_FLOORS_BYTES
from vvstore.writes import (
    Group,
    Identity,
    check_floors,
    compensate,
    prepare_apply,
    prepare_raise,
    prepare_retire,
    prepare_writes,
    waiting,
)

ME = "a~0000000000000001"  # this node ("a") writes as ME
B = "b~0000000000000002"
C = "c~0000000000000003"


def identity(seq: int = 0) -> Identity:
    return Identity("a", ME, seq, incarnation=1)


def snapshot(group: Group, ident: Identity) -> tuple[Group, Identity]:
    """A deep copy to compare against: a refused decision must leave both as they were."""
    return copy.deepcopy(group), copy.deepcopy(ident)


def record(actor: str, seq: int, key: str, amount: int, idem: str = "K") -> Record:
    return Record(actor, seq, key_hash(idem), fingerprint(key, amount), key, amount)


# --- local writes ---------------------------------------------------------------------------


def test_an_increment_writes_the_next_seq_of_our_actor_and_answers_the_new_state() -> None:
    group, ident = Group(base={"k": CounterState([Entry(B, 4, 10)])}), identity(seq=7)
    [outcome] = prepare_writes(group, ident, [Write("k", 5)])
    assert ident.seq == 8
    assert group.rows == {("k", ME): Entry(ME, 8, 5)}
    assert group.dots == {(ME, 8): "k"}
    assert group.local_writes == 1
    assert group.new_records == []  # no idempotency key, no record
    assert outcome == Outcome(group.states["k"], Reply("k", group.states["k"]))
    assert outcome.state.value() == 15 and not outcome.replayed
    assert reply_body(outcome) == {"key": "k", "value": 15, "version": {ME: 8, B: 4}}


def test_a_batch_numbers_its_writes_in_order_and_sees_its_own_earlier_writes() -> None:
    group, ident = Group(), identity()
    outcomes = prepare_writes(group, ident, [Write("k", 1), Write("j", 2), Write("k", 3)])
    assert [o.state.value() for o in outcomes] == [1, 2, 4]
    assert group.rows == {("k", ME): Entry(ME, 3, 4), ("j", ME): Entry(ME, 2, 2)}
    assert ident.seq == 3


def test_a_reset_floors_every_entry_held_and_its_reply_lists_the_siblings() -> None:
    state = CounterState([Entry(B, 4, 10), Entry(ME, 2, 3)])
    group, ident = Group(base={"k": state}), identity(seq=2)
    [outcome] = prepare_writes(group, ident, [Write("k", 0, reset=True)])
    entry = group.rows[("k", ME)]
    assert entry == Entry(ME, 3, 3, {B: Floor(4, 10), ME: Floor(2, 3)})
    assert outcome.state.value() == 0
    assert outcome.reply == Reply("k", outcome.state, siblings=True)
    assert [s["value"] for s in reply_body(outcome)["siblings"]] == [0, 0]


@pytest.mark.parametrize("write", [Write("k", 0), Write("k", 0, reset=True)])
def test_a_write_that_changes_nothing_writes_nothing(write: Write) -> None:
    group, ident = Group(), identity(seq=3)
    [outcome] = prepare_writes(group, ident, [write])
    assert not group.dirty and ident.seq == 3 and group.local_writes == 0
    assert outcome.state == CounterState() and not outcome.replayed


def test_a_write_with_an_idempotency_key_records_its_copy_and_its_reply() -> None:
    group, ident = Group(), identity()
    [outcome] = prepare_writes(group, ident, [Write("k", 5, "K")])
    expected = Record(ME, 1, key_hash("K"), fingerprint("k", 5), "k", 5)
    assert group.new_records == [(expected, outcome.reply)]
    assert group.copies == {key_hash("K"): {(ME, 1): expected}}
    assert group.replies == {(ME, 1): outcome.reply}


# --- replays --------------------------------------------------------------------------------


def test_a_retry_of_our_own_copy_answers_what_the_first_reply_showed() -> None:
    first_group, ident = Group(), identity()
    [first] = prepare_writes(first_group, ident, [Write("k", 5, "K")])
    # A later group: the store loaded the copy, its stored reply, and the key's state by now.
    [(held, reply)] = first_group.new_records
    assert reply is not None
    now = CounterState([Entry(ME, 2, 6)])
    group = Group(
        base={"k": now},
        copies={held.khash: {held.dot: held}},
        replies={held.dot: decode_reply(encode_reply(reply), "k")},
    )
    ident.seq = 2
    [again] = prepare_writes(group, ident, [Write("k", 5, '"K"')])  # quoted: the same key
    assert again.replayed and again.state == now
    assert reply_body(again) == reply_body(first) == {"key": "k", "value": 5, "version": {ME: 1}}
    assert not group.dirty and ident.seq == 2  # nothing applied again


def test_a_retry_in_the_same_group_is_a_replay_too() -> None:
    group, ident = Group(), identity()
    [first] = prepare_writes(group, ident, [Write("k", 5, "K")])
    [again] = prepare_writes(group, ident, [Write("k", 5, "K")])
    assert again.replayed and reply_body(again) == reply_body(first)
    assert ident.seq == 1 and len(group.new_records) == 1


def test_a_retry_of_a_copy_made_elsewhere_answers_the_current_state() -> None:
    theirs = record(B, 3, "k", 5)
    state = CounterState([Entry(B, 3, 5), Entry(C, 1, 2)])
    group = Group(base={"k": state}, copies={theirs.khash: {theirs.dot: theirs}})
    [outcome] = prepare_writes(group, identity(), [Write("k", 5, "K")])
    assert outcome == Outcome(state, Reply("k", state), replayed=True)
    assert not group.dirty


@pytest.mark.parametrize("write", [Write("k", 6, "K"), Write("other", 5, "K")])
def test_a_key_reused_for_another_request_is_refused(write: Write) -> None:
    theirs = record(B, 3, "k", 5)
    group = Group(copies={theirs.khash: {theirs.dot: theirs}})
    with pytest.raises(IdempotencyKeyReused):
        prepare_writes(group, identity(), [write])


def test_a_stored_reply_renders_the_body_of_the_first_reply() -> None:
    # Floors make the contributions differ from the totals; the stored reply keeps only what
    # the body shows, and renders it the same.
    state = CounterState(
        [Entry(ME, 5, 9, {B: Floor(2, 4)}), Entry(B, 3, 7), Entry(C, 1, -2, {ME: Floor(1, 1)})]
    )
    for siblings in (False, True):
        reply = Reply("k", state, siblings)
        stored = decode_reply(encode_reply(reply), "k")
        assert isinstance(stored, Reply)
        body = counter_body("k", state, siblings=siblings)
        assert reply_body(Outcome(CounterState(), stored)) == body
        assert reply_body(Outcome(CounterState(), reply)) == body


def test_a_reply_stored_as_its_body_by_an_earlier_release_is_answered_as_stored() -> None:
    legacy = '{"key":"k","value":5,"version":{"a~0000000000000001":1}}'
    stored = decode_reply(legacy, "k")
    assert stored == {"key": "k", "value": 5, "version": {ME: 1}}
    assert reply_body(Outcome(CounterState(), stored, replayed=True)) is stored


# --- refusals leave the group untouched -----------------------------------------------------


def test_a_refused_batch_leaves_the_group_and_the_counter_untouched() -> None:
    group = Group(base={"big": CounterState([Entry(ME, 1, INT64_MAX)])})
    ident = identity(seq=1)
    prepare_writes(group, ident, [Write("k", 1, "K1")])
    before_group, before_ident = snapshot(group, ident)
    with pytest.raises(Overflow):
        prepare_writes(group, ident, [Write("j", 2, "K2"), Write("big", 1)])
    assert group == before_group and ident == before_ident
    # The group goes on: a later write takes the next seq as if nothing had been tried.
    prepare_writes(group, ident, [Write("j", 2)])
    assert group.rows[("j", ME)] == Entry(ME, 3, 2)


def test_a_reset_whose_floors_no_peer_would_accept_is_refused() -> None:
    # Floors of the longest actor ids, more than MAX_FLOORS_BYTES of them.
    count = MAX_FLOORS_BYTES // 60 + 1
    entries = [Entry(f"{'n' * 40}~{i:016x}", 2**62 + i, -(2**62)) for i in range(count)]
    group, ident = Group(base={"k": CounterState(entries)}), identity()
    before_group, before_ident = snapshot(group, ident)
    with pytest.raises(Overflow, match="bytes of floors"):
        prepare_writes(group, ident, [Write("k", 0, reset=True)])
    assert group == before_group and ident == before_ident


def test_floors_within_the_limit_are_not_even_measured() -> None:
    check_floors("k", Entry(ME, 1, 0, {B: Floor(1, 1), C: Floor(2, 2)}))


def test_a_page_with_a_dot_held_for_another_key_is_refused_whole() -> None:
    group = Group(dots={(B, 1): "a"}, base={"c": CounterState()})
    ident = identity()
    before_group, before_ident = snapshot(group, ident)
    with pytest.raises(ConflictingEntry):
        prepare_apply(group, ident, [("c", Entry(C, 1, 5)), ("b", Entry(B, 1, 7))], [], [])
    assert group == before_group and ident == before_ident


def test_a_page_with_another_version_of_a_held_dot_is_refused() -> None:
    group = Group(base={"a": CounterState([Entry(B, 1, 3)])}, dots={(B, 1): "a"})
    with pytest.raises(ConflictingEntry):
        prepare_apply(group, identity(), [("a", Entry(B, 1, 99))], [], [])
    assert not group.dirty


# --- remote pages ---------------------------------------------------------------------------


def test_a_page_joins_its_entries_records_and_marks() -> None:
    group = Group(base={"a": CounterState([Entry(B, 1, 3)])})
    theirs = record(B, 2, "a", 4)
    result = prepare_apply(
        group,
        identity(),
        [("a", Entry(B, 1, 3)), ("a", Entry(B, 2, 7)), ("b", Entry(C, 1, 1))],
        [theirs, theirs],
        [((C, 1), (B, 9))],
    )
    assert (result.received, result.applied, result.records) == (3, 2, 1)
    assert group.rows == {("a", B): Entry(B, 2, 7), ("b", C): Entry(C, 1, 1)}
    assert group.new_records == [(theirs, None)]  # a peer's copy keeps no reply here
    assert group.marks == {(B, 9): (C, 1)}
    assert group.local_writes == 0


def test_an_entry_of_our_actor_beyond_our_counter_switches_to_a_new_incarnation() -> None:
    group, ident = Group(token=0xABC), identity(seq=3)
    prepare_apply(group, ident, [("k", Entry(ME, 9, 1))], [], [])
    assert ident.actor == "a~0000000000000abc" and ident.seq == 0 and ident.incarnation == 2
    assert [(s.left, s.seq) for s in group.switches] == [(ME, 3)]
    assert group.meta == {"actor": ident.actor, "incarnation": "2"}
    # Writes later in the group go under the new actor.
    prepare_writes(group, ident, [Write("k", 1)])
    assert group.rows[("k", ident.actor)] == Entry(ident.actor, 1, 1)


def test_raising_the_vector_skips_our_actor_and_what_is_already_held() -> None:
    group, ident = Group(), identity(seq=5)
    prepare_raise(group, ident, VersionVector({ME: 5, B: 3, C: 2}), committed={B: 4})
    assert group.vector == {C: 2}
    assert not group.switches


def test_a_vector_beyond_our_counter_switches_first() -> None:
    group, ident = Group(token=0xDEF), identity(seq=5)
    prepare_raise(group, ident, VersionVector({ME: 6}), committed={})
    assert group.vector == {ME: 6}  # the actor left behind is now another actor
    assert ident.actor != ME and len(group.switches) == 1


# --- retirements -----------------------------------------------------------------------------

EARLIER = "a~00000000000000e1"  # an earlier incarnation of this node


def test_a_switch_retires_the_actor_it_leaves_if_it_issued_a_dot() -> None:
    group, ident = Group(token=0xABC), identity(seq=3)
    prepare_raise(group, ident, VersionVector({ME: 9}), committed={})
    assert group.retire == {ME: 9}  # retired at 3, raised to the 9 a member holds
    fresh, blank = Group(token=0xABC), identity(seq=0)
    prepare_retire(fresh, blank, {ME: 1}, committed={})
    assert [(s.left, s.seq) for s in fresh.switches] == [(ME, 0)]
    assert fresh.retire == {ME: 1}  # the switch adds nothing: ME issued no dot in this run


def test_raising_the_vector_retires_earlier_actors_and_raises_finals() -> None:
    group, ident = Group(retired=Retirements({C: 2})), identity(seq=1)
    prepare_raise(group, ident, VersionVector({EARLIER: 4, B: 3, C: 5}), committed={})
    assert group.retire == {EARLIER: 4, C: 5}  # B is another node's: not ours to retire
    assert not group.switches


def test_a_peer_retiring_our_current_actor_switches_us_and_twice_stops_our_retiring() -> None:
    group, ident = Group(token=0xABC), identity(seq=2)
    assert prepare_retire(group, ident, {ME: 2, B: 7}, committed={}) == 1  # ME: by the switch
    assert ident.actor != ME and [s.left for s in group.switches] == [ME]
    assert group.retire == {ME: 2, B: 7} and ident.retire_earlier
    second = Group(token=0xDEF)
    prepare_retire(second, ident, {ident.actor: 1}, committed={})
    assert not ident.retire_earlier  # another process runs as this node id: stop trading
    later = Group()
    prepare_raise(later, ident, VersionVector({EARLIER: 4}), committed={})
    assert EARLIER not in later.retire


def test_a_retirement_below_what_we_hold_is_raised_to_it() -> None:
    group, ident = Group(retired=Retirements({B: 9})), identity(seq=1)
    assert prepare_retire(group, ident, {B: 3, C: 1}, committed={C: 6}) == 1
    assert group.retire == {C: 6}  # B: our map already says 9


# --- compensation ---------------------------------------------------------------------------


def test_our_duplicate_copy_is_compensated_once_the_smaller_copy_is_counted() -> None:
    smaller, ours = record(B, 1, "k", 5), record(ME, 2, "k", 5)
    kh = ours.khash
    state = CounterState([Entry(B, 1, 5), Entry(ME, 2, 5)])
    group = Group(base={"k": state}, copies={kh: {smaller.dot: smaller, ours.dot: ours}})
    ident = identity(seq=2)
    assert waiting(group, "a", kh)
    assert compensate(group, ident, {kh}) == set()  # nothing left to wait for
    assert group.rows == {("k", ME): Entry(ME, 3, 0)}
    assert group.states["k"].value() == 5  # counted once
    assert group.marks == {ours.dot: (ME, 3)}
    assert group.copies[kh][ours.dot].mark == (ME, 3)
    assert group.local_writes == 1 and ident.seq == 3
    assert not group.mixed and not group.uncompensated
    # Decided again, the marked copy is left alone.
    assert compensate(group, ident, {kh}) == set() and ident.seq == 3


def test_our_copy_waits_while_the_entry_counting_the_smaller_copy_is_missing() -> None:
    smaller, ours = record(B, 1, "k", 5), record(ME, 2, "k", 5)
    kh = ours.khash
    group = Group(
        base={"k": CounterState([Entry(ME, 2, 5)])},
        copies={kh: {smaller.dot: smaller, ours.dot: ours}},
    )
    assert compensate(group, identity(seq=2), {kh}) == {kh}
    assert not group.dirty


def test_the_smallest_copy_and_copies_of_other_nodes_are_never_compensated() -> None:
    ours, larger = record(ME, 1, "k", 5), record(B, 2, "k", 5)
    kh = ours.khash
    state = CounterState([Entry(ME, 1, 5), Entry(B, 2, 5)])
    group = Group(base={"k": state}, copies={kh: {ours.dot: ours, larger.dot: larger}})
    assert compensate(group, identity(seq=1), {kh}) == set()
    assert not group.dirty and not waiting(group, "a", kh)


def test_a_copy_a_reset_cancelled_already_is_not_compensated_again() -> None:
    smaller, ours = record(B, 1, "k", 5), record(ME, 2, "k", 5)
    kh = ours.khash
    state = CounterState([Entry(B, 3, 5, {ME: Floor(2, 5), B: Floor(1, 5)}), Entry(ME, 2, 5)])
    group = Group(base={"k": state}, copies={kh: {smaller.dot: smaller, ours.dot: ours}})
    assert compensate(group, identity(seq=2), {kh}) == set()
    assert not group.dirty


def test_a_compensation_that_would_overflow_is_left_counted_and_reported() -> None:
    smaller, ours = record(B, 1, "k", 5), record(ME, 2, "k", 5)
    kh = ours.khash
    state = CounterState([Entry(B, 1, 5), Entry(ME, 2, -(2**63))])
    group = Group(base={"k": state}, copies={kh: {smaller.dot: smaller, ours.dot: ours}})
    compensate(group, identity(seq=2), {kh})
    assert group.uncompensated == [ours] and not group.rows


def test_copies_of_different_requests_are_compensated_and_reported() -> None:
    smaller, ours = record(B, 1, "k", 5), record(ME, 2, "j", 3)
    kh = ours.khash
    group = Group(
        base={"k": CounterState([Entry(B, 1, 5)]), "j": CounterState([Entry(ME, 2, 3)])},
        copies={kh: {smaller.dot: smaller, ours.dot: ours}},
    )
    compensate(group, identity(seq=2), {kh})
    assert group.rows == {("j", ME): Entry(ME, 3, 0)}
    assert group.mixed == [kh]
