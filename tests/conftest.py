"""Shared fixtures: configs in temporary directories, opened nodes, Hypothesis profiles."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable
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
