"""``python -m bench --baseline DIR`` runs the vvstore CLI of another checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is a top-level directory of the repository
    sys.path.insert(0, str(ROOT))

from bench.__main__ import main  # noqa: E402
from bench.run import baseline_python  # noqa: E402


def test_the_baseline_command_runs_that_checkouts_cli() -> None:
    done = subprocess.run(
        [*baseline_python(ROOT), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("vvstore "), done.stdout


def test_a_checkout_without_vvstore_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--baseline DIR"):
        baseline_python(None)
    with pytest.raises(SystemExit, match=r"no vvstore/cli\.py there"):
        main(["--only", "baseline", "--baseline", str(tmp_path)])
