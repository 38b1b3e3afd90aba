"""Row 7 of the benchmark, tiny: the harness's Cluster serves the benchmark's real cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is a top-level directory of the repository
    sys.path.insert(0, str(ROOT))

from bench.cluster import run_cluster  # noqa: E402

pytestmark = pytest.mark.slow


async def test_row_7_runs_on_the_harness_cluster(tmp_path: Path) -> None:
    lines: list[str] = []
    result = await run_cluster(
        tmp_path,
        keys=300,
        load_seconds=1,
        idle_seconds=0.5,
        connections=4,
        loadgen="builtin",
        sync_interval=0.2,
        log=lines.append,
        converge_timeout=60,
    )
    assert result["preload"]["entries"] >= result["preload"]["entries_needed"]
    assert result["load"]["increments"] > 0
    assert result["heal"]["values_agree"]
    assert result["heal"]["diverged_entries"] > 0
    assert any("partition" in line for line in lines)
