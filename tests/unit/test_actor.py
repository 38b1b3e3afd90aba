"""Actor ids: the syntax has one home, and the codec's old names still reach it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vvstore.actor import ACTOR_ID_RE, actor_prefix, is_actor_of, make_actor_id, node_of
from vvstore.config import NODE_ID_RE

node_ids = st.from_regex(NODE_ID_RE, fullmatch=True)
tokens = st.integers(min_value=0, max_value=2**64 - 1)


@given(node_id=node_ids, token=tokens)
def test_a_made_id_is_valid_and_names_its_node(node_id: str, token: int) -> None:
    actor = make_actor_id(node_id, token)
    assert ACTOR_ID_RE.fullmatch(actor)
    assert node_of(actor) == node_id
    assert is_actor_of(actor, node_id)
    assert actor.startswith(actor_prefix(node_id))


@given(node_id=node_ids, other=node_ids, token=tokens)
def test_an_id_is_of_one_node_only(node_id: str, other: str, token: int) -> None:
    """Even when one node id is a prefix of the other ("A" and "AB")."""
    assert is_actor_of(make_actor_id(node_id, token), other) is (node_id == other)


def test_the_token_is_16_lower_case_hex_digits_of_its_low_64_bits() -> None:
    assert make_actor_id("n1", 0) == "n1~0000000000000000"
    assert make_actor_id("n1", 0xABC) == "n1~0000000000000abc"
    assert make_actor_id("n1", 2**64 + 5) == "n1~0000000000000005"


@pytest.mark.parametrize(
    "text",
    ["n1", "n1~", "n1~0123", "n1~0123456789ABCDEF", "~0123456789abcdef", "a b~0123456789abcdef"],
)
def test_what_is_not_an_actor_id(text: str) -> None:
    assert not ACTOR_ID_RE.fullmatch(text)


def test_node_of_is_not_a_validator() -> None:
    assert node_of("?") == "?"
    assert node_of("A~x~y") == "A"
