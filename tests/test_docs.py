"""Keep docs/api.md and docs/cli.md in step with the code they describe, and run the Python
examples of every page in docs/.

The subcommands and flags are read from the live argparse parser, the routes from the aiohttp
application and the error codes from the API's status mapping, so a new route, flag or error
code fails here until it is documented, and a documented one that no longer exists fails too.

Every ```python block in docs/*.md is one of three kinds: a doctest session (its first line
starts with ``>>>``), run by the page's own test (:data:`SESSION_RUNNERS`); a script, run here
as ``python -c`` against two live in-process nodes that stand in for the docs' nodes on ports
8080 and 8081; or a fragment that cannot run alone, marked by the line
``<!-- fragment: why -->`` right above its fence. Fragments are few and named
(:data:`FRAGMENTS`), so that marking is not a way out of running an example.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpServer

from vvstore import errors
from vvstore.api import _STATUS, NodeService, create_app, error_response
from vvstore.cli import _parser
from vvstore.config import SETTINGS, NodeConfig, SecretRef, file_layer
from vvstore.harness import demo
from vvstore.metrics import Metrics, PeerState, Snapshot
from vvstore.node import Node

ROOT = Path(__file__).resolve().parents[1]
API_DOC = ROOT / "docs" / "api.md"
CLI_DOC = ROOT / "docs" / "cli.md"
README = ROOT / "README.md"

_DOCUMENTED_ROUTE = re.compile(r"`(GET|HEAD|POST|PUT|PATCH|DELETE) (/[^`\s]*)`")
_LONG_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _read(path: Path) -> str:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    return path.read_text(encoding="utf-8")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1, "expected one set of subcommands in vvstore.cli._parser()"
    commands = dict(actions[0].choices)
    assert commands, "vvstore.cli._parser() registers no subcommands"
    # The demo's flags are the harness's parser's (the CLI hands them over unparsed).
    commands["demo"] = demo.build_parser()
    return commands


def _long_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings if s.startswith("--")}


def _routes() -> set[tuple[str, str]]:
    # The routes are registered without calling the service, so any object stands in for it.
    app = create_app(cast(NodeService, object()))
    routes = {(route.method, route.resource.canonical) for route in app.router.routes()}
    assert routes, "create_app registers no routes"
    return routes


def _mentions_flag(text: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


# --- docs/cli.md -----------------------------------------------------------------------------


def test_every_subcommand_is_documented() -> None:
    text = _read(CLI_DOC)
    headings = [line for line in text.splitlines() if line.startswith("#")]
    missing = [
        name
        for name in _subcommands()
        if f"vvstore {name}" not in text
        and not any(re.search(rf"\b{re.escape(name)}\b", h) for h in headings)
    ]
    assert not missing, f"subcommands missing from docs/cli.md: {missing}"


def test_every_long_flag_is_documented() -> None:
    text = _read(CLI_DOC)
    parsers = {"vvstore": _parser(), **{f"vvstore {n}": p for n, p in _subcommands().items()}}
    missing = [
        f"{name} {flag}"
        for name, parser in parsers.items()
        for flag in sorted(_long_flags(parser))
        if not _mentions_flag(text, flag)
    ]
    assert not missing, f"flags missing from docs/cli.md: {missing}"


def test_cli_doc_names_no_flag_that_does_not_exist() -> None:
    known = _long_flags(_parser()).union(*map(_long_flags, _subcommands().values()))
    unknown = sorted(set(_LONG_FLAG.findall(_read(CLI_DOC))) - known)
    assert not unknown, f"docs/cli.md names flags no parser defines: {unknown}"


def test_the_config_file_example_is_a_valid_config() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", _read(CLI_DOC), re.DOTALL)
    assert len(blocks) == 1, "expected one TOML example in docs/cli.md"
    layer = file_layer(blocks[0].encode(), "example.toml")
    assert {"node_id", "data_dir", "peers", "token", "cluster_secret"} <= set(layer)
    # The secrets' files are not there; stand-ins let the rules that need them be checked.
    values = {
        name: ("x" * 32 if isinstance(sourced.value, SecretRef) else sourced.value)
        for name, sourced in layer.items()
    }
    NodeConfig(**values)


def test_every_setting_names_its_variable_and_key_as_the_cli_doc_says() -> None:
    for row in SETTINGS:
        assert row.env == "VVSTORE_" + row.key.upper(), row.name
        assert row.flag.lstrip("-").replace("-", "_") in (row.key, "peer"), row.name
    text = _read(CLI_DOC)
    for named in ("VVSTORE_TOKEN_FILE", "VVSTORE_CLUSTER_SECRET_FILE", "VVSTORE_PEERS"):
        assert named in text, named


# --- docs/api.md -----------------------------------------------------------------------------


def test_every_route_is_documented() -> None:
    text = _read(API_DOC)
    missing = []
    for method, path in sorted(_routes()):
        if method == "HEAD":
            # aiohttp adds HEAD to every GET route; the page says so once, in general.
            if f"`GET {path}`" not in text or "`HEAD`" not in text:
                missing.append(f"HEAD {path} (with its GET route)")
        elif f"`{method} {path}`" not in text:
            missing.append(f"{method} {path}")
    assert not missing, f"routes missing from docs/api.md: {missing}"


def test_api_doc_names_no_route_that_does_not_exist() -> None:
    documented = set(_DOCUMENTED_ROUTE.findall(_read(API_DOC)))
    assert documented, "no `METHOD /path` found in docs/api.md"
    unknown = sorted(documented - _routes())
    assert not unknown, f"docs/api.md documents routes create_app does not register: {unknown}"


def _error_classes() -> list[type[errors.VVStoreError]]:
    """Every class in the status mapping, and its subclasses in vvstore.errors."""
    found: list[type[errors.VVStoreError]] = []
    todo = list(_STATUS)
    while todo:
        cls = todo.pop(0)
        if cls not in found and cls.__module__ == errors.__name__:
            found.append(cls)
            todo.extend(cls.__subclasses__())
    return found


def test_every_error_code_is_documented_with_its_status() -> None:
    text = _read(API_DOC)
    classes = _error_classes()
    assert {cls.code for cls in _STATUS} <= {cls.code for cls in classes}
    problems = []
    for cls in classes:
        status = error_response(cls("x")).status
        if f"`{cls.code}`" not in text:
            problems.append(f"{cls.code} is not mentioned")
        elif not re.search(rf"^\| `{cls.code}` \| {status} \|", text, re.MULTILINE):
            problems.append(f"{cls.code} has no table row '| `{cls.code}` | {status} |'")
    assert not problems, f"docs/api.md error codes: {problems}"


# --- links -----------------------------------------------------------------------------------


def _links_to(text: str, target: str) -> bool:
    return re.search(rf"\]\((?:\./)?{re.escape(target)}(?:#[^)]*)?\)", text) is not None


def test_the_docs_are_linked() -> None:
    assert _links_to(_read(CLI_DOC), "api.md"), "docs/cli.md does not link to api.md"
    if README.is_file():
        readme = README.read_text(encoding="utf-8")
        for target in ("docs/api.md", "docs/cli.md"):
            assert _links_to(readme, target), f"README.md does not link to {target}"


# --- docs/operations.md ------------------------------------------------------------------------


def test_the_restore_reasons_operations_md_quotes_are_the_codes() -> None:
    """operations.md tells operators what the log and /status say on a restore: the same words."""
    text = " ".join(_read(ROOT / "docs" / "operations.md").split())  # lines wrap anywhere
    source = "\n".join(
        (ROOT / "vvstore" / name).read_text(encoding="utf-8") for name in ("store.py", "writes.py")
    )
    quoted = [
        "the database file was copied or restored",
        "another node holds a seq of our actor beyond our counter",
        "vector is beyond our actor's counter",
        "not every peer answered",
        "is in use by another vvstore process",
    ]
    for words in quoted:
        assert words in text, f"operations.md no longer quotes {words!r}"
        assert words in source, f"the code no longer says {words!r} (operations.md does)"


def _metric_table() -> dict[str, tuple[str, set[str]]]:
    """The Metrics section's table of operations.md: name -> (type, labels)."""
    text = _read(ROOT / "docs" / "operations.md")
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(vvstore_\w+)` \| (\w+) \|([^|]*)\|", section, re.MULTILINE)
    return {name: (kind, set(re.findall(r"`(\w+)`", labels))) for name, kind, labels in rows}


def test_every_metric_is_documented_with_its_type_and_labels() -> None:
    """The names, types and labels of a real scrape (a peer in it) are the table's rows."""
    snapshot = Snapshot((PeerState("http://p", True, 0, 1.0, 1, 0, 1, 1),), 1, 0, 1)
    metrics = Metrics()
    metrics.observe_request("GET", "/health", 200, 0.001)
    families = {
        family.name: family
        for family in text_string_to_metric_families(metrics.render(snapshot).decode())
        if not family.name.endswith("_created")
    }
    exported = {
        # The text format names a counter without its _total; the table names the samples.
        (name + "_total" if family.type == "counter" else name): (
            family.type,
            {
                label
                for sample in family.samples
                for label in sample.labels
                if label not in ("le", "quantile")
            },
        )
        for name, family in families.items()
    }
    assert _metric_table() == exported


# --- the Python examples of docs/*.md ---------------------------------------------------------

DOCS = ROOT / "docs"
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_FRAGMENT_MARK = re.compile(r"<!-- fragment: (.+?) -->\n\Z")
#: Pages whose doctest sessions another test runs, and that test.
SESSION_RUNNERS = {"clock.md": ROOT / "tests" / "unit" / "test_docs_clock.py"}
#: The fragments that may be marked (page, block's line): none yet. Keep this short.
FRAGMENTS: frozenset[tuple[str, int]] = frozenset()
#: The docs' nodes, and what stands in for each here.
DOC_NODES = ("127.0.0.1:8080", "127.0.0.1:8081")
SCRIPT_DEADLINE_S = 30.0


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    source: str
    kind: str  # "session", "script" or "fragment"

    def __str__(self) -> str:
        return f"docs/{self.page}, block at line {self.line}"


def python_examples() -> list[Example]:
    """Every ```python block of docs/*.md, in page and line order, with its kind."""
    found = []
    for path in sorted(DOCS.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for match in _PYTHON_BLOCK.finditer(text):
            source = match.group(1)
            line = text.count("\n", 0, match.start()) + 1
            if source.lstrip().startswith(">>>"):
                kind = "session"
            elif _FRAGMENT_MARK.search(text, 0, match.start()):
                kind = "fragment"
            else:
                kind = "script"
            found.append(Example(path.name, line, source, kind))
    return found


def test_the_python_examples_are_found_and_every_one_is_run() -> None:
    examples = python_examples()
    scripts = [e for e in examples if e.kind == "script"]
    assert len(scripts) >= 2, [str(e) for e in examples]  # api.md's two clients at least
    sessions = {e.page for e in examples if e.kind == "session"}
    assert sessions <= set(SESSION_RUNNERS), f"doctest sessions no test runs: {sessions}"
    for page, runner in SESSION_RUNNERS.items():
        assert page in runner.read_text(encoding="utf-8"), f"{runner} does not read {page}"
    fragments = {(e.page, e.line) for e in examples if e.kind == "fragment"}
    assert fragments == FRAGMENTS, f"marked fragments: {sorted(fragments)}"
    assert len(FRAGMENTS) <= 2


@pytest.fixture
async def doc_nodes(
    aiohttp_server: AiohttpServer, make_config: Callable[..., NodeConfig]
) -> AsyncIterator[dict[str, str]]:
    """Two live nodes, each standing in for one of DOC_NODES: {doc address: its URL here}."""
    urls: dict[str, str] = {}
    opened: list[Node] = []
    try:
        for n, address in enumerate(DOC_NODES):
            node = await Node.open(make_config(f"doc{n}"), rng=random.Random(n))
            opened.append(node)
            server = await aiohttp_server(create_app(node))
            urls[address] = f"127.0.0.1:{server.port}"
        yield urls
    finally:
        for node in opened:
            await node.close()


def _scripts() -> list[Example]:
    return [e for e in python_examples() if e.kind == "script"]


@pytest.mark.parametrize("example", _scripts(), ids=str)
async def test_a_python_example_runs_as_a_script(
    example: Example, doc_nodes: dict[str, str]
) -> None:
    source = example.source
    for address, here in doc_nodes.items():
        source = source.replace(address, here)
    assert source != example.source, f"{example} names neither of the docs' nodes"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        source,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), SCRIPT_DEADLINE_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, f"{example} failed:\n{err.decode()}"
    assert out.strip(), f"{example} printed nothing"
