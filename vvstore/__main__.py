"""``python -m vvstore``: the same entry point as the ``vvstore`` console script."""

from vvstore.cli import main

raise SystemExit(main())
