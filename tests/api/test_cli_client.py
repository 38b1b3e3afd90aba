"""The CLI's client subcommands against a live in-process node: ``batch`` from standard input,
``--raw`` (and its old name ``--value``), ``--json`` on every subcommand, ``--url`` repeated to
fail over, and the exit statuses docs/cli.md promises.

``main`` runs on a worker thread: it blocks, and the node answers on the test's event loop.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from vvstore.api import create_app
from vvstore.cli import main
from vvstore.node import Node


@pytest.fixture
async def url(aiohttp_server: AiohttpServer, node: Node) -> str:
    return str((await aiohttp_server(create_app(node))).make_url("")).rstrip("/")


def closed_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"  # no scheme: http


class Cli:
    """Runs ``vvstore ARGS`` in-process with a given standard input; exit status and output."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self.monkeypatch = monkeypatch
        self.capsys = capsys

    async def __call__(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        self.capsys.readouterr()
        try:
            status = await asyncio.to_thread(main, list(argv))
        except SystemExit as exc:  # argparse's refusals
            status = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        return status, out, err


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(monkeypatch, capsys)


async def test_batch_adds_every_line_in_one_call(cli: Cli, url: str) -> None:
    lines = "page-views 5\ncart items -2\n\npage-views 1\n"
    status, out, err = await cli("batch", "--url", url, stdin=lines)
    assert status == 0, err
    results = json.loads(out)["results"]
    assert [(r["key"], r["value"]) for r in results] == [
        ("page-views", 5),
        ("cart items", -2),
        ("page-views", 6),
    ]
    assert await cli("batch", "--raw", "--url", url, stdin="a 1\nb 2\na 3\n") == (
        0,
        "1\n2\n4\n",
        "",
    )


async def test_a_batch_under_one_key_counts_once_however_often_it_runs(cli: Cli, url: str) -> None:
    argv = ("batch", "--idempotency-key", "import-2026-12-05", "--raw", "--url", url)
    first = await cli(*argv, stdin="k 10\nk 5\n")
    assert first == (0, "10\n15\n", "")
    assert await cli(*argv, stdin="k 10\nk 5\n") == first  # replayed, not applied again
    assert (await cli("get", "k", "--raw", "--url", url))[1] == "15\n"


@pytest.mark.parametrize(
    ("stdin", "says"),
    [
        ("ok 1\nbroken\n", "line 2: expected KEY AMOUNT, got 'broken'"),
        ("ok 1\n\nk one\n", "line 3: amount must be an integer, got 'one'"),
        ("ok 1\n.. 1\n", "line 2: key must not be '.' or '..'"),
        ("k 9223372036854775808\n", "line 1: amount 9223372036854775808 is outside"),
        ("\n\n", "no KEY AMOUNT line"),
    ],
)
async def test_a_bad_batch_line_exits_2_and_sends_nothing(
    cli: Cli, url: str, stdin: str, says: str
) -> None:
    status, out, err = await cli("batch", "--url", url, stdin=stdin)
    assert (status, out) == (2, "")
    assert err.startswith(f"vvstore batch: error: {says}")
    assert "nothing was sent" in err and len(err.splitlines()) == 1
    listed = await cli("list", "--url", url)
    assert json.loads(listed[1])["counters"] == []  # not even the good lines


async def test_a_batch_key_too_long_for_its_lines_exits_2(cli: Cli, url: str) -> None:
    status, _, err = await cli(
        "batch", "--idempotency-key", "x" * 127, "--url", url, stdin="a 1\n" * 10
    )
    assert status == 2 and "at most 126 characters for 10 items" in err


async def test_raw_prints_the_bare_value_and_value_is_its_old_name(cli: Cli, url: str) -> None:
    assert await cli("incr", "n", "7", "--raw", "--url", url) == (0, "7\n", "")
    assert await cli("incr", "n", "--value", "--url", url) == (0, "8\n", "")
    assert await cli("get", "n", "--raw", "--url", url) == (0, "8\n", "")
    assert await cli("reset", "n", "--value", "--url", url) == (0, "0\n", "")


async def test_json_works_on_every_client_subcommand(cli: Cli, url: str, node: Node) -> None:
    replies: dict[str, Any] = {}
    for argv, stdin in (
        (("incr", "j", "3"), ""),
        (("get", "j"), ""),
        (("reset", "j"), ""),
        (("batch",), "j 2\n"),
        (("list",), ""),
        (("status",), ""),
    ):
        status, out, err = await cli(*argv, "--json", "--url", url, stdin=stdin)
        assert status == 0, err
        assert len(out.splitlines()) == 1, out  # one JSON document on one line
        replies[argv[0]] = json.loads(out)
    assert replies["incr"]["value"] == 3 and "siblings" in replies["get"]
    assert replies["reset"]["value"] == 0 and replies["batch"]["results"][0]["value"] == 2
    assert replies["list"]["counters"] == [{"key": "j", "value": 2}]
    assert replies["status"]["node"] == node.node_id


async def test_raw_and_json_together_are_refused(cli: Cli, url: str) -> None:
    status, _, err = await cli("get", "k", "--raw", "--json", "--url", url)
    assert status == 2 and "not allowed with argument" in err


async def test_a_repeated_url_fails_over(cli: Cli, url: str) -> None:
    down = closed_url()
    assert await cli("incr", "f", "2", "--raw", "--url", down, "--url", url) == (0, "2\n", "")
    assert await cli("get", "f", "--raw", "--url", down, "--url", url) == (0, "2\n", "")
    status, _, err = await cli("get", "f", "--url", down)
    assert status == 1 and err.startswith(f"vvstore: error: http://{down}: ")


async def test_a_url_with_another_scheme_is_refused(cli: Cli) -> None:
    status, _, err = await cli("get", "k", "--url", "ftp://127.0.0.1:21")
    assert status == 2 and "must be http:// or https://" in err


async def test_a_refusal_by_the_node_exits_1(cli: Cli, aiohttp_server: AiohttpServer) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"code": "invalid_request", "message": "no"}}, status=400
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    server = await aiohttp_server(app)
    status, out, err = await cli("batch", "--url", str(server.make_url("")), stdin="k 1\n")
    assert (status, out, err) == (1, "", "vvstore: error: no\n")
