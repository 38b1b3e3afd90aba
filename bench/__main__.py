"""``python -m bench``: the vvstore benchmark (issue 7). See docs/performance.md.

Prints progress on standard error and one table (absolute figures, pairwise ratios, targets)
on standard output; writes every run to bench/out/results.json, the table to
bench/out/table.txt and the plot to docs/performance.png and bench/out/performance.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import drivers, report
from bench.run import SECTIONS, Settings, run_all

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PLOT = ROOT / "docs" / "performance.png"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark vvstore against its references (docs/performance.md).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 run of 2 s each, 10,000 keys, a 5,000-key cluster",
    )
    parser.add_argument("--runs", type=int, help="interleaved rounds per group (default 3)")
    parser.add_argument("--seconds", type=int, help="seconds per measured run (default 5)")
    parser.add_argument("--connections", type=int, help="keep-alive connections (default 50)")
    parser.add_argument("--keys", type=int, help="key-space of the many-keys rows (100000)")
    parser.add_argument("--cluster-keys", type=int, help="keys in the row 7 cluster (100000)")
    parser.add_argument(
        "--only",
        help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default all; "
        "--quick leaves out uvloop)",
    )
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "builtin"),
        default="auto",
        help="closed-loop client: wrk if installed (auto), or the built-in aiohttp one",
    )
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis rows")
    parser.add_argument("--out", type=Path, default=OUT, help="output directory (bench/out)")
    parser.add_argument("--plot", type=Path, default=PLOT, help="PNG for docs (docs/...png)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="another vvstore checkout to run side by side with this one (the baseline section;"
        " e.g. from git worktree add)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.quick_settings() if args.quick else Settings()
    for name in ("runs", "seconds", "connections", "keys", "cluster_keys"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
            setattr(settings, name, value)
    if args.only is not None:
        sections = tuple(s.strip() for s in args.only.split(",") if s.strip())
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown:
            raise SystemExit(f"unknown section(s) {unknown}; choose from {SECTIONS}")
        settings.sections = sections
    if args.baseline is not None:
        if not (args.baseline / "vvstore" / "cli.py").is_file():
            raise SystemExit(f"--baseline {args.baseline}: no vvstore/cli.py there")
        settings.baseline = args.baseline

    def log(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)

    if args.loadgen == "auto":
        settings.loadgen = "wrk" if drivers.have_wrk() else "builtin"
        if settings.loadgen == "builtin":
            log("wrk is not installed: using the built-in aiohttp load generator (bench/load.py)")
    else:
        settings.loadgen = args.loadgen
    settings.redis = not args.no_redis and drivers.have_redis()
    if not settings.redis and not args.no_redis:
        log("redis-server or redis-benchmark is not installed: skipping the Redis rows (row 5)")

    workdir = Path(tempfile.mkdtemp(prefix="vvstore-bench-"))
    settings.workdir = workdir
    args.out.mkdir(parents=True, exist_ok=True)

    def checkpoint(partial: dict[str, object]) -> None:
        (args.out / "results.partial.json").write_text(json.dumps(partial, indent=1) + "\n")

    try:
        results = asyncio.run(run_all(settings, log, checkpoint))
    except BaseException:
        log(f"benchmark failed; logs kept in {workdir}")
        raise
    else:
        if args.keep:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    results["targets"] = report.targets(results)
    message = report.plot(results, [args.plot, args.out / "performance.png"])
    log(message)
    table = report.render(results)
    machine = results["machine"]
    header = (
        f"vvstore benchmark: {results['command']}\n"
        f"{machine['nproc']} cores, {machine['cpu']}, Linux {machine['kernel']}, Python "
        f"{machine['python']}, SQLite {machine['sqlite']}, aiohttp {machine['aiohttp']}; "
        f"{machine['pinning']}\n"
        f"load generator: {settings.loadgen}, {settings.connections} keep-alive connections; "
        f"{settings.runs} interleaved run(s) of {settings.seconds} s per figure, medians; "
        f"wall time {results['wall_s']:.0f} s; load average "
        f"{machine['loadavg_start'][0]:.2f} -> {machine['loadavg_end'][0]:.2f}\n"
        f"fsync probe: SQLite WAL FULL commit p50 "
        f"{results['fsync']['sqlite_full_commit']['p50_ms']:.2f} ms, p99 "
        f"{results['fsync']['sqlite_full_commit']['p99_ms']:.2f} ms\n"
    )
    other = report.noise(results)
    if other is not None:
        header += (
            f"other processes on this shared machine used {other[0]:.2f} cores on average during "
            f"the measured runs (at most {other[1]:.2f})\n"
        )
    for name, error in results.get("errors", {}).items():
        header += f"section {name} FAILED: {error[:300]}\n"
    text = header + "\n" + table + "\n"
    print(text)
    (args.out / "table.txt").write_text(text)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    log(f"results written to {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
