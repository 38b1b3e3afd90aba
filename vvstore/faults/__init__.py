"""A Jepsen-style fault suite: real nodes, a seeded nemesis, and an exact checker.

Three real ``vvstore serve`` processes run on loopback with every node-to-node and every client
connection passing through a :class:`~vvstore.proxy.FaultProxy`. Concurrent clients increment
random keys on random nodes with idempotency keys, retrying indefinite outcomes elsewhere, while
a nemesis drawn from a seed partitions, cuts, flaps, kills, pauses, wipes and restores nodes.
A final phase heals everything and settles every unacknowledged increment; the history is then
judged exactly by :func:`vvstore.checker.check_faults`. See docs/faults.md.

- :mod:`~vvstore.faults.schedule` [pure]: seed -> timed faults;
- :mod:`~vvstore.faults.cluster` [I/O]: processes, the proxy wiring, the observer;
- :mod:`~vvstore.faults.workload` [I/O]: the clients and their history;
- :mod:`~vvstore.faults.nemesis` [I/O]: executes a schedule, checks every kill;
- :mod:`~vvstore.faults.run` [orch]: one run, its figures and its JSON document;
- :mod:`~vvstore.faults.cli`: ``python -m vvstore.faults``.
"""

from vvstore.faults.run import RunOptions, RunResult, run_faults, short_tier
from vvstore.faults.schedule import FAULT_KINDS, Fault, Schedule, ScheduleOptions, generate

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
