"""The ``vvstore`` command line: a thin shell over the library.

The ``serve`` flags are generated from :data:`vvstore.config.SETTINGS`, one per
:class:`~vvstore.config.NodeConfig` field with the table's type, default and help, so a new
setting gets its flag without a line here; :func:`config_from_args` turns them back into a
NodeConfig. Errors are turned into one clear line on standard error and a non-zero exit status
here, and only here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vvstore import __version__
from vvstore.auth import read_secret
from vvstore.blocking_client import BlockingClient
from vvstore.calls import batch_keys, node_url, parse_batch_lines
from vvstore.config import SETTINGS, NodeConfig, Setting
from vvstore.errors import ConfigError, InvalidRequest, VVStoreError
from vvstore.replies import Status

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:8080"


def _url(value: str) -> str:
    """A node URL; without a scheme (``127.0.0.1:8080``) it means ``http://``."""
    try:
        return node_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _client_flags(parser: argparse.ArgumentParser, *, raw: bool = False) -> None:
    parser.add_argument(
        "--url",
        type=_url,
        action="append",
        dest="urls",
        metavar="URL",
        help=f"node URL; http:// when it has no scheme (default {DEFAULT_URL}). Repeat it to"
        " fail over: reads try each node in turn, writes retry on the next one",
    )
    parser.add_argument(
        "--token-file", metavar="PATH", help="bearer token for the node (or set VVSTORE_TOKEN)"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--json",
        action="store_true",
        help="print the node's JSON reply (the default but for status)",
    )
    if raw:
        output.add_argument(
            "--raw",
            "--value",
            dest="raw",
            action="store_true",
            help="print only the value (one per line for batch), for scripts",
        )


#: Secret settings that may also come from an environment variable holding the value itself.
SECRET_ENV = {"token": "VVSTORE_TOKEN"}


def _read_secret(path: str | None, what: str, env: str | None = None) -> str | None:
    """:func:`vvstore.auth.read_secret` (file, else ``env``; stripped, validated), given the I/O."""
    return read_secret(
        path, what=what, env=env, environ=os.environ, read=lambda p: Path(p).read_bytes()
    )


def _default_note(row: Setting) -> str:
    if row.required:
        return "required"
    value = row.default
    return f"default {int(value) if isinstance(value, float) and value.is_integer() else value}"


def _serve_flags(serve: argparse.ArgumentParser) -> None:
    """One flag per row of :data:`~vvstore.config.SETTINGS`, in the table's groups and order."""
    groups = {
        name: serve.add_argument_group(name) for name in dict.fromkeys(r.group for r in SETTINGS)
    }
    for row in SETTINGS:
        group, help_text = groups[row.group], row.help.replace("%", "%%")
        if row.secret:
            env = SECRET_ENV.get(row.name)
            group.add_argument(
                row.flag,
                dest=f"{row.name}_file",
                metavar=row.metavar,
                help=f"file holding the {help_text}" + (f" (or set {env})" if env else ""),
            )
        elif row.repeated:
            group.add_argument(
                row.flag,
                dest=row.name,
                action="append",
                type=row.type,
                default=[],
                metavar=row.metavar,
                help=help_text,
            )
        else:
            group.add_argument(
                row.flag,
                dest=row.name,
                type=row.type,
                choices=row.choices or None,
                required=row.required,
                default=None if row.required else row.default,
                metavar=row.metavar,
                help=f"{help_text} ({_default_note(row)})",
            )


def config_from_args(args: argparse.Namespace) -> NodeConfig:
    """The :class:`NodeConfig` a parsed ``serve`` command line asks for; nothing is started.

    Each setting comes from its flag; a secret is read from its ``--<name>-file`` (the token,
    else from ``VVSTORE_TOKEN``).

    :raises ConfigError: for a secret file that cannot be read or a value out of range.
    """
    return NodeConfig(**{row.name: _setting_from_args(row, args) for row in SETTINGS})


