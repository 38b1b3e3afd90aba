"""The ``vvstore`` command line: argument errors in-process, and a real ``serve`` end to end.

The end-to-end tests start ``python -m vvstore serve`` on port 0, read the listening URL from
its start-up log line, and drive it with the client subcommands. Every process a test starts is
killed by its PID in a ``finally`` block, and a failing assertion carries the server log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from vvstore import __version__
from vvstore.cli import loop_factory, main
from vvstore.config import SETTINGS
from vvstore.errors import ConfigError

START_DEADLINE = 15.0
STOP_DEADLINE = 5.0
CLI_TIMEOUT = 30.0
STARTUP_RE = re.compile(
    r"vvstore node (?P<node>\S+) actor (?P<actor>\S+) listening on (?P<url>http://\S+)"
    r" data-dir (?P<data_dir>.+?) durability (?P<durability>\S+)"
)
ACTOR_RE = re.compile(r"c1~[0-9a-f]{16}")


# --- helpers ---------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port that nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m vvstore ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "vvstore", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


@dataclass
class Server:
    """A running ``vvstore serve`` subprocess and what its start-up line said."""

    process: subprocess.Popen[bytes]
    log_path: Path
    url: str
    actor: str
    startup: str

    def log(self) -> str:
        return read_log(self.log_path)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a client subcommand against this server; fail with the server log if it fails."""
        result = run_cli(*args, "--url", self.url)
        assert result.returncode == 0, f"{args}: {result.stderr}\n--- server log ---\n{self.log()}"
        return result

    def terminate(self) -> int:
        """SIGTERM; return the exit status, which must come within STOP_DEADLINE seconds."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit {STOP_DEADLINE}s after SIGTERM\n--- server log ---\n{self.log()}")


def read_log(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def wait_for_startup(process: subprocess.Popen[bytes], log_path: Path) -> re.Match[str]:
    """Poll the log until the start-up line appears, the process dies, or the deadline passes."""
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        match = STARTUP_RE.search(read_log(log_path))
        if match is not None:
            return match
        if process.poll() is not None:
            pytest.fail(
                f"serve exited with {process.returncode} before listening\n"
                f"--- server log ---\n{read_log(log_path)}"
            )
        time.sleep(0.05)
    pytest.fail(
        f"no start-up line within {START_DEADLINE}s\n--- server log ---\n{read_log(log_path)}"
    )


@contextlib.contextmanager
def serving(
    data_dir: Path,
    log_path: Path,
    node_id: str = "c1",
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """Start ``vvstore serve`` on a free port; always kill it (by its PID) afterwards.

    ``env`` is added to this process's environment for the server.
    """
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vvstore",
                "serve",
                "--node-id",
                node_id,
                "--data-dir",
                str(data_dir),
                "--port",
                "0",
                *extra,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        match = wait_for_startup(process, log_path)
        yield Server(process, log_path, match["url"], match["actor"], match.group(0))
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=STOP_DEADLINE)


def one_error_line(stderr: str) -> str:
    """stderr holds exactly one line, ``vvstore: error: ...``; return it."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("vvstore: error: "), stderr
    assert len(lines[0]) > len("vvstore: error: "), stderr
    return lines[0]


# --- argument errors, in-process -------------------------------------------------------------


def test_serve_without_node_id_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VVSTORE_NODE_ID", raising=False)
    assert main(["serve", "--data-dir", str(tmp_path / "d")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--node-id" in line and "VVSTORE_NODE_ID" in line, line
    assert not (tmp_path / "d").exists()


def test_bad_durability_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["serve", "--node-id", "c1", "--data-dir", str(tmp_path / "d"), "--durability", "max"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--durability" in err
    assert "'max'" in err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["serve", "--node-id", "c1", "--data-dir", "d", "--port", "eighty"],
        ["incr"],
        ["incr", "k", "notanumber"],
        ["incr", "k", "1.5"],
        ["get"],
        ["status", "--bogus"],
    ],
    ids=[
        "no-command",
        "unknown-command",
        "port-not-int",
        "incr-no-key",
        "incr-not-a-number",
        "incr-float",
        "get-no-key",
        "unknown-flag",
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"vvstore {__version__}"


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--node-id", "bad id!"], "node id"),
        (["--node-id", "c1", "--port", "70000"], "port"),
        (["--node-id", "c1", "--sync-interval", "0"], "sync_interval"),
        (["--node-id", "c1", "--peer", "ftp://x"], "peer"),
        (["--node-id", "c1", "--peer-connect-timeout", "0"], "peer_connect_timeout"),
        (["--node-id", "c1", "--peer-read-timeout", "-1"], "peer_read_timeout"),
    ],
    ids=["node-id", "port", "sync-interval", "peer", "connect-timeout", "read-timeout"],
)
def test_invalid_config_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: str
) -> None:
    data_dir = tmp_path / "d"
    assert main(["serve", "--data-dir", str(data_dir), *flags]) == 2
    captured = capsys.readouterr()
    assert words in one_error_line(captured.err)
    assert captured.out == ""
    assert not data_dir.exists()


