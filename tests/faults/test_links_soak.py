"""The soak tier's link run: two minutes of every kind of fault, slow and lossy links among
them, under non-ASCII keys (``python -m pytest -m soak -s tests/faults/test_links_soak.py``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from vvstore.harness.faults.run import link_run, run_faults
from vvstore.harness.faults.schedule import FAULT_KINDS, LINK_KINDS

pytestmark = [pytest.mark.slow, pytest.mark.soak]


@pytest.mark.parametrize("seed", [2031])
async def test_two_minutes_of_every_fault_with_links_and_unicode_keys(
    seed: int, tmp_path: Path
) -> None:
    options, schedule = link_run(seed, tuple(FAULT_KINDS), duration=120.0)
    assert set(LINK_KINDS) <= set(schedule.counts())
    lines: list[str] = []
    result = await run_faults(replace(options, workdir=str(tmp_path)), schedule, out=lines.append)
    if not result.ok:
        result.write(tmp_path / f"faults-seed{seed}.json")
    assert result.ok, "\n".join([result.closing_line(), *result.problems, *lines[-40:]])
    verdict = result.verdict
    assert verdict is not None
    assert (verdict.lost, verdict.doubled, verdict.lost_to_wipe) == (0, 0, 0)
    print(result.closing_line())
