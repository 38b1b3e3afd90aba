"""``--peer [NODE=]URL`` and the signing that lets a peer be named and proven (pure core)."""

from __future__ import annotations

import pytest

from vvstore.config import NodeConfig, parse_peer
from vvstore.errors import ConfigError, Unauthorized
from vvstore.signing import ANY_RECIPIENT, CONTENT_HASH_HEADER, ClusterAuth, check_body

SECRET = b"peer-names-cluster-secret-0123456789abcdef"
NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("http://10.0.0.2:8080", (None, "http://10.0.0.2:8080")),
        ("http://10.0.0.2:8080/", (None, "http://10.0.0.2:8080")),
        ("b=http://10.0.0.2:8080", ("b", "http://10.0.0.2:8080")),
        ("node-2=https://h.example:443", ("node-2", "https://h.example:443")),
        # An "=" after the scheme belongs to the URL.
        ("http://h:1/?a=b", (None, "http://h:1/?a=b")),
    ],
)
def test_a_peer_is_a_url_with_an_optional_node_id_before_it(
    spec: str, parsed: tuple[str | None, str]
) -> None:
    assert parse_peer(spec) == parsed


@pytest.mark.parametrize(
    ("peers", "message"),
    [
        (("bad id=http://h:1",), "peer name must be a node id"),
        (("b=ftp://h:1",), "peer URL must look like http://host:port"),
        (("=http://h:1",), "peer name must be a node id"),
        (("http://h:1", "b=http://h:1"), "peer http://h:1 is given twice"),
        (("b=http://h:1", "b=http://h:2"), "a peer name is given to two URLs"),
    ],
)
def test_bad_peers_are_refused_naming_what_is_wrong(peers: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NodeConfig(node_id="a", data_dir="d", peers=peers)


def test_a_named_peer_beyond_loopback_still_needs_a_cluster_secret() -> None:
    with pytest.raises(ConfigError, match="need a cluster secret"):
        NodeConfig(node_id="a", data_dir="d", peers=("b=http://10.0.0.2:8080",))
    NodeConfig(node_id="a", data_dir="d", peers=("b=http://127.0.0.1:8080",))


def request(body: bytes, *, recipient: str = "b", path: str = "/sync/pull") -> dict[str, str]:
    return ClusterAuth(SECRET, "a").sign_request(
        "POST", path, body, recipient=recipient, now=NOW, nonce="ab" * 16
    )


def test_the_signature_is_checked_from_the_headers_and_the_body_then_against_its_hash() -> None:
    b = ClusterAuth(SECRET, "b")
    headers = request(b"{}")
    sender, digest = b.verify_headers("POST", "/sync/pull", headers, now=NOW)
    assert (sender, digest) == ("a", headers[CONTENT_HASH_HEADER])
    check_body(b"{}", digest)
    with pytest.raises(Unauthorized) as refused:
        check_body(b"{ }", digest)
    assert refused.value.code == "bad_signature"


def test_a_hash_header_that_is_not_the_signed_one_is_refused() -> None:
    headers = request(b"{}")
    headers[CONTENT_HASH_HEADER] = "0" * 64
    with pytest.raises(Unauthorized) as refused:
        ClusterAuth(SECRET, "b").verify_headers("POST", "/sync/pull", headers, now=NOW)
    assert refused.value.code == "bad_signature"


@pytest.mark.parametrize("value", [None, "xyz", "A" * 64])
def test_a_missing_or_malformed_hash_header_is_refused(value: str | None) -> None:
    headers = request(b"{}")
    del headers[CONTENT_HASH_HEADER]
    if value is not None:
        headers[CONTENT_HASH_HEADER] = value
    with pytest.raises(Unauthorized) as refused:
        ClusterAuth(SECRET, "b").verify_headers("POST", "/sync/pull", headers, now=NOW)
    code = "missing_auth_header" if value is None else "malformed_auth_header"
    assert refused.value.code == code


def test_a_request_for_any_recipient_is_accepted_only_where_a_hello_is() -> None:
    b = ClusterAuth(SECRET, "b")
    hello = request(b"", recipient=ANY_RECIPIENT, path="/sync/hello")
    with pytest.raises(Unauthorized) as refused:
        b.verify_headers("POST", "/sync/hello", hello, now=NOW)
    assert refused.value.code == "bad_signature"
    assert b.verify_headers("POST", "/sync/hello", hello, now=NOW, any_recipient=True)[0] == "a"


def test_the_answer_names_the_node_that_signed_it() -> None:
    b = ClusterAuth(SECRET, "b")
    headers = b.sign_response("cd" * 16, 200, b'{"node":"b"}')
    a = ClusterAuth(SECRET, "a")
    assert a.verify_response("cd" * 16, 200, b'{"node":"b"}', headers, expected_node=None) == "b"
