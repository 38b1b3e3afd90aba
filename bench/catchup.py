"""In-process catch-up cost: one pull round of N entries between two in-memory nodes.

``python -m bench.catchup --entries 20000`` writes N keys on node A (batches of 1000, durability
normal), then times node B's first pull round from A on the in-memory network (both nodes in
this process, so the figure includes serving the pages), and prints microseconds per entry.
``--profile`` prints the 30 most expensive calls (cProfile, cumulative) instead of only timing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import tempfile
import time
from collections.abc import Sequence

from vvstore.config import NodeConfig
from vvstore.harness.testing import Network, open_memory_node


async def _run(entries: int, profile: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="vvstore-catchup-") as tmp:
        network = Network(rng=random.Random(1))
        names = ("A", "B")
        nodes = [
            await open_memory_node(
                network, NodeConfig(node_id=n, data_dir=f"{tmp}/{n}", durability="normal"), names
            )
            for n in names
        ]
        a, b = nodes
        try:
            for start in range(0, entries, 1000):
                end = min(entries, start + 1000)
                await a.batch([(f"key-{i:07d}", 1) for i in range(start, end)])
            profiler = cProfile.Profile() if profile else None
            began = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            result = await b.sync.round(b.sync.links[0])
            if profiler is not None:
                profiler.disable()
            took = time.perf_counter() - began
            if result is None or result.entries != entries:
                raise RuntimeError(f"the round did not bring the {entries} entries: {result}")
            print(
                f"{entries} entries in {took:.2f} s: {1e6 * took / entries:.1f} us per entry,"
                f" {result.pages} pages"
            )
            if profiler is not None:
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
            return took
        finally:
            for node in nodes:
                await node.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.catchup", description=__doc__)
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    asyncio.run(_run(args.entries, args.profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
