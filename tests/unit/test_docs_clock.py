"""Run every example in docs/clock.md, so the page cannot drift from the code.

The ```python blocks are doctest sessions. They run in document order in one shared namespace,
as a reader would type them into one interpreter.
"""

from __future__ import annotations

import doctest
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "clock.md"

# Fewer examples than this means the blocks were not found, not that the page got shorter.
MIN_EXAMPLES = 8

_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _doctests() -> list[doctest.DocTest]:
    text = DOC.read_text(encoding="utf-8")
    parser = doctest.DocTestParser()
    tests = []
    for match in _PYTHON_BLOCK.finditer(text):
        # 0-based line of the block's first line, so failure reports point into the page.
        first_line = text.count("\n", 0, match.start(1))
        tests.append(
            parser.get_doctest(
                match.group(1),
                {},
                name=f"{DOC.name}, block at line {first_line + 1}",
                filename=str(DOC),
                lineno=first_line,
            )
        )
    return tests


def test_every_example_in_docs_clock_md_passes() -> None:
    tests = _doctests()
    found = sum(len(test.examples) for test in tests)
    assert found >= MIN_EXAMPLES, f"only {found} examples found in {DOC}"

    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.REPORT_NDIFF)
    namespace: dict[str, object] = {}
    for test in tests:
        # Each block starts from the names the blocks before it defined.
        test.globs = namespace
        runner.run(test, out=report.write, clear_globs=False)

    assert runner.tries == found
    assert runner.failures == 0, report.getvalue()
