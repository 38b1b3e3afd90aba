"""The database schema: its recorded migrations and the version they reach.

Pure data: the store (:mod:`vvstore.store`, the only module that talks to SQLite) runs these
statements; nothing here opens a database. A schema change is a new migration appended to
:data:`MIGRATIONS`, never an edit of a released one: a data directory of any earlier release
is brought up to :data:`SCHEMA_VERSION` by running the migrations it lacks, in order, each in
its own transaction, and a database of a newer release (a higher version) is refused.

The statements the store executes on these tables stay next to their single use in the store:
each one's parameters are built there, in its column order.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "MIGRATIONS_TABLE", "SCHEMA_VERSION"]

#: Which migrations a database has had, by version; created before any migration runs.
MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL
            ) STRICT"""

# Recorded migrations: (version, name, statements). Append only; never edit a released one.
MIGRATIONS: list[tuple[int, str, tuple[str, ...]]] = [
    (
        1,
        "entries, node-level vector, identity",
        (
            """CREATE TABLE meta (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL
            ) STRICT""",
            # One row per (key, actor): that actor's current entry for the key. (actor, seq) is
            # unique: every write is its own event of its actor.
            """CREATE TABLE entries (
                key TEXT NOT NULL,
                actor TEXT NOT NULL,
                seq INTEGER NOT NULL,
                total INTEGER NOT NULL,
                floors TEXT NOT NULL,
                PRIMARY KEY (key, actor)
            ) STRICT, WITHOUT ROWID""",
            "CREATE UNIQUE INDEX entries_by_dot ON entries (actor, seq)",
            # The node-level vector V for actors other than the current one: raised only after
            # a complete pull, or when this node leaves an actor behind (a new incarnation).
            # The current actor's part is MAX(seq) of its own entries, committed with them.
            """CREATE TABLE vector (
                actor TEXT PRIMARY KEY,
                seq INTEGER NOT NULL
            ) STRICT""",
        ),
    ),
]
MIGRATIONS.append(
    (
        2,
        "records of idempotency-key applications and their compensation marks",
        (
            # One row per application of an idempotency key, named by the dot of its write.
            # Only the node that made it keeps its reply, for retries: what the reply showed,
            # in vvstore.codec's storage encoding (rows written before that encoding hold the
            # reply's JSON body word for word; both replay as first answered).
            """CREATE TABLE records (
                actor TEXT NOT NULL,
                seq INTEGER NOT NULL,
                khash BLOB NOT NULL,
                fingerprint BLOB NOT NULL,
                key TEXT NOT NULL,
                amount INTEGER NOT NULL,
                created REAL NOT NULL,
                reply TEXT,
                PRIMARY KEY (actor, seq)
            ) STRICT, WITHOUT ROWID""",
            "CREATE INDEX records_by_khash ON records (khash)",
            "CREATE INDEX records_by_age ON records (created)",
            # The copy (actor, seq) was compensated by the write (by_actor, by_seq). A mark
            # travels in the stream of the write that made it, so it may arrive before its
            # record: it is kept apart.
            """CREATE TABLE marks (
                actor TEXT NOT NULL,
                seq INTEGER NOT NULL,
                by_actor TEXT NOT NULL,
                by_seq INTEGER NOT NULL,
                PRIMARY KEY (actor, seq)
            ) STRICT, WITHOUT ROWID""",
            "CREATE INDEX marks_by_writer ON marks (by_actor, by_seq)",
        ),
    )
)
MIGRATIONS.append(
    (
        3,
        "entries name their actor by a small integer (actors table); no floors is NULL",
        (
            # An actor id is 18 to 57 characters and sat in both the primary key and the dot
            # index of every entry; as an integer, SQLite writes about a third less per write on
            # many keys (python -m bench.schema). The writer is the only one to number actors.
            """CREATE TABLE actors (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL UNIQUE
            ) STRICT""",
            "INSERT INTO actors (name) SELECT DISTINCT actor FROM entries ORDER BY actor",
            """CREATE TABLE entries_v3 (
                key TEXT NOT NULL,
                actor INTEGER NOT NULL,
                seq INTEGER NOT NULL,
                total INTEGER NOT NULL,
                floors TEXT,
                PRIMARY KEY (key, actor)
            ) STRICT, WITHOUT ROWID""",
            "INSERT INTO entries_v3 SELECT e.key, a.id, e.seq, e.total, NULLIF(e.floors, '{}')"
            " FROM entries e JOIN actors a ON a.name = e.actor",
            "DROP TABLE entries",
            "ALTER TABLE entries_v3 RENAME TO entries",
            "CREATE UNIQUE INDEX entries_by_dot ON entries (actor, seq)",
        ),
    )
)
MIGRATIONS.append(
    (
        4,
        "retired actors with their final seq",
        (
            # An actor that will issue no more dots, and the highest seq of it any member holds
            # (vvstore.retirement). Grow-only: a row is inserted, or its final raised.
            """CREATE TABLE retired (
                actor TEXT PRIMARY KEY,
                final INTEGER NOT NULL CHECK (final >= 1)
            ) STRICT, WITHOUT ROWID""",
        ),
    )
)
MIGRATIONS.append(
    (
        5,
        "duplicate sets of idempotency keys, kept for as long as their copies are counted",
        (
            # One row per set (vvstore.idempotency.DuplicateSet), published at the dot
            # (by_actor, by_seq); copies is the set's JSON list of
            # [actor, seq, fingerprint hex, amount, mark actor, mark seq]. Grow-only, never
            # purged. Read by counter key (values) and by key hash (writes).
            """CREATE TABLE duplicates (
                by_actor TEXT NOT NULL,
                by_seq INTEGER NOT NULL,
                khash BLOB NOT NULL,
                key TEXT NOT NULL,
                copies TEXT NOT NULL,
                PRIMARY KEY (by_actor, by_seq)
            ) STRICT, WITHOUT ROWID""",
            "CREATE INDEX duplicates_by_key ON duplicates (key)",
            "CREATE INDEX duplicates_by_khash ON duplicates (khash)",
        ),
    )
)
#: The version a database has once every migration has run.
SCHEMA_VERSION = MIGRATIONS[-1][0]
