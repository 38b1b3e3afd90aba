"""Row 7: what replication costs, on a real three-node cluster (A, B, C) under load.

Every node-to-node connection goes through :class:`vvstore.harness.proxy.FaultProxy`, which
counts the
bytes on the wire in each direction (HTTP headers, pull requests, pages, notices: everything)
and makes the partition. The benchmark's own requests (the load, ``/status`` polls) go to the
nodes directly and are not counted.

Phases:

1. **idle, 3 keys**: one key written on each node (so every vector names the three actors),
   then bytes per pull round with nothing to ship.
2. **preload**: ``keys`` keys written to A with ``POST /batch`` (1,000 a request); time until
   every node holds them.
3. **idle, loaded**: bytes per pull round again, now with ``keys`` keys stored (O(actors)
   means this does not grow with the keys).
4. **under load**: wrk on A (50 connections, keys drawn from the ``keys``, every increment
   with its own ``Idempotency-Key``, so each writes an idempotency record that replicates with
   its entry), then wait for convergence. CPU of each node, wire bytes and entries shipped,
   per 1,000 increments written on A (each reaching both peers); time from the last
   acknowledged write to convergence.
5. **partition and heal**: ``{A, B} | {C}``; 1% of the keys incremented on A and another 1%
   on C (``/batch`` items with idempotency keys: records too); wait until A and B agree. The
   diverged items are then read through the sync protocol itself (``POST /sync/pull``
   straight to the node, with the lacking node's vector) and sized as they are encoded in
   pages (entries, records and marks: each page re-encoded with and without them). Heal, and
   count what crosses the proxy until the three vectors are equal.

"Converged" means the three nodes' committed node-level vectors (``GET /status``,
``version``) are equal, polled every 10 ms.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.drivers import preload, run_http
from bench.procs import SERVER_CORE, preexec_for, process_cpu_seconds
from vvstore.clock import VersionVector
from vvstore.harness.cluster import Cluster
from vvstore.wire import PullRequest, decode_page, encode_page, encode_pull_request

__all__ = ["ClusterDidNotConverge", "run_cluster"]

NAMES = ("A", "B", "C")


class ClusterDidNotConverge(RuntimeError):
    """The preloaded cluster did not converge in time (recorded in the results)."""


POLL = 0.01


class _Cluster:
    """What row 7 measures of a running :class:`Cluster`: wire bytes, sync counters, CPU."""

    def __init__(self, nodes: Cluster) -> None:
        self.proxy = nodes.proxy
        self.servers = nodes.processes
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def close(self) -> None:
        await self.session.close()

    async def status(self, name: str) -> dict[str, Any]:
        async with self.session.get(self.servers[name].url + "/status") as response:
            body: dict[str, Any] = await response.json()
            return body

    async def statuses(self) -> dict[str, dict[str, Any]]:
        results = await asyncio.gather(*(self.status(n) for n in NAMES))
        return dict(zip(NAMES, results, strict=True))

    def wire(self) -> int:
        return sum(self.proxy.bytes_carried(a, b) for a in NAMES for b in NAMES if a != b)

    async def counters(self) -> dict[str, int]:
        """Sums over every link of every node: rounds, entries and page bytes pulled."""
        totals = {"rounds": 0, "pulled_entries": 0, "pulled_bytes": 0, "pulled_pages": 0}
        optional = ("pulled_records", "pulled_marks")  # if /status reports them
        for status in (await self.statuses()).values():
            for peer in status["peers"]:
                for field in [*totals, *optional]:
                    if field in peer:
                        totals[field] = totals.get(field, 0) + int(peer[field])
        return totals

    async def by_link(self) -> dict[str, int]:
        """Entries pulled per link, as "receiver<-sender" (relayed entries show up here)."""
        out = {}
        for name, status in (await self.statuses()).items():
            for peer in status["peers"]:
                out[f"{name}<-{peer['node']}"] = int(peer["pulled_entries"])
        return out

    def cpu(self) -> dict[str, float]:
        return {n: process_cpu_seconds(self.servers[n].pid) for n in NAMES}

    async def wait_converged(self, timeout: float, among: tuple[str, ...] = NAMES) -> float:
        """Seconds until the nodes in ``among`` have equal vectors; raises past ``timeout``."""
        began = time.monotonic()
        while True:
            statuses = await asyncio.gather(*(self.status(n) for n in among))
            versions = [s["version"] for s in statuses]
            if all(v == versions[0] for v in versions):
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise RuntimeError(f"no convergence of {among} in {timeout} s: {versions}")
            await asyncio.sleep(POLL)

    async def wait_linked(self, timeout: float) -> None:
        """Until every link has completed at least one round."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = await self.statuses()
            if all(p["rounds"] >= 1 for s in statuses.values() for p in s["peers"]):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("the cluster's links did not all complete a round")

    async def missing(self, source: str, vector: dict[str, int]) -> dict[str, int]:
        """What ``source`` would send to a node at ``vector``: item counts and their bytes.

        Asked through the sync protocol itself, straight to the node (not through the proxy).
        The bytes are those of the items (entries, idempotency records, compensation marks)
        as encoded in the pages: each page re-encoded with and without its items.
        """
        request = PullRequest(VersionVector(vector))
        out = {"entries": 0, "records": 0, "marks": 0, "bytes": 0}
        for _ in range(10_000):
            async with self.session.post(
                self.servers[source].url + "/sync/pull",
                data=encode_pull_request(request),
                headers={"Content-Type": "application/json"},
            ) as response:
                body = await response.read()
            page = decode_page(body)
            streams = {
                f: getattr(page, f) for f in ("entries", "records", "marks") if hasattr(page, f)
            }
            for name, items in streams.items():
                out[name] += len(items)
            bare = dataclasses.replace(page, **{name: () for name in streams})
            out["bytes"] += len(encode_page(page)) - len(encode_page(bare))
            if page.next is None:
                return out
            request = PullRequest(VersionVector(vector), page.next, page.vector)
        raise RuntimeError("too many pages")

    async def idle(self, seconds: float) -> dict[str, Any]:
        before_wire, before = self.wire(), await self.counters()
        cpu0 = self.cpu()
        await asyncio.sleep(seconds)
        after_wire, after = self.wire(), await self.counters()
        cpu1 = self.cpu()
        rounds = after["rounds"] - before["rounds"]
        wire = after_wire - before_wire
        return {
            "seconds": seconds,
            "rounds": rounds,
            "wire_bytes": wire,
            "page_bytes": after["pulled_bytes"] - before["pulled_bytes"],
            "entries": after["pulled_entries"] - before["pulled_entries"],
            "wire_bytes_per_round": round(wire / rounds, 1) if rounds else None,
            "page_bytes_per_round": (
                round((after["pulled_bytes"] - before["pulled_bytes"]) / rounds, 1)
                if rounds
                else None
            ),
            "cpu_ms_per_s": {n: round(1000 * (cpu1[n] - cpu0[n]) / seconds, 2) for n in NAMES},
        }


