"""How long the first start after an upgrade takes: schema 2 to the current schema.

``python -m bench.migration [--keys 100000] [--actors 3]``

Builds a database as a schema-2 vvstore left it (``keys`` keys, one entry per actor each, the
actor ids as text) with plain ``sqlite3``, then times ``Store.open``, which runs every later
migration (3: number the actors and rebuild ``entries``), and prints the time.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from vvstore.config import NodeConfig
from vvstore.harness.testing import write_schema_2
from vvstore.store import DB_FILE, SCHEMA_VERSION, Store


def build_schema_2(data_dir: Path, keys: int, actors: int) -> None:
    names = [f"n{i}~{i:016x}" for i in range(actors)]
    write_schema_2(
        data_dir / DB_FILE,
        (
            (f"k{k}", name, k * actors + j + 1, 1, "{}")
            for k in range(keys)
            for j, name in enumerate(names)
        ),
    )


async def _open(data_dir: Path) -> float:
    start = time.perf_counter()
    store = await Store.open(NodeConfig(node_id="A", data_dir=str(data_dir), port=0))
    took = time.perf_counter() - start
    await store.close()
    return took


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.migration", description=__doc__)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--actors", type=int, default=3)
    args = parser.parse_args(argv)
    if not (1 <= args.keys <= 10_000_000 and 1 <= args.actors <= 100):
        parser.error("--keys must be 1 to 10,000,000 and --actors 1 to 100")
    with tempfile.TemporaryDirectory(prefix="vvstore-migration-") as tmp:
        data_dir = Path(tmp) / "A"
        data_dir.mkdir()
        build_schema_2(data_dir, args.keys, args.actors)
        took = asyncio.run(_open(data_dir))
    print(
        f"{args.keys * args.actors:,} entries ({args.keys:,} keys x {args.actors} actors):"
        f" first open, schema 2 -> {SCHEMA_VERSION}, took {took:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
