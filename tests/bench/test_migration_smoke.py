"""Smoke test of ``python -m bench.migration``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is a top-level directory of the repository
    sys.path.insert(0, str(ROOT))

from bench import migration  # noqa: E402
from vvstore.store import SCHEMA_VERSION  # noqa: E402


def test_the_migration_is_timed(capsys: pytest.CaptureFixture[str]) -> None:
    assert migration.main(["--keys", "200", "--actors", "2"]) == 0
    out = capsys.readouterr().out
    expected = f"400 entries (200 keys x 2 actors): first open, schema 2 -> {SCHEMA_VERSION}, took "
    assert out.startswith(expected), out
