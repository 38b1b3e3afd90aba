"""Smoke test of the benchmark harness (bench/): one reference server, one second of load.

Starts the minimal durable reference (``python -m bench.servers durable``) pinned like the
benchmark pins it, drives it for one second with each built-in load generator (closed loop on
aiohttp, open loop at a fixed rate), and checks that requests were answered and the figures
are shaped as the report expects. The full benchmark is ``python -m bench``
(docs/performance.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is a top-level directory of the repository
    sys.path.insert(0, str(ROOT))

from bench import drivers, report  # noqa: E402
from bench.procs import start_reference  # noqa: E402

pytestmark = pytest.mark.slow


async def test_reference_server_under_both_builtin_generators(tmp_path: Path) -> None:
    server = start_reference("durable_full", tmp_path, "durable", durability="full")
    try:
        await server.wait_http(timeout=20)
        closed = await drivers.run_http(
            server.url,
            loadgen="builtin",
            seconds=1,
            connections=10,
            keys=100,
            server_pids=[server.pid],
        )
        opened = await drivers.run_open_loop(
            server.url, rate=200, seconds=1, connections=10, keys=1, server_pids=[server.pid]
        )
    finally:
        code = await server.stop()
    assert code == 0, server.log()
    assert closed["requests"] > 0 and closed["errors"] == 0, closed
    assert closed["rps"] > 0 and closed["p99_ms"] >= closed["p50_ms"] > 0
    assert closed["cpu"]["server_cpu_s"] > 0
    assert opened["errors"] == 0 and opened["requests"] == 200, opened
    assert opened["offered_rate"] == 200
    runs = {"vv": [closed, closed], "ref": [closed, closed]}
    assert report.paired_ratio(runs, "vv", "ref", "rps")[0] == pytest.approx(1.0)