def _delta(before: dict[str, int], after: dict[str, int], field: str) -> int | None:
    """after - before for a counter /status may not report (None then)."""
    if field not in before or field not in after:
        return None
    return after[field] - before[field]


async def _write_batches(
    session: aiohttp.ClientSession, url: str, keys: list[str], idem: str | None = None
) -> None:
    """Increment ``keys`` by 1 through /batch; with ``idem``, each item with its own key."""
    for start in range(0, len(keys), 1000):
        items: list[dict[str, Any]] = [{"key": k, "amount": 1} for k in keys[start : start + 1000]]
        if idem:
            for number, item in enumerate(items, start):
                item["idempotency_key"] = f"{idem}-{number}"
        async with session.post(url + "/batch", json={"increments": items}) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"{url}/batch answered {response.status}")


async def run_cluster(
    workdir: Path,
    *,
    keys: int,
    load_seconds: int,
    idle_seconds: float,
    connections: int,
    loadgen: str,
    sync_interval: float,
    log: Callable[[str], None],
    result: dict[str, Any] | None = None,
    converge_timeout: float = 180.0,
) -> dict[str, Any]:
    """Run the phases, filling ``result`` as they complete (kept if a later phase fails)."""
    result = {} if result is None else result
    result.update({"nodes": 3, "actors": 3, "keys": keys, "sync_interval_s": sync_interval})
    # The harness's cluster: node-to-node links through the proxy (which counts their bytes),
    # the benchmark's own requests straight to the nodes, each node pinned to the server core.
    nodes = Cluster(
        workdir / "cluster",
        NAMES,
        "full",
        client_links=False,
        sync_interval=sync_interval,
        backoff_cap=None,
        preexec_fn=preexec_for(SERVER_CORE),
    )
    proxy = nodes.proxy
    try:
        await nodes.start()
        servers = nodes.processes
        cluster = _Cluster(nodes)
        try:
            await cluster.wait_linked(30)

            # One key written on each node first, so that every vector names all three actors
            # in both idle measurements: only the number of keys differs between them.
            for name in NAMES:
                await _write_batches(cluster.session, servers[name].url, [f"seed-{name}"])
            await cluster.wait_converged(60)
            log("  cluster: idle rounds, 3 keys")
            result["idle_small"] = await cluster.idle(idle_seconds)

            log(f"  cluster: preloading {keys:,} keys on A")
            wire0, counters0 = cluster.wire(), await cluster.counters()
            took = await preload(servers["A"].url, keys)
            try:
                converge = await cluster.wait_converged(converge_timeout)
            except RuntimeError:
                counters1 = await cluster.counters()
                result["preload"] = {
                    "write_s": round(took, 2),
                    "converged": False,
                    "entries": counters1["pulled_entries"] - counters0["pulled_entries"],
                    "entries_needed": 2 * keys,
                    "statuses": await cluster.statuses(),
                }
                raise ClusterDidNotConverge(
                    f"the cluster did not converge within {converge_timeout:.0f} s of "
                    f"preloading {keys:,} keys"
                ) from None
            counters1 = await cluster.counters()
            result["preload"] = {
                "write_s": round(took, 2),
                "converge_after_write_s": round(converge, 2),
                "wire_bytes": cluster.wire() - wire0,
                "entries": counters1["pulled_entries"] - counters0["pulled_entries"],
                "entries_needed": 2 * keys,
            }

            log("  cluster: idle rounds, loaded")
            result["idle_loaded"] = await cluster.idle(idle_seconds)

            log(f"  cluster: {load_seconds} s of load on A, then convergence")
            wire0, counters0, cpu0 = cluster.wire(), await cluster.counters(), cluster.cpu()
            links0 = await cluster.by_link()
            load = await run_http(
                servers["A"].url,
                loadgen=loadgen,
                seconds=load_seconds,
                connections=connections,
                keys=keys,
                server_pids=[s.pid for s in servers.values()],
                idem=f"load-{os.urandom(4).hex()}",
            )
            converge = await cluster.wait_converged(120)
            wire1, counters1, cpu1 = cluster.wire(), await cluster.counters(), cluster.cpu()
            links1 = await cluster.by_link()
            increments = load["requests"] - load["errors"]
            per_k = 1000 / increments if increments else 0.0
            cpu_ms = {n: round(1000 * (cpu1[n] - cpu0[n]) * per_k, 2) for n in NAMES}
            result["load"] = {
                "increments": increments,
                "rps_on_A": load["rps"],
                "converge_after_last_write_s": round(converge, 3),
                "wire_bytes": wire1 - wire0,
                "page_bytes": counters1["pulled_bytes"] - counters0["pulled_bytes"],
                "entries": counters1["pulled_entries"] - counters0["pulled_entries"],
                "rounds": counters1["rounds"] - counters0["rounds"],
                "records": _delta(counters0, counters1, "pulled_records"),
                "entries_by_link": {k: links1[k] - links0.get(k, 0) for k in sorted(links1)},
                "per_1k_increments": {
                    "wire_bytes": round((wire1 - wire0) * per_k, 1),
                    "page_bytes": round(
                        (counters1["pulled_bytes"] - counters0["pulled_bytes"]) * per_k, 1
                    ),
                    "entries": round(
                        (counters1["pulled_entries"] - counters0["pulled_entries"]) * per_k, 1
                    ),
                    "cpu_ms": cpu_ms,
                    "cpu_ms_replicas": round(cpu_ms["B"] + cpu_ms["C"], 2),
                },
            }

            changed = max(1, keys // 100)
            log(f"  cluster: partition {{A, B}} | {{C}}, {changed:,} keys changed on each side")
            proxy.partition({"A", "B"}, {"C"})
            await _write_batches(
                cluster.session, servers["A"].url, [f"k{i}" for i in range(changed)], "split-A"
            )
            await _write_batches(
                cluster.session,
                servers["C"].url,
                [f"k{i}" for i in range(changed, 2 * changed)],
                "split-C",
            )
            await cluster.wait_converged(60, among=("A", "B"))
            statuses = await cluster.statuses()
            needs = {
                "C from A": await cluster.missing("A", statuses["C"]["version"]),
                "A from C": await cluster.missing("C", statuses["A"]["version"]),
                "B from C": await cluster.missing("C", statuses["B"]["version"]),
            }
            diverged_entries = sum(n["entries"] for n in needs.values())
            diverged_records = sum(n["records"] for n in needs.values())
            diverged_bytes = sum(n["bytes"] for n in needs.values())
            wire0, counters0 = cluster.wire(), await cluster.counters()
            proxy.heal()
            converge = await cluster.wait_converged(120)
            wire1, counters1 = cluster.wire(), await cluster.counters()
            rounds = counters1["rounds"] - counters0["rounds"]
            idle_round = result["idle_loaded"]["wire_bytes_per_round"] or 0.0
            wire = wire1 - wire0
            net = wire - idle_round * rounds
            page_bytes = counters1["pulled_bytes"] - counters0["pulled_bytes"]
            values = set()
            for name in NAMES:
                seen = []
                for key in ("k0", f"k{changed}"):  # one key changed on each side
                    async with cluster.session.get(f"{servers[name].url}/counters/{key}") as r:
                        seen.append((await r.json())["value"])
                values.add(tuple(seen))
            result["heal"] = {
                "changed_keys_per_side": changed,
                "diverged": needs,
                "diverged_entries": diverged_entries,
                "diverged_records": diverged_records,
                "diverged_bytes": diverged_bytes,
                "converge_after_heal_s": round(converge, 3),
                "rounds": rounds,
                "wire_bytes": wire,
                "wire_bytes_net_of_idle_rounds": round(net),
                "page_bytes": page_bytes,
                "entries_shipped": counters1["pulled_entries"] - counters0["pulled_entries"],
                "records_shipped": _delta(counters0, counters1, "pulled_records"),
                "ratio_wire": round(wire / diverged_bytes, 3) if diverged_bytes else None,
                "ratio_wire_net": round(net / diverged_bytes, 3) if diverged_bytes else None,
                "ratio_pages": round(page_bytes / diverged_bytes, 3) if diverged_bytes else None,
                "values_agree": len(values) == 1,
            }
            result["proxy"] = json.loads(json.dumps(proxy.stats()["connections"]))
        finally:
            await cluster.close()
    finally:
        await nodes.close()
    return result
