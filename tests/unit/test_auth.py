"""vvstore.auth: the client bearer token, the cluster HMAC on sync requests and responses."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vvstore.auth import (
    AUTHORIZATION_HEADER,
    MIN_SECRET_BYTES,
    ROUTE_CREDENTIALS,
    TokenAuth,
    credential_for,
    load_secret,
    load_token,
    read_secret,
)
from vvstore.errors import ConfigError, Unauthorized
from vvstore.signing import (
    CONTENT_HASH_HEADER,
    NODE_HEADER,
    NONCE_HEADER,
    RESPONSE_SIGNATURE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ClusterAuth,
)

TOKEN = b"client-token-0123456789abcdef0123456789"
SECRET = b"cluster-secret-0123456789abcdef0123456789"
NOW = 1_700_000_000.0
NONCE = "0123456789abcdef0123456789abcdef"
BODY = b'{"format": 1, "vector": {}}'


def nonce(i: int) -> str:
    return f"{i:032x}"


# --- bearer token ---------------------------------------------------------------------------


def test_the_right_token_is_accepted_whatever_the_case_of_the_scheme() -> None:
    tokens = TokenAuth(TOKEN)
    tokens.check("Bearer " + TOKEN.decode())
    tokens.check("bearer " + TOKEN.decode())
    tokens.check("  BEARER \t" + TOKEN.decode() + " ")
    tokens.check(tokens.authorization())
    assert tokens.authorization() == "Bearer " + TOKEN.decode()
    assert AUTHORIZATION_HEADER == "Authorization"


@pytest.mark.parametrize("header", [None, "", "   ", "Bearer", "Bearer   "])
def test_a_missing_token_is_refused(header: str | None) -> None:
    with pytest.raises(Unauthorized, match="missing bearer token") as info:
        TokenAuth(TOKEN).check(header)
    assert info.value.code == "missing_token"


@pytest.mark.parametrize(
    "presented",
    [
        TOKEN[:-1],  # a prefix
        TOKEN + b"x",  # an extension
        TOKEN[:-1] + b"X",  # same length, last byte differs
        b"x",
        b"\xc3\xa9" * 40,  # not ASCII
        TOKEN + b" " + TOKEN,
    ],
)
def test_a_wrong_token_is_refused(presented: bytes) -> None:
    header = "Bearer " + presented.decode("utf-8")
    with pytest.raises(Unauthorized, match="wrong token") as info:
        TokenAuth(TOKEN).check(header)
    assert info.value.code == "wrong_token"


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNzd29yZA==", "Token " + TOKEN.decode(), TOKEN.decode()]
)
def test_another_scheme_is_refused(header: str) -> None:
    with pytest.raises(Unauthorized, match="Bearer") as info:
        TokenAuth(TOKEN).check(header)
    assert info.value.code == "wrong_scheme"


def test_the_comparison_is_of_equal_length_digests_whatever_is_presented(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        assert isinstance(a, bytes)
        assert isinstance(b, bytes)
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    tokens = TokenAuth(TOKEN)
    for presented in ("x", TOKEN.decode()[:-1], TOKEN.decode() + "x" * 500, TOKEN.decode()):
        with contextlib.suppress(Unauthorized):
            tokens.check("Bearer " + presented)
    assert compared == [(32, 32)] * 4


@pytest.mark.parametrize(
    "token",
    [b"x" * (MIN_SECRET_BYTES - 1), b"", b"x" * 4097, b"x" * 31 + b" x", b"\xff" * 40],
)
def test_an_unusable_token_is_refused_at_construction(token: bytes) -> None:
    with pytest.raises(ConfigError, match="token must be") as info:
        TokenAuth(token)
    assert isinstance(info.value, ValueError)


def test_a_token_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="bytes"):
        TokenAuth(TOKEN.decode())  # type: ignore[arg-type]


def test_load_token_strips_surrounding_whitespace_from_text_or_bytes() -> None:
    load_token(TOKEN + b"\n").check("Bearer " + TOKEN.decode())
    load_token("\t " + TOKEN.decode() + "\r\n").check("Bearer " + TOKEN.decode())
    with pytest.raises(ConfigError, match="at least 32 bytes, got 31"):
        load_token(" " + "x" * 31 + "\n")


def test_load_secret_strips_and_validates() -> None:
    assert load_secret(SECRET.decode() + "\n") == SECRET
    assert load_secret(b"  " + SECRET) == SECRET
    with pytest.raises(ConfigError, match="cluster secret must be at least 32 bytes"):
        load_secret("short\n", what="cluster secret")
    with pytest.raises(ConfigError, match="token in file 'f' must be at least 32 bytes, got 5"):
        load_secret("short", what="token", source="file 'f'")


def test_read_secret_reads_the_file_else_the_variable_else_nothing() -> None:
    files = {"token": b"\n" + TOKEN + b"\n", "short": b"short", "latin": b"\xe9" * 40}

    def read(path: str) -> bytes:
        if path not in files:
            raise FileNotFoundError(2, "No such file or directory")
        return files[path]

    environ = {"VV": " " + SECRET.decode(), "EMPTY": ""}
    kwargs: dict[str, Any] = {"what": "token", "read": read, "environ": environ}
    assert read_secret("token", env="VV", **kwargs) == TOKEN.decode()  # the file wins
    assert read_secret(None, env="VV", **kwargs) == SECRET.decode()
    assert read_secret(None, env="EMPTY", **kwargs) is None  # empty counts as unset
    assert read_secret(None, env="UNSET", **kwargs) is None
    assert read_secret(None, **kwargs) is None
    with pytest.raises(ConfigError, match="cannot read the token file 'gone': No such file"):
        read_secret("gone", **kwargs)
    with pytest.raises(ConfigError, match="token in file 'short' must be at least 32 bytes"):
        read_secret("short", **kwargs)
    with pytest.raises(ConfigError, match="token in file 'latin' must be UTF-8 text"):
        read_secret("latin", **kwargs)


def test_secrets_do_not_appear_in_repr() -> None:
    assert TOKEN.decode() not in repr(TokenAuth(TOKEN))
    assert SECRET.decode() not in repr(ClusterAuth(SECRET, "a"))


# --- cluster HMAC: requests -----------------------------------------------------------------


def nodes(**kwargs: Any) -> tuple[ClusterAuth, ClusterAuth]:
    return ClusterAuth(SECRET, "node-a", **kwargs), ClusterAuth(SECRET, "node-b", **kwargs)


def signed(
    a: ClusterAuth,
    *,
    method: str = "POST",
    path_qs: str = "/sync/pull",
    body: bytes = BODY,
    recipient: str = "node-b",
    now: float = NOW,
    nonce: str = NONCE,
) -> dict[str, str]:
    return a.sign_request(method, path_qs, body, recipient=recipient, now=now, nonce=nonce)


def test_a_signed_request_is_accepted_and_names_its_sender() -> None:
    a, b = nodes()
    headers = signed(a)
    assert set(headers) == {
        NODE_HEADER,
        TIMESTAMP_HEADER,
        NONCE_HEADER,
        CONTENT_HASH_HEADER,
        SIGNATURE_HEADER,
    }
    assert headers[NODE_HEADER] == "node-a"
    assert headers[TIMESTAMP_HEADER] == "1700000000000"
    assert headers[NONCE_HEADER] == NONCE
    assert b.verify_request("POST", "/sync/pull", BODY, headers, now=NOW + 0.5) == "node-a"
    assert b.skews == {"node-a": -0.5}
    assert b.last_skew == -0.5


def test_the_signature_is_hmac_sha256_of_the_documented_canonical_string() -> None:
    """A known-answer test: changing the signed format must change this test too."""
    a, _ = nodes()
    headers = signed(a, method="post", path_qs="/sync/pull?b=2&a=%7e+x", now=1.2345)
    message = "\n".join(
        [
            "vvstore-sync-v1",
            "POST",
            "/sync/pull?a=~%20x&b=2",
            "1234",
            NONCE,
            "node-a",
            "node-b",
            hashlib.sha256(BODY).hexdigest(),
        ]
    ).encode()
    assert headers[SIGNATURE_HEADER] == hmac.new(SECRET, message, hashlib.sha256).hexdigest()


def test_header_names_are_looked_up_without_regard_to_case() -> None:
    a, b = nodes()
    headers = {name.lower(): value for name, value in signed(a).items()}
    assert b.verify_request("POST", "/sync/pull", BODY, headers, now=NOW) == "node-a"


@pytest.mark.parametrize(
    ("signed_target", "received_target"),
    [
        ("/sync/pull?a=1&b=2", "/sync/pull?b=2&a=1"),
        ("/sync/pull?a=1&a=2", "/sync/pull?a=2&a=1"),
        ("/sync/pull?a=x+y", "/sync/pull?a=x%20y"),
        ("/sync/pull?a=%7e", "/sync/pull?a=~"),
        ("/sync/%7Epull", "/sync/~pull"),
        ("/sync/pull?a=%2f", "/sync/pull?a=%2F"),
        ("/sync/pull?a=1&&b=2", "/sync/pull?b=2&a=1"),
        ("/sync/caf%C3%A9", "/sync/caf\u00e9"),
        ("/sync/caf%C3%A9", "/sync/caf\udcc3\udca9"),  # raw bytes kept by surrogateescape
    ],
)
def test_equivalent_targets_verify(signed_target: str, received_target: str) -> None:
    a, b = nodes()
    headers = signed(a, path_qs=signed_target)
    assert b.verify_request("POST", received_target, BODY, headers, now=NOW) == "node-a"


def _replace(headers: Mapping[str, str], name: str, value: str) -> dict[str, str]:
    return {**headers, name: value}


Verify = Callable[[ClusterAuth, dict[str, str]], str]

TAMPERINGS: dict[str, Verify] = {
    "method": lambda b, h: b.verify_request("PUT", "/sync/pull", BODY, h, now=NOW),
    "path": lambda b, h: b.verify_request("POST", "/sync/notice", BODY, h, now=NOW),
    "escaped slash": lambda b, h: b.verify_request("POST", "/sync%2Fpull", BODY, h, now=NOW),
    "query added": lambda b, h: b.verify_request("POST", "/sync/pull?x=1", BODY, h, now=NOW),
    "body": lambda b, h: b.verify_request("POST", "/sync/pull", BODY + b" ", h, now=NOW),
    "empty body": lambda b, h: b.verify_request("POST", "/sync/pull", b"", h, now=NOW),
    "timestamp": lambda b, h: b.verify_request(
        "POST", "/sync/pull", BODY, _replace(h, TIMESTAMP_HEADER, "1700000000001"), now=NOW
    ),
    "nonce": lambda b, h: b.verify_request(
        "POST", "/sync/pull", BODY, _replace(h, NONCE_HEADER, nonce(7)), now=NOW
    ),
    "sender": lambda b, h: b.verify_request(
        "POST", "/sync/pull", BODY, _replace(h, NODE_HEADER, "node-c"), now=NOW
    ),
    "signature": lambda b, h: b.verify_request(
        "POST", "/sync/pull", BODY, _replace(h, SIGNATURE_HEADER, "0" * 64), now=NOW
    ),
    "recipient": lambda b, h: ClusterAuth(SECRET, "node-c").verify_request(
        "POST", "/sync/pull", BODY, h, now=NOW
    ),
    "secret": lambda b, h: ClusterAuth(b"another-secret-" * 3, "node-b").verify_request(
        "POST", "/sync/pull", BODY, h, now=NOW
    ),
}


@pytest.mark.parametrize("field", sorted(TAMPERINGS))
def test_a_tampered_request_is_refused(field: str) -> None:
    a, b = nodes()
    with pytest.raises(Unauthorized, match="bad signature") as info:
        TAMPERINGS[field](b, signed(a))
    assert info.value.code == "bad_signature"
    assert b.nonce_count == 0


def test_a_query_value_change_is_refused() -> None:
    a, b = nodes()
    headers = signed(a, path_qs="/sync/pull?since=1&limit=10")
    with pytest.raises(Unauthorized, match="bad signature"):
        b.verify_request("POST", "/sync/pull?limit=10&since=2", BODY, headers, now=NOW)


@pytest.mark.parametrize("offset", [-31.0, 31.0, -3600.0, 1e9])
def test_a_stale_or_future_timestamp_is_refused_and_its_skew_recorded(offset: float) -> None:
    a, b = nodes()
    headers = signed(a)
    with pytest.raises(Unauthorized, match="clock skew") as info:
        b.verify_request("POST", "/sync/pull", BODY, headers, now=NOW + offset)
    assert info.value.code == "clock_skew"
    assert b.skews["node-a"] == pytest.approx(-offset)
    assert b.last_skew == pytest.approx(-offset)
    assert b.nonce_count == 0


@pytest.mark.parametrize("offset", [-30.0, -29.0, 29.0, 30.0])
def test_a_timestamp_within_the_window_is_accepted(offset: float) -> None:
    a, b = nodes()
    assert b.verify_request("POST", "/sync/pull", BODY, signed(a), now=NOW + offset) == "node-a"


def test_the_skew_of_a_forged_stale_request_is_not_recorded() -> None:
    a, b = nodes()
    forged = _replace(signed(a), SIGNATURE_HEADER, "ab" * 32)
    with pytest.raises(Unauthorized, match="clock skew"):
        b.verify_request("POST", "/sync/pull", BODY, forged, now=NOW + 600)
    assert b.skews == {}
    assert b.last_skew is None


def test_skews_are_kept_per_sender_and_last_skew_is_the_latest() -> None:
    a, b = nodes()
    c = ClusterAuth(SECRET, "node-c")
    b.verify_request("POST", "/sync/pull", BODY, signed(a, now=NOW + 2), now=NOW)
    b.verify_request("POST", "/sync/pull", BODY, signed(c, nonce=nonce(2)), now=NOW + 1)
    assert b.skews == {"node-a": 2.0, "node-c": -1.0}
    assert b.last_skew == -1.0
    b.verify_request("POST", "/sync/pull", BODY, signed(a, nonce=nonce(3)), now=NOW + 3)
    assert b.last_skew == -3.0


def test_a_replayed_request_is_refused() -> None:
    a, b = nodes()
    headers = signed(a)
    b.verify_request("POST", "/sync/pull", BODY, headers, now=NOW)
    with pytest.raises(Unauthorized, match="replayed nonce") as info:
        b.verify_request("POST", "/sync/pull", BODY, headers, now=NOW + 1)
    assert info.value.code == "replayed_nonce"


def test_the_same_nonce_from_two_senders_is_two_requests() -> None:
    a, b = nodes()
    c = ClusterAuth(SECRET, "node-c")
    b.verify_request("POST", "/sync/pull", BODY, signed(a), now=NOW)
    assert b.verify_request("POST", "/sync/pull", BODY, signed(c), now=NOW) == "node-c"


def test_a_nonce_is_remembered_only_after_a_valid_signature() -> None:
    a, b = nodes()
    headers = signed(a)
    forged = _replace(headers, SIGNATURE_HEADER, "cd" * 32)
    with pytest.raises(Unauthorized, match="bad signature"):
        b.verify_request("POST", "/sync/pull", BODY, forged, now=NOW)
    assert b.nonce_count == 0
    assert b.verify_request("POST", "/sync/pull", BODY, headers, now=NOW) == "node-a"


def test_nonces_expire_once_their_timestamp_leaves_the_window() -> None:
    a, b = nodes(window=30.0)
    first = signed(a, nonce=nonce(1))
    b.verify_request("POST", "/sync/pull", BODY, first, now=NOW)
    assert b.nonce_count == 1
    b.verify_request(
        "POST", "/sync/pull", BODY, signed(a, nonce=nonce(2), now=NOW + 30), now=NOW + 30
    )
    assert b.nonce_count == 2
    b.verify_request(
        "POST", "/sync/pull", BODY, signed(a, nonce=nonce(3), now=NOW + 31), now=NOW + 31
    )
    assert b.nonce_count == 2  # the first expired
    with pytest.raises(Unauthorized, match="clock skew"):
        b.verify_request("POST", "/sync/pull", BODY, first, now=NOW + 31)


def test_a_nonce_from_the_future_is_remembered_until_its_timestamp_leaves_the_window() -> None:
    a, b = nodes(window=30.0)
    ahead = signed(a, now=NOW + 25)
    b.verify_request("POST", "/sync/pull", BODY, ahead, now=NOW)
    with pytest.raises(Unauthorized, match="replayed nonce"):
        b.verify_request("POST", "/sync/pull", BODY, ahead, now=NOW + 54)


def test_the_nonce_cache_is_bounded_and_evicts_what_would_expire_first() -> None:
    a, b = nodes(max_nonces=3)
    requests = [signed(a, nonce=nonce(i), now=NOW + i) for i in range(5)]
    for headers in requests:
        b.verify_request("POST", "/sync/pull", BODY, headers, now=NOW + 4)
    assert b.nonce_count == 3
    # The documented trade-off: an evicted nonce is refused only by the window, so a replay
    # of the oldest request is accepted while its timestamp is fresh...
    assert b.verify_request("POST", "/sync/pull", BODY, requests[0], now=NOW + 5) == "node-a"
    assert b.nonce_count == 3
    # ...while recent nonces are still refused.
    with pytest.raises(Unauthorized, match="replayed nonce"):
        b.verify_request("POST", "/sync/pull", BODY, requests[4], now=NOW + 5)


def test_a_request_claiming_to_come_from_the_verifier_is_refused() -> None:
    _, b = nodes()
    headers = signed(b, recipient="node-c")
    with pytest.raises(Unauthorized, match="this node") as info:
        b.verify_request("POST", "/sync/pull", BODY, headers, now=NOW)
    assert info.value.code == "malformed_auth_header"


@pytest.mark.parametrize("missing", [NODE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER])
def test_a_missing_header_is_refused(missing: str) -> None:
    a, b = nodes()
    headers = signed(a)
    del headers[missing]
    with pytest.raises(Unauthorized, match=f"missing {missing} header") as info:
        b.verify_request("POST", "/sync/pull", BODY, headers, now=NOW)
    assert info.value.code == "missing_auth_header"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (SIGNATURE_HEADER, "zz" * 32),
        (SIGNATURE_HEADER, "ab" * 31),
        (SIGNATURE_HEADER, "ab" * 33),
        (SIGNATURE_HEADER, "ab" * 32 + "\n"),
        (SIGNATURE_HEADER, ""),
        (TIMESTAMP_HEADER, "soon"),
        (TIMESTAMP_HEADER, "-1700000000000"),
        (TIMESTAMP_HEADER, "+1700000000000"),
        (TIMESTAMP_HEADER, "1700000000000.5"),
        (TIMESTAMP_HEADER, "1e12"),
        (TIMESTAMP_HEADER, "01700000000000"),
        (TIMESTAMP_HEADER, "9" * 5000),
        # Arabic-Indic digits, which int() would take:
        (TIMESTAMP_HEADER, "\u0661\u0667" + "\u0660" * 11),
        (TIMESTAMP_HEADER, ""),
        (NONCE_HEADER, "0123"),
        (NONCE_HEADER, "ab" * 33),
        (NONCE_HEADER, NONCE.upper()),
        (NONCE_HEADER, "f" * 10_000),
        (NODE_HEADER, "node a"),
        (NODE_HEADER, "node-a\nnode-b"),
        (NODE_HEADER, "n" * 65),
        (NODE_HEADER, "nœud"),
        (NODE_HEADER, ""),
    ],
)
def test_a_malformed_header_is_refused(name: str, value: str) -> None:
    a, b = nodes()
    headers = _replace(signed(a), name, value)
    with pytest.raises(Unauthorized, match=f"malformed {name} header") as info:
        b.verify_request("POST", "/sync/pull", BODY, headers, now=NOW)
    assert info.value.code == "malformed_auth_header"


@pytest.mark.parametrize(
    ("method", "path_qs"),
    [
        ("POST", ""),
        ("POST", "sync/pull"),
        ("POST", "/" + "x" * 9000),
        ("POST", "/sync/pull\ud800"),
        ("PO ST", "/sync/pull"),
    ],
)
def test_a_malformed_method_or_target_is_refused(method: str, path_qs: str) -> None:
    a, b = nodes()
    with pytest.raises(Unauthorized, match="malformed request") as info:
        b.verify_request(method, path_qs, BODY, signed(a), now=NOW)
    assert info.value.code == "malformed_auth_header"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nonce": "short"}, "nonce"),
        ({"nonce": NONCE.upper()}, "nonce"),
        ({"recipient": "node-a"}, "itself"),
        ({"recipient": "two words"}, "recipient"),
        ({"method": "GET /"}, "method"),
        ({"path_qs": "sync/pull"}, "path"),
        ({"now": float("nan")}, "now"),
        ({"now": -1.0}, "now"),
    ],
)
def test_sign_request_refuses_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    a, _ = nodes()
    with pytest.raises(ValueError, match=message):
        signed(a, **kwargs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((b"x" * 31, "a"), "cluster secret must be at least 32 bytes"),
        ((SECRET, ""), "node id"),
        ((SECRET, "a\nb"), "node id"),
        ((SECRET, "a", 0.0), "window"),
        ((SECRET, "a", float("inf")), "window"),
        ((SECRET, "a", float("nan")), "window"),
        ((SECRET, "a", 30.0, 0), "max_nonces"),
    ],
)
def test_cluster_auth_refuses_a_bad_configuration(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ClusterAuth(*args)


# --- cluster HMAC: responses ----------------------------------------------------------------

REPLY = b'{"format": 1, "entries": []}'


def test_a_signed_response_is_accepted() -> None:
    a, b = nodes()
    headers = b.sign_response(NONCE, 200, REPLY)
    assert set(headers) == {NODE_HEADER, RESPONSE_SIGNATURE_HEADER}
    assert headers[NODE_HEADER] == "node-b"
    a.verify_response(NONCE, 200, REPLY, headers, expected_node="node-b")
    a.verify_response(NONCE, 200, REPLY, headers, expected_node=None)


def test_the_response_signature_is_hmac_sha256_of_the_documented_canonical_string() -> None:
    _, b = nodes()
    message = "\n".join(
        ["vvstore-sync-response-v1", "node-b", NONCE, "200", hashlib.sha256(REPLY).hexdigest()]
    ).encode()
    expected = hmac.new(SECRET, message, hashlib.sha256).hexdigest()
    assert b.sign_response(NONCE, 200, REPLY)[RESPONSE_SIGNATURE_HEADER] == expected


@pytest.mark.parametrize(
    ("nonce_", "status", "body"),
    [(NONCE, 200, REPLY + b" "), (NONCE, 200, b""), (NONCE, 500, REPLY), (nonce(9), 200, REPLY)],
)
def test_a_tampered_response_is_refused(nonce_: str, status: int, body: bytes) -> None:
    a, b = nodes()
    headers = b.sign_response(NONCE, 200, REPLY)
    with pytest.raises(Unauthorized, match="tampered or unsigned response") as info:
        a.verify_response(nonce_, status, body, headers, expected_node="node-b")
    assert info.value.code == "tampered_response"


def test_a_response_signed_with_another_secret_is_refused() -> None:
    a, _ = nodes()
    headers = ClusterAuth(b"y" * 32, "node-b").sign_response(NONCE, 200, REPLY)
    with pytest.raises(Unauthorized, match="tampered or unsigned response"):
        a.verify_response(NONCE, 200, REPLY, headers, expected_node="node-b")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {NODE_HEADER: "node-b"},
        {RESPONSE_SIGNATURE_HEADER: "ab" * 32},
        {NODE_HEADER: "node-b", RESPONSE_SIGNATURE_HEADER: "not hex"},
        {NODE_HEADER: "node b", RESPONSE_SIGNATURE_HEADER: "ab" * 32},
    ],
)
def test_an_unsigned_response_is_refused(headers: dict[str, str]) -> None:
    a, _ = nodes()
    with pytest.raises(Unauthorized, match="tampered or unsigned response") as info:
        a.verify_response(NONCE, 401, REPLY, headers, expected_node="node-b")
    assert info.value.code == "unsigned_response"


def test_a_response_from_another_node_is_refused() -> None:
    a, _ = nodes()
    headers = ClusterAuth(SECRET, "node-c").sign_response(NONCE, 200, REPLY)
    with pytest.raises(Unauthorized, match="node-c") as info:
        a.verify_response(NONCE, 200, REPLY, headers, expected_node="node-b")
    assert info.value.code == "unexpected_responder"
    with pytest.raises(Unauthorized, match="node-a"):
        a.verify_response(NONCE, 200, REPLY, a.sign_response(NONCE, 200, REPLY), expected_node=None)


def test_a_request_signature_is_not_a_response_signature() -> None:
    a, b = nodes()
    request = signed(b, recipient="node-a")
    forged = {NODE_HEADER: "node-b", RESPONSE_SIGNATURE_HEADER: request[SIGNATURE_HEADER]}
    with pytest.raises(Unauthorized, match="tampered"):
        a.verify_response(NONCE, 200, BODY, forged, expected_node="node-b")


def test_sign_response_refuses_bad_arguments() -> None:
    _, b = nodes()
    with pytest.raises(ValueError, match="nonce"):
        b.sign_response("xyz", 200, REPLY)
    with pytest.raises(ValueError, match="status"):
        b.sign_response(NONCE, 99, REPLY)


# --- properties: nothing but Unauthorized escapes verification ------------------------------

HEADER_NAMES = [NODE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER]
header_names = st.one_of(
    st.sampled_from([*HEADER_NAMES, RESPONSE_SIGNATURE_HEADER]),
    st.sampled_from(HEADER_NAMES).map(str.lower),
    st.text(max_size=20),
)
header_values = st.one_of(
    st.text(max_size=100),
    st.text(alphabet="0123456789abcdef", min_size=0, max_size=80),
    st.integers(min_value=0).map(str),
    st.just("9" * 5000),
    st.just(NONCE),
    st.just("node-a"),
)
header_dicts = st.dictionaries(header_names, header_values, max_size=8)


@given(
    headers=header_dicts,
    method=st.one_of(st.just("POST"), st.text(max_size=20)),
    path_qs=st.one_of(st.just("/sync/pull"), st.text(max_size=200)),
    body=st.binary(max_size=200),
)
def test_random_request_headers_raise_nothing_but_unauthorized(
    headers: dict[str, str], method: str, path_qs: str, body: bytes
) -> None:
    _, b = nodes()
    try:
        b.verify_request(method, path_qs, body, headers, now=NOW)
    except Unauthorized:
        return
    pytest.fail("a random request was accepted")


@given(
    headers=header_dicts,
    status=st.integers(min_value=-1000, max_value=1000),
    body=st.binary(max_size=200),
)
def test_random_response_headers_raise_nothing_but_unauthorized(
    headers: dict[str, str], status: int, body: bytes
) -> None:
    a, _ = nodes()
    try:
        a.verify_response(NONCE, status, body, headers, expected_node=None)
    except Unauthorized:
        return
    pytest.fail("a random response was accepted")


query_pairs = st.lists(
    st.tuples(st.text(max_size=8), st.text(max_size=8)).map(lambda kv: f"{kv[0]}={kv[1]}"),
    max_size=6,
)


@given(
    path=st.text(max_size=40).map(lambda p: "/" + p.replace("?", "")),
    pairs=query_pairs,
    data=st.data(),
)
def test_any_target_round_trips_whatever_the_order_of_its_query(
    path: str, pairs: list[str], data: st.DataObject
) -> None:
    a, b = nodes()
    pairs = [pair.replace("&", "") for pair in pairs]
    shuffled = data.draw(st.permutations(pairs))
    headers = signed(a, path_qs=path + "?" + "&".join(pairs))
    received = path + "?" + "&".join(shuffled)
    assert b.verify_request("POST", received, BODY, headers, now=NOW) == "node-a"


# --- route table ----------------------------------------------------------------------------


def test_the_route_table_lists_every_route_of_the_api() -> None:
    assert dict(ROUTE_CREDENTIALS) == {
        ("GET", "/health"): "none",
        ("GET", "/metrics"): "token",
        ("GET", "/status"): "token",
        ("GET", "/openapi.yaml"): "token",
        ("GET", "/counters"): "token",
        ("GET", "/counters/{key}"): "token",
        ("POST", "/counters/{key}"): "token",
        ("DELETE", "/counters/{key}"): "token",
        ("POST", "/batch"): "token",
        ("POST", "/sync/pull"): "cluster",
        ("POST", "/sync/notice"): "cluster",
        ("POST", "/sync/retired"): "cluster",
        ("POST", "/sync/hello"): "cluster",
    }


@pytest.mark.parametrize(
    ("method", "path", "credential"),
    [
        ("GET", "/health", "none"),
        ("HEAD", "/health", "none"),
        ("get", "/health?verbose=1", "none"),
        ("GET", "/status", "token"),
        ("GET", "/openapi.yaml", "token"),
        ("GET", "/counters", "token"),
        ("GET", "/counters/visits", "token"),
        ("POST", "/counters/a/b%2Fc", "token"),
        ("DELETE", "/counters/x", "token"),
        ("POST", "/batch", "token"),
        ("POST", "/sync/pull", "cluster"),
        ("POST", "/sync/notice", "cluster"),
        # Not in the table: the token first, so a stranger cannot map the routes.
        ("GET", "/sync/pull", "token"),
        ("POST", "/health", "token"),
        ("GET", "/health/", "token"),
        ("GET", "/counters/", "token"),
        ("GET", "/nope", "token"),
        ("GET", "", "token"),
    ],
)
def test_credential_for(method: str, path: str, credential: str) -> None:
    assert credential_for(method, path) == credential
