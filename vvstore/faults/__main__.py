"""``python -m vvstore.faults``: see :mod:`vvstore.faults.cli`."""

import sys

from vvstore.faults.cli import main

sys.exit(main())
