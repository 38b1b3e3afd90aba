"""A Jepsen-style fault suite: real nodes, a seeded nemesis, and an exact checker.

Three real ``vvstore serve`` processes run on loopback with every node-to-node and every client
connection passing through a :class:`~vvstore.harness.proxy.FaultProxy` (the harness's one
cluster fixture, :class:`vvstore.harness.cluster.Cluster`). Concurrent clients increment random
keys on random nodes with idempotency keys, retrying indefinite outcomes elsewhere, while a
nemesis drawn from a seed partitions, cuts, flaps, kills, pauses, wipes and restores nodes
(and, when asked, restores backups in place, churns nodes through new incarnations, and makes
links slow or lossy; the clients may use non-ASCII keys).
A final phase heals everything and settles every unacknowledged increment; the history is then
judged exactly by :func:`vvstore.harness.checker.check_faults`. See docs/faults.md.

- :mod:`~vvstore.harness.faults.schedule` [pure]: seed -> timed faults;
- :mod:`~vvstore.harness.faults.workload` [I/O]: the clients and their history;
- :mod:`~vvstore.harness.faults.nemesis` [I/O]: executes a schedule, checks every kill;
- :mod:`~vvstore.harness.faults.run` [orch]: one run, its figures and its JSON document;
- :mod:`~vvstore.harness.faults.cli`: ``python -m vvstore.harness.faults``.
"""

from vvstore.harness.faults.run import RunOptions, RunResult, run_faults, short_tier
from vvstore.harness.faults.schedule import FAULT_KINDS, Fault, Schedule, ScheduleOptions, generate

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "RunOptions",
    "RunResult",
    "Schedule",
    "ScheduleOptions",
    "generate",
    "run_faults",
    "short_tier",
]
