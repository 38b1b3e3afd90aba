"""The ``vvstore`` command line: a thin shell over the library.

Each ``serve`` flag maps to one :class:`~vvstore.config.NodeConfig` field. Errors are turned
into one clear line on standard error and a non-zero exit status here, and only here.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vvstore import __version__
from vvstore.client import Client
from vvstore.config import NodeConfig
from vvstore.errors import ConfigError, VVStoreError

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:8080"


def _default(name: str) -> Any:
    """NodeConfig's default for the field ``name``: the one place defaults are written."""
    return next(f.default for f in dataclasses.fields(NodeConfig) if f.name == name)


def _client_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"node URL (default {DEFAULT_URL})")
    parser.add_argument(
        "--token-file", metavar="PATH", help="bearer token for the node (or set VVSTORE_TOKEN)"
    )


def _read_secret(path: str | None, what: str, env: str | None = None) -> str | None:
    """A secret from a file (or an environment variable), whitespace stripped."""
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the {what} file {path!r}: {exc.strerror}") from None
    elif env is not None and os.environ.get(env):
        text = os.environ[env]
    else:
        return None
    return text.strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vvstore", description="A multi-master counter store with version-vector entries."
    )
    parser.add_argument("--version", action="version", version=f"vvstore {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run a node")
    serve.add_argument("--node-id", required=True, help="this node's name, [A-Za-z0-9_-]{1,40}")
    serve.add_argument("--data-dir", required=True, help="directory for the SQLite database")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=8080, help="TCP port; 0 picks a free one")
    serve.add_argument(
        "--durability",
        choices=("full", "normal"),
        default="full",
        help="full: survives power loss; normal: survives a process crash, not a power loss",
    )
    serve.add_argument(
        "--peer", action="append", default=[], metavar="URL", help="another node (repeatable)"
    )
    serve.add_argument(
        "--sync-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between anti-entropy rounds with each peer (default 1)",
    )
    serve.add_argument(
        "--backoff-cap",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="longest backoff on a failing peer (default 2)",
    )
    for name, help_text in (
        ("peer_connect_timeout", "seconds to wait for a TCP connection to a peer"),
        (
            "peer_read_timeout",
            "seconds a sync call may go without receiving a byte; not the call's total time,"
            " so slow links complete",
        ),
    ):
        default = _default(name)
        serve.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=default,
            metavar="SECONDS",
            help=f"{help_text} (default {default:g})",
        )
    serve.add_argument(
        "--token-file",
        metavar="PATH",
        help="require this bearer token on every client route but /health (or set VVSTORE_TOKEN)",
    )
    serve.add_argument(
        "--cluster-secret-file",
        metavar="PATH",
        help="sign and verify sync traffic between nodes with this shared secret",
    )
    serve.add_argument(
        "--loop",
        choices=LOOPS,
        default=None,
        help="event loop: asyncio, or uvloop (pip install 'vvstore[speed]');"
        " default $VVSTORE_LOOP, else asyncio",
    )
    serve.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    for name, help_text in (("incr", "add to a counter"), ("get", "read a counter")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("key")
        if name == "incr":
            sub.add_argument("amount", nargs="?", type=int, default=1)
        _client_flags(sub)
    status = commands.add_parser("status", help="show a node's vector and peers")
    _client_flags(status)
    status.add_argument("--json", action="store_true", help="print the raw JSON")

    # The demo is harness (vvstore.harness.demo), loaded only when asked for: its flags, --help
    # included, are parsed by its own parser (see main).
    commands.add_parser(
        "demo",
        help="partition three local nodes, heal them and check the result",
        add_help=False,
    )
    return parser


def _status_table(status: dict[str, Any]) -> str:
    lines = [
        f"node     {status['node']}",
        f"actor    {status['actor']}",
        f"version  {json.dumps(status['version'], sort_keys=True)}",
    ]
    peers = status.get("peers") or []
    if peers:
        lines.append("")
        lines.append(f"{'peer':<28} {'node':<12} {'reachable':<9} {'behind':>7}  last error")
        for peer in peers:
            lines.append(
                f"{peer['url']:<28} {peer['node'] or '?':<12} {peer['reachable']!s:<9} "
                f"{peer['behind']:>7}  {peer['last_error'] or '-'}"
            )
    return "\n".join(lines)


async def _client_command(args: argparse.Namespace) -> int:
    token = _read_secret(args.token_file, "token", "VVSTORE_TOKEN")
    async with Client(args.url, token=token) as client:
        if args.command == "incr":
            print(json.dumps(await client.increment(args.key, args.amount), ensure_ascii=False))
        elif args.command == "get":
            print(json.dumps(await client.get(args.key), ensure_ascii=False))
        else:
            status = await client.status()
            print(json.dumps(status) if args.json else _status_table(status))
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
            config = NodeConfig(
                node_id=args.node_id,
                data_dir=args.data_dir,
                host=args.host,
                port=args.port,
                durability=args.durability,
                peers=tuple(args.peer),
                sync_interval=args.sync_interval,
                backoff_cap=args.backoff_cap,
                peer_connect_timeout=args.peer_connect_timeout,
                peer_read_timeout=args.peer_read_timeout,
                token=_read_secret(args.token_file, "token", "VVSTORE_TOKEN"),
                cluster_secret=_read_secret(args.cluster_secret_file, "cluster secret"),
            )
            factory = loop_factory(args.loop)
            logging.getLogger("vvstore").info(
                "event loop: %s", "uvloop" if factory is not None else "asyncio"
            )
            try:
                with asyncio.Runner(loop_factory=factory) as runner:
                    return runner.run(serve(config))
            except OSError as exc:  # the address is taken, say
                raise ConfigError(
                    f"cannot listen on {args.host}:{args.port}: {exc.strerror}"
                ) from None
        return asyncio.run(_client_command(args))
    except VVStoreError as exc:
        print(f"vvstore: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
