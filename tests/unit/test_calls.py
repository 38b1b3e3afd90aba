"""The clients' pure half (vvstore.calls): what each call sends, how a reply is read, when a
failure is tried again, node URLs and the lines of ``vvstore batch``."""

from __future__ import annotations

import json

import pytest

from vvstore import calls, errors
from vvstore.replies import MalformedReply, ReplyError

# --- what is sent ----------------------------------------------------------------------------


def test_a_counter_key_is_percent_encoded_in_full() -> None:
    assert calls.get("a/b c+d%").target == "/counters/a%2Fb%20c%2Bd%25"
    assert calls.get("é").target == "/counters/%C3%A9"


def test_a_listing_query_escapes_plus_and_space() -> None:
    call = calls.list_counters("a b+c", "x/y", 7)
    assert call.target == "/counters?prefix=a%20b%2Bc&limit=7&after=x%2Fy"
    assert calls.list_counters("", None, 100).target == "/counters?prefix=&limit=100"


def test_writes_carry_their_key_and_say_so() -> None:
    call = calls.increment("k", -3, "key-1")
    assert (call.method, call.keyed, call.is_read) == ("POST", True, False)
    assert call.headers["Idempotency-Key"] == "key-1"
    assert json.loads(call.body or b"") == {"amount": -3}
    assert not calls.increment("k", 1, None).keyed
    assert "Idempotency-Key" not in calls.reset("k", None).headers
    assert calls.reset("k", "r").keyed and calls.reset("k", "r").body is None


def test_a_batch_is_keyed_only_when_every_item_is() -> None:
    call = calls.batch([("a", 1), ("b", 2)], ["k/0", "k/1"])
    assert json.loads(call.body or b"") == {
        "increments": [
            {"key": "a", "amount": 1, "idempotency_key": "k/0"},
            {"key": "b", "amount": 2, "idempotency_key": "k/1"},
        ]
    }
    assert call.keyed
    assert not calls.batch([("a", 1), ("b", 2)], ["k/0", None]).keyed
    with pytest.raises(ValueError, match="2 items need as many keys"):
        calls.batch([("a", 1), ("b", 2)], ["k/0"])


def test_batch_keys_number_the_items_and_leave_room_for_the_numbers() -> None:
    assert calls.batch_keys("run-7", 3) == ["run-7/0", "run-7/1", "run-7/2"]
    assert calls.batch_keys('"q"', 1) == ["q/0"]  # the quoted form is the same key
    assert len(calls.batch_keys("x" * 124, 1000)[-1]) == 128
    with pytest.raises(errors.InvalidRequest, match="at most 124 characters for 1000 items"):
        calls.batch_keys("x" * 125, 1000)
    with pytest.raises(errors.InvalidRequest, match="printable ASCII"):
        calls.batch_keys("naïve", 1)


# --- node URLs -------------------------------------------------------------------------------


