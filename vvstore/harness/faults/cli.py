"""``python -m vvstore.harness.faults``: run, soak, replay, recheck and shrink fault schedules.

A thin shell over :mod:`vvstore.harness.faults.run`: flags build :class:`RunOptions`, every run
prints
its seed and schedule first and one closing verdict line last, and a failing run writes its
whole history as JSON (``--json-out``, or ``vvstore-faults-seed<N>.json`` in the current
directory) and prints the command that replays it. Exit status: 0 every run held, 1 one did
not, 2 one could not start (or the flags do not fit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from vvstore.harness.checker import summarize_faults
from vvstore.harness.faults.run import (
    SHORT_TIER_WORKLOAD,
    RunOptions,
    RunResult,
    churn_run,
    kill_cycles,
    load_replay,
    recheck,
    regression_document,
    report_text,
    restore_cycles,
    run_faults,
    short_tier,
    shrink,
    soak_run_options,
)
from vvstore.harness.faults.schedule import (
    FAULT_KINDS,
    MAX_CHURN_CYCLES,
    OPT_IN_KINDS,
    Schedule,
    generate,
    short_tier_options,
)
from vvstore.harness.faults.workload import KEY_ALPHABETS

__all__ = ["main"]

DESCRIPTION = (
    "Jepsen-style fault runs against three real vvstore nodes on loopback: partitions, kills, "
    "pauses, stale restores, wipes, restores in place, churn, slow and lossy links under "
    "concurrent retried increments, checked exactly. "
    "Exit status: 0 every run held, 1 one did not, 2 one could not start."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vvstore.harness.faults", description=DESCRIPTION
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--short-tier", action="store_true",
        help="run the CI short tier: 10 seeded schedules, 5 kill-and-restart cycles, and 2 "
        "schedules of slow and lossy links under non-ASCII keys",
    )  # fmt: skip
    mode.add_argument(
        "--soak", type=float, metavar="MINUTES",
        help="the combined nemesis for MINUTES (a fault every 5-10 s, long partitions 10-30 s)",
    )  # fmt: skip
    mode.add_argument(
        "--kill-cycles", type=int, metavar="N", help="N kill -9 and restart cycles, round the nodes"
    )
    mode.add_argument(
        "--restore-cycles", type=int, metavar="N",
        help="N online backups restored in place (same inode) seconds later, round the nodes",
    )  # fmt: skip
    mode.add_argument(
        "--churn", type=int, metavar="N",
        help=f"one churn of node B: N (1 to {MAX_CHURN_CYCLES}) stop, wipe and restart cycles",
    )  # fmt: skip
    mode.add_argument("--replay", metavar="FILE", help="run a run document's schedule again")
    mode.add_argument(
        "--recheck", metavar="FILE", help="judge a run document's history again (no processes)"
    )
    mode.add_argument(
        "--shrink", metavar="FILE",
        help="drop faults from a failing run's schedule while it still fails",
    )  # fmt: skip
    mode.add_argument("--list-faults", action="store_true", help="list the nemesis menu")
    parser.add_argument("--seed", type=int, default=1, help="seed of the schedule (default 1)")
    parser.add_argument(
        "--runs", type=int, default=1, metavar="N", help="run seeds SEED to SEED+N-1 (default 1)"
    )
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="seconds of faults")
    parser.add_argument(
        "--faults", nargs="+", metavar="KIND",
        help="kinds to draw from (names or comma lists; default every kind but the opt-in "
        "restore and churn, see --list-faults)",
    )  # fmt: skip
    parser.add_argument("--clients", type=int, help="concurrent clients")
    parser.add_argument("--keys", type=int, help="keys the clients add to")
    parser.add_argument(
        "--key-alphabet", choices=KEY_ALPHABETS,
        help="ascii (k000, k001, ...; the default) or unicode: multi-byte UTF-8 keys, some of "
        "four-byte characters at the key length limit",
    )  # fmt: skip
    parser.add_argument("--rate", type=float, help="target increments per second, all clients")
    parser.add_argument("--read-ratio", type=float, help="fraction of operations that read")
    parser.add_argument(
        "--read-back", type=float, metavar="P",
        help="chance that an acknowledged increment is read back at once where it was acknowledged",
    )  # fmt: skip
    parser.add_argument(
        "--probe-share", type=float, metavar="P",
        help="fraction of increments sent to a key of their own, verified one by one and "
        "replayed once on another node (default 0.25)",
    )  # fmt: skip
    parser.add_argument("--client-timeout", type=float, metavar="SECONDS", help="per request")
    parser.add_argument(
        "--durability", choices=("full", "normal", "mixed"),
        help="of every node, or mixed: A full, B normal, C full (default mixed)",
    )  # fmt: skip
    parser.add_argument(
        "--partition-max", type=float, metavar="SECONDS",
        help="cap every network fault's length (the CI tier caps partitions at 5 s)",
    )  # fmt: skip
    parser.add_argument(
        "--gap", type=float, nargs=2, metavar=("LOW", "HIGH"), help="seconds between faults"
    )
    parser.add_argument(
        "--checkpoint-every", type=float, metavar="SECONDS",
        help="heal, settle, converge and judge every SECONDS of faults (soak default 300)",
    )  # fmt: skip
    parser.add_argument("--json-out", metavar="PATH", help="write the run document here, always")
    parser.add_argument("--report", metavar="PATH", help="write the text report here")
    parser.add_argument(
        "--shrink-out", metavar="PATH", help="where --shrink writes the regression file"
    )
    parser.add_argument(
        "--schedule-only", action="store_true", help="print the schedule and exit; start nothing"
    )
    parser.add_argument("--keep", action="store_true", help="keep data directories and logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="print nemesis events")
    return parser


def _kinds(values: Sequence[str]) -> tuple[str, ...]:
    kinds = tuple(k for value in values for k in value.split(",") if k)
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(FAULT_KINDS)}")
    return kinds


def _options(args: argparse.Namespace, base: RunOptions) -> RunOptions:
    """``base`` with every flag given on the command line applied."""
    s = base.schedule
    if args.duration is not None:
        s = replace(s, duration=args.duration)
    if args.faults:
        s = replace(s, kinds=_kinds(args.faults))
    if args.gap is not None:
        s = replace(s, gap=(args.gap[0], args.gap[1]))
    if args.partition_max is not None:
        cap = args.partition_max

        def capped(span: tuple[float, float]) -> tuple[float, float]:
            return (min(span[0], cap), min(span[1], cap))

        s = replace(s, partition=capped(s.partition), long_partition=capped(s.long_partition))
    w = base.workload
    for flag, name in (
        ("clients", "clients"),
        ("keys", "keys"),
        ("rate", "rate"),
        ("read_ratio", "read_ratio"),
        ("read_back", "read_back"),
        ("client_timeout", "timeout"),
        ("key_alphabet", "key_alphabet"),
        ("probe_share", "probe_share"),
    ):
        value = getattr(args, flag)
        if value is not None:
            w = replace(w, **{name: value})
    fields: dict[str, object] = {"schedule": s, "workload": w, "seed": args.seed}
    fields["verbose"] = args.verbose or base.verbose
    fields["keep"] = args.keep
    if args.durability is not None:
        fields["durability"] = args.durability
    if args.checkpoint_every is not None:
        fields["checkpoint_every"] = args.checkpoint_every
    return replace(base, **fields)  # type: ignore[arg-type]


def _print(line: str) -> None:
    print(line, flush=True)


def _json_path(args: argparse.Namespace, seed: int, several: bool) -> Path | None:
    if args.json_out is None:
        return None
    path = Path(args.json_out)
    return path.with_name(f"{path.stem}-seed{seed}{path.suffix}") if several else path


def _finish(result: RunResult, args: argparse.Namespace, several: bool) -> None:
    """Print the closing line; write the run document when asked or when the run failed."""
    _print(result.closing_line())
    for problem in result.problems:
        _print(f"  problem: {problem}")
    if result.verdict is not None:
        for error in result.verdict.errors[:10]:
            _print(f"  error: {error}")
    if result.workdir:
        _print(f"  data directories and logs kept in {result.workdir}")
    path = _json_path(args, result.options.seed, several)
    if path is None and not result.ok:
        path = Path.cwd() / f"vvstore-faults-seed{result.options.seed}.json"
    if path is not None:
        result.write(path)
        _print(f"  run document (history, schedule, verdict): {path}")
        if not result.ok:
            _print(f"  replay: python -m vvstore.harness.faults --replay {path}")
            _print(f"  shrink: python -m vvstore.harness.faults --shrink {path}")


async def _run_all(runs: Sequence[tuple[RunOptions, Schedule]], args: argparse.Namespace) -> int:
    worst = 0
    several = len(runs) > 1
    for options, schedule in runs:
        result = await run_faults(options, schedule, out=_print)
        _finish(result, args, several)
        if args.report:
            Path(args.report).write_text(report_text(result))
            _print(f"  report: {args.report}")
        worst = max(worst, result.exit_code)
    return worst


async def _main(args: argparse.Namespace) -> int:
    if args.list_faults:
        for kind, text in FAULT_KINDS.items():
            _print(f"{kind:<15} {text}")
        *others, last = sorted(OPT_IN_KINDS)
        opt_in = f"{', '.join(others)} and {last}"
        _print(f"(drawn by default: every kind but {opt_in}; ask for them with --faults)")
        return 0
    if args.recheck:
        verdict = recheck(json.loads(Path(args.recheck).read_text()))
        _print(summarize_faults(verdict))
        for error in verdict.errors:
            _print(f"  error: {error}")
        return 0 if verdict.valid else 1
    if args.replay or args.shrink:
        options, schedule = load_replay(json.loads(Path(args.replay or args.shrink).read_text()))
        options = replace(options, verbose=args.verbose, keep=args.keep)
        if args.shrink:
            return await _shrink(options, schedule, args)
        runs = [(options, schedule)]
    elif args.short_tier:
        runs = short_tier()
    elif args.kill_cycles is not None:
        runs = [kill_cycles(args.kill_cycles)]
    elif args.restore_cycles is not None:
        runs = [restore_cycles(args.restore_cycles)]
    elif args.churn is not None:
        runs = [churn_run(args.churn)]
    else:
        base = (
            soak_run_options(args.soak, args.seed)
            if args.soak is not None
            else RunOptions(schedule=short_tier_options(), workload=SHORT_TIER_WORKLOAD)
        )
        runs = []
        for seed in range(args.seed, args.seed + args.runs):
            args.seed = seed
            options = _options(args, base)
            runs.append((options, generate(seed, options.schedule)))
    if args.schedule_only:
        for options, schedule in runs:
            _print(f"seed {options.seed}: {len(schedule.faults)} faults")
            for line in schedule.describe():
                _print("  " + line)
        return 0
    return await _run_all(runs, args)


async def _shrink(options: RunOptions, schedule: Schedule, args: argparse.Namespace) -> int:
    _print(f"shrinking seed {options.seed}: {len(schedule.faults)} faults")
    shrunk = await shrink(options, schedule, out=_print)
    out = Path(args.shrink_out or f"vvstore-faults-seed{options.seed}-shrunk.json")
    note = f"shrunk from seed {options.seed} ({len(schedule.faults)} faults)"
    out.write_text(json.dumps(regression_document(options, shrunk, note), indent=2) + "\n")
    _print(f"{len(shrunk.faults)} faults left:")
    for line in shrunk.describe():
        _print("  " + line)
    _print(f"regression file: {out} (copy it into tests/faults/regressions/)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, run, and return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    for flag, value in (
        ("--kill-cycles", args.kill_cycles),
        ("--restore-cycles", args.restore_cycles),
    ):
        if value is not None and value < 1:
            parser.error(f"{flag} must be at least 1")
    if args.churn is not None and not 1 <= args.churn <= MAX_CHURN_CYCLES:
        parser.error(f"--churn must be 1 to {MAX_CHURN_CYCLES}")
    try:
        return asyncio.run(_main(args))
    except ValueError as exc:
        print(f"python -m vvstore.harness.faults: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "python -m vvstore.harness.faults: interrupted; every node was stopped", file=sys.stderr
        )
        return 130
