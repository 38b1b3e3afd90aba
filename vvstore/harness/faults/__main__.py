"""``python -m vvstore.harness.faults``: see :mod:`vvstore.harness.faults.cli`."""

import sys

from vvstore.harness.faults.cli import main

sys.exit(main())
