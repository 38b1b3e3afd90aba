"""Run a server of the benchmark on uvloop's event loop, unchanged otherwise.

``python -m bench.uvloop_run vvstore serve ...`` runs vvstore's own command line, and
``python -m bench.uvloop_run servers MODE ...`` a reference server, after installing uvloop's
event loop policy: what uvloop would give, measured without touching vvstore's code.
"""

from __future__ import annotations

import asyncio
import sys


def main() -> int:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    target, argv = sys.argv[1], sys.argv[2:]
    if target == "vvstore":
        from vvstore.cli import main as vvstore_main

        return vvstore_main(argv)
    if target == "servers":
        from bench.servers import main as servers_main

        servers_main(argv)
        return 0
    raise SystemExit(f"unknown target {target!r}: vvstore or servers")


if __name__ == "__main__":
    sys.exit(main())