def _setting_from_args(row: Setting, args: argparse.Namespace) -> Any:
    if row.secret:
        what = row.name.replace("_", " ")
        return _read_secret(getattr(args, f"{row.name}_file"), what, SECRET_ENV.get(row.name))
    value = getattr(args, row.name)
    return tuple(value) if row.repeated else value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vvstore", description="A multi-master counter store with version-vector entries."
    )
    parser.add_argument("--version", action="version", version=f"vvstore {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run a node",
        description="Run a node until SIGTERM or SIGINT. Every setting has a flag;"
        " docs/cli.md says more about each.",
    )
    _serve_flags(serve)
    process = serve.add_argument_group("process")
    process.add_argument(
        "--loop",
        choices=LOOPS,
        default=None,
        help="event loop: asyncio, or uvloop (pip install 'vvstore[speed]');"
        " default $VVSTORE_LOOP, else asyncio",
    )
    process.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging threshold (default INFO)",
    )

    for name, help_text in (
        ("incr", "add to a counter"),
        ("get", "read a counter"),
        ("reset", "reset a counter: cancel every increment the node has seen"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("key")
        if name == "incr":
            sub.add_argument("amount", nargs="?", type=int, default=1)
        _client_flags(sub, raw=True)
    batch = commands.add_parser(
        "batch",
        help="add to several counters in one transaction: KEY AMOUNT lines on standard input",
        description="Read KEY AMOUNT lines from standard input (the amount is the last word,"
        " the key the rest of the line, so it may hold spaces; blank lines are skipped) and add"
        " them all in one transaction, or none. A bad line exits with status 2 before anything"
        " is sent.",
    )
    batch.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="one key for the whole batch, so that running the command again adds nothing"
        " twice (default: a random key per item)",
    )
    _client_flags(batch, raw=True)
    listing = commands.add_parser("list", help="list counters, one page at a time")
    listing.add_argument("--prefix", default="", help="only keys that start with this text")
    listing.add_argument("--limit", type=int, default=100, help="page size, 1 to 1000")
    listing.add_argument("--after", help="start after this key: the previous page's next")
    _client_flags(listing)
    status = commands.add_parser("status", help="show a node's vector and peers")
    _client_flags(status)

    # The demo is harness (vvstore.harness.demo), loaded only when asked for: its flags, --help
    # included, are parsed by its own parser (see main).
    commands.add_parser(
        "demo",
        help="partition three local nodes, heal them and check the result",
        add_help=False,
    )
    return parser


def _status_table(status: Status) -> str:
    lines = [
        f"node     {status.node}",
        f"actor    {status.actor}",
        f"version  {json.dumps(status.version, sort_keys=True)}",
    ]
    if status.peers:
        lines.append("")
        lines.append(f"{'peer':<28} {'node':<12} {'reachable':<9} {'behind':>7}  last error")
        for peer in status.peers:
            lines.append(
                f"{peer.url:<28} {peer.node or '?':<12} {peer.reachable!s:<9} "
                f"{peer.behind:>7}  {peer.last_error or '-'}"
            )
    return "\n".join(lines)


def _print_json(value: object) -> None:
    print(json.dumps(value, ensure_ascii=False))


def _client_command(args: argparse.Namespace) -> int:
    """Run one client subcommand; its exit status (2 for standard input it cannot send)."""
    items: list[tuple[str, int]] = []
    if args.command == "batch":
        try:
            items = parse_batch_lines(sys.stdin)
            if args.idempotency_key is not None:
                batch_keys(args.idempotency_key, len(items))
        except InvalidRequest as exc:
            print(f"vvstore batch: error: {exc.message} (nothing was sent)", file=sys.stderr)
            return 2
    token = _read_secret(args.token_file, "token", "VVSTORE_TOKEN")
    # JSON output is the node's own reply (.raw), so fields this client does not know show.
    with BlockingClient(args.urls or [DEFAULT_URL], token=token) as client:
        if args.command in ("incr", "get", "reset"):
            if args.command == "incr":
                counter = client.increment(args.key, args.amount)
            elif args.command == "reset":
                counter = client.reset(args.key)
            else:
                counter = client.get(args.key)
            if args.raw:
                print(counter.value)
            else:
                _print_json(counter.raw)
        elif args.command == "batch":
            results = client.batch(items, idempotency_key=args.idempotency_key)
            if args.raw:
                print("\n".join(str(counter.value) for counter in results))
            else:
                _print_json({"results": [counter.raw for counter in results]})
        elif args.command == "list":
            page = client.list(prefix=args.prefix, after=args.after, limit=args.limit)
            _print_json(page.raw)
        else:
            status = client.status()
            if args.json:
                _print_json(status.raw)
            else:
                print(_status_table(status))
    return 0


LOOPS = ("asyncio", "uvloop")


def loop_factory(name: str | None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``serve`` runs on: ``name``, else ``$VVSTORE_LOOP``, else asyncio's.

    :raises ConfigError: for an unknown name, or uvloop when it is not installed.
    """
    chosen = name or os.environ.get("VVSTORE_LOOP") or "asyncio"
    if chosen not in LOOPS:
        raise ConfigError(f"VVSTORE_LOOP must be one of {', '.join(LOOPS)}, got {chosen!r}")
    if chosen == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        raise ConfigError(
            "--loop uvloop needs uvloop, which is not installed: pip install 'vvstore[speed]'"
        ) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit status."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        # The one place the product reaches into the harness, and only for this command.
        import vvstore.harness.demo as demo

        return demo.main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command == "serve":
            from vvstore.node import serve

            logging.basicConfig(
                level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
            )
            config = config_from_args(args)
            factory = loop_factory(args.loop)
            logging.getLogger("vvstore").info(
                "event loop: %s", "uvloop" if factory is not None else "asyncio"
            )
            try:
                with asyncio.Runner(loop_factory=factory) as runner:
                    return runner.run(serve(config))
            except OSError as exc:  # the address is taken, say
                raise ConfigError(
                    f"cannot listen on {config.host}:{config.port}: {exc.strerror}"
                ) from None
        return _client_command(args)
    except VVStoreError as exc:
        print(f"vvstore: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