@pytest.mark.parametrize(
    "argv", [["get", "k"], ["incr", "k", "3"], ["status"], ["status", "--json"]]
)
def test_client_command_against_closed_port_is_one_error_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main([*argv, "--url", url]) == 1
    captured = capsys.readouterr()
    assert url in one_error_line(captured.err)
    assert captured.out == ""


# --- vvstore config ---------------------------------------------------------------------------


def test_config_shows_each_setting_with_its_source_and_hides_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "t0k3n" * 8
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    config_file = tmp_path / "node.toml"
    config_file.write_text(f'node_id = "from-file"\nport = 9001\ntoken_file = "{token_file}"\n')
    monkeypatch.setenv("VVSTORE_PORT", "9002")
    monkeypatch.setenv("VVSTORE_LOG_FORMAT", "json")
    argv = ["config", "--config", str(config_file), "--data-dir", "d", "--log-format", "text"]

    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert token not in out
    report = json.loads(out)
    assert list(report) == [row.name for row in SETTINGS]
    assert report["node_id"] == {"value": "from-file", "source": "file", "from": str(config_file)}
    assert report["data_dir"] == {"value": "d", "source": "flag", "from": "--data-dir"}
    assert report["port"] == {"value": 9002, "source": "env", "from": "$VVSTORE_PORT"}
    assert report["log_format"] == {"value": "text", "source": "flag", "from": "--log-format"}
    assert report["host"] == {"value": "127.0.0.1", "source": "default"}
    assert report["token"] == {
        "value": "<redacted>",
        "source": "file",
        "from": str(config_file),
        "file": str(token_file),
    }
    assert report["cluster_secret"] == {"value": None, "source": "default"}

    monkeypatch.delenv("VVSTORE_PORT")
    monkeypatch.setenv("VVSTORE_TOKEN", token)
    assert main([*argv[:3], "--data-dir", "d"]) == 0
    table = capsys.readouterr().out
    assert token not in table
    rows = {line.split()[0]: line.split(None, 1)[1] for line in table.splitlines()[1:]}
    assert set(rows) == {row.name for row in SETTINGS}
    assert rows["port"].split() == ["9001", "file", str(config_file)]
    assert rows["log_format"].split() == ["json", "env", "$VVSTORE_LOG_FORMAT"]
    assert rows["token"].split() == ["<redacted>", "env", "$VVSTORE_TOKEN"]
    assert rows["peers"].split() == ["-", "default"]