def test_a_url_without_a_scheme_is_http() -> None:
    assert calls.node_url("127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert calls.node_url("https://node.example/") == "https://node.example"
    assert calls.node_urls("h:1") == ["http://h:1"]
    for bad in ("ftp://h", "http://", "http:///x"):
        with pytest.raises(ValueError):
            calls.node_url(bad)
    with pytest.raises(ValueError, match="at least one"):
        calls.node_urls([])


# --- reading a reply -------------------------------------------------------------------------


def test_a_reply_is_parsed_or_raised_as_its_error() -> None:
    call = calls.get("k")
    body = b'{"key": "k", "value": 2, "version": {"a~1": 2}, "siblings": []}'
    assert calls.read_reply(call, "http://n", 200, body).value == 2
    refused = b'{"error": {"code": "not_found", "message": "gone"}}'
    with pytest.raises(errors.NotFound, match="gone"):
        calls.read_reply(call, "http://n", 404, refused)
    with pytest.raises(ReplyError) as caught:
        calls.read_reply(call, "http://n", 502, b"<html>bad gateway</html>")
    assert not caught.value.definite and caught.value.status == 502


def test_an_unreadable_200_is_indefinite_only_after_a_write() -> None:
    with pytest.raises(MalformedReply, match=r"^GET http://n/counters/k: the reply is not JSON"):
        calls.read_reply(calls.get("k"), "http://n", 200, b"nope")
    with pytest.raises(MalformedReply) as caught:
        calls.read_reply(calls.increment("k", 1, "i"), "http://n", 200, b"{}")
    assert not caught.value.definite and "a counter has no 'key'" in caught.value.message


# --- when to try again -----------------------------------------------------------------------

LOST = errors.PeerUnreachable("connection refused")


def _delays(call: calls.Call[object], *, nodes: int, attempts: int) -> list[tuple[int, float]]:
    """(node, wait) before each retry, when every try fails with an indefinite error."""
    plan = calls.Attempts(call, nodes=nodes, start=1, attempts=attempts, retry_delay=0.5)
    out = []
    for _ in range(plan.tries):
        delay = plan.retry_after(LOST)
        if delay is None:
            break
        out.append((plan.current, delay))
    return out


def test_a_read_tries_each_node_once_without_waiting() -> None:
    assert _delays(calls.get("k"), nodes=3, attempts=5) == [(2, 0.0), (0, 0.0)]
    assert _delays(calls.status(), nodes=1, attempts=5) == []


def test_a_keyed_write_is_tried_attempts_times_across_the_nodes_backing_off() -> None:
    call = calls.increment("k", 1, "i")
    assert _delays(call, nodes=2, attempts=4) == [(0, 0.5), (1, 1.0), (0, 2.0)]


def test_a_write_without_a_key_is_tried_once() -> None:
    assert _delays(calls.increment("k", 1, None), nodes=3, attempts=5) == []
    assert _delays(calls.batch([("a", 1)], [None]), nodes=3, attempts=5) == []


@pytest.mark.parametrize(
    "failure",
    [errors.InvalidRequest("no"), errors.Unauthorized("no"), MalformedReply("?", definite=False)],
)
def test_a_refusal_or_an_unreadable_reply_is_final(failure: errors.VVStoreError) -> None:
    for call in (calls.get("k"), calls.increment("k", 1, "i")):
        plan = calls.Attempts(call, nodes=3, start=0, attempts=5, retry_delay=0.5)
        assert plan.retry_after(failure) is None and plan.current == 0


# --- vvstore batch's lines -------------------------------------------------------------------


def test_batch_lines_are_key_then_amount() -> None:
    lines = ["page-views 5\n", "\n", "cart items -2\r\n", "  a/b   +3  \n", "x 9223372036854775807"]
    assert calls.parse_batch_lines(lines) == [
        ("page-views", 5),
        ("cart items", -2),
        ("a/b", 3),
        ("x", 2**63 - 1),
    ]


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        (["a 1", "lonely"], "line 2: expected KEY AMOUNT, got 'lonely'"),
        (["a 1", "", "b 1.5"], "line 3: amount must be an integer, got '1.5'"),
        (["a \uff15"], "line 1: amount must be an integer"),  # a non-ASCII digit
        (["a 9223372036854775808"], "line 1: amount 9223372036854775808 is outside"),
        (["a " + "9" * 5000], "line 1: amount 9999"),
        ([".. 1"], "line 1: key must not be '.' or '..'"),
        (["k" * 300 + " 1"], "line 1: key must be 1 to 256 bytes"),
        ([], "no KEY AMOUNT line"),
        (["  ", "\n"], "no KEY AMOUNT line"),
    ],
)
def test_a_bad_batch_line_is_named_by_its_number(lines: list[str], says: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        calls.parse_batch_lines(lines)
    assert caught.value.message.startswith(says), caught.value.message
    assert len(caught.value.message) < 400  # a huge line is not echoed whole
