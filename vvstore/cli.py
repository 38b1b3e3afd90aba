"""The ``vvstore`` command line: a thin shell over the library.

The ``serve`` and ``config`` flags are generated from :data:`vvstore.config.SETTINGS`, one per
:class:`~vvstore.config.NodeConfig` field with the table's type and help, so a new setting gets
its flag without a line here. :func:`settings_from_args` adds the environment and the
``--config`` file (parsed by vvstore.config; this module does the reading) and
:func:`config_from_args` turns the result into a NodeConfig, reading the secrets' files. Errors
are turned into one clear line on standard error and a non-zero exit status here, and only
here: 2 for a configuration that is refused, 1 for the others.
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

from vvstore import __version__, logs
from vvstore.auth import read_secret
from vvstore.blocking_client import BlockingClient
from vvstore.calls import batch_keys, node_url, parse_batch_lines
from vvstore.config import (
    SETTINGS,
    NodeConfig,
    SecretRef,
    Setting,
    Sourced,
    env_layer,
    file_layer,
    missing_required,
    resolve,
)
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


def _setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per row of :data:`~vvstore.config.SETTINGS`, in the table's groups and order.

    Every flag defaults to None, "not given", so that the environment and the config file can
    give the setting instead (:func:`settings_from_args`).
    """
    groups = {
        name: parser.add_argument_group(name) for name in dict.fromkeys(r.group for r in SETTINGS)
    }
    for row in SETTINGS:
        group, help_text = groups[row.group], row.help.replace("%", "%%")
        if row.secret:
            group.add_argument(
                row.flag,
                dest=row.key,
                metavar=row.metavar,
                help=f"file holding the {help_text} (or set {row.env}"
                + (f" or {row.value_env}" if row.value_env else "")
                + ")",
            )
        else:
            group.add_argument(
                row.flag,
                dest=row.name,
                action="append" if row.repeated else "store",
                type=row.type,
                choices=row.choices or None,
                metavar=row.metavar,
                help=f"{help_text} ({_default_note(row)}; or set {row.env})",
            )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file of settings; a flag or an environment variable overrides it",
    )


def _flag_layer(args: argparse.Namespace) -> dict[str, Sourced]:
    found = {}
    for row in SETTINGS:
        value = getattr(args, row.key if row.secret else row.name)
        if value is not None:
            if row.secret:
                value = SecretRef(path=value)
            elif row.repeated:
                value = tuple(value)
            found[row.name] = Sourced(value, "flag", row.flag)
    return found


def settings_from_args(args: argparse.Namespace) -> dict[str, Sourced]:
    """Every setting of a parsed ``serve`` or ``config`` command line, with its source.

    Flag, then environment variable, then the ``--config`` file, then default: the first that
    gives a setting wins. Secrets are not read yet (see :func:`config_from_args`).

    :raises ConfigError: for a config file that cannot be read, or a variable or key that is
        refused, naming it; for a required setting no source gives.
    """
    file: dict[str, Sourced] = {}
    if args.config is not None:
        try:
            data = Path(args.config).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the config file {args.config!r}: {exc.strerror}"
            ) from None
        file = file_layer(data, args.config)
    chosen = resolve(_flag_layer(args), env_layer(os.environ), file)
    missing_required(chosen)
    return chosen


def config_from_args(args: argparse.Namespace) -> NodeConfig:
    """The :class:`NodeConfig` a parsed ``serve`` command line asks for; nothing is started.

    The settings come from :func:`settings_from_args`; each secret is read from the file or
    the variable its source names.

    :raises ConfigError: for a refused source, a secret that cannot be read, a value out of
        range.
    """
    return _config(settings_from_args(args))


def _config(chosen: dict[str, Sourced]) -> NodeConfig:
    return NodeConfig(**{row.name: _value(row, chosen[row.name]) for row in SETTINGS})


def _value(row: Setting, sourced: Sourced) -> Any:
    if not row.secret:
        return sourced.value
    ref = sourced.value
    if ref is None:
        return None
    what = row.name.replace("_", " ")
    if ref.path is not None:
        return _read_secret(ref.path, what)
    return _read_secret(None, what, ref.variable)


def _shown(row: Setting, sourced: Sourced) -> Any:
    """A setting's value as ``vvstore config`` shows it: a secret never, its file's path only."""
    value = sourced.value
    if row.secret:
        return None if value is None else "<redacted>"
    return list(value) if row.repeated else value


def _settings_report(chosen: dict[str, Sourced], as_json: bool) -> str:
    """The effective settings: a table, or a JSON object by setting name, in the table's order."""
    report = {}
    for row in SETTINGS:
        sourced = chosen[row.name]
        entry = {"value": _shown(row, sourced), "source": sourced.source}
        if sourced.origin:
            entry["from"] = sourced.origin
        if row.secret and sourced.value is not None and sourced.value.path is not None:
            entry["file"] = sourced.value.path
        report[row.name] = entry
    if as_json:
        return json.dumps(report, ensure_ascii=False)
    rows = [("setting", "value", "source")]
    for name, entry in report.items():
        value = entry["value"]
        if isinstance(value, list):
            text = ",".join(value) or "-"
        else:
            text = "-" if value is None else str(value)
        if "file" in entry:
            text += f" (file {entry['file']})"
        rows.append((name, text, " ".join(str(entry[k]) for k in ("source", "from") if k in entry)))
    width = [max(len(r[i]) for r in rows) for i in (0, 1)]
    lines = [f"{a:<{width[0]}}  {b:<{width[1]}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vvstore", description="A multi-master counter store with version-vector entries."
    )
    parser.add_argument("--version", action="version", version=f"vvstore {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sources = (
        " Every setting has a flag, an environment variable VVSTORE_<NAME> and a key in the"
        " --config file; a flag wins over a variable, a variable over the file."
        " docs/cli.md says more about each."
    )
    serve = commands.add_parser(
        "serve",
        help="run a node",
        description="Run a node until SIGTERM or SIGINT." + sources,
    )
    _setting_flags(serve)
    config = commands.add_parser(
        "config",
        help="print the settings serve would use, and where each comes from",
        description="Print the settings 'vvstore serve' would use with the same flags,"
        " environment and --config file, and the source of each; secrets are shown as"
        " <redacted>." + sources,
    )
    _setting_flags(config)
    config.add_argument("--json", action="store_true", help="print a JSON object")

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


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``serve`` runs on, by the name of the ``loop`` setting.

    :raises ConfigError: for uvloop when it is not installed.
    """
    if name == "asyncio":
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
        if args.command == "config":
            chosen = settings_from_args(args)
            _config(chosen)  # what serve would refuse, this refuses too
            print(_settings_report(chosen, args.json))
            return 0
        if args.command == "serve":
            from vvstore.node import serve

            config = config_from_args(args)
            factory = loop_factory(config.loop)
            with logs.configured(
                level=config.log_level, format=config.log_format, libraries=config.log_libraries
            ):
                logging.getLogger("vvstore").info("event loop: %s", config.loop)
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
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        return 130
