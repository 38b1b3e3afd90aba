"""Smoke test of ``python -m bench.catchup``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is a top-level directory of the repository
    sys.path.insert(0, str(ROOT))

from bench import catchup  # noqa: E402


def test_a_catch_up_is_timed_per_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert catchup.main(["--entries", "1500"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1500 entries in ") and " us per entry, " in out, out
