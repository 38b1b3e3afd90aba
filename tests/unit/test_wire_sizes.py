"""The page budget's measures agree with the encoding they stand for."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vvstore.counter import INT64_MAX, INT64_MIN, Entry, Floor
from vvstore.errors import MalformedPayload
from vvstore.wire import FLOOR_BYTES_BOUND, decode_page, encode_entry, entry_size, floors_bytes

ACTOR = st.from_regex(r"[A-Za-z0-9_-]{1,40}~[0-9a-f]{16}", fullmatch=True)
KEY = st.text(min_size=1, max_size=64)
FLOORS = st.dictionaries(
    ACTOR,
    st.builds(Floor, st.integers(1, 2**63 - 1), st.integers(INT64_MIN, INT64_MAX)),
    max_size=3,
)


@given(ACTOR, st.integers(1, 2**63 - 1), KEY, st.integers(INT64_MIN, INT64_MAX), FLOORS)
def test_entry_size_is_the_encoded_size_plus_a_comma(
    actor: str, seq: int, key: str, total: int, floors: dict[str, Floor]
) -> None:
    entry = Entry(actor, seq, total, floors)
    encoded = json.dumps(encode_entry(key, entry), separators=(",", ":"), ensure_ascii=False)
    assert entry_size(key, entry) == len(encoded.encode()) + 1


@given(FLOORS)
def test_no_floor_costs_more_than_the_bound(floors: dict[str, Floor]) -> None:
    longest = {"x" * 40 + "~" + "f" * 16: Floor(2**63 - 1, INT64_MIN)}
    assert floors_bytes(longest) <= FLOOR_BYTES_BOUND + 2  # the braces
    assert floors_bytes(floors) <= 2 + len(floors) * FLOOR_BYTES_BOUND


def test_a_hex_field_with_whitespace_is_refused() -> None:
    """bytes.fromhex skips spaces: 30 digits and 2 spaces decoded to 15 bytes of a 16-byte
    key hash. Found by bench/libraries.py's probes."""
    record = ["A~0123456789abcdef", 1, "00" * 15 + "  ", "00" * 8, "k", 1]
    body = {"v": 1, "node": "A", "actor": "A~0123456789abcdef", "vector": {}, "entries": []}
    body |= {"records": [record], "marks": [], "next": None}
    with pytest.raises(MalformedPayload, match="key hash must be 32 hex digits"):
        decode_page(json.dumps(body).encode())
    record[2] = "00" * 16
    assert decode_page(json.dumps(body).encode()).records[0].khash == bytes(16)