@pytest.mark.parametrize(
    ("config_text", "env", "words"),
    [
        ("prot = 1\n", {}, "key 'prot': no such setting (did you mean 'port'?)"),
        ('port = "1"\n', {}, "key 'port' must be an integer"),
        ("", {"VVSTORE_CACHE_KEYS": "many"}, "$VVSTORE_CACHE_KEYS must be an integer"),
        ("", {"VVSTORE_HOST": "0.0.0.0"}, "binding 0.0.0.0 beyond loopback needs a cluster"),
    ],
    ids=["unknown-key", "key-type", "env-type", "cross-field"],
)
@pytest.mark.parametrize("command", ["config", "serve"])
def test_a_refused_source_exits_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    config_text: str,
    env: dict[str, str],
    words: str,
    command: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config_file = tmp_path / "node.toml"
    config_file.write_text(config_text)
    data_dir = tmp_path / "d"
    argv = [command, "--node-id", "n1", "--data-dir", str(data_dir), "--config", str(config_file)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert words in line, line
    if config_text:
        assert str(config_file) in line, line
    assert captured.out == ""
    assert not data_dir.exists()


# --- a real server, end to end ---------------------------------------------------------------


@pytest.mark.slow
def test_serve_and_client_commands(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serving(data_dir, tmp_path / "serve.log") as server:
        log = server.log()
        assert server.startup.startswith("vvstore node c1 actor "), log
        assert ACTOR_RE.fullmatch(server.actor), log
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url), log
        assert int(server.url.rsplit(":", 1)[1]) > 0, log
        assert str(data_dir) in server.startup, log

        key = "a b/c+é"
        first = json.loads(server.cli("incr", key, "5").stdout)
        assert first == {"key": key, "value": 5, "version": {server.actor: 1}}, server.log()
        second = json.loads(server.cli("incr", key).stdout)
        assert second == {"key": key, "value": 6, "version": {server.actor: 2}}, server.log()
        third = json.loads(server.cli("incr", key, "-2").stdout)
        assert third["value"] == 4, server.log()

        got = json.loads(server.cli("get", key).stdout)
        assert got == {
            "key": key,
            "value": 4,
            "version": {server.actor: 3},
            "siblings": [{"actor": server.actor, "seq": 3, "value": 4, "node": server.actor}],
        }, server.log()
        assert json.loads(server.cli("get", "never").stdout)["value"] == 0

        # --value prints the bare integer, for scripts; reset cancels what the node has seen.
        assert server.cli("incr", "bare", "7", "--value").stdout == "7\n", server.log()
        assert server.cli("get", "bare", "--value").stdout == "7\n", server.log()
        reset = json.loads(server.cli("reset", "bare").stdout)
        assert reset["key"] == "bare" and reset["value"] == 0, server.log()
        assert server.cli("incr", "bare", "--value").stdout == "1\n", server.log()
        assert server.cli("reset", "bare", "--value").stdout == "0\n", server.log()
        page = json.loads(server.cli("list", "--limit", "1").stdout)
        assert page == {"counters": [{"key": key, "value": 4}], "next": key}, server.log()
        rest = json.loads(server.cli("list", "--after", key, "--prefix", "b").stdout)
        assert rest == {"counters": [{"key": "bare", "value": 0}], "next": None}, server.log()

        table = server.cli("status").stdout
        assert re.search(r"^node\s+c1$", table, re.M), table
        assert re.search(rf"^actor\s+{re.escape(server.actor)}$", table, re.M), table
        status = json.loads(server.cli("status", "--json").stdout)
        assert status["node"] == "c1" and status["actor"] == server.actor, server.log()
        assert (status["version"], status["peers"]) == ({server.actor: 7}, []), status
        # Each vvstore incr and reset sends an idempotency key.
        assert status["records"] == 7, status
        assert server.process.poll() is None, server.log()


@pytest.mark.slow
def test_refused_client_requests_are_one_error_line(tmp_path: Path) -> None:
    with serving(tmp_path / "data", tmp_path / "serve.log") as server:
        overflow = run_cli("incr", "k", str(2**63), "--url", server.url)
        assert overflow.returncode == 1, overflow.stderr + server.log()
        assert "64-bit" in one_error_line(overflow.stderr)
        assert overflow.stdout == ""
        bad_key = run_cli("get", "..", "--url", server.url)
        assert bad_key.returncode == 1, bad_key.stderr + server.log()
        one_error_line(bad_key.stderr)
        assert json.loads(server.cli("get", "k").stdout)["value"] == 0


@pytest.mark.slow
def test_client_against_closed_port_exits_1() -> None:
    result = run_cli("get", "k", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1, result.stderr
    one_error_line(result.stderr)
    assert result.stdout == ""


@pytest.mark.slow
def test_incr_with_non_integer_amount_exits_2() -> None:
    result = run_cli("incr", "k", "notanumber", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 2, result.stderr
    assert "notanumber" in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_second_serve_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serving(data_dir, tmp_path / "first.log") as first:
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "vvstore",
                "serve",
                "--node-id",
                "c1",
                "--data-dir",
                str(data_dir),
                "--port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        assert second.returncode != 0, second.stderr
        assert "in use" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr, second.stderr
        assert first.process.poll() is None, first.log()
        assert json.loads(first.cli("status", "--json").stdout)["actor"] == first.actor


@pytest.mark.slow
def test_sigterm_exits_0_and_restart_keeps_value_and_actor(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serving(data_dir, tmp_path / "first.log") as first:
        first.cli("incr", "kept", "7")
        first.cli("incr", "kept", "-2")
        assert first.terminate() == 0, first.log()
        actor = first.actor
    with serving(data_dir, tmp_path / "second.log") as second:
        log = f"--- first ---\n{read_log(tmp_path / 'first.log')}\n--- second ---\n{second.log()}"
        assert second.actor == actor, log
        assert json.loads(second.cli("get", "kept").stdout)["value"] == 5, log
        status = json.loads(second.cli("status", "--json").stdout)
        assert status["actor"] == actor, log
        assert status["version"] == {actor: 2}, log
        assert json.loads(second.cli("incr", "kept").stdout)["version"] == {actor: 3}, log
        assert second.terminate() == 0, log


def test_serve_takes_settings_from_the_environment_and_a_file_and_logs_json(
    tmp_path: Path,
) -> None:
    config_file = tmp_path / "node.toml"
    config_file.write_text('log_format = "json"\nlog_level = "INFO"\n')
    env = {"VVSTORE_LOG_LEVEL": "DEBUG"}  # wins over the file
    extra = ["--config", str(config_file)]
    with serving(tmp_path / "data", tmp_path / "quiet.log", extra=extra, env=env) as server:
        assert json.loads(server.cli("incr", "k", "2").stdout)["value"] == 2, server.log()
        assert server.terminate() == 0, server.log()
        records = [json.loads(line) for line in server.log().splitlines()]
    assert {"time", "level", "logger", "message"} <= set(records[0]), records[0]
    assert any(STARTUP_RE.search(r["message"]) for r in records), records
    # DEBUG for vvstore does not let aiosqlite's statements through ...
    assert all(r["logger"].split(".")[0] == "vvstore" for r in records), records

    # ... unless they are asked for.
    extra = [*extra, "--log-libraries", "DEBUG"]
    with serving(tmp_path / "data", tmp_path / "noisy.log", extra=extra, env=env) as server:
        assert server.terminate() == 0, server.log()
        loggers = {json.loads(line)["logger"] for line in server.log().splitlines()}
    assert "aiosqlite" in loggers, loggers


def test_tune_gc_freezes_startup_objects_and_raises_the_first_threshold() -> None:
    # In a child process: the tuning changes the whole interpreter.
    code = (
        "import gc; from vvstore.node import GC_THRESHOLD, tune_gc; tune_gc(); "
        "assert gc.get_threshold() == GC_THRESHOLD, gc.get_threshold(); "
        "assert gc.get_freeze_count() > 1000, gc.get_freeze_count(); print('tuned')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "tuned"


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_serve_runs_on_the_chosen_event_loop(tmp_path: Path, loop: str) -> None:
    with serving(tmp_path / "data", tmp_path / "serve.log", extra=["--loop", loop]) as server:
        assert f"event loop: {loop}" in server.log(), server.log()
        assert json.loads(server.cli("incr", "k", "3").stdout)["value"] == 3, server.log()
        assert json.loads(server.cli("get", "k").stdout)["value"] == 3, server.log()


def test_loop_factory_names_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert loop_factory("asyncio") is None
    uvloop_factory = loop_factory("uvloop")
    assert uvloop_factory is not None
    made = uvloop_factory()
    try:
        assert type(made).__module__.startswith("uvloop")
    finally:
        made.close()
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'vvstore\[speed\]'"):
        loop_factory("uvloop")


def test_a_url_without_a_scheme_means_http(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["get", "k", "--url", f"127.0.0.1:{port}"]) == 1
    line = one_error_line(capsys.readouterr().err)
    # Refused as a closed port over http, not as a URL the client cannot parse.
    assert f"http://127.0.0.1:{port}" in line, line


@pytest.mark.parametrize("make", ["a file", "a file's child"])
def test_an_unusable_data_directory_is_named_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: str
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    data_dir = blocker if make == "a file" else blocker / "child"
    argv = ["serve", "--node-id", "n1", "--data-dir", str(data_dir), "--port", "0"]
    assert main([*argv, "--log-level", "WARNING"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot use data directory {str(data_dir)!r}" in line, line
    assert "listen" not in line
