"""Smoke test of ``python -m bench.libraries``: every area is measured and probed, ours first."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is a top-level directory of the repository
    sys.path.insert(0, str(ROOT))

from bench import libraries  # noqa: E402
from vvstore import codec, wire  # noqa: E402

TINY = ["--rounds", "1", "--page", "30", "--batch", "5", "--records", "40"]
TINY += ["--retries", "5", "--tables", "2"]


def test_every_area_is_measured_against_ours(capsys: pytest.CaptureFixture[str]) -> None:
    assert libraries.main(TINY) == 0
    out = capsys.readouterr().out
    sections = out.split("\n## ")[1:]
    titles = [s.split(":")[0] for s in sections]
    assert titles == ["codec", "codec", "logging", "retry", "demo tables"]
    for section in sections:
        rows = [line for line in section.splitlines()[2:] if line and not line.startswith(" ")]
        assert rows[0].startswith("ours (")
        assert rows[0].split()[-2] == "1.00"  # the ratio column, ours over ours
        assert all(float(row[34:].split()[1]) > 0 for row in rows)
    for library, shown in (
        ("msgspec", "msgspec Structs"),
        ("python-json-logger", "python-json-logger"),
        ("structlog", "structlog ProcessorFormatter"),
        ("tenacity", "tenacity (sleep injected)"),
        ("rich", "rich Table"),
    ):
        rows_shown = any(line.startswith(shown) for line in out.splitlines())
        assert rows_shown == libraries.available(library), library
    # Our decoders' refusals, as probed: a few that must never turn into "accepted".
    assert "ours       InvalidRequest: body is not valid JSON: NaN is not valid JSON" in out
    assert "ours       InvalidRequest: increments[0] amount must be an integer, got bool" in out
    assert "ours       UnsupportedVersion: format version 9 is not supported" in out


def test_the_msgspec_prototype_decodes_what_ours_decodes() -> None:
    pytest.importorskip("msgspec")
    from bench import msgspec_codec

    page, body = libraries.sample_page(200), libraries.sample_batch(50)
    assert msgspec_codec.decode_page(page) == wire.decode_page(page)
    assert msgspec_codec.decode_batch(body) == codec.decode_batch(body)


def test_bad_sizes_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        libraries.main(["--page", "0"])
    assert exited.value.code == 2
    assert "--page" in capsys.readouterr().err
