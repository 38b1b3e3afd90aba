"""vvstore.clock: examples that read as documentation, then the laws every vector must obey."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vvstore.clock import MAX_COUNTER, MAX_ID_LENGTH, Ordering, VersionVector
from vvstore.errors import ClockError

# --- examples -------------------------------------------------------------------------------


def test_a_new_vector_is_empty() -> None:
    vv = VersionVector()
    assert len(vv) == 0
    assert vv.get("a") == 0
    assert vv.to_dict() == {}
    assert vv == VersionVector(None) == VersionVector({})


def test_a_vector_is_a_read_only_mapping_listed_in_sorted_order() -> None:
    vv = VersionVector({"c": 3, "a": 1, "b": 2})
    assert list(vv) == ["a", "b", "c"]
    assert list(vv.items()) == [("a", 1), ("b", 2), ("c", 3)]
    assert vv["b"] == 2
    assert "a" in vv
    assert "z" not in vv
    assert len(vv) == 3
    assert repr(vv) == "VersionVector({'a': 1, 'b': 2, 'c': 3})"


def test_a_missing_id_is_a_key_error_by_index_and_zero_by_get() -> None:
    vv = VersionVector({"a": 1})
    with pytest.raises(KeyError):
        vv["b"]
    assert vv.get("b") == 0
    assert vv.get("b", None) is None


def test_increment_returns_a_new_vector_and_leaves_the_original_alone() -> None:
    vv = VersionVector({"a": 1})
    assert vv.increment("a") == VersionVector({"a": 2})
    assert vv.increment("b") == VersionVector({"a": 1, "b": 1})
    assert vv == VersionVector({"a": 1})


def test_merge_takes_the_pointwise_maximum_of_any_number_of_vectors() -> None:
    a = VersionVector({"a": 3, "b": 1})
    b = VersionVector({"a": 1, "b": 4})
    c = VersionVector({"c": 2})
    assert a.merge(b) == VersionVector({"a": 3, "b": 4})
    assert a.merge(b, c) == VersionVector({"a": 3, "b": 4, "c": 2})
    assert a.merge() == a


def test_compare_before() -> None:
    old = VersionVector({"a": 1})
    assert old.compare(old.increment("a")) is Ordering.BEFORE
    assert VersionVector().compare(old) is Ordering.BEFORE


def test_compare_after() -> None:
    old = VersionVector({"a": 1})
    assert old.increment("b").compare(old) is Ordering.AFTER
    assert old.compare(VersionVector()) is Ordering.AFTER


def test_compare_equal() -> None:
    assert VersionVector({"a": 1, "b": 2}).compare(VersionVector({"b": 2, "a": 1})) is (
        Ordering.EQUAL
    )
    assert VersionVector().compare(VersionVector()) is Ordering.EQUAL


def test_compare_concurrent() -> None:
    base = VersionVector({"a": 1})
    assert base.increment("a").compare(base.increment("b")) is Ordering.CONCURRENT
    assert VersionVector({"a": 2, "b": 1}).compare(VersionVector({"a": 1, "b": 2})) is (
        Ordering.CONCURRENT
    )
    # Each side has an id the other lacks.
    assert VersionVector({"a": 1}).compare(VersionVector({"b": 1})) is Ordering.CONCURRENT


def test_a_vector_descends_itself_but_does_not_dominate_itself() -> None:
    vv = VersionVector({"a": 1, "b": 2})
    assert vv.descends(vv)
    assert not vv.dominates(vv)
    assert not vv.concurrent_with(vv)


def test_every_vector_descends_the_empty_vector() -> None:
    empty = VersionVector()
    assert VersionVector({"a": 1}).descends(empty)
    assert empty.descends(empty)
    assert not empty.descends(VersionVector({"a": 1}))


def test_dominates_and_concurrent_with() -> None:
    base = VersionVector({"a": 1})
    left, right = base.increment("a"), base.increment("b")
    assert left.dominates(base)
    assert not base.dominates(left)
    assert left.concurrent_with(right)
    assert right.concurrent_with(left)
    assert not left.concurrent_with(base)


def test_a_zero_counter_is_the_same_as_a_missing_id() -> None:
    zero = VersionVector({"a": 0, "b": 1})
    missing = VersionVector({"b": 1})
    assert zero == missing
    assert hash(zero) == hash(missing)
    assert len(zero) == 1
    assert "a" not in zero
    assert list(zero) == ["b"]
    assert zero.to_dict() == {"b": 1}
    assert zero.compare(missing) is Ordering.EQUAL
    assert VersionVector.from_dict({"a": 0}) == VersionVector()


def test_equal_vectors_are_interchangeable_as_dict_keys_and_set_members() -> None:
    seen = {VersionVector({"a": 1, "b": 0}): "first"}
    assert seen[VersionVector({"a": 1})] == "first"
    assert len({VersionVector(), VersionVector({"x": 0}), VersionVector({})}) == 1


def test_a_vector_equals_only_vectors_never_plain_dicts() -> None:
    vv = VersionVector({"a": 1})
    assert vv != {"a": 1}
    assert vv.to_dict() == {"a": 1}


def test_to_dict_is_sorted_and_a_copy() -> None:
    vv = VersionVector({"b": 2, "a": 1})
    exported = vv.to_dict()
    assert list(exported) == ["a", "b"]
    exported["a"] = 99
    assert vv["a"] == 1


def test_the_vector_does_not_see_later_changes_to_its_input() -> None:
    source = {"a": 1}
    vv = VersionVector(source)
    source["a"] = 5
    assert vv["a"] == 1


def test_a_vector_can_be_built_from_another_vector() -> None:
    vv = VersionVector({"a": 1})
    assert VersionVector(vv) == vv


@pytest.mark.parametrize("name", ["extra", "_counters", "_hash"])
def test_attributes_cannot_be_assigned_or_deleted(name: str) -> None:
    vv = VersionVector({"a": 1})
    with pytest.raises(AttributeError, match="immutable"):
        setattr(vv, name, {})
    with pytest.raises(AttributeError, match="immutable"):
        delattr(vv, name)
    assert vv == VersionVector({"a": 1})


def test_calling_init_again_does_not_change_a_vector() -> None:
    vv = VersionVector({"a": 1})
    vv.__init__({"a": 5})  # type: ignore[call-arg]
    assert vv == VersionVector({"a": 1})


def test_items_cannot_be_assigned() -> None:
    vv = VersionVector({"a": 1})
    with pytest.raises(TypeError):
        vv["a"] = 2  # type: ignore[index]


def test_copy_and_pickle_keep_the_vector() -> None:
    vv = VersionVector({"a": 1, "b": MAX_COUNTER})
    assert copy.copy(vv) == vv
    assert copy.deepcopy(vv) == vv
    restored = pickle.loads(pickle.dumps(vv))
    assert restored == vv
    assert hash(restored) == hash(vv)


# --- validation -----------------------------------------------------------------------------


def test_a_bool_counter_is_rejected_even_though_bool_is_an_int() -> None:
    with pytest.raises(ClockError) as raised:
        VersionVector({"a": True})
    assert str(raised.value) == (
        "version vector counter for 'a' must be an int in [0, 2**63-1], got True (bool)"
    )


def test_a_negative_counter_is_rejected() -> None:
    with pytest.raises(ClockError, match=r"counter for 'a' .* got -1"):
        VersionVector({"a": -1})


def test_a_counter_of_2_to_the_63_is_rejected() -> None:
    with pytest.raises(ClockError, match=r"counter for 'a' .* got 9223372036854775808"):
        VersionVector({"a": 2**63})


def test_a_counter_of_2_to_the_63_minus_1_is_accepted() -> None:
    assert MAX_COUNTER == 2**63 - 1
    assert VersionVector({"a": 2**63 - 1})["a"] == MAX_COUNTER


@pytest.mark.parametrize("count", [1.0, "1", None, [1]])
def test_a_counter_that_is_not_an_int_is_rejected(count: object) -> None:
    with pytest.raises(ClockError, match=rf"counter for 'a' .* \({type(count).__name__}\)"):
        VersionVector({"a": count})  # type: ignore[dict-item]


def test_increment_past_max_counter_raises() -> None:
    full = VersionVector({"a": MAX_COUNTER})
    with pytest.raises(ClockError, match=r"'a'.*already 2\*\*63-1"):
        full.increment("a")
    assert full.increment("b")["b"] == 1


def test_an_empty_id_is_rejected() -> None:
    with pytest.raises(ClockError, match=r"actor id must have 1 to 64 characters, got ''"):
        VersionVector({"": 1})


def test_an_id_of_64_characters_is_accepted_and_65_rejected() -> None:
    assert MAX_ID_LENGTH == 64
    assert len(VersionVector({"x" * 64: 1})) == 1
    with pytest.raises(ClockError, match=r"'x{65}' \(65 characters\)"):
        VersionVector({"x" * 65: 1})


@pytest.mark.parametrize("actor_id", [7, None, b"a", ("a",)])
def test_an_id_that_is_not_a_str_is_rejected(actor_id: object) -> None:
    with pytest.raises(ClockError, match=r"actor id must be a str"):
        VersionVector({actor_id: 1})  # type: ignore[dict-item]


def test_increment_validates_the_id() -> None:
    with pytest.raises(ClockError, match=r"actor id must be a str, got 1 \(int\)"):
        VersionVector().increment(1)  # type: ignore[arg-type]
    with pytest.raises(ClockError, match=r"1 to 64 characters"):
        VersionVector().increment("")


def test_very_long_values_are_cut_short_in_messages() -> None:
    with pytest.raises(ClockError) as raised:
        VersionVector({"y" * 10_000: 1})
    assert len(str(raised.value)) < 200
    assert "(10000 characters)" in str(raised.value)


@pytest.mark.parametrize("data", [[("a", 1)], "a", None, VersionVector({"a": 1})])
def test_from_dict_accepts_only_a_dict(data: object) -> None:
    with pytest.raises(ClockError, match=r"must be a dict"):
        VersionVector.from_dict(data)


def test_from_dict_rejects_non_str_keys_and_bad_counters() -> None:
    with pytest.raises(ClockError, match=r"actor id must be a str, got 1 \(int\)"):
        VersionVector.from_dict({1: 1})
    with pytest.raises(ClockError, match=r"counter for 'a' .* got '1' \(str\)"):
        VersionVector.from_dict({"a": "1"})


def test_the_constructor_needs_a_mapping() -> None:
    with pytest.raises(ClockError, match=r"mapping of actor id to counter, got \[\('a', 1\)\]"):
        VersionVector([("a", 1)])  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["merge", "compare", "descends", "dominates", "concurrent_with"])
def test_operations_on_two_vectors_refuse_anything_else(method: str) -> None:
    with pytest.raises(ClockError, match=r"expects a VersionVector, got \{'a': 1\} \(dict\)"):
        getattr(VersionVector(), method)({"a": 1})


def test_clock_error_is_a_value_error() -> None:
    assert issubclass(ClockError, ValueError)


# --- properties -----------------------------------------------------------------------------

# A few ids and mostly small counters make equal and overlapping vectors common; counters at the
# top of the range exercise the int64 boundary.
ACTOR_IDS = st.sampled_from(["a", "b", "c", "d", "e"])
COUNTERS = st.one_of(
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=MAX_COUNTER - 2, max_value=MAX_COUNTER),
)
COUNTER_DICTS = st.dictionaries(ACTOR_IDS, COUNTERS, max_size=5)
VECTORS = COUNTER_DICTS.map(VersionVector)


@st.composite
def related_pairs(draw: st.DrawFn) -> tuple[VersionVector, VersionVector]:
    """Two vectors that are equal, ordered or unrelated, so every Ordering comes up often."""
    first = draw(VECTORS)
    relation = draw(st.sampled_from(["equal", "descendant", "independent"]))
    if relation == "equal":
        # Same counters, built another way: different insertion order and explicit zeros.
        zeros = draw(st.dictionaries(ACTOR_IDS.filter(lambda i: i not in first), st.just(0)))
        second = VersionVector({**zeros, **dict(reversed(first.to_dict().items()))})
    elif relation == "descendant":
        second = first.merge(draw(VECTORS))
    else:
        second = draw(VECTORS)
    if draw(st.booleans()):
        first, second = second, first
    return first, second


def model_compare(a: VersionVector, b: VersionVector) -> Ordering:
    """The definition, spelled out over the union of ids."""
    ids = set(a.to_dict()) | set(b.to_dict())
    a_le_b = all(a.get(i) <= b.get(i) for i in ids)
    b_le_a = all(b.get(i) <= a.get(i) for i in ids)
    if a_le_b and b_le_a:
        return Ordering.EQUAL
    if a_le_b:
        return Ordering.BEFORE
    if b_le_a:
        return Ordering.AFTER
    return Ordering.CONCURRENT


@given(VECTORS, VECTORS)
def test_merge_is_commutative(a: VersionVector, b: VersionVector) -> None:
    assert a.merge(b) == b.merge(a)


@given(VECTORS, VECTORS, VECTORS)
def test_merge_is_associative(a: VersionVector, b: VersionVector, c: VersionVector) -> None:
    assert a.merge(b).merge(c) == a.merge(b.merge(c)) == a.merge(b, c)


@given(VECTORS)
def test_merge_is_idempotent(a: VersionVector) -> None:
    assert a.merge(a) == a
    assert a.merge() == a


@given(related_pairs())
def test_merge_descends_both_inputs(pair: tuple[VersionVector, VersionVector]) -> None:
    a, b = pair
    merged = a.merge(b)
    assert merged.descends(a)
    assert merged.descends(b)


@given(VECTORS, VECTORS, VECTORS)
def test_merge_is_the_least_vector_that_descends_both(
    a: VersionVector, b: VersionVector, c: VersionVector
) -> None:
    assert c.descends(a.merge(b)) is (c.descends(a) and c.descends(b))


@given(related_pairs())
def test_compare_matches_the_pointwise_definition(
    pair: tuple[VersionVector, VersionVector],
) -> None:
    a, b = pair
    assert a.compare(b) is model_compare(a, b)


@given(related_pairs())
def test_compare_is_antisymmetric(pair: tuple[VersionVector, VersionVector]) -> None:
    a, b = pair
    converse = {
        Ordering.BEFORE: Ordering.AFTER,
        Ordering.AFTER: Ordering.BEFORE,
        Ordering.EQUAL: Ordering.EQUAL,
        Ordering.CONCURRENT: Ordering.CONCURRENT,
    }
    assert b.compare(a) is converse[a.compare(b)]


@given(related_pairs())
def test_compare_agrees_with_descends_dominates_and_concurrent_with(
    pair: tuple[VersionVector, VersionVector],
) -> None:
    a, b = pair
    expected = {
        # ordering: (a descends b, b descends a)
        Ordering.BEFORE: (False, True),
        Ordering.AFTER: (True, False),
        Ordering.EQUAL: (True, True),
        Ordering.CONCURRENT: (False, False),
    }
    ordering = a.compare(b)
    assert (a.descends(b), b.descends(a)) == expected[ordering]
    assert a.dominates(b) is (ordering is Ordering.AFTER)
    assert b.dominates(a) is (ordering is Ordering.BEFORE)
    assert a.concurrent_with(b) is (ordering is Ordering.CONCURRENT)
    assert (a == b) is (ordering is Ordering.EQUAL)


@given(related_pairs())
def test_equal_vectors_hash_equal(pair: tuple[VersionVector, VersionVector]) -> None:
    a, b = pair
    if a == b:
        assert hash(a) == hash(b)


@given(COUNTER_DICTS)
def test_to_dict_and_from_dict_round_trip(counters: dict[str, int]) -> None:
    vv = VersionVector(counters)
    exported = vv.to_dict()
    assert exported == {i: c for i, c in counters.items() if c != 0}
    assert list(exported) == sorted(exported)
    assert VersionVector.from_dict(exported) == vv
    assert VersionVector.from_dict(counters) == vv


@given(VECTORS, ACTOR_IDS)
def test_increment_dominates_the_original(vv: VersionVector, actor_id: str) -> None:
    if vv.get(actor_id) == MAX_COUNTER:
        with pytest.raises(ClockError):
            vv.increment(actor_id)
        return
    bumped = vv.increment(actor_id)
    assert bumped.dominates(vv)
    assert vv.compare(bumped) is Ordering.BEFORE
    assert bumped[actor_id] == vv.get(actor_id) + 1
    assert len(bumped) - len(vv) == (0 if actor_id in vv else 1)
