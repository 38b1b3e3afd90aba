"""Out-of-range numbers anywhere a request carries one: 4xx naming the field, never 5xx (issue 8.6).

Python refuses to convert more than 4,300 digits (a ValueError) and converts long ones in
quadratic time, so every number is checked for size before conversion: a query parameter by
:func:`vvstore.codec.decode_int_param`, a JSON integer by the decoder, which leaves one of
more than ``MAX_NUMBER_CHARS`` characters unconverted for the field's validator to refuse.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpClient

from vvstore.api import create_app
from vvstore.codec import MAX_NUMBER_CHARS, decode_batch, decode_increment, decode_int_param
from vvstore.errors import CodecError, InvalidRequest, Overflow, RequestError
from vvstore.node import Node
from vvstore.wire import decode_notice, decode_page, decode_pull_request

ApiClient = TestClient[web.Request, web.Application]

A = "fake~0123456789abcdef"

#: Numbers as JSON text: beyond every range, at the conversion limits, and of other types.
OUT_OF_RANGE = [
    "9" * 4301,
    "-" + "9" * 4301,
    "1" + "0" * 10_000,
    "9" * (MAX_NUMBER_CHARS + 1),
    "9" * MAX_NUMBER_CHARS,
    str(2**63),
    str(-(2**63) - 1),
    "-1",
    "0",
    "1e999999",
    "-1e999999",
    "1.5",
    "1" + "0" * 400 + ".0",
]

#: JSON templates with one numeric slot ``%s``, for every numeric field of every decoder.
FIELDS: dict[str, tuple[Any, str]] = {
    "increment amount": (decode_increment, '{"amount": %s}'),
    "batch amount": (decode_batch, '{"increments": [{"key": "k", "amount": %s}]}'),
    "pull version": (
        decode_pull_request,
        '{"v": %s, "vector": {}, "cursor": null, "snapshot": null}',
    ),
    "pull vector seq": (
        decode_pull_request,
        f'{{"v": 1, "vector": {{"{A}": %s}}, "cursor": null, "snapshot": null}}',
    ),
    "pull cursor seq": (
        decode_pull_request,
        f'{{"v": 1, "vector": {{}}, "cursor": ["{A}", %s], "snapshot": null}}',
    ),
    "pull snapshot seq": (
        decode_pull_request,
        f'{{"v": 1, "vector": {{}}, "cursor": null, "snapshot": {{"{A}": %s}}}}',
    ),
    "notice vector seq": (
        decode_notice,
        f'{{"v": 1, "node": "n", "actor": "{A}", "vector": {{"{A}": %s}}}}',
    ),
}
_PAGE = (
    '{"v": 1, "node": "n", "actor": "%s", "vector": {}, "entries": [%s], "records": [%s],'
    ' "marks": [%s], "next": %s}'
)
FIELDS.update(
    {
        "page entry seq": (decode_page, _PAGE % (A, f'["{A}", %s, "k", 1, {{}}]', "", "", "null")),
        "page entry total": (
            decode_page,
            _PAGE % (A, f'["{A}", 1, "k", %s, {{}}]', "", "", "null"),
        ),
        "page floor seq": (
            decode_page,
            _PAGE % (A, f'["{A}", 1, "k", 1, {{"{A}": [%s, 1]}}]', "", "", "null"),
        ),
        "page floor total": (
            decode_page,
            _PAGE % (A, f'["{A}", 1, "k", 1, {{"{A}": [1, %s]}}]', "", "", "null"),
        ),
        "page record seq": (
            decode_page,
            _PAGE % (A, "", f'["{A}", %s, "{"0" * 32}", "{"0" * 16}", "k", 1]', "", "null"),
        ),
        "page record amount": (
            decode_page,
            _PAGE % (A, "", f'["{A}", 1, "{"0" * 32}", "{"0" * 16}", "k", %s]', "", "null"),
        ),
        "page mark seq": (decode_page, _PAGE % (A, "", "", f'["{A}", %s, "{A}", 1]', "null")),
        "page next seq": (decode_page, _PAGE % (A, "", "", "", f'["{A}", %s]')),
    }
)

#: What a decoder may raise: errors the API maps to 4xx (``error_response``), nothing else.
REFUSALS = (InvalidRequest, Overflow, CodecError)


def numbers() -> st.SearchStrategy[str]:
    digits = st.integers(1, 12_000).map(lambda n: "9" * n)
    return st.one_of(
        st.sampled_from(OUT_OF_RANGE),
        digits,
        digits.map(lambda d: "-" + d),
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=False).map(json.dumps),
        st.tuples(st.integers(1, 60), st.integers(-400, 400)).map(lambda p: f"{'1' * p[0]}e{p[1]}"),
    )


@settings(max_examples=300)
@given(field=st.sampled_from(sorted(FIELDS)), number=numbers())
def test_a_number_of_any_size_in_any_field_is_refused_or_accepted_never_an_error(
    field: str, number: str
) -> None:
    decode, template = FIELDS[field]
    try:
        decode((template % number).encode())
    except REFUSALS as exc:
        assert not isinstance(exc, RequestError) or exc.message
    # Anything else (ValueError from int(), TypeError, ...) fails the test.


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_a_huge_number_is_refused_by_name(field: str) -> None:
    decode, template = FIELDS[field]
    with pytest.raises(REFUSALS) as caught:
        decode((template % ("9" * 4301)).encode())
    assert "4301 characters" in str(caught.value) or "format version" in str(caught.value)


@settings(max_examples=200)
@given(raw=st.one_of(st.sampled_from(OUT_OF_RANGE), st.text(max_size=50)))
def test_a_query_integer_is_checked_before_conversion(raw: str) -> None:
    try:
        value = decode_int_param("limit", raw, 1, 1000)
    except InvalidRequest as exc:
        assert exc.message.startswith("limit must be an integer from 1 to 1000")
        assert len(exc.message) < 200
    else:
        assert 1 <= value <= 1000 and raw == str(value).rjust(len(raw), "0")


# --- over HTTP -------------------------------------------------------------------------


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, node: Node) -> ApiClient:
    return await aiohttp_client(create_app(node))


# (The request line itself is limited to 8190 bytes by aiohttp, before vvstore sees it.)
@pytest.mark.parametrize("raw", ["9" * 4301, "9" * 8000, "1" + "0" * 50, "-5", "1e3", "٣"])
async def test_a_huge_limit_is_a_400_naming_it(client: ApiClient, raw: str) -> None:
    """Issue 8.6: ``?limit=`` with 4,301 digits was a 500 (Python's int-string limit)."""
    async with client.get("/counters", params={"limit": raw}) as response:
        body = await response.json()
        assert response.status == 400, body
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["message"].startswith("limit must be an integer from 1 to 1000")


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/counters/k", '{"amount": %s}'),
        ("/batch", '{"increments": [{"key": "k", "amount": %s}]}'),
    ],
)
@pytest.mark.parametrize("digits", [4301, 20_000])
async def test_a_huge_amount_is_a_400_naming_it_and_changes_nothing(
    client: ApiClient, path: str, template: str, digits: int
) -> None:
    async with client.post(path, data=template % ("9" * digits)) as response:
        body = await response.json()
        assert response.status == 400, body
    assert "amount must be an integer of at most" in body["error"]["message"]
    async with client.get("/counters") as response:
        assert (await response.json())["counters"] == []
