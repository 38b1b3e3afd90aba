"""The benchmark's table, targets and plot, computed from the recorded runs only."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["fsync_p99", "median_of", "noise", "paired_ratio", "plot", "render", "targets"]

Runs = dict[str, dict[str, list[dict[str, Any]]]]  # group -> subject -> runs

# (row, description, group, subject, figure field, ratios: (label, numerator, denominator))
# Ratios are taken pair by pair (run i of the numerator over run i of the denominator, both in
# the same interleaved group) and the median of those ratios is shown.
TABLE: list[tuple[str, str, str, str, str, list[tuple[str, str, str]]]] = [
    ("1", "HTTP ceiling: bare aiohttp, same JSON", "single", "ceiling", "rps", []),
    (
        "2",
        "Minimal durable ref: group commit, FULL",
        "single",
        "durable_full",
        "rps",
        [("/row1", "durable_full", "ceiling")],
    ),
    (
        "3",
        "vvstore full, hot key",
        "single",
        "vv_full",
        "rps",
        [
            ("/row2", "vv_full", "durable_full"),
            ("/row1", "vv_full", "ceiling"),
            ("/row4", "vv_full", "prc_full"),
        ],
    ),
    (
        "3i",
        "vvstore full, hot key, Idempotency-Key",
        "single",
        "vv_full_idem",
        "rps",
        [("/row2", "vv_full_idem", "durable_full"), ("/row3", "vv_full_idem", "vv_full")],
    ),
    (
        "4",
        "Per-request commit (seed), FULL, hot key",
        "single",
        "prc_full",
        "rps",
        [("/row2", "prc_full", "durable_full")],
    ),
    (
        "2n",
        "Minimal durable ref, NORMAL, hot key",
        "single",
        "durable_normal",
        "rps",
        [("/row1", "durable_normal", "ceiling")],
    ),
    (
        "3n",
        "vvstore normal, hot key",
        "single",
        "vv_normal",
        "rps",
        [("/row2n", "vv_normal", "durable_normal"), ("/row1", "vv_normal", "ceiling")],
    ),
    ("2k", "Minimal durable ref, FULL, 100k keys", "keys", "durable_full", "rps", []),
    (
        "3k",
        "vvstore full, 100k keys",
        "keys",
        "vv_full",
        "rps",
        [("/row2k", "vv_full", "durable_full"), ("/row4k", "vv_full", "prc_full")],
    ),
    (
        "4k",
        "Per-request commit, FULL, 100k keys",
        "keys",
        "prc_full",
        "rps",
        [("/row2k", "prc_full", "durable_full")],
    ),
    ("2kn", "Minimal durable ref, NORMAL, 100k keys", "keys", "durable_normal", "rps", []),
    (
        "3kn",
        "vvstore normal, 100k keys",
        "keys",
        "vv_normal",
        "rps",
        [("/row2kn", "vv_normal", "durable_normal")],
    ),
    (
        "5a",
        "Redis INCR, appendfsync always",
        "single",
        "redis_always_p1",
        "rps",
        [("row3/", "vv_full", "redis_always_p1")],
    ),
    (
        "5b",
        "Redis INCR, no persistence",
        "single",
        "redis_none_p1",
        "rps",
        [("row3/", "vv_full", "redis_none_p1")],
    ),
    ("5c", "Redis INCR -P 16, appendfsync always", "batch", "redis_always_p16", "ips", []),
    ("5d", "Redis INCR -P 16, no persistence", "batch", "redis_none_p16", "ips", []),
    ("6a", "Minimal batch ref, 100 items (incr/s)", "batch", "batchref_100", "ips", []),
    (
        "6b",
        "vvstore /batch, 100 items (incr/s)",
        "batch",
        "vv_batch_100",
        "ips",
        [("/row6a", "vv_batch_100", "batchref_100")],
    ),
    ("6c", "Minimal batch ref, 1000 items (incr/s)", "batch", "batchref_1000", "ips", []),
    (
        "6d",
        "vvstore /batch, 1000 items (incr/s)",
        "batch",
        "vv_batch_1000",
        "ips",
        [
            ("/row6c", "vv_batch_1000", "batchref_1000"),
            ("/row5c", "vv_batch_1000", "redis_always_p16"),
            ("/row5d", "vv_batch_1000", "redis_none_p16"),
        ],
    ),
]

# What uvloop would give (an extra, not one of the rows).
TABLE += [
    (
        "U2",
        "Minimal durable ref, FULL, on uvloop",
        "uvloop",
        "durable_uvloop",
        "rps",
        [("/asyncio", "durable_uvloop", "durable_full")],
    ),
    (
        "U3",
        "vvstore full, hot key, on uvloop",
        "uvloop",
        "vv_uvloop",
        "rps",
        [("/asyncio", "vv_uvloop", "vv_full"), ("/U2", "vv_uvloop", "durable_uvloop")],
    ),
]

# The baseline section: this checkout against the one given by --baseline, pair by pair.
TABLE += [
    row
    for number, what, suffix, figure in (
        ("3", "hot key", "hot", "rps"),
        ("3k", "many keys", "keys", "rps"),
        ("6d", "/batch 1000", "batch", "ips"),
    )
    for row in (
        (f"B{number}", f"vvstore full, {what}, baseline", "baseline", f"vv_base_{suffix}",
         figure, []),
        (f"B{number}", f"vvstore full, {what}, this checkout", "baseline", f"vv_full_{suffix}",
         figure, [("/base", f"vv_full_{suffix}", f"vv_base_{suffix}")]),
    )
]  # fmt: skip

LATENCY_ROWS = [
    ("8", "ceiling", "HTTP ceiling"),
    ("8", "durable_full", "Minimal durable ref, FULL"),
    ("8", "vv_full", "vvstore full"),
    ("8", "vv_normal", "vvstore normal"),
]


def fsync_p99(results: dict[str, Any]) -> float | None:
    """p99 of a SQLite WAL FULL commit: probed before row 8 if it ran, else at the start."""
    probe = results.get("fsync_latency") or results.get("fsync") or {}
    value = probe.get("sqlite_full_commit", {}).get("p99_ms")
    return float(value) if value is not None else None


def noise(results: dict[str, Any]) -> tuple[float, float] | None:
    """(mean, max) cores used by other processes during the measured runs."""
    shares = [
        run["cpu"]["other_cpu_s"] / run["cpu"]["wall_s"]
        for group in results.get("groups", {}).values()
        for runs in group.values()
        for run in runs
        if run.get("cpu", {}).get("wall_s")
    ]
    return (statistics.fmean(shares), max(shares)) if shares else None


def median_of(runs: Sequence[dict[str, Any]], field: str) -> float | None:
    values = [r[field] for r in runs if r.get(field) is not None]
    return statistics.median(values) if values else None


def paired_ratio(
    runs: dict[str, list[dict[str, Any]]], num: str, den: str, field: str
) -> tuple[float | None, list[float]]:
    """Median over i of runs[num][i][field] / runs[den][i][field], and the ratios."""
    a, b = runs.get(num) or [], runs.get(den) or []
    ratios = [x[field] / y[field] for x, y in zip(a, b, strict=False) if y[field]]
    return (statistics.median(ratios) if ratios else None), ratios


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _cpu_per_1k(runs: Sequence[dict[str, Any]]) -> float | None:
    return median_of(runs, "server_cpu_ms_per_1k")


def render(results: dict[str, Any]) -> str:
    """The one table: absolute figures and ratios (rows 1-6, 8), then row 7, then targets."""
    groups: Runs = results.get("groups", {})
    lines = []
    header = (
        f"{'row':<4} {'what':<42} {'median':>11} {'unit':<6} {'p50 ms':>7} {'p99 ms':>8} "
        f"{'cpu ms/1k':>9}  ratios (median of pairwise)"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for row, what, group, subject, field, ratios in TABLE:
        runs = groups.get(group, {}).get(subject)
        if not runs:
            continue
        unit = "req/s" if field == "rps" else "incr/s"
        parts = []
        for label, num, den in ratios:
            value, _ = paired_ratio(groups[group], num, den, field)
            if value is not None:
                parts.append(f"{label} {value:.2f}")
        lines.append(
            f"{row:<4} {what:<42} {_fmt(median_of(runs, field)):>11} {unit:<6} "
            f"{_fmt(median_of(runs, 'p50_ms'), 2):>7} {_fmt(median_of(runs, 'p99_ms'), 2):>8} "
            f"{_fmt(_cpu_per_1k(runs), 0):>9}  {'  '.join(parts)}"
        )
    latency = groups.get("latency", {})
    if latency:
        fsync = fsync_p99(results)
        lines.append("")
        lines.append(
            "row 8: open loop at half the measured maximum (hot key, 50 connections); latency "
            "from the scheduled send time"
        )
        for row, subject, what in LATENCY_ROWS:
            runs = latency.get(subject)
            if not runs:
                continue
            rate = median_of(runs, "offered_rate")
            achieved = median_of(runs, "achieved_rate")
            lines.append(
                f"{row:<4} {what + ' @ ' + _fmt(rate) + ' req/s offered':<42} "
                f"{_fmt(achieved):>11} {'req/s':<6} "
                f"{_fmt(median_of(runs, 'p50_ms'), 2):>7} {_fmt(median_of(runs, 'p99_ms'), 2):>8} "
                f"{_fmt(_cpu_per_1k(runs), 0):>9}"
            )
        if fsync is not None:
            lines.append(
                f"     fsync p99 of this run (SQLite WAL FULL commit, probed just before row 8): "
                f"{fsync:.2f} ms; p99 budget 10 ms + fsync p99 = {10 + fsync:.2f} ms"
            )
    for failed in results.get("cluster_failed", []):
        if failed is not results.get("cluster"):
            lines.append("")
            lines.extend(_cluster_lines(failed))
    cluster = results.get("cluster")
    if cluster:
        lines.append("")
        lines.extend(_cluster_lines(cluster))
    lines.append("")
    lines.append(
        f"{'target':<62} {'measured':>10}  verdict   runs (pairwise ratios or per-run values)"
    )
    for target in targets(results):
        runs_text = ", ".join(f"{v:.2f}" for v in target.get("values", []))
        lines.append(
            f"{target['target']:<62} {target['measured']:>10}  {target['verdict']:<9} {runs_text}"
        )
    return "\n".join(lines)


def _cluster_lines(c: dict[str, Any]) -> list[str]:
    out = [f"row 7: replication, 3 nodes, {c['keys']:,} keys, durability full, via fault proxy"]
    for phase, label in (
        ("idle_small", "idle, 3 keys"),
        ("idle_loaded", f"idle, {c['keys']:,} keys"),
    ):
        p = c.get(phase)
        if p:
            per_actor = (
                p["wire_bytes_per_round"] / c["actors"] if p["wire_bytes_per_round"] else None
            )
            out.append(
                f"7    {label}: {_fmt(p['wire_bytes_per_round'])} wire bytes per pull round "
                f"({_fmt(per_actor)} per actor, {_fmt(p['page_bytes_per_round'])} page bytes), "
                f"{p['rounds']} rounds in {p['seconds']:.0f} s, {p['entries']} entries; "
                f"CPU ms/s A {p['cpu_ms_per_s']['A']:.1f} B {p['cpu_ms_per_s']['B']:.1f} "
                f"C {p['cpu_ms_per_s']['C']:.1f}"
            )
    p = c.get("preload")
    if p and p.get("converged") is False:
        out.append(
            f"7    preload: {c['keys']:,} keys written on A in {p['write_s']:.1f} s; the nodes "
            f"did NOT converge within the timeout ({_fmt(p['entries'])} entries shipped for "
            f"{_fmt(p['entries_needed'])} needed)"
        )
    elif p:
        out.append(
            f"7    preload: {c['keys']:,} keys written on A in {p['write_s']:.1f} s, all nodes "
            f"converged {p['converge_after_write_s']:.1f} s later; {_fmt(p['wire_bytes'])} "
            f"wire bytes, {_fmt(p['entries'])} entries shipped for "
            f"{_fmt(p.get('entries_needed'))} needed"
        )
    p = c.get("load")
    if p:
        k = p["per_1k_increments"]
        solo = c.get("solo_cpu_ms_per_1k")
        solo_text = f" (one node alone: {solo:.0f} ms)" if solo else ""
        out.append(
            f"7    under load: {_fmt(p['increments'])} increments (each with an idempotency "
            f"record) on A at {_fmt(p['rps_on_A'])} req/s; per 1,000 increments: "
            f"{_fmt(k['wire_bytes'])} wire bytes, "
            f"{_fmt(k['page_bytes'])} page bytes, {_fmt(k['entries'], 1)} entries shipped; "
            f"CPU ms A {k['cpu_ms']['A']:.0f}{solo_text}, B {k['cpu_ms']['B']:.0f}, "
            f"C {k['cpu_ms']['C']:.0f}"
        )
        links = ", ".join(f"{k} {v:,}" for k, v in p.get("entries_by_link", {}).items())
        out.append(
            f"7    last write to convergence: {p['converge_after_last_write_s'] * 1000:.0f} ms "
            f"({p['rounds']} rounds during load); entries by link: {links}"
        )
    p = c.get("heal")
    if p:
        records = p.get("records_shipped")
        records_text = f" and {_fmt(records)} records" if records is not None else ""
        out.append(
            f"7    heal: diverged {_fmt(p['diverged_entries'])} entries and "
            f"{_fmt(p.get('diverged_records'))} records = {_fmt(p['diverged_bytes'])} bytes "
            f"encoded; shipped {_fmt(p['entries_shipped'])} entries{records_text}, "
            f"{_fmt(p['page_bytes'])} page bytes, {_fmt(p['wire_bytes'])} wire bytes "
            f"({_fmt(p['wire_bytes_net_of_idle_rounds'])} net of {p['rounds']} idle-round "
            f"costs); converged {p['converge_after_heal_s'] * 1000:.0f} ms after heal; "
            f"values agree: {p['values_agree']}"
        )
        out.append(
            f"7    heal bytes / diverged bytes: wire {p['ratio_wire']:.3f}, wire net of idle "
            f"rounds {p['ratio_wire_net']:.3f}, page bodies {p['ratio_pages']:.3f}"
        )
    return out


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "MISSED")


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets with the measured figure and whether each was met."""
    groups: Runs = results.get("groups", {})
    out: list[dict[str, Any]] = []

    def ratio_target(
        text: str, group: str, num: str, den: str, field: str, bound: float | None
    ) -> None:
        runs = groups.get(group)
        if not runs or num not in runs or den not in runs:
            return
        value, ratios = paired_ratio(runs, num, den, field)
        ok = None if bound is None or value is None else value >= bound
        out.append(
            {
                "target": text,
                "measured": _fmt(value, 2),
                "value": value,
                "values": ratios,
                "verdict": _verdict(ok) if bound is not None else "reported",
            }
        )

    ratio_target("vvstore full / minimal durable ref, hot key >= 0.8", "single",
                 "vv_full", "durable_full", "rps", 0.8)  # fmt: skip
    ratio_target("vvstore full / minimal durable ref, 100k keys >= 0.8", "keys",
                 "vv_full", "durable_full", "rps", 0.8)  # fmt: skip
    ratio_target("vvstore full / bare ceiling, hot key (reported)", "single",
                 "vv_full", "ceiling", "rps", None)  # fmt: skip
    ratio_target("vvstore full / per-request commit FULL, hot key >= 2", "single",
                 "vv_full", "prc_full", "rps", 2.0)  # fmt: skip
    ratio_target("vvstore full / per-request commit FULL, 100k keys >= 2", "keys",
                 "vv_full", "prc_full", "rps", 2.0)  # fmt: skip
    ratio_target("vvstore /batch 1000 / minimal batch ref >= 0.6", "batch",
                 "vv_batch_1000", "batchref_1000", "ips", 0.6)  # fmt: skip
    ratio_target("vvstore /batch 1000 / Redis INCR -P 16 always (reported)", "batch",
                 "vv_batch_1000", "redis_always_p16", "ips", None)  # fmt: skip
    ratio_target("vvstore /batch 1000 / Redis INCR -P 16 no persistence (reported)", "batch",
                 "vv_batch_1000", "redis_none_p16", "ips", None)  # fmt: skip

    latency = groups.get("latency", {}).get("vv_full")
    fsync = fsync_p99(results)
    if latency and fsync is not None:
        p99 = median_of(latency, "p99_ms")
        bound = 10 + fsync
        out.append(
            {
                "target": f"vvstore full p99 at half load < 10 ms + fsync p99 = {bound:.2f} ms",
                "measured": f"{p99:.2f} ms" if p99 is not None else "-",
                "value": p99,
                "values": [r["p99_ms"] for r in latency],
                "verdict": _verdict(p99 is not None and p99 < bound),
            }
        )
    cluster = results.get("cluster") or {}
    empty, loaded = cluster.get("idle_small"), cluster.get("idle_loaded")
    if empty and loaded and empty["wire_bytes_per_round"] and loaded["wire_bytes_per_round"]:
        growth = loaded["wire_bytes_per_round"] / empty["wire_bytes_per_round"]
        out.append(
            {
                "target": (
                    f"idle round O(actors): bytes/round, {cluster['keys']:,} keys / 3 keys <= 1.1"
                ),
                "measured": f"{growth:.3f}",
                "value": growth,
                "values": [empty["wire_bytes_per_round"], loaded["wire_bytes_per_round"]],
                "verdict": _verdict(growth <= 1.1),
            }
        )
    heal = cluster.get("heal")
    if heal and heal.get("ratio_wire_net") is not None:
        out.append(
            {
                "target": "heal wire bytes (net of idle rounds) / diverged bytes <= 1.1",
                "measured": f"{heal['ratio_wire_net']:.3f}",
                "value": heal["ratio_wire_net"],
                "values": [],
                "verdict": _verdict(heal["ratio_wire_net"] <= 1.1),
            }
        )
        out.append(
            {
                "target": "heal wire bytes, all of them / diverged bytes <= 1.1",
                "measured": f"{heal['ratio_wire']:.3f}",
                "value": heal["ratio_wire"],
                "values": [],
                "verdict": _verdict(heal["ratio_wire"] <= 1.1),
            }
        )
    return out


