"""What the ``entries`` schema costs SQLite per write, against candidate schemas.

``python -m bench.schema [--keys 100000] [--batches 48] [--rounds 3]``

Plain ``sqlite3`` (no server, no event loop): each variant preloads ``keys`` rows, then commits
batches of 1,000 upserts (WAL, ``synchronous=FULL``) drawn from 16 fixed bodies of random keys,
as the benchmark's ``/batch`` rows do. Variants run interleaved, one round after another; the
figure is the median time per batch over every round, and each ratio is over the minimal
durable reference's table (one row per key, a value).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ACTOR = "A~0123456789abcdef"
BATCH = 1000
BODIES = 16

_ENTRIES = (
    "CREATE TABLE entries (key TEXT NOT NULL, actor TEXT NOT NULL, seq INTEGER NOT NULL,"
    " total INTEGER NOT NULL, floors TEXT NOT NULL, PRIMARY KEY (key, actor)) STRICT, WITHOUT ROWID"
)
_ENTRIES_INT = (
    "CREATE TABLE entries (key TEXT NOT NULL, actor INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " total INTEGER NOT NULL, floors TEXT, PRIMARY KEY (key, actor)) STRICT, WITHOUT ROWID"
)
_DOT_INDEX = "CREATE UNIQUE INDEX entries_by_dot ON entries (actor, seq)"
_UPSERT = (
    "INSERT INTO entries VALUES (?, ?, ?, ?, ?) ON CONFLICT (key, actor) DO UPDATE"
    " SET seq = excluded.seq, total = excluded.total, floors = excluded.floors"
)
_LOG = (
    "CREATE TABLE log (actor TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL,"
    " PRIMARY KEY (actor, seq)) STRICT, WITHOUT ROWID"
)

Row = tuple[object, ...]


@dataclass(frozen=True)
class Variant:
    name: str
    schema: Sequence[str]
    # (key, seq) -> the statements and parameters of one write
    write: Callable[[str, int], list[tuple[str, Row]]]


VARIANTS = (
    Variant(
        "reference: counters (key, value)",
        ["CREATE TABLE counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL)"],
        lambda k, s: [
            (
                "INSERT INTO counters VALUES (?, 1) ON CONFLICT (key) DO UPDATE"
                " SET value = value + 1",
                (k,),
            )
        ],
    ),
    Variant(
        "schema 2: text actor, dot index",
        [_ENTRIES, _DOT_INDEX],
        lambda k, s: [(_UPSERT, (k, ACTOR, s, s, "{}"))],
    ),
    Variant(
        "entries without the dot index",
        [_ENTRIES],
        lambda k, s: [(_UPSERT, (k, ACTOR, s, s, "{}"))],
    ),
    Variant(
        "schema 3 (now): integer actor, NULL floors",
        [_ENTRIES_INT, _DOT_INDEX],
        lambda k, s: [(_UPSERT, (k, 1, s, s, None))],
    ),
    Variant(
        "entries + append-only (actor, seq) log",
        [_ENTRIES, _LOG],
        lambda k, s: [
            (_UPSERT, (k, ACTOR, s, s, "{}")),
            ("INSERT INTO log VALUES (?, ?, ?)", (ACTOR, s, k)),
        ],
    ),
)


def _run(variant: Variant, directory: Path, keys: int, batches: int, seed: int) -> list[float]:
    db = sqlite3.connect(directory / f"{abs(hash(variant.name))}.db", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        for statement in variant.schema:
            db.execute(statement)
        names = [f"k{i}" for i in range(keys)]
        seq = 0
        db.execute("BEGIN")
        for name in names:
            seq += 1
            for sql, params in variant.write(name, seq):
                db.execute(sql, params)
        db.execute("COMMIT")
        rng = random.Random(seed)
        bodies = [[rng.choice(names) for _ in range(BATCH)] for _ in range(BODIES)]
        times = []
        for i in range(batches):
            writes: dict[str, list[Row]] = {}
            for name in bodies[i % BODIES]:
                seq += 1
                for sql, params in variant.write(name, seq):
                    writes.setdefault(sql, []).append(params)
            start = time.perf_counter()
            db.execute("BEGIN")
            for sql, rows in writes.items():
                db.executemany(sql, rows)
            db.execute("COMMIT")
            times.append(time.perf_counter() - start)
        return times
    finally:
        db.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.schema", description=__doc__)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=48, help="measured batches per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = parser.parse_args(argv)
    if not (
        1 <= args.keys <= 10_000_000 and 1 <= args.batches <= 10_000 and 1 <= args.rounds <= 20
    ):
        parser.error("--keys 1..10,000,000, --batches 1..10,000, --rounds 1..20")
    results: dict[str, list[float]] = {v.name: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="vvstore-schema-") as tmp:
        for round_ in range(args.rounds):
            for variant in VARIANTS:
                directory = Path(tmp) / f"r{round_}"
                directory.mkdir(exist_ok=True)
                results[variant.name] += _run(variant, directory, args.keys, args.batches, round_)
                print(f"round {round_ + 1}/{args.rounds}: {variant.name}", file=sys.stderr)
    reference = statistics.median(results[VARIANTS[0].name])
    print(
        f"\n{args.keys:,} keys preloaded; batches of {BATCH} upserts over {BODIES} fixed bodies;"
        f" {args.rounds} interleaved rounds of {args.batches} batches; medians"
    )
    print(f"{'schema':45} {'ms/batch':>9} {'us/write':>9} {'/reference':>11}")
    for variant in VARIANTS:
        median = statistics.median(results[variant.name])
        print(
            f"{variant.name:45} {median * 1000:9.2f} {median * 1e6 / BATCH:9.1f}"
            f" {median / reference:11.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
