"""The retirement map and compact vectors (pure), and their wire forms in versions 1 and 2."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vvstore.clock import VersionVector
from vvstore.errors import MalformedPayload
from vvstore.retirement import (
    DIGEST_HEX,
    EMPTY,
    Retirements,
    earlier_actors,
    finals_to_raise,
)
from vvstore.wire import (
    FORMAT_VERSION,
    Notice,
    Page,
    PullRequest,
    decode_notice,
    decode_page,
    decode_pull_request,
    encode_notice,
    encode_page,
    encode_pull_request,
)

ACTORS = [f"n{i}~{i:016x}" for i in range(8)]
actors = st.sampled_from(ACTORS)
seqs = st.integers(1, 50)
maps = st.dictionaries(actors, seqs, max_size=8)


@given(finals=maps, vector=st.dictionaries(actors, seqs, max_size=8))
def test_compact_then_expand_is_the_vector(finals: dict[str, int], vector: dict[str, int]) -> None:
    retired = Retirements(finals)
    listed = retired.compact(vector)
    assert retired.expand(listed) == VersionVector(vector)
    # Only actors that differ from their final are listed: those held in full cost nothing.
    assert all(retired.get(a) != s for a, s in listed.items())
    assert not any(a in listed for a, s in vector.items() if finals.get(a) == s)


@given(a=maps, b=maps, c=maps)
def test_merging_is_a_join(a: dict[str, int], b: dict[str, int], c: dict[str, int]) -> None:
    """Whatever order retirements arrive in, every member ends with the same map and digest."""
    ra, rb, rc = Retirements(a), Retirements(b), Retirements(c)
    ab_c = ra.with_changes(rb).with_changes(rc)
    c_ba = rc.with_changes(rb).with_changes(ra)
    assert ab_c == c_ba and ab_c.digest == c_ba.digest
    assert ra.with_changes(ra) == ra  # idempotent
    assert ra.with_changes(ra.merged(b)) == ra.with_changes(b)  # merged() is what raises it


def test_the_digest_names_the_map() -> None:
    one = Retirements({ACTORS[0]: 3, ACTORS[1]: 1})
    assert len(one.digest) == DIGEST_HEX and one.digest == Retirements(dict(one)).digest
    assert one.digest != Retirements({ACTORS[0]: 4, ACTORS[1]: 1}).digest
    assert one.digest != EMPTY.digest


def test_a_map_is_immutable_and_copies_cheaply() -> None:
    one = Retirements({ACTORS[0]: 3})
    assert copy.deepcopy(one) is one
    assert pickle.loads(pickle.dumps(one)) == one
    with pytest.raises(ValueError, match="at least 1"):
        Retirements({ACTORS[0]: 0})


def test_a_retired_actor_not_held_is_listed_at_zero() -> None:
    """A member that learnt a retirement but holds none of it must not look as if it held all."""
    retired = Retirements({ACTORS[0]: 5})
    assert retired.compact({}) == {ACTORS[0]: 0}
    assert retired.expand({ACTORS[0]: 0}) == VersionVector()
    assert retired.compact({ACTORS[0]: 2}) == {ACTORS[0]: 2}


def test_earlier_actors_are_this_nodes_other_actors_in_the_vector() -> None:
    vector = {"b~0000000000000001": 3, "b~0000000000000002": 1, "a~0000000000000001": 4}
    assert earlier_actors("b", "b~0000000000000002", vector, {}) == {"b~0000000000000001": 3}
    assert earlier_actors("b", "b~0000000000000002", vector, {"b~0000000000000001": 2}) == {}
    assert earlier_actors("a", "a~0000000000000001", vector, {}) == {}


def test_finals_rise_to_what_a_member_holds() -> None:
    retired = {ACTORS[0]: 2, ACTORS[1]: 5}
    assert finals_to_raise({ACTORS[0]: 4, ACTORS[1]: 5, ACTORS[2]: 9}, retired) == {ACTORS[0]: 4}


# --- the wire ---------------------------------------------------------------------------------

RETIRED = Retirements({ACTORS[0]: 3, ACTORS[1]: 2})
VECTOR = VersionVector({ACTORS[0]: 3, ACTORS[1]: 1, ACTORS[2]: 7})


def test_version_2_leaves_out_actors_held_in_full() -> None:
    request = PullRequest(VECTOR, None, VECTOR, FORMAT_VERSION, RETIRED)
    body = encode_pull_request(request)
    assert ACTORS[0].encode() not in body  # held at its final: summarised by the digest
    assert ACTORS[1].encode() in body and RETIRED.digest.encode() in body
    decoded = decode_pull_request(body, RETIRED)
    assert (decoded.vector, decoded.snapshot, decoded.differs) == (VECTOR, VECTOR, False)


def test_version_2_under_another_map_says_it_differs() -> None:
    body = encode_pull_request(PullRequest(VECTOR, None, None, FORMAT_VERSION, RETIRED))
    decoded = decode_pull_request(body, EMPTY)
    assert decoded.differs


def test_version_1_carries_whole_vectors_and_no_digest() -> None:
    body = encode_pull_request(PullRequest(VECTOR, None, None, 1, RETIRED))
    assert b"retired" not in body and ACTORS[0].encode() in body
    decoded = decode_pull_request(body, EMPTY)
    assert decoded.vector == VECTOR and decoded.version == 1 and not decoded.differs


@pytest.mark.parametrize("version", [1, FORMAT_VERSION])
def test_a_page_round_trips_in_either_version(version: int) -> None:
    page = Page("b", ACTORS[2], VECTOR, (), None, version=version, retired=RETIRED)
    decoded = decode_page(encode_page(page), RETIRED)
    assert (decoded.vector, decoded.version, decoded.differs) == (VECTOR, version, None)


def test_a_page_that_differs_carries_the_responders_digest_and_nothing_else() -> None:
    page = Page("b", ACTORS[2], VersionVector(), (), None, differs=RETIRED.digest)
    decoded = decode_page(encode_page(page), EMPTY)
    assert decoded.differs == RETIRED.digest
    forged = encode_page(page).replace(b'"vector":{}', b'"vector":{"%s":1}' % ACTORS[3].encode())
    with pytest.raises(MalformedPayload, match="differs carries nothing else"):
        decode_page(forged, EMPTY)


def test_a_page_compact_against_a_map_the_request_did_not_name_is_refused() -> None:
    page = Page("b", ACTORS[2], VECTOR, (), None, retired=RETIRED)
    with pytest.raises(MalformedPayload, match="another retirement map"):
        decode_page(encode_page(page), EMPTY)


def test_a_notice_round_trips_compact() -> None:
    notice = Notice("b", ACTORS[2], VECTOR, FORMAT_VERSION, RETIRED)
    decoded = decode_notice(encode_notice(notice), RETIRED)
    assert decoded.vector == VECTOR and not decoded.differs
    assert decode_notice(encode_notice(notice), EMPTY).differs
