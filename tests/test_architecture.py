"""The package's layering, checked on the source with ``ast``.

- The pure core (clock, counter, codec, wire, errors, config, idempotency, auth, signing,
  paging, actor, routes, writes, schema, the clients' calls and replies, and the harness's
  checker) imports only the standard
  library and other core modules, and never a clock, randomness or an event loop: time and
  randomness are passed in.
- The product never imports the harness (vvstore/harness/): imports point harness -> product.
  The one door is the CLI's ``demo`` command, which loads vvstore.harness.demo when it runs;
  every other command, and importing the CLI, loads nothing of the harness.
- Only vvstore/store.py talks to SQLite (aiosqlite).
- Only the HTTP server side (api.py, node.py, and testing helpers) imports aiohttp.web.
- Only vvstore/metrics.py imports prometheus_client, and it imports no I/O library: it counts
  and formats, the node and the API feed it.

Imports are found anywhere in a module (inside functions and ``if TYPE_CHECKING:`` blocks too),
relative imports are resolved, and ``from vvstore import x`` counts as importing ``vvstore.x``.
The checkers are tested on fake sources first, so a silent checker cannot pass the real run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import vvstore

PACKAGE_DIR = Path(vvstore.__file__).resolve().parent
PACKAGE = "vvstore"

#: The pure core.
CORE = frozenset(
    {"clock", "counter", "codec", "wire", "errors", "config", "idempotency", "auth", "paging"}
    | {"actor", "routes", "writes", "schema", "signing", "retirement"}
    | {"calls", "replies"}
    | {"harness.checker"}
)
#: The harness subpackage, and the one product module allowed to load from it (lazily).
HARNESS = "harness"
HARNESS_DOORS = frozenset({("cli", "vvstore.harness.demo")})
REQUIRED_CORE = frozenset({"clock", "counter", "codec", "errors", "config"})
#: Standard-library modules the core must not use: time and randomness are passed in, and the
#: core never runs an event loop.
FORBIDDEN_IN_CORE = frozenset({"time", "random", "asyncio", "secrets"})
#: The only modules that may import aiosqlite.
SQLITE_MODULES = frozenset({"store"})
#: The only modules that may import aiohttp.web (the server side), besides testing helpers.
WEB_MODULES = frozenset({"api", "node"})
#: The only module that may import prometheus_client, and what it may not import.
METRICS_MODULES = frozenset({"metrics"})
METRICS_FORBIDDEN = frozenset({"aiohttp", "aiosqlite", "asyncio", "sqlite3", "socket"})


# --- the checkers ---------------------------------------------------------------------------


def package_modules() -> dict[str, str]:
    """Every module of the package by dotted name relative to it (``"store"``), with its source."""
    modules: dict[str, str] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR).with_suffix("")
        name = ".".join(relative.parts)
        modules[name] = path.read_text(encoding="utf-8")
    return modules


def _submodule_names() -> frozenset[str]:
    return frozenset(package_modules())


def _resolve_relative(module: str, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` inside ``module``."""
    # The package holding ``module`` (for an ``__init__`` module too, it is the package itself);
    # each extra level goes one package up.
    base = [PACKAGE, *module.split(".")][:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def imported_names(module: str, source: str) -> set[str]:
    """Absolute dotted names ``module`` (e.g. ``"counter"``) imports or reaches through.

    ``from P import n`` yields ``P`` and ``P.n``, except that ``from vvstore import n`` yields
    only ``vvstore.n`` when ``n`` is a module of the package. ``aiohttp.web...`` attribute chains
    count as importing ``aiohttp.web``; ``__import__`` and ``importlib`` calls show up as
    ``__import__`` / ``importlib``.
    """
    tree = ast.parse(source, filename=f"{PACKAGE}/{module}.py")
    names: set[str] = set()
    submodules = _submodule_names()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = (
                _resolve_relative(module, node.level, node.module)
                if node.level
                else node.module or ""
            )
            for alias in node.names:
                if target == PACKAGE and alias.name in submodules:
                    names.add(f"{PACKAGE}.{alias.name}")
                else:
                    names.add(target)
                    if alias.name != "*":
                        names.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Attribute):
            if (
                isinstance(node.value, ast.Name)
                and node.value.id == "aiohttp"
                and node.attr.startswith("web")
            ):
                names.add(f"aiohttp.{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            names.add("__import__")
    return names


def core_violations(module: str, source: str) -> list[str]:
    """Why ``module`` (a core module) breaks the core's import rules; empty when it does not."""
    problems: list[str] = []
    for name in sorted(imported_names(module, source)):
        top = name.split(".")[0]
        if top == PACKAGE:
            parts = name.split(".")
            # "vvstore.clock.VersionVector" is the core module "clock" (or an attribute of it).
            if not any(".".join(parts[1:i]) in CORE for i in range(2, len(parts) + 1)):
                problems.append(f"{module} imports {name}, which is not a core module")
        elif top == "__import__" or top == "importlib":
            problems.append(f"{module} imports dynamically ({name})")
        elif top not in sys.stdlib_module_names:
            problems.append(f"{module} imports {name}, which is not in the standard library")
        elif top in FORBIDDEN_IN_CORE:
            problems.append(f"{module} imports {name}: time and randomness are passed in")
    return problems


def harness_imports(module: str, source: str) -> set[str]:
    """The harness modules ``module`` imports (``vvstore.harness...``)."""
    prefix = f"{PACKAGE}.{HARNESS}"
    return {
        name
        for name in imported_names(module, source)
        if name == prefix or name.startswith(prefix + ".")
    }


def is_harness(module: str) -> bool:
    return module == HARNESS or module.startswith(HARNESS + ".")


def imports_aiosqlite(module: str, source: str) -> bool:
    return any(name.split(".")[0] == "aiosqlite" for name in imported_names(module, source))


def imports_aiohttp_web(module: str, source: str) -> bool:
    return any(
        name == "aiohttp.web" or name.startswith(("aiohttp.web.", "aiohttp.web_"))
        for name in imported_names(module, source)
    )


def may_import_web(module: str) -> bool:
    last = module.split(".")[-1]
    return module in WEB_MODULES or last.startswith("testing")


# --- the checkers catch violations ----------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import aiohttp\n",
        "from aiohttp import web\n",
        "import aiosqlite\n",
        "def f() -> None:\n    import yarl\n",
        "from vvstore import store\n",
        "from vvstore.store import Store\n",
        "import vvstore.sync\n",
        "from . import node\n",
        "from .api import create_app\n",
        "from vvstore import __version__\n",
        "import time\n",
        "from time import monotonic\n",
        "import random\n",
        "from random import Random\n",
        "import asyncio\n",
        "import asyncio.tasks\n",
        "if TYPE_CHECKING:\n    from vvstore.peer import HttpPeer\n",
        "x = __import__('aiohttp')\n",
        "import importlib\n",
    ],
)
def test_the_core_checker_catches_a_violation(source: str) -> None:
    assert core_violations("counter", source), source


