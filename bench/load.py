"""A built-in closed-loop HTTP load generator (used when wrk is not installed).

``python -m bench.load URL [--connections 50] [--seconds 5] [--keys 1]`` posts
``{"amount": 1}`` to ``/counters/<key>`` on keep-alive connections and prints requests per
second and latency percentiles as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from typing import Any

import aiohttp


async def run(
    url: str, *, connections: int, seconds: float, keys: int, path: str = "/counters/"
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    body = b'{"amount": 1}'
    headers = {"Content-Type": "application/json"}
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)

    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(seed: int) -> None:
            nonlocal errors
            rng = random.Random(seed)
            while time.perf_counter() < deadline:
                target = f"{url}{path}k{rng.randrange(keys)}" if keys else url
                start = time.perf_counter()
                async with session.post(target, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(connections)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else None,
        "mean_ms": 1000 * statistics.fmean(latencies) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--keys", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(
        run(args.url, connections=args.connections, seconds=args.seconds, keys=args.keys)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