def plot(results: dict[str, Any], paths: Sequence[Path]) -> str:
    """Throughput and p99 against concurrent clients; returns what happened, as a message."""
    sweep = results.get("groups", {}).get("sweep")
    if not sweep:
        return "no concurrency sweep in this run: no plot"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    series = {"durable_full": "minimal durable reference (FULL)", "vv_full": "vvstore full"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for subject, label in series.items():
        points = sorted(
            (int(k.rsplit("_c", 1)[1]), runs) for k, runs in sweep.items() if k.startswith(subject)
        )
        if not points:
            continue
        clients = [c for c, _ in points]
        left.plot(clients, [median_of(r, "rps") for _, r in points], marker="o", label=label)
        right.plot(clients, [median_of(r, "p99_ms") for _, r in points], marker="o", label=label)
    ticks = sorted({int(k.rsplit("_c", 1)[1]) for k in sweep if "_c" in k})
    for axis, ylabel in ((left, "requests per second"), (right, "p99 latency (ms)")):
        axis.set_xscale("log")
        axis.set_xticks(ticks, [str(t) for t in ticks])
        axis.minorticks_off()
        axis.set_xlabel("concurrent clients (keep-alive connections)")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    left.set_ylim(bottom=0)
    right.set_yscale("log")
    machine = results.get("machine", {})
    loadgen = results.get("settings", {}).get("loadgen", "?")
    fig.suptitle(
        f"POST /counters/hot, closed loop ({loadgen}); {machine.get('nproc', '?')} cores, "
        f"{machine.get('cpu', '?')}"
    )
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return "plot written to " + ", ".join(str(p) for p in paths)