def test_the_core_checker_names_the_module_and_the_import() -> None:
    [problem] = core_violations("codec", "from __future__ import annotations\nimport aiohttp\n")
    assert "codec" in problem and "aiohttp" in problem


def test_the_core_checker_accepts_the_standard_library_and_the_core() -> None:
    source = (
        "from __future__ import annotations\n"
        "import json\n"
        "import re\n"
        "from collections.abc import Mapping\n"
        "from dataclasses import dataclass\n"
        "from urllib.parse import urlsplit\n"
        "from vvstore.clock import VersionVector\n"
        "from vvstore import errors\n"
        "import vvstore.config\n"
        "from . import clock\n"
        "from .counter import Entry\n"
    )
    assert core_violations("codec", source) == []


def test_relative_imports_are_resolved() -> None:
    assert imported_names("counter", "from .clock import VersionVector\n") == {
        "vvstore.clock",
        "vvstore.clock.VersionVector",
    }
    assert "vvstore.store" in imported_names("codec", "from . import store\n")


def test_the_aiosqlite_checker_catches_an_import() -> None:
    assert imports_aiosqlite("sync", "import aiosqlite\n")
    assert imports_aiosqlite("sync", "from aiosqlite import Connection\n")
    assert imports_aiosqlite("sync", "def f() -> None:\n    import aiosqlite.core\n")
    assert not imports_aiosqlite("sync", "import sqlite3\n")


def test_the_aiohttp_web_checker_catches_an_import() -> None:
    assert imports_aiohttp_web("peer", "from aiohttp import web\n")
    assert imports_aiohttp_web("peer", "import aiohttp.web\n")
    assert imports_aiohttp_web("peer", "from aiohttp.web import Application\n")
    assert imports_aiohttp_web("peer", "from aiohttp.web_response import Response\n")
    assert imports_aiohttp_web("peer", "import aiohttp\napp = aiohttp.web.Application()\n")
    # The client side of aiohttp is fine.
    assert not imports_aiohttp_web("peer", "import aiohttp\ns = aiohttp.ClientSession\n")
    assert not imports_aiohttp_web("peer", "from aiohttp import ClientSession, ClientTimeout\n")


# --- the package obeys them -----------------------------------------------------------------


def test_every_module_parses_and_the_core_exists() -> None:
    modules = package_modules()
    assert set(modules) >= REQUIRED_CORE, sorted(REQUIRED_CORE - set(modules))
    for name, source in modules.items():
        ast.parse(source, filename=f"{PACKAGE}/{name}.py")


def _core_modules() -> list[str]:
    return sorted(CORE & set(package_modules()))


