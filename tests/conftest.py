"""Shared fixtures: configs in temporary directories, opened nodes, Hypothesis profiles."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from vvstore.config import NodeConfig
from vvstore.node import Node

settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# aiosqlite runs each connection on a non-daemon thread: one left open keeps the interpreter
# from exiting after the last test, so a leak would hang the suite instead of failing it.
_SQLITE_THREAD = "_connection_worker_thread"
_THREAD_GRACE_S = 5.0


def _sqlite_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if _SQLITE_THREAD in t.name and t.is_alive()}


@pytest.fixture(autouse=True)
def no_leaked_connections() -> Iterator[None]:
    """Fail the test that leaves an aiosqlite connection open (after its own fixtures close)."""
    before = _sqlite_threads()
    yield
    deadline = time.monotonic() + _THREAD_GRACE_S
    leaked = _sqlite_threads() - before
    while leaked and time.monotonic() < deadline:
        time.sleep(0.01)  # a closed connection's thread is exiting; poll against a deadline
        leaked = _sqlite_threads() - before
    assert not leaked, (
        f"{len(leaked)} SQLite connection(s) left open: {sorted(t.name for t in leaked)}"
    )


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., NodeConfig]:
    """Build a NodeConfig whose data directory lives under this test's tmp_path."""

    def make(node_id: str = "n1", **fields: Any) -> NodeConfig:
        fields.setdefault("data_dir", str(tmp_path / node_id))
        fields.setdefault("port", 0)
        return NodeConfig(node_id=node_id, **fields)

    return make


@pytest.fixture
async def node(make_config: Callable[..., NodeConfig]) -> AsyncIterator[Node]:
    """A single opened node (no peers, no HTTP), closed after the test."""
    opened = await Node.open(make_config(), rng=random.Random(1))
    try:
        yield opened
    finally:
        await opened.close()
