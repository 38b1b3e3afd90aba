"""Smoke test of ``python -m bench.schema``: every variant runs and is reported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is a top-level directory of the repository
    sys.path.insert(0, str(ROOT))

from bench import schema  # noqa: E402


def test_every_schema_variant_is_measured_against_the_reference(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert schema.main(["--keys", "300", "--batches", "2", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    rows = [
        line for line in out.splitlines() if line.startswith(tuple(v.name for v in schema.VARIANTS))
    ]
    assert len(rows) == len(schema.VARIANTS)
    reference = next(r for r in rows if r.startswith(schema.VARIANTS[0].name))
    assert reference.split()[-1] == "1.00"
    assert all(float(r.split()[-1]) > 0 for r in rows)


def test_bad_sizes_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        schema.main(["--keys", "0"])
    assert exited.value.code == 2
    assert "--keys" in capsys.readouterr().err