@pytest.mark.parametrize("module", _core_modules())
def test_the_core_imports_only_the_standard_library_and_the_core(module: str) -> None:
    source = package_modules()[module]
    assert core_violations(module, source) == []


def test_only_the_store_imports_aiosqlite() -> None:
    modules = package_modules()
    importers = sorted(name for name, source in modules.items() if imports_aiosqlite(name, source))
    assert importers == sorted(SQLITE_MODULES)


#: What the module deciding a write group must not import: it decides, the store does the I/O.
WRITES_FORBIDDEN = frozenset(
    {"aiosqlite", "aiohttp", "asyncio", "os", "time", "random", "socket", "sqlite3"}
)


def io_imports(module: str, source: str) -> list[str]:
    """The imports of ``module`` whose top-level package is in WRITES_FORBIDDEN."""
    return sorted(
        name for name in imported_names(module, source) if name.split(".")[0] in WRITES_FORBIDDEN
    )


def test_the_io_checker_catches_an_import() -> None:
    for source in (
        "import os\n",
        "from os import urandom\n",
        "import sqlite3\n",
        "def f() -> None:\n    import time\n",
        "from socket import socket\n",
        "import aiohttp\n",
    ):
        assert io_imports("writes", source), source
    assert io_imports("writes", "import dataclasses\nfrom vvstore import codec\n") == []


def test_the_write_group_decisions_import_nothing_of_io() -> None:
    source = package_modules()["writes"]
    assert "vvstore.codec" in imported_names("writes", source)  # the rule is not vacuous
    assert io_imports("writes", source) == []


def test_only_the_server_side_imports_aiohttp_web() -> None:
    modules = package_modules()
    importers = {name for name, source in modules.items() if imports_aiohttp_web(name, source)}
    assert "api" in importers  # the rule is not vacuous
    assert sorted(name for name in importers if not may_import_web(name)) == []


def test_the_harness_checker_catches_an_import() -> None:
    assert harness_imports("node", "from vvstore.harness.proxy import FaultProxy\n")
    assert harness_imports("node", "from vvstore import harness\n")
    assert harness_imports("node", "from .harness import demo\n")
    assert harness_imports("node", "def f() -> None:\n    import vvstore.harness.demo\n")
    assert not harness_imports("node", "from vvstore import store\n")


def test_the_product_never_imports_the_harness() -> None:
    modules = package_modules()
    assert any(is_harness(name) for name in modules)  # the rule is not vacuous
    back = sorted(
        (name, target)
        for name, source in modules.items()
        if not is_harness(name)
        for target in harness_imports(name, source)
    )
    assert [edge for edge in back if edge not in HARNESS_DOORS] == []


def test_cli_commands_but_the_demo_do_not_load_the_harness() -> None:
    code = (
        "import sys, vvstore.cli as cli; cli._parser(); "
        "cli.main(['get', 'k', '--url', 'http://127.0.0.1:9']); "
        "print(sorted(m for m in sys.modules if m.startswith('vvstore.harness')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr


def test_importing_the_package_stays_in_the_pure_core() -> None:
    """``import vvstore`` (and so ``vvstore.clock`` used alone) pulls in no I/O library."""
    code = (
        "import sys, vvstore, vvstore.clock; "
        "print(sorted(m for m in ('aiohttp', 'aiosqlite', 'asyncio') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def imports_top(module: str, source: str, tops: frozenset[str]) -> list[str]:
    """The imports of ``module`` whose top-level package is one of ``tops``."""
    return sorted(name for name in imported_names(module, source) if name.split(".")[0] in tops)


def test_the_top_level_checker_catches_an_import() -> None:
    prometheus = frozenset({"prometheus_client"})
    assert imports_top("api", "from prometheus_client import Counter\n", prometheus)
    assert imports_top("api", "def f() -> None:\n    import prometheus_client.parser\n", prometheus)
    assert not imports_top("api", "from vvstore.metrics import Metrics\n", prometheus)


def test_only_the_metrics_module_imports_prometheus_client() -> None:
    modules = package_modules()
    prometheus = frozenset({"prometheus_client"})
    importers = sorted(
        name for name, source in modules.items() if imports_top(name, source, prometheus)
    )
    assert importers == sorted(METRICS_MODULES)


def test_the_metrics_module_does_no_io() -> None:
    for module in METRICS_MODULES:
        assert imports_top(module, package_modules()[module], METRICS_FORBIDDEN) == []


def test_no_two_test_files_share_a_basename() -> None:
    """pytest imports test modules by basename (rootdir-relative packages are not used), so a
    second file of the same name stops the whole run at collection."""
    seen: dict[str, Path] = {}
    for path in sorted(Path(__file__).resolve().parent.rglob("test_*.py")):
        assert path.name not in seen, f"{path} and {seen[path.name]} share a basename"
        seen[path.name] = path
