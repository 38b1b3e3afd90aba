"""The test harness: everything that drives, breaks and judges nodes, and is not a node.

- :mod:`~vvstore.harness.launcher` starts and stops real ``vvstore serve`` processes;
- :mod:`~vvstore.harness.cluster` is the one real-process cluster fixture (N nodes behind
  proxies, partition, heal, wait converged, restore in place, wipe);
- :mod:`~vvstore.harness.release` materialises an earlier commit, to run a mixed-version
  cluster;
- :mod:`~vvstore.harness.proxy` is a fault-injecting TCP proxy between them;
- :mod:`~vvstore.harness.testing` is the in-memory network of the in-process tier;
- :mod:`~vvstore.harness.checker` judges a history of operations (pure);
- :mod:`~vvstore.harness.faults` is the seeded fault suite (nemesis, workloads, schedules);
- :mod:`~vvstore.harness.demo` is ``vvstore demo``, the partition-and-heal demonstration.

Imports point one way: the harness imports the product (the store, its API, its client, the
clock library), never the reverse. The one exception is ``vvstore demo``, which the CLI loads
from here only when that command runs (tests/test_architecture.py enforces both).
"""
