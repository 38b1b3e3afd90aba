"""Profile one server under the benchmark's load with py-spy, and say where the time goes.

``python -m bench.profile [--server vv_full] [--keys 1] [--batch 0] [--seconds 10]``

Starts the server pinned to the server core, warms it up, measures it once unprofiled, then
runs wrk again while ``py-spy record --format raw --threads`` samples it (py-spy pinned to the
client core). The raw stacks are written to ``bench/out/profile-<name>.txt`` and summarised:
samples per thread, per category (assigned by the innermost frame that matches a rule), the
CPU time of the server per request (from /proc) split by those shares, and the top frames.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import linecache
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import drivers
from bench.procs import CLIENT_CORE, preexec_for, start_reference, start_vvstore

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"

# Innermost matching frame decides. (substring of the frame's file, category)
RULES: list[tuple[str, str]] = [
    ("json/", "JSON encode/decode (stdlib json)"),
    ("vvstore/counter.py", "counter math (counter.py, clock.py)"),
    ("vvstore/clock.py", "counter math (counter.py, clock.py)"),
    ("vvstore/codec.py", "codec: key and body validation, reply dicts"),
    ("vvstore/store.py", "store: queue, writer, group bookkeeping"),
    # The decisions of a write group moved out of store.py into writes.py: the same category.
    ("vvstore/writes.py", "store: queue, writer, group bookkeeping"),
    ("vvstore/api.py", "api: handlers, middleware, _json"),
    ("vvstore/node.py", "api: handlers, middleware, _json"),
    ("bench/servers.py", "reference handlers"),
    ("aiosqlite/", "aiosqlite hop on the loop (futures, queue put)"),
    ("aiohttp/", "aiohttp: parse request, route, build and write response"),
    ("multidict", "aiohttp: parse request, route, build and write response"),
    ("yarl/", "aiohttp: parse request, route, build and write response"),
    ("asyncio/", "asyncio: event loop, transports, callbacks"),
    ("selectors.py", "asyncio: event loop, transports, callbacks"),
]
WAITING = "aiosqlite thread: waiting for work"
GC = "cyclic garbage collector (gc_collect_main; seen with --native)"
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def _frames(stack: str) -> list[tuple[str, str, int]]:
    out = []
    for raw in stack.split(";"):
        match = FRAME.match(raw.strip())
        if match:
            out.append((match["func"], match["file"], int(match["line"])))
        else:
            out.append((raw.strip(), "", 0))
    return out


def _worker_line(file: str, line: int) -> str:
    try:
        import aiosqlite.core

        if file.endswith("aiosqlite/core.py"):
            return linecache.getline(aiosqlite.core.__file__, line).strip()
    except ImportError:
        pass
    return ""


def _is_wait(leaf: str) -> bool:
    match = FRAME.match(leaf)
    return bool(match) and "tx.get()" in _worker_line(match["file"], int(match["line"]))


def categorize(thread: str, frames: list[tuple[str, str, int]]) -> str:
    if any(func.startswith("gc_collect_main") for func, _, _ in frames):  # with --native
        return GC
    if "_connection_worker_thread" in thread or any(
        f == "_connection_worker_thread" for f, _, _ in frames
    ):
        func, file, line = frames[-1]
        text = _worker_line(file, line) if func == "_connection_worker_thread" else ""
        if "tx.get()" in text:
            return WAITING
        if "call_soon_threadsafe" in func or "_write_to_self" in func:
            return "aiosqlite thread: waking the event loop"
        return "aiosqlite thread: SQLite execute/commit (fsync included)"
    for _, file, _ in reversed(frames):
        for needle, category in RULES:
            if needle in file:
                return category
    return "other"


def summarize(raw: str, cpu_us_per_request: float | None) -> dict[str, Any]:
    threads: collections.Counter[str] = collections.Counter()
    categories: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        head, _, rest = stack.partition(";")
        thread = head.split(": ", 1)[-1]
        frames = _frames(rest)
        if not frames:
            continue
        total += count
        thread_kind = "MainThread" if thread == "MainThread" else "aiosqlite worker threads"
        threads[thread_kind] += count
        categories[categorize(thread, frames)] += count
        func, file, number = frames[-1]
        leaves[f"{func} ({file}:{number})"] += count
        seen = set()
        for func, file, _ in frames:
            if file.startswith(("vvstore/", "bench/")) and (func, file) not in seen:
                seen.add((func, file))
                inclusive[f"{func} ({file})"] += count

    # py-spy counts the aiosqlite thread blocked on its queue as active: not work, left out.
    waiting = categories.pop(WAITING, 0)
    leaves = collections.Counter({k: v for k, v in leaves.items() if not _is_wait(k)})
    threads["aiosqlite worker threads"] -= waiting
    active = total - waiting

    def share(counter: collections.Counter[str], top: int | None = None) -> list[list[Any]]:
        return [
            [
                name,
                n,
                round(100 * n / active, 1) if active else 0.0,
                round(cpu_us_per_request * n / active, 1)
                if active and cpu_us_per_request
                else None,
            ]
            for name, n in counter.most_common(top)
        ]

    result: dict[str, Any] = {
        "samples": total,
        "waiting_samples": waiting,
        "active_samples": active,
        "threads": share(threads),
        "categories": share(categories),
        "top_leaves": share(leaves, 25),
        "top_inclusive_project": share(inclusive, 25),
        "cpu_us_per_request": cpu_us_per_request,
    }
    return result


def render(summary: dict[str, Any]) -> str:
    lines = [
        f"samples: {summary['samples']}, of which {summary['waiting_samples']} of the aiosqlite "
        f"thread blocked on its queue (left out); shares below are of the "
        f"{summary['active_samples']} others. us/req = share x server CPU per request "
        f"({summary['cpu_us_per_request']} us, from /proc, unprofiled run)"
    ]

    def block(title: str, rows: list[list[Any]]) -> None:
        lines.append(title)
        for name, _, pct, us in rows:
            us_text = f"{us:7.1f} us/req" if us is not None else ""
            lines.append(f"  {pct:5.1f}%  {us_text:>14}  {name}")

    block("by thread:", summary["threads"])
    block("by category (innermost matching frame):", summary["categories"])
    block("top innermost frames:", summary["top_leaves"])
    block("project functions, inclusive:", summary["top_inclusive_project"])
    return "\n".join(lines)


async def profile(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    if args.server.startswith("vv_"):
        durability = args.server.removeprefix("vv_")
        server = start_vvstore(args.server, workdir, durability=durability)
    else:
        mode, _, durability = args.server.rpartition("_")
        server = start_reference(
            args.server,
            workdir,
            {"durable": "durable", "prc": "per-request"}[mode],
            durability=durability,
        )
    loadgen = "wrk" if drivers.have_wrk() else "builtin"
    run: dict[str, Any] = {"keys": args.keys, "batch": args.batch, "connections": args.connections}
    if args.idem:
        run["idem"] = f"profile-{os.urandom(4).hex()}"
    try:
        await server.wait_http()
        if args.keys > 1:
            await drivers.preload(server.url, args.keys)
        await drivers.run_http(server.url, loadgen=loadgen, seconds=2, **run)
        plain = await drivers.run_http(
            server.url, loadgen=loadgen, seconds=args.seconds, server_pids=[server.pid], **run
        )
        OUT.mkdir(parents=True, exist_ok=True)
        suffix = ("-idem" if args.idem else "") + ("-gil" if args.gil else "")
        suffix += "-native" if args.native else ""
        raw_path = OUT / f"profile-{args.server}-k{args.keys}-b{args.batch}{suffix}.txt"
        load = asyncio.create_task(
            drivers.run_http(
                server.url,
                loadgen=loadgen,
                seconds=args.seconds + 2,
                server_pids=[server.pid],
                **run,
            )
        )
        await asyncio.sleep(1)
        spy = await asyncio.create_subprocess_exec(
            "py-spy", "record", "--pid", str(server.pid), "--duration", str(args.seconds),
            "--rate", str(args.rate), "--format", "raw", "--threads", "--output", str(raw_path),
            *(["--gil"] if args.gil else []),
            *(["--native"] if args.native else []),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            preexec_fn=preexec_for(CLIENT_CORE),
        )  # fmt: skip
        spy_out, _ = await asyncio.wait_for(spy.communicate(), args.seconds + 60)
        profiled = await load
    finally:
        await server.stop()
    cpu = plain["server_cpu_ms_per_1k"]
    summary = summarize(raw_path.read_text(), cpu)
    summary.update(
        {
            "server": args.server,
            "keys": args.keys,
            "batch": args.batch,
            "gil_only": args.gil,
            "native": args.native,
            "unprofiled": {k: plain[k] for k in ("rps", "ips", "p50_ms", "p99_ms")},
            "profiled": {k: profiled[k] for k in ("rps", "ips", "p50_ms", "p99_ms")},
            "server_cpu_us_per_request": cpu,
            "py_spy": spy_out.decode(errors="replace").strip().splitlines()[-2:],
            "raw": str(raw_path),
        }
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument(
        "--server",
        default="vv_full",
        choices=("vv_full", "vv_normal", "durable_full", "durable_normal", "prc_full"),
    )
    parser.add_argument("--keys", type=int, default=1)
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--idem", action="store_true", help="a fresh Idempotency-Key header on every request"
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument(
        "--native",
        action="store_true",
        help="include C frames (shows the time spent in the cyclic garbage collector)",
    )
    parser.add_argument(
        "--gil",
        action="store_true",
        help="sample only threads holding the GIL (time spent waiting for it is left out)",
    )
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="vvstore-profile-"))
    try:
        summary = asyncio.run(profile(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    unit = "incr/s" if args.batch else "req/s"
    field = "ips" if args.batch else "rps"
    headline = (
        f"{args.server}, keys {args.keys}, batch {args.batch}, idempotency keys {args.idem}, "
        f"GIL-holding samples only {args.gil}, native frames {args.native}: unprofiled "
        f"{summary['unprofiled'][field]:,.0f} {unit}, profiled {summary['profiled'][field]:,.0f}"
        f" {unit}; server CPU {summary['server_cpu_us_per_request']} us per request"
    )
    print(headline, flush=True)
    summary_path = Path(summary["raw"]).with_suffix(".summary.txt")
    summary_path.write_text(headline + "\n" + render(summary) + "\n")
    print(render(summary))
    print(f"raw stacks: {summary['raw']}; summary: {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
