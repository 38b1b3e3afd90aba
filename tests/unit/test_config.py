"""vvstore.config: the settings table, NodeConfig's validation, and the sources of settings.

The tests walk :data:`SETTINGS`, so a setting added to the table is covered here without a new
test: it must get exactly one flag, a flag not given must leave its default, a value given by
its flag, its ``VVSTORE_<NAME>`` variable or its config file key must reach NodeConfig (flag over
variable over file over default), and a value out of range must be refused with a message
naming it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from vvstore.cli import _parser, config_from_args, main, settings_from_args
from vvstore.config import SETTINGS, NodeConfig, Setting, Sourced
from vvstore.errors import ConfigError

TOKEN = "t" * 40
SECRET = "s" * 48
#: Options of ``serve`` that are not settings.
PROCESS_DESTS = {"help", "config"}
#: A valid value other than the default for each str setting without choices.
OTHER_STR = {"node_id": "other-node", "host": "127.0.0.2"}
#: The required settings, when a test gives them no other value.
BASE = {"node_id": "n1", "data_dir": "d"}


@pytest.fixture(autouse=True)
def _no_settings_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VVSTORE_"):
            monkeypatch.delenv(name)


def serve_parser() -> argparse.ArgumentParser:
    actions = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    parser: argparse.ArgumentParser = actions[0].choices["serve"]
    return parser


def serve_args(*flags: str, data_dir: str = "d") -> argparse.Namespace:
    return _parser().parse_args(["serve", "--node-id", "n1", "--data-dir", data_dir, *flags])


def dest(row: Setting) -> str:
    return row.key if row.secret else row.name


def other_value(row: Setting, tmp_path: Path) -> Any:
    """A valid value for ``row`` that is not its default."""
    if row.secret:
        return TOKEN if row.name == "token" else SECRET
    if row.repeated:
        return ("http://127.0.0.1:9001", "http://localhost:9002")
    if row.choices:
        return next(c for c in row.choices if c != row.default)
    if row.name == "data_dir":
        return str(tmp_path / "other")
    if row.type is str:
        assert row.name in OTHER_STR, f"give the new setting {row.name} a value in OTHER_STR"
        return OTHER_STR[row.name]
    if row.type is int:
        return row.low if row.low != row.default else row.high
    assert isinstance(row.default, float)
    return row.default + 1.5


def flags_for(row: Setting, value: Any, tmp_path: Path) -> list[str]:
    if row.secret:
        path = tmp_path / row.name
        path.write_text(f"  {value}\n")
        return [row.flag, str(path)]
    if row.repeated:
        return [part for one in value for part in (row.flag, str(one))]
    return [row.flag, str(value)]


def bad_values(row: Setting) -> list[Any]:
    """Values ``row`` must refuse (none for a setting without a range, choices or check)."""
    if row.secret:
        return ["x" * 31]
    if row.choices:
        return ["bogus"]
    if row.type is int:
        assert row.low is not None and row.high is not None
        return [row.low - 1, row.high + 1, "12"]
    if row.positive:
        return [0, 0.0, -1.0, math.nan]
    if row.low is not None:
        return [row.low - 1, math.nan]
    return []


# --- the table ---------------------------------------------------------------------------


def test_the_table_has_one_row_per_field_in_order() -> None:
    assert [row.name for row in SETTINGS] == [f.name for f in dataclasses.fields(NodeConfig)]
    for row in SETTINGS:
        assert row.help and row.group, row
        assert row.type in (str, int, float), row
        if row.type is float:
            assert row.unit == "seconds", row
        if row.secret:
            assert row.default is None, "a secret is never required and has no default value"


def test_a_secret_is_left_out_of_repr() -> None:
    config = NodeConfig(node_id="n1", data_dir="d", token=TOKEN, cluster_secret=SECRET)
    assert TOKEN not in repr(config) and SECRET not in repr(config)


# --- flags ---------------------------------------------------------------------------------


def test_every_setting_has_exactly_one_serve_flag() -> None:
    actions = serve_parser()._actions
    for row in SETTINGS:
        mine = [a for a in actions if a.dest == dest(row)]
        assert len(mine) == 1, f"{row.name}: {[a.option_strings for a in mine]}"
        expected = "--" + row.name.replace("_", "-")
        if row.secret:
            expected += "-file"
        elif row.repeated:
            expected = "--peer"
        assert mine[0].option_strings == [expected], row.name
        # Not required by argparse: the environment or the config file may give it.
        assert not mine[0].required, row.name
    settings = {dest(row) for row in SETTINGS}
    assert {a.dest for a in actions} == settings | PROCESS_DESTS


def test_a_flag_not_given_leaves_the_field_default() -> None:
    by_dest = {a.dest: a for a in serve_parser()._actions}
    for row in SETTINGS:
        assert by_dest[dest(row)].default is None, row.name  # "not given"
    config = config_from_args(serve_args())
    assert config == NodeConfig(node_id="n1", data_dir="d")


def test_every_flag_value_reaches_the_config(tmp_path: Path) -> None:
    wanted = {row.name: other_value(row, tmp_path) for row in SETTINGS}
    argv = [part for row in SETTINGS for part in flags_for(row, wanted[row.name], tmp_path)]
    config = config_from_args(_parser().parse_args(["serve", *argv]))
    for row in SETTINGS:
        assert wanted[row.name] != row.default, row.name
        assert getattr(config, row.name) == wanted[row.name], row.name


def test_the_token_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VVSTORE_TOKEN", f"{TOKEN}\n")
    assert config_from_args(serve_args()).token == TOKEN
    monkeypatch.setenv("VVSTORE_TOKEN", "short")
    with pytest.raises(ConfigError, match=r"token in \$VVSTORE_TOKEN must be at least 32 bytes"):
        config_from_args(serve_args())


def test_secret_files_are_named_when_refused(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("x" * 31 + "\n")
    with pytest.raises(ConfigError) as info:
        config_from_args(serve_args("--cluster-secret-file", str(short)))
    assert info.value.message == (
        f"cluster secret in file {str(short)!r} must be at least 32 bytes, got 31"
        " (make one with: openssl rand -hex 32)"
    )
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError, match=r"cannot read the token file .*missing"):
        config_from_args(serve_args("--token-file", str(missing)))
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff" * 40)
    with pytest.raises(ConfigError, match=r"token in file .*binary.* must be UTF-8 text"):
        config_from_args(serve_args("--token-file", str(binary)))


# --- environment and config file -------------------------------------------------------


#: Settings that need another to be given: a previous secret needs the current one.
PREVIOUS_OF = {"previous_cluster_secret": "cluster_secret", "previous_token": "token"}
#: The current secret given beside a previous one (unlike every value the tests give it).
COMPANION = "c0" * 32


def default_or_base(row: Setting) -> Any:
    return BASE[row.name] if row.required else row.default


def secret_file(tmp_path: Path, row: Setting, value: str) -> str:
    path = tmp_path / f"{row.name}-{len(list(tmp_path.iterdir()))}"
    path.write_text(f"{value}\n")
    return str(path)


def as_env(row: Setting, value: Any, tmp_path: Path) -> dict[str, str]:
    if row.secret:
        return {row.env: secret_file(tmp_path, row, value)}
    return {row.env: ",".join(value) if row.repeated else str(value)}


def as_toml(row: Setting, value: Any, tmp_path: Path) -> str:
    if row.secret:
        value = secret_file(tmp_path, row, value)
    elif row.repeated:
        value = list(value)
    return f"{row.key} = {json.dumps(value)}\n"  # JSON strings, numbers and arrays are TOML


def effective(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    flags: list[str],
    env: dict[str, str],
    toml: str | None,
) -> tuple[Any, dict[str, Sourced]]:
    """(NodeConfig, sources) for these flags, variables and config file, the base filled in."""
    for name, text in env.items():
        monkeypatch.setenv(name, text)
    argv = ["serve", *flags]
    if toml is not None:
        config_path = tmp_path / "node.toml"
        config_path.write_text(toml)
        argv += ["--config", str(config_path)]
    given = set(flags) | set(env) | set((toml or "").split())
    for row in SETTINGS:
        if row.required and not ({row.flag, row.env, row.key} & given):
            argv += [row.flag, BASE[row.name]]
    for row in SETTINGS:  # a previous secret is accepted only alongside a current one
        current = PREVIOUS_OF.get(row.name)
        if current is not None and {row.flag, row.env, row.key} & given:
            argv += [f"--{current.replace('_', '-')}-file", secret_file(tmp_path, row, COMPANION)]
    args = _parser().parse_args(argv)
    return config_from_args(args), settings_from_args(args)


@pytest.mark.parametrize("row", SETTINGS, ids=lambda r: r.name)
@pytest.mark.parametrize("source", ["flag", "env", "file"])
def test_every_setting_is_reachable_by_every_source(
    row: Setting, source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = other_value(row, tmp_path)
    assert value != default_or_base(row), row.name
    flags = flags_for(row, value, tmp_path) if source == "flag" else []
    env = as_env(row, value, tmp_path) if source == "env" else {}
    toml = as_toml(row, value, tmp_path) if source == "file" else None
    config, chosen = effective(monkeypatch, tmp_path, flags, env, toml)
    assert getattr(config, row.name) == value, row.name
    assert chosen[row.name].source == source, chosen[row.name]


@pytest.mark.parametrize("row", SETTINGS, ids=lambda r: r.name)
@pytest.mark.parametrize(("high", "low"), [("flag", "env"), ("env", "file"), ("flag", "file")])
def test_a_higher_source_wins_over_a_lower_one(
    row: Setting, high: str, low: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both ways round, so that neither value can win by being the default. An empty list of
    # peers cannot be given by flag or variable, so peers takes two lists.
    first, second = other_value(row, tmp_path), default_or_base(row)
    if row.secret:
        second = SECRET if first == TOKEN else TOKEN
    elif row.repeated:
        second = ("http://127.0.0.1:9003",)
    for winner, loser in ((first, second), (second, first)):
        values = {high: winner, low: loser}
        flags = flags_for(row, values["flag"], tmp_path) if "flag" in values else []
        env = as_env(row, values["env"], tmp_path) if "env" in values else {}
        toml = as_toml(row, values["file"], tmp_path) if "file" in values else None
        config, chosen = effective(monkeypatch, tmp_path, flags, env, toml)
        assert getattr(config, row.name) == winner, (row.name, high, low)
        assert chosen[row.name].source == high
        for name in env:
            monkeypatch.delenv(name)


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sync_interval", 0, "sync_interval must be a positive number of seconds, got 0"),
        ("page_entries", 5001, "page_entries must be an int in [1, 5000], got 5001"),
        ("page_bytes", 1023, "page_bytes must be an int in [1024, 1048576], got 1023"),
        ("port", 70000, "port must be an int in [0, 65535], got 70000"),
        ("notice_delay", -1, "notice_delay must be >= 0 seconds, got -1"),
        ("durability", "max", "durability must be 'full' or 'normal', got 'max'"),
        ("node_id", "bad id", "node id must match [A-Za-z0-9_-]{1,40}, got 'bad id'"),
        ("data_dir", "", "data_dir must not be empty"),
        ("peers", ("ftp://x",), "peer URL must look like http://host:port, got 'ftp://x'"),
        (
            "token",
            "x" * 31,
            "token must be at least 32 bytes, got 31 (make one with: openssl rand -hex 32)",
        ),
    ],
)
def test_validation_messages(field: str, value: Any, message: str) -> None:
    fields = {"node_id": "n1", "data_dir": "d", field: value}
    with pytest.raises(ConfigError) as info:
        NodeConfig(**fields)
    assert info.value.message == message


@pytest.mark.parametrize("row", [r for r in SETTINGS if bad_values(r)], ids=lambda r: r.name)
def test_every_out_of_range_value_is_refused_naming_its_field(row: Setting) -> None:
    for value in bad_values(row):
        with pytest.raises(ConfigError, match=row.name):
            NodeConfig(**{"node_id": "n1", "data_dir": "d", row.name: value})


@pytest.mark.parametrize(
    "row", [r for r in SETTINGS if bad_values(r) and not r.secret], ids=lambda r: r.name
)
def test_an_out_of_range_flag_is_one_error_line_naming_its_field(
    row: Setting, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "d"
    value = bad_values(row)[0]
    if row.choices:  # argparse refuses it first, with a usage line
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--node-id", "n1", "--data-dir", str(data_dir), row.flag, value])
        assert exit_info.value.code == 2
        assert row.flag in capsys.readouterr().err
    else:
        argv = ["serve", "--node-id", "n1", "--data-dir", str(data_dir), row.flag, str(value)]
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith("vvstore: error: ") and captured.err.count("\n") == 1
        assert row.name in captured.err, captured.err
    assert not data_dir.exists()


def test_cross_field_rules_still_hold() -> None:
    with pytest.raises(ConfigError, match="peers on non-loopback addresses need a cluster"):
        NodeConfig(node_id="n1", data_dir="d", peers=("http://10.0.0.2:8080",))
    with pytest.raises(ConfigError, match=r"binding 0\.0\.0\.0 beyond loopback needs a cluster"):
        NodeConfig(node_id="n1", data_dir="d", host="0.0.0.0")
    NodeConfig(node_id="n1", data_dir="d", host="0.0.0.0", cluster_secret=SECRET)
