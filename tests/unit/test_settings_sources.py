"""Settings from the environment and a config file: the parsers, their errors, the defaults.

The pure parsers (:func:`env_layer`, :func:`file_layer`) are tested on mappings and bytes; the
CLI's :func:`settings_from_args` reads files under ``tmp_path``. That every row of the table is
reachable by every source, in the right precedence, is tested in test_config.py, which walks
the table.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vvstore.cli import _parser, settings_from_args
from vvstore.config import (
    SETTINGS,
    SecretRef,
    Sourced,
    env_layer,
    file_layer,
    resolve,
)
from vvstore.errors import ConfigError

TOKEN = "t" * 40


@pytest.fixture(autouse=True)
def _no_settings_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VVSTORE_"):
            monkeypatch.delenv(name)


def test_a_setting_no_source_gives_is_its_default() -> None:
    chosen = resolve({}, {}, {})
    for row in SETTINGS:
        if row.required:
            assert row.name not in chosen
        else:
            assert chosen[row.name] == Sourced(row.default, "default"), row.name


# --- the environment -----------------------------------------------------------------------


def test_env_values_are_typed_and_named_by_their_variable() -> None:
    layer = env_layer(
        {
            "VVSTORE_PORT": "9000",
            "VVSTORE_SYNC_INTERVAL": "0.5",
            "VVSTORE_PEERS": " http://127.0.0.1:1 ,http://127.0.0.1:2,",
            "VVSTORE_HOST": "",  # empty: unset
            "VVSTORE_CLUSTER_SECRET_FILE": "/etc/secret",
            "UNRELATED": "x",
        }
    )
    assert layer == {
        "port": Sourced(9000, "env", "$VVSTORE_PORT"),
        "sync_interval": Sourced(0.5, "env", "$VVSTORE_SYNC_INTERVAL"),
        "peers": Sourced(("http://127.0.0.1:1", "http://127.0.0.1:2"), "env", "$VVSTORE_PEERS"),
        "cluster_secret": Sourced(
            SecretRef(path="/etc/secret"), "env", "$VVSTORE_CLUSTER_SECRET_FILE"
        ),
    }


def test_the_token_variable_comes_after_the_token_file_variable() -> None:
    assert env_layer({"VVSTORE_TOKEN": TOKEN})["token"] == Sourced(
        SecretRef(variable="VVSTORE_TOKEN"), "env", "$VVSTORE_TOKEN"
    )
    both = env_layer({"VVSTORE_TOKEN": TOKEN, "VVSTORE_TOKEN_FILE": "/t"})
    assert both["token"].value == SecretRef(path="/t")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"VVSTORE_PORT": "eighty"}, "$VVSTORE_PORT must be an integer, got 'eighty'"),
        ({"VVSTORE_PORT": "8080.0"}, "$VVSTORE_PORT must be an integer, got '8080.0'"),
        ({"VVSTORE_BACKOFF_CAP": "2s"}, "$VVSTORE_BACKOFF_CAP must be a number, got '2s'"),
        (
            {"VVSTORE_PORT": "70000"},
            "$VVSTORE_PORT: port must be an int in [0, 65535], got 70000",
        ),
        (
            {"VVSTORE_LOG_FORMAT": "xml"},
            "$VVSTORE_LOG_FORMAT: log_format must be 'text' or 'json', got 'xml'",
        ),
        (
            {"VVSTORE_PEERS": "http://127.0.0.1:1,ftp://x"},
            "$VVSTORE_PEERS: peer URL must look like http://host:port, got 'ftp://x'",
        ),
    ],
)
def test_a_bad_env_value_is_refused_naming_the_variable(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        env_layer(environ)
    assert info.value.message == message


# --- the config file -----------------------------------------------------------------------


def test_a_config_file_gives_typed_values() -> None:
    data = b'port = 9000\nsync_interval = 2\npeers = []\ntoken_file = "/t"\n'
    assert file_layer(data, "n.toml") == {
        "port": Sourced(9000, "file", "n.toml"),
        "sync_interval": Sourced(2.0, "file", "n.toml"),  # an integer is a number too
        "peers": Sourced((), "file", "n.toml"),
        "token": Sourced(SecretRef(path="/t"), "file", "n.toml"),
    }
    assert isinstance(file_layer(b"sync_interval = 2", "n.toml")["sync_interval"].value, float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 8080", "config file 'n.toml', key 'prot': no such setting (did you mean 'port'?)"),
        ("colour = 1", "config file 'n.toml', key 'colour': no such setting"),
        ('port = "8080"', "config file 'n.toml', key 'port' must be an integer, got '8080' (str)"),
        ("port = 80.5", "config file 'n.toml', key 'port' must be an integer, got 80.5 (float)"),
        ("port = true", "config file 'n.toml', key 'port' must be an integer, got True (bool)"),
        (
            "sync_interval = true",
            "config file 'n.toml', key 'sync_interval' must be a number, got True (bool)",
        ),
        (
            'peers = "http://127.0.0.1:1"',
            "config file 'n.toml', key 'peers' must be an array, got 'http://127.0.0.1:1'",
        ),
        ("peers = [1]", "config file 'n.toml', key 'peers' must be a string, got 1 (int)"),
        (
            "port = 70000",
            "config file 'n.toml', key 'port': port must be an int in [0, 65535], got 70000",
        ),
        (
            'token = "' + TOKEN + '"',
            "config file 'n.toml', key 'token': a secret is never written in the config file;"
            " give the path of a file holding it as token_file",
        ),
        (
            "token_file = 3",
            "config file 'n.toml', key 'token_file' must be the path of a file, got 3",
        ),
        (
            "[node]\nport = 1",
            "config file 'n.toml', key 'node': no such setting (did you mean 'node_id'?)",
        ),
    ],
)
def test_a_bad_config_file_is_refused_naming_the_file_and_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        file_layer(text.encode(), "n.toml")
    assert info.value.message == message
    assert TOKEN not in info.value.message


def test_a_config_file_that_is_not_toml_or_not_text_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"config file 'n.toml' is not valid TOML: .*line 1"):
        file_layer(b"port = =\nhost = 1", "n.toml")
    with pytest.raises(ConfigError, match=r"config file 'n.toml' is not UTF-8 text"):
        file_layer(b"\xff\xfe", "n.toml")


def test_a_config_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    args = _parser().parse_args(["serve", "--config", str(missing)])
    with pytest.raises(ConfigError, match=r"cannot read the config file .*missing\.toml"):
        settings_from_args(args)


def test_a_required_setting_missing_everywhere_says_how_to_give_it() -> None:
    args = _parser().parse_args(["serve", "--data-dir", "d"])
    with pytest.raises(ConfigError) as info:
        settings_from_args(args)
    assert info.value.message == (
        "node_id is required: give --node-id, set VVSTORE_NODE_ID"
        " or write node_id in the --config file"
    )
