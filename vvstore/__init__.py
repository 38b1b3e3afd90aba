"""vvstore: a multi-master counter store.

Every node accepts increments locally; each node's contribution to a key is its own entry,
tagged with a version-vector dot and persisted in SQLite; anti-entropy between nodes ships only
the entries the other side lacks. The vector-clock library :mod:`vvstore.clock` is usable alone.
"""

__version__ = "0.1.0"
