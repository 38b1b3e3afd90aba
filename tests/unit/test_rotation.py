"""Rotating the cluster secret and the token: the previous one is accepted, never preferred."""

from __future__ import annotations

import pytest

from vvstore.auth import TokenAuth
from vvstore.config import NodeConfig
from vvstore.errors import ConfigError, Unauthorized
from vvstore.signing import NONCE_HEADER, ClusterAuth

OLD = b"old-cluster-secret-0123456789abcdef01234567"
NEW = b"new-cluster-secret-0123456789abcdef01234567"
OTHER = b"another-secret-0123456789abcdef0123456789ab"
NOW = 1_700_000_000.0
BODY = b'{"format": 2}'


def request(sender: ClusterAuth, nonce: int, *, previous: bool = False) -> dict[str, str]:
    return sender.sign_request(
        "POST",
        "/sync/pull",
        BODY,
        recipient="b",
        now=NOW,
        nonce=f"{nonce:032x}",
        previous=previous,
    )


def test_a_rotating_node_accepts_both_secrets_and_records_which_each_sender_used() -> None:
    b = ClusterAuth(NEW, "b", previous=OLD)
    assert b.rotating
    old_a, new_c = ClusterAuth(OLD, "a"), ClusterAuth(NEW, "c")
    assert b.verify_request("POST", "/sync/pull", BODY, request(old_a, 1), now=NOW) == "a"
    assert b.verify_request("POST", "/sync/pull", BODY, request(new_c, 2), now=NOW) == "c"
    assert dict(b.peer_secrets) == {"a": "previous", "c": "current"}
    # Once a has the new secret, its next request moves it to "current".
    new_a = ClusterAuth(NEW, "a", previous=OLD)
    b.verify_request("POST", "/sync/pull", BODY, request(new_a, 3), now=NOW)
    assert b.peer_secrets["a"] == "current"


def test_a_secret_that_is_neither_is_refused_and_not_recorded() -> None:
    b = ClusterAuth(NEW, "b", previous=OLD)
    with pytest.raises(Unauthorized) as info:
        b.verify_request("POST", "/sync/pull", BODY, request(ClusterAuth(OTHER, "a"), 1), now=NOW)
    assert info.value.code == "bad_signature"
    assert dict(b.peer_secrets) == {}


def test_a_node_that_dropped_the_previous_secret_refuses_it() -> None:
    b = ClusterAuth(NEW, "b")
    assert not b.rotating
    with pytest.raises(Unauthorized) as info:
        b.verify_request("POST", "/sync/pull", BODY, request(ClusterAuth(OLD, "a"), 1), now=NOW)
    assert info.value.code == "bad_signature"


def test_an_answer_is_signed_with_the_secret_its_request_was_verified_with() -> None:
    b = ClusterAuth(NEW, "b", previous=OLD)
    old_a = ClusterAuth(OLD, "a")
    headers = request(old_a, 7)
    sender = b.verify_request("POST", "/sync/pull", BODY, headers, now=NOW)
    answer = b.sign_response(headers[NONCE_HEADER], 200, b"page", sender=sender)
    # The old node, which knows only the previous secret, accepts it...
    old_a.verify_response(headers[NONCE_HEADER], 200, b"page", answer, expected_node="b")
    # ...and an answer signed with the current secret it would refuse.
    current = b.sign_response(headers[NONCE_HEADER], 200, b"page")
    with pytest.raises(Unauthorized) as info:
        old_a.verify_response(headers[NONCE_HEADER], 200, b"page", current, expected_node="b")
    assert info.value.code == "tampered_response"


def test_a_rotating_requester_can_sign_with_either_and_checks_the_answer_with_the_same() -> None:
    a = ClusterAuth(NEW, "a", previous=OLD)
    old_b = ClusterAuth(OLD, "b")
    with pytest.raises(Unauthorized):
        old_b.verify_request("POST", "/sync/pull", BODY, request(a, 1), now=NOW)
    headers = request(a, 2, previous=True)
    sender = old_b.verify_request("POST", "/sync/pull", BODY, headers, now=NOW)
    assert old_b.peer_secrets[sender] == "current"  # to b, the old secret is its only one
    answer = old_b.sign_response(headers[NONCE_HEADER], 200, b"page", sender=sender)
    a.verify_response(headers[NONCE_HEADER], 200, b"page", answer, expected_node="b", previous=True)
    with pytest.raises(Unauthorized):
        a.verify_response(headers[NONCE_HEADER], 200, b"page", answer, expected_node="b")


def test_signing_with_a_previous_secret_that_is_not_there_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no previous cluster secret"):
        request(ClusterAuth(NEW, "a"), 1, previous=True)


@pytest.mark.parametrize(
    ("previous", "error", "message"),
    [
        (NEW, ConfigError, "previous cluster secret is the current one"),
        (b"short", ConfigError, "previous cluster secret must be at least 32 bytes"),
        ("text", TypeError, "previous cluster secret must be bytes"),
    ],
)
def test_an_unusable_previous_secret_is_refused(
    previous: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ClusterAuth(NEW, "a", previous=previous)  # type: ignore[arg-type]


TOKEN = b"new-client-token-0123456789abcdef0123456789"
OLD_TOKEN = b"old-client-token-0123456789abcdef0123456789"


def test_the_previous_token_is_accepted_and_counted_alongside_the_current_one() -> None:
    tokens = TokenAuth(TOKEN, previous=OLD_TOKEN)
    tokens.check("Bearer " + TOKEN.decode())
    assert tokens.previous_uses == 0
    tokens.check("Bearer " + OLD_TOKEN.decode())
    tokens.check("bearer " + OLD_TOKEN.decode())
    assert tokens.previous_uses == 2
    assert tokens.authorization() == "Bearer " + TOKEN.decode()
    with pytest.raises(Unauthorized) as info:
        tokens.check("Bearer " + OTHER.decode())
    assert info.value.code == "wrong_token"
    with pytest.raises(Unauthorized):
        TokenAuth(TOKEN).check("Bearer " + OLD_TOKEN.decode())


@pytest.mark.parametrize(
    ("previous", "message"),
    [
        (TOKEN, "previous token is the current one"),
        (b"short", "previous token must be at least 32 bytes"),
        (b"with space " + TOKEN, "previous token must be visible ASCII"),
    ],
)
def test_an_unusable_previous_token_is_refused(previous: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TokenAuth(TOKEN, previous=previous)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"previous_cluster_secret": OLD.decode()},
            "previous_cluster_secret needs a cluster_secret",
        ),
        ({"previous_token": OLD_TOKEN.decode()}, "previous_token needs a token"),
    ],
)
def test_a_previous_secret_without_a_current_one_is_a_config_error(
    given: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        NodeConfig(node_id="a", data_dir="/nonexistent", **given)  # type: ignore[arg-type]


def test_a_previous_secret_is_validated_and_left_out_of_repr() -> None:
    config = NodeConfig(
        node_id="a",
        data_dir="/nonexistent",
        cluster_secret=NEW.decode(),
        previous_cluster_secret=OLD.decode(),
        token=TOKEN.decode(),
        previous_token=OLD_TOKEN.decode(),
    )
    assert OLD.decode() not in repr(config) and OLD_TOKEN.decode() not in repr(config)
    with pytest.raises(ConfigError, match="previous_token must be at least 32 bytes"):
        NodeConfig(node_id="a", data_dir="/x", token=TOKEN.decode(), previous_token="short")
