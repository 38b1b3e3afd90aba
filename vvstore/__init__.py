"""vvstore: a multi-master counter store.

Every node accepts increments locally; each node's contribution to a key is its own entry,
tagged with a version-vector dot and persisted in SQLite; anti-entropy between nodes ships only
the entries the other side lacks. The vector-clock library :mod:`vvstore.clock` is usable alone.

Importing the package imports only the pure core (standard library); the I/O shell
(:mod:`vvstore.node`, :mod:`vvstore.client`, ...) is imported where it is used.
"""

from vvstore.clock import Ordering, VersionVector
from vvstore.config import NodeConfig
from vvstore.counter import CounterState, Entry, Floor
from vvstore.errors import VVStoreError

__version__ = "0.1.0"

__all__ = [
    "CounterState",
    "Entry",
    "Floor",
    "NodeConfig",
    "Ordering",
    "VVStoreError",
    "VersionVector",
    "__version__",
]
