"""The partition-and-heal demo as a script: ``python demo/partition_heal.py [--json] ...``.

The same code as ``vvstore demo`` (see :mod:`vvstore.harness.demo` and docs/demo.md); flags and exit
statuses are the same.
"""

from __future__ import annotations

import sys

from vvstore.harness.demo import main

if __name__ == "__main__":
    sys.exit(main())
