"""The durable store: SQLite through aiosqlite, one group-committing writer.

This is the only module that imports aiosqlite. It locks the data directory, opens the database
with its pragmas, runs the recorded migrations of :mod:`vvstore.schema`, keeps the node's
identity (node id, actor id, incarnation), runs the single writer task, serves reads and pull
pages, and purges idempotency records. What a write group does is decided by the pure
:mod:`vvstore.writes`: the writer loads what those decisions need, calls them, and executes
what they decided. It must never answer a write before the transaction holding it has
committed, and never let one request's refusal roll back another's write.

Writes are queued (bounded) and applied by one task: it takes what is queued, applies it in
order against the in-memory states of the keys involved, writes the resulting entries in one
transaction, commits once (one fsync under ``synchronous=FULL``), and only then answers every
waiter. A request refused while preparing (an overflow, say) is answered with its error and
writes nothing; a failed commit fails every waiter of the group with :class:`Unavailable`,
whose outcome is indefinite. Reads use a second connection and see committed state only.

The actor's event counter lives in the node-level vector table, updated in the same
transaction as the entries it numbered, so a reader never sees a seq that is not committed.

This module is longer than the ~600 lines a module should keep to, because everything in it
shares the two connections and one discipline (a single writer, rollback on any exception,
actor numbers taken back when a commit fails, reads executed and fetched in one call):
splitting its SQL across modules would spread that discipline, not shrink it. What needs no
connection lives apart already: the decisions (writes), the schema, the page budget (paging).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from vvstore.actor import actor_prefix, is_actor_of
from vvstore.clock import VersionVector
from vvstore.codec import Outcome, Write, decode_reply, encode_reply
from vvstore.config import NodeConfig
from vvstore.counter import CounterState, Entry, Floor
from vvstore.errors import (
    DataDirLocked,
    DataDirUnusable,
    NodeIdMismatch,
    RequestError,
    SchemaTooNew,
    Unavailable,
)
from vvstore.idempotency import Dot, DuplicateSet, Record, duplicates_of, key_hash
from vvstore.paging import PageBuilder
from vvstore.retirement import EMPTY, Retirements, earlier_actors
from vvstore.schema import MIGRATIONS, MIGRATIONS_TABLE, SCHEMA_VERSION
from vvstore.wire import MAX_PAGE_ENTRIES, Page, PullRequest
from vvstore.writes import (
    ApplyResult,
    Group,
    Identity,
    Switch,
    compensate,
    new_incarnation,
    prepare_apply,
    prepare_raise,
    prepare_retire,
    prepare_writes,
    publish_sets,
    waiting,
)

# SCHEMA_VERSION is vvstore.schema's; it stays importable from here for the benchmarks.
__all__ = ["DB_FILE", "SCHEMA_VERSION", "PurgeResult", "Store"]

log = logging.getLogger(__name__)

DB_FILE = "vvstore.sqlite3"
LOCK_FILE = "LOCK"


def _floors_json(entry: Entry) -> str | None:
    if not entry.floors:
        return None
    return json.dumps(
        {a: [f.seq, f.total] for a, f in sorted(entry.floors.items())}, separators=(",", ":")
    )


def _entry_from_row(actor: str, seq: int, total: int, floors: str | None) -> Entry:
    if floors is None:
        return Entry(actor, seq, total)
    return Entry(actor, seq, total, {a: Floor(s, t) for a, (s, t) in json.loads(floors).items()})


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _actor_token() -> int:
    """What names a new actor id: from the OS, never a seeded generator, so that two
    incarnations never share an actor id."""
    return int.from_bytes(os.urandom(8), "big")


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


# --- the writer's operations -------------------------------------------------------------


@dataclass(slots=True)
class _Op:
    future: asyncio.Future[Any]

    def touched(self) -> Iterable[str]:
        return ()

    def khashes(self) -> Iterable[bytes]:
        return ()


@dataclass(slots=True)
class _Write(_Op):
    writes: Sequence[Write]

    def touched(self) -> Iterable[str]:
        return (w.key for w in self.writes)

    def khashes(self) -> Iterable[bytes]:
        return (key_hash(w.idempotency_key) for w in self.writes if w.idempotency_key)


@dataclass(slots=True)
class _Apply(_Op):
    entries: Sequence[tuple[str, Entry]]
    records: Sequence[Record]
    marks: Sequence[tuple[Dot, Dot]]
    sets: Sequence[DuplicateSet] = ()

    def touched(self) -> Iterable[str]:
        yield from (key for key, _ in self.entries)
        yield from (record.key for record in self.records)
        yield from (dup.key for dup in self.sets)

    def khashes(self) -> Iterable[bytes]:
        yield from (record.khash for record in self.records)
        yield from (dup.khash for dup in self.sets)


@dataclass(slots=True)
class _RuleBySets(_Op):
    """From now on duplicate sets rule: every peer speaks their format (recorded in meta)."""


@dataclass(slots=True)
class _RaiseVector(_Op):
    vector: VersionVector


@dataclass(slots=True)
class _Switch(_Op):
    """Begin a new incarnation now (the start-up fence gave up on confirming the old one)."""

    reason: str


@dataclass(slots=True)
class _Retire(_Op):
    finals: dict[str, int]


@dataclass(slots=True)
class _Purge(_Op):
    peer_vectors: Sequence[VersionVector]
    now: float


@dataclass(slots=True)
class PurgeResult:
    """What one purge of idempotency records did."""

    purged: int
    unsafe_evictions: int
    remaining: int


_ENTRIES_AFTER = (
    "SELECT seq, key, total, floors FROM entries WHERE actor = ? AND seq > ? ORDER BY seq LIMIT ?"
)
_RECORDS_AFTER = (
    "SELECT seq, khash, fingerprint, key, amount FROM records WHERE actor = ? AND seq > ?"
    " ORDER BY seq LIMIT ?"
)
_MARKS_AFTER = (
    "SELECT by_seq, actor, seq FROM marks WHERE by_actor = ? AND by_seq > ? ORDER BY by_seq LIMIT ?"
)
_SETS_AFTER = (
    "SELECT by_seq, khash, key, copies FROM duplicates WHERE by_actor = ? AND by_seq > ?"
    " ORDER BY by_seq LIMIT ?"
)
_OWN_SEQ = "SELECT MAX(seq) FROM entries WHERE actor = ?"
_SET_KEYS = "SELECT DISTINCT key FROM duplicates"
_SETS = "SELECT by_actor, by_seq, khash, key, copies FROM duplicates"
#: Key hashes with two or more records: each may need a duplicate set.
_DUPLICATED = "SELECT khash FROM records GROUP BY khash HAVING COUNT(*) > 1"
_RETIRE = (
    "INSERT INTO retired VALUES (?, ?) ON CONFLICT (actor) DO UPDATE"
    " SET final = max(final, excluded.final)"
)


class _Kind(enum.Enum):
    """The streams of one actor a pull page interleaves by seq: _ENTRIES_AFTER, _RECORDS_AFTER,
    _MARKS_AFTER and _SETS_AFTER, in that order (a seq's items go in it too)."""

    ENTRY = enum.auto()
    RECORD = enum.auto()
    MARK = enum.auto()
    SET = enum.auto()


def _set_row(dup: DuplicateSet) -> tuple[str, int, bytes, str, str]:
    copies = [
        [c.actor, c.seq, c.fingerprint.hex(), c.amount, *(c.mark or (None, None))]
        for c in dup.copies
    ]
    return (dup.actor, dup.seq, dup.khash, dup.key, json.dumps(copies, separators=(",", ":")))


def _set_from_row(by_actor: str, by_seq: int, kh: bytes, key: str, copies: str) -> DuplicateSet:
    khash = bytes(kh)
    return DuplicateSet(
        by_actor,
        by_seq,
        khash,
        key,
        tuple(
            Record(a, s, khash, bytes.fromhex(fp), key, amount, (ma, ms) if ma else None)
            for a, s, fp, amount, ma, ms in json.loads(copies)
        ),
    )


async def _rows(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """Every row of one query, executed and fetched in a single call to SQLite's thread."""
    return list(await db.execute_fetchall(sql, params))


class Store:
    """A node's durable state. Open with :meth:`open`; close with :meth:`close`."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock_fd: int | None = None
        self._queue: asyncio.Queue[_Op] = asyncio.Queue(maxsize=config.queue_limit)
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        # Reads on the reader connection in flight, and whether new ones are refused.
        self._reads = 0
        self._reads_idle = asyncio.Event()
        self._reads_idle.set()
        self._reads_closed = False
        self._cache: OrderedDict[str, CounterState] = OrderedDict()
        # The actors table, both ways. Only the writer adds to it, before the commit that
        # first uses an actor's number (and takes it back if that commit fails), so every
        # number a reader can see is here.
        self._actor_ids: dict[str, int] = {}
        self._actor_names: dict[int, str] = {}
        self._vector: dict[str, int] = {}
        #: The committed retirement map (vvstore.retirement); only the writer replaces it.
        self.retirements: Retirements = EMPTY
        self.node_id = config.node_id
        # Only the writer's decisions (and open) change it; readers see a switch at once.
        self._identity = Identity(config.node_id)
        # Identity changes not yet committed; every group carries them until one commits.
        self._pending_meta: dict[str, str] = {}
        self._pending_vector: dict[str, int] = {}
        self._pending_retire: dict[str, int] = {}
        # Key hashes with a copy this node made that may still need compensating.
        self._pending_khashes: set[bytes] = set()
        #: Whether duplicate sets rule the values (every peer speaks their format; see
        #: vvstore.idempotency). Until then, this node compensates as the release before did.
        self.sets_rule = False
        # Counter keys with a duplicate set, every mark of a compensated copy (both small:
        # duplicates are rare), and key hashes that may still need a set published.
        self._set_keys: set[str] = set()
        self._marks: dict[Dot, Dot] = {}
        self._pending_sets: set[bytes] = set()
        #: Transactions the writer committed. Only tests read it, and it stays: it is how they
        #: see that writes shared one group.
        self.commits = 0
        #: Idempotency records evicted at the cap before every peer held them.
        self.unsafe_evictions = 0
        #: Called after every commit that holds a local write (the sync loop's notices).
        self.on_local_commit: list[Callable[[], None]] = []
        #: Called after every commit with the group's operations and the commit's seconds.
        self.on_commit: list[Callable[[int, float], None]] = []
        # The start-up fence (see fence()): local writes wait on _writable until the actor this
        # start resumed is confirmed by every peer, or replaced by a fresh one.
        self._resumed = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._confirmed = asyncio.Event()
        self._fence_task: asyncio.Task[None] | None = None
        #: Why the current actor began (None: it was resumed as it was), for /status.
        self.incarnation_reason: str | None = None

    @property
    def actor(self) -> str:
        """The actor id this node writes as now."""
        return self._identity.actor

    @property
    def incarnation(self) -> int:
        """How many actor ids this data directory has had."""
        return self._identity.incarnation

    # --- lifecycle -----------------------------------------------------------------------

    @classmethod
    async def open(cls, config: NodeConfig) -> Store:
        """Open (creating if needed) the data directory, lock it, migrate, start the writer.

        :raises DataDirLocked: another process serves this directory.
        :raises NodeIdMismatch: the directory belongs to another node id.
        :raises SchemaTooNew: the database was written by a newer vvstore.
        """
        store = cls(config)
        try:
            await store._open()
        except BaseException:
            await store._release()
            raise
        return store

    async def _open(self) -> None:
        data_dir = Path(self.config.data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DataDirUnusable(
                f"cannot use data directory {str(data_dir)!r}: {exc.strerror or exc}"
            ) from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirLocked(
                f"data directory {str(data_dir)!r} is in use by another vvstore process"
            ) from None
        path = data_dir / DB_FILE
        try:
            self._db = await aiosqlite.connect(path, isolation_level=None)
            await self._pragmas(self._db)
        except sqlite3.Error as exc:
            raise DataDirUnusable(f"cannot open the database {str(path)!r}: {exc}") from None
        await self._migrate(self._db)
        self._reader = await aiosqlite.connect(path, isolation_level=None)
        await self._pragmas(self._reader)
        # Actors, V and the stored actor's counter first: a new incarnation must leave the
        # actor it replaces in V at that counter, or peers would send all of its entries back.
        for number, name in await _rows(self._db, "SELECT id, name FROM actors"):
            self._actor_ids[name] = number
            self._actor_names[number] = name
        self._vector = dict(await _rows(self._db, "SELECT actor, seq FROM vector"))
        self.retirements = Retirements(
            dict(await _rows(self._db, "SELECT actor, final FROM retired"))
        )
        await self._load_identity(path)
        self._pending_khashes = await self._unresolved_copies()
        meta = dict(await _rows(self._db, "SELECT name, value FROM meta"))
        self.sets_rule = meta.get("sets_rule") == "1"
        self._set_keys = {key for (key,) in await _rows(self._db, _SET_KEYS)}
        self._marks = {
            (a, s): (ba, bs) for a, s, ba, bs in await _rows(self._db, "SELECT * FROM marks")
        }
        self._pending_sets = {bytes(kh) for (kh,) in await _rows(self._db, _DUPLICATED)}
        # From here on, DML opens a transaction implicitly and commit() ends it: one round trip
        # to the SQLite thread fewer per group than an explicit BEGIN.
        self._db.isolation_level = "DEFERRED"
        self._writer = asyncio.create_task(self._write_loop(), name="vvstore-writer")

    async def _pragmas(self, db: aiosqlite.Connection) -> None:
        synchronous = "FULL" if self.config.durability == "full" else "NORMAL"
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute(f"PRAGMA synchronous={synchronous}")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.execute("PRAGMA foreign_keys=ON")

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await db.execute(MIGRATIONS_TABLE)
        (row,) = await _rows(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        current = int(row[0])
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the database in {self.config.data_dir!r} has schema version {current}, but this "
                f"vvstore knows only up to {SCHEMA_VERSION}; upgrade vvstore to open it"
            )
        for version, name, statements in MIGRATIONS:
            if version <= current:
                continue
            await db.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, time.time())
                )
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

    async def _load_identity(self, path: Path) -> None:
        db = self._db
        assert db is not None
        meta = dict(await _rows(db, "SELECT name, value FROM meta"))
        stored = meta.get("node_id")
        stat = path.stat()
        file_identity = f"{stat.st_dev}:{stat.st_ino}"
        copied = meta.get("file_identity") != file_identity
        if stored is not None and stored != self.node_id and not copied:
            raise NodeIdMismatch(
                f"data directory {self.config.data_dir!r} belongs to node id {stored!r}, "
                f"not {self.node_id!r} (a copy of it may start as another node)"
            )
        boot_id = _boot_id()
        reason = None
        if "actor" not in meta:
            reason = "new database"
        elif stored != self.node_id:
            # A copy of another node's directory starts a new node: it keeps the entries and
            # takes a fresh actor under its own node id, so it never shares one with the original.
            reason = f"a copy of node {stored!r}'s data directory, started as node {self.node_id!r}"
        elif copied:
            reason = "the database file was copied or restored"
        elif (
            meta.get("durability") == "normal"
            and meta.get("clean_shutdown") != "1"
            and meta.get("boot_id") != boot_id
        ):
            reason = "unclean shutdown followed by a reboot under durability=normal"
        identity = self._identity
        identity.incarnation = int(meta.get("incarnation", "0"))
        self.unsafe_evictions = int(meta.get("unsafe_evictions", "0"))
        identity.actor = meta.get("actor", "")
        identity.seq = max(self._vector.get(identity.actor, 0), await self._own_seq(identity.actor))
        updates = {
            "node_id": self.node_id,
            "file_identity": file_identity,
            "boot_id": boot_id,
            "clean_shutdown": "0",
            "durability": self.config.durability,
        }
        if reason is not None:
            self._left_behind(new_incarnation(identity, _actor_token(), reason))
            updates.update(identity.meta())
        else:
            self._resumed = True
        await db.execute("BEGIN IMMEDIATE")
        await db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", updates.items())
        await db.executemany(
            "INSERT INTO vector VALUES (?, ?) ON CONFLICT (actor) DO UPDATE"
            " SET seq = max(seq, excluded.seq)",
            self._pending_vector.items(),
        )
        # Every earlier actor of this node that V shows (the one just left behind, those of
        # incarnations before a wipe, those of a release that did not retire) is retired.
        retire = earlier_actors(
            self.node_id,
            identity.actor,
            {**self._vector, **self._pending_vector},
            self.retirements,
        )
        await db.executemany(_RETIRE, [*retire.items(), *self._pending_retire.items()])
        await db.execute("COMMIT")
        self._vector.update(self._pending_vector)
        self.retirements = self.retirements.with_changes({**retire, **self._pending_retire})
        self._pending_meta.clear()
        self._pending_vector.clear()
        self._pending_retire.clear()

    def _left_behind(self, switch: Switch) -> None:
        """Carry a new incarnation into every group until one commits, and say so."""
        self.incarnation_reason = switch.reason
        if switch.left and switch.seq:
            self._pending_vector[switch.left] = switch.seq
            if is_actor_of(switch.left, self.node_id):
                self._pending_retire[switch.left] = switch.seq
        if not self._identity.retire_earlier:
            log.error(
                "node %s: a peer retired our actor %s a second time since start: another process"
                " runs as node id %s; stop one of them",
                self.node_id,
                switch.left,
                self.node_id,
            )
        if switch.left:
            log.warning(
                "node %s: new incarnation %s (was %s): %s",
                self.node_id,
                self.actor,
                switch.left,
                switch.reason,
            )
        self._pending_meta.update(self._identity.meta())

    def fence(self, timeout: float) -> bool:
        """Hold local writes until the actor this start resumed is confirmed; True if fenced.

        A database restored in place (a backup copied over the same file, a snapshot rolled
        back while the node was stopped) looks to this node exactly like one it left itself,
        but peers may hold dots of its actor beyond the counter it resumed at: a write issued
        now would reuse one. So, when the actor was resumed (not new at this start), local
        writes wait until :meth:`confirm` says every peer has been heard from (a peer holding
        more of our actor has by then switched us to a new one, see vvstore.writes), or, after
        ``timeout`` seconds, the node gives up on confirming and begins a fresh actor: safe
        whatever the peers hold, at the cost of one more actor. Without peers there is nobody
        to ask, and nothing is fenced (the caller does not call this).
        """
        if not self._resumed or self._fence_task is not None:
            return False
        self._writable.clear()
        self._fence_task = asyncio.create_task(self._await_confirmation(timeout))
        return True

    def confirm(self) -> None:
        """Every peer has been heard from since this start (and its vector applied)."""
        self._confirmed.set()

    @property
    def fenced(self) -> bool:
        """Whether local writes are waiting for the start-up fence."""
        return not self._writable.is_set()

    async def _await_confirmation(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):  # not wait_for: see SyncLoop._run_link
                await self._confirmed.wait()
        except TimeoutError:
            reason = (
                f"not every peer answered within {timeout:g} s of start: the actor this start"
                " resumed may have dots a peer holds (a restore in place), so it is not reused"
            )
            try:
                await self._submit(_Switch(self._future(), reason))
            except Unavailable:
                return  # closing, or the queue is full: writes stay fenced (refused on close)
        self._writable.set()

    async def close(self) -> None:
        """Drain queued writes (bounded by the shutdown timeout), then close cleanly."""
        self._closing = True
        await self._stop_fence()
        if self._writer is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._queue.join(), self.config.shutdown_timeout)
        await self._stop_writer()
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                await self._db.execute("INSERT OR REPLACE INTO meta VALUES ('clean_shutdown', '1')")
                await self._db.commit()
        await self._release()

    async def abort(self) -> None:
        """Stop at once, as a killed process would: no drain, no clean-shutdown mark.

        Queued writes fail with :class:`Unavailable`; committed ones are on disk already.
        """
        self._closing = True
        await self._stop_fence()
        await self._stop_writer()
        await self._release()

    async def _stop_fence(self) -> None:
        if self._fence_task is not None:
            self._fence_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fence_task
        self._writable.set()  # writes still waiting go on to be refused: the store is closing

    async def _stop_writer(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        while not self._queue.empty():
            op = self._queue.get_nowait()
            if not op.future.done():
                op.future.set_exception(Unavailable("the node is shutting down"))

    async def _release(self) -> None:
        # Reads in flight finish first (each is one short call); later ones get Unavailable.
        self._reads_closed = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._reads_idle.wait(), self.config.shutdown_timeout)
        for db in (self._reader, self._db):
            if db is not None:
                with contextlib.suppress(Exception):
                    await db.close()
        self._reader = self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- writes --------------------------------------------------------------------------

    async def _submit(self, op: _Op) -> Any:
        if self._closing:
            raise Unavailable("the node is shutting down")
        try:
            self._queue.put_nowait(op)
        except asyncio.QueueFull:
            raise Unavailable("the write queue is full") from None
        return await op.future

    def _future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def write(self, writes: Sequence[Write]) -> list[Outcome]:
        """Apply ``writes`` in one transaction, all or none; one outcome per write, in order.

        A write whose idempotency key this node already applied (or holds a record of) is not
        applied again: its outcome is the original reply (or, for a copy made elsewhere, the
        current state) with ``replayed`` set. A never-written key's reset and a zero amount
        write nothing.

        :raises Overflow: an amount, this node's total or the value would leave int64.
        :raises IdempotencyKeyReused: a key comes back with another counter key or amount.
        :raises Unavailable: the commit failed or the queue is full (indefinite).
        """
        if not self._writable.is_set():
            await self._writable.wait()
        outcomes: list[Outcome] = await self._submit(_Write(self._future(), writes))
        return outcomes

    async def increment(
        self, key: str, amount: int, *, idempotency_key: str | None = None
    ) -> CounterState:
        """Add ``amount`` to ``key``; the key's state right after this write, committed."""
        return (await self.write([Write(key, amount, idempotency_key)]))[0].state

    async def reset(self, key: str, *, idempotency_key: str | None = None) -> CounterState:
        """Cancel every increment of ``key`` this node holds; the state right after it."""
        return (await self.write([Write(key, 0, idempotency_key, reset=True)]))[0].state

    async def batch(self, items: Sequence[tuple[str, int]]) -> list[CounterState]:
        """Apply every ``(key, amount)`` in one transaction, or none of them."""
        outcomes = await self.write([Write(key, amount) for key, amount in items])
        return [outcome.state for outcome in outcomes]

    async def apply(
        self,
        entries: Sequence[tuple[str, Entry]],
        records: Sequence[Record] = (),
        marks: Sequence[tuple[Dot, Dot]] = (),
        sets: Sequence[DuplicateSet] = (),
    ) -> ApplyResult:
        """Join remote entries, records, marks and duplicate sets: all or none.

        :raises ConflictingEntry: an entry has a dot we hold with different contents.
        """
        op = _Apply(self._future(), entries, records, marks, sets)
        result: ApplyResult = await self._submit(op)
        return result

    async def rule_by_sets(self) -> None:
        """From now on, duplicate sets rule values (every peer speaks their format).

        Recorded in the data directory, so it holds from the next start too; this node stops
        compensating and publishes a set for every key it holds two copies of.
        """
        if not self.sets_rule:
            await self._submit(_RuleBySets(self._future()))

    async def raise_vector(self, vector: VersionVector) -> None:
        """Raise the node-level vector to ``max(V, vector)``, after every queued apply."""
        await self._submit(_RaiseVector(self._future(), vector))

    async def retire(self, finals: dict[str, int]) -> int:
        """Merge a peer's retirements into ours; how many raised our map.

        A retirement of our own current actor switches this node to a new one first.
        """
        raised: int = await self._submit(_Retire(self._future(), finals))
        return raised

    def retired_after(self, after: str | None) -> tuple[list[tuple[str, int]], str | None]:
        """Up to MAX_PAGE_ENTRIES retirements of actors after ``after``, and the next cursor."""
        retired = self.retirements
        names = sorted(a for a in retired if after is None or a > after)
        items = [(a, retired[a]) for a in names[:MAX_PAGE_ENTRIES]]
        return items, (items[-1][0] if len(names) > MAX_PAGE_ENTRIES else None)

    async def purge(self, peer_vectors: Sequence[VersionVector], now: float) -> PurgeResult:
        """Delete idempotency records no retry can need any more, and enforce the cap.

        A record goes when it is older than the retention period and covered by the vector
        last received from every peer (``peer_vectors``; a peer never heard from covers
        nothing). Over the cap, covered records go oldest first whatever their age; if that is
        not enough, the oldest go anyway and are counted as unsafe evictions.
        """
        result: PurgeResult = await self._submit(_Purge(self._future(), peer_vectors, now))
        return result

    async def _purge(self, op: _Purge) -> PurgeResult:
        db = self._db
        assert db is not None

        def covered(actor: str, seq: int) -> bool:
            return all(vector.get(actor) >= seq for vector in op.peer_vectors)

        async def oldest(where: str, params: tuple[Any, ...], limit: int) -> list[Dot]:
            rows = await _rows(
                db,
                f"SELECT actor, seq FROM records WHERE {where} ORDER BY created LIMIT ?",
                (*params, limit),
            )
            return [(actor, seq) for actor, seq in rows]

        cutoff = op.now - self.config.idempotency_retention
        doomed = [d for d in await oldest("created < ?", (cutoff,), 100_000) if covered(*d)]
        count = await self._record_count(db) - len(doomed)
        unsafe = 0
        if count > self.config.idempotency_cap:
            chosen = set(doomed)
            over = count - self.config.idempotency_cap
            for dot in await oldest("1", (), count):
                if over == 0:
                    break
                if dot not in chosen and covered(*dot):
                    doomed.append(dot)
                    chosen.add(dot)
                    over -= 1
            if over:
                for dot in await oldest("1", (), count):
                    if over == 0:
                        break
                    if dot not in chosen:
                        doomed.append(dot)
                        chosen.add(dot)
                        over -= 1
                        unsafe += 1
        if doomed or unsafe:
            self.unsafe_evictions += unsafe
            try:
                # Marks stay: a compensated copy listed in a duplicate set must stay marked.
                await db.executemany("DELETE FROM records WHERE actor = ? AND seq = ?", doomed)
                await db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('unsafe_evictions', ?)",
                    (str(self.unsafe_evictions),),
                )
                await db.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    await db.rollback()
                raise
            if unsafe:
                log.warning(
                    "evicted %d idempotency records that a peer may not hold yet: a retry of"
                    " those keys may count again",
                    unsafe,
                )
        return PurgeResult(len(doomed), unsafe, await self._record_count(db))

    @staticmethod
    async def _record_count(db: aiosqlite.Connection) -> int:
        (row,) = await _rows(db, "SELECT COUNT(*) FROM records")
        return int(row[0])

    async def key_count(self) -> int:
        """Keys with at least one committed entry (a scan of the entries' key order)."""
        ((count,),) = await self._query("SELECT COUNT(DISTINCT key) FROM entries")
        return int(count)

    async def idempotency_status(self, now: float) -> dict[str, Any]:
        """Records held, the age of the oldest in seconds, the unsafe evictions so far, and how
        duplicates are counted once (the rule, and the duplicate sets held)."""
        ((count, oldest),) = await self._query("SELECT COUNT(*), MIN(created) FROM records")
        ((sets,),) = await self._query("SELECT COUNT(*) FROM duplicates")
        return {
            "records": count,
            "oldest_record_age": None if oldest is None else max(0.0, now - oldest),
            "idempotency_unsafe_evictions": self.unsafe_evictions,
            "exactly_once": {
                "rule": "duplicate sets" if self.sets_rule else "compensation",
                "duplicate_sets": sets,
            },
        }

    async def _write_loop(self) -> None:
        while True:
            ops = [await self._queue.get()]
            while len(ops) < self.config.max_group and not self._queue.empty():
                ops.append(self._queue.get_nowait())
            purges = [op for op in ops if isinstance(op, _Purge)]
            ops = [op for op in ops if not isinstance(op, _Purge)]
            for purge in purges:  # alone, between groups: it deletes what groups may read
                try:
                    purge.future.set_result(await self._purge(purge))
                except Exception as exc:
                    log.exception("purge of idempotency records failed")
                    purge.future.set_exception(Unavailable(f"the purge failed: {exc}"))
                finally:
                    self._queue.task_done()
            try:
                await self._run_group(ops)
            except asyncio.CancelledError:
                for op in ops:  # stopped mid-group: the outcome is unknown to the waiters
                    if not op.future.done():
                        op.future.set_exception(Unavailable("the node stopped during the write"))
                raise
            except Exception as exc:  # a failed group never kills the writer
                log.exception("write group failed")
                for op in ops:
                    if not op.future.done():
                        op.future.set_exception(
                            Unavailable(f"the write could not be committed: {exc}")
                        )
            finally:
                for _ in ops:
                    self._queue.task_done()

    async def _run_group(self, ops: list[_Op]) -> None:
        if any(isinstance(op, _RuleBySets) for op in ops) and not self.sets_rule:
            self._cache.clear()  # the states cached so far carry no duplicates
            assert self._db is not None
            self._pending_sets |= {bytes(kh) for (kh,) in await _rows(self._db, _DUPLICATED)}
        khashes = {kh for op in ops for kh in op.khashes()}
        # Compensation waits for the end of a complete pull (the group raising V): a page may
        # bring a copy's record before the mark of an earlier compensation of it, or before the
        # entry that counts a smaller copy; at the end of the round we hold everything the
        # responder held.
        finishing = any(isinstance(op, _RaiseVector) for op in ops)
        group = Group(token=_actor_token(), retired=self.retirements)
        group.exclude = self.sets_rule or any(isinstance(op, _RuleBySets) for op in ops)
        group.may_publish = group.exclude and self._writable.is_set()
        if group.may_publish:
            khashes |= self._pending_sets
        elif finishing and not group.exclude:
            khashes |= self._pending_khashes
        keys = {key for op in ops for key in op.touched()}
        keys |= await self._load_copies(khashes, group)
        group.base = await self._load_states(keys)
        if group.exclude:
            await self._load_sets(keys, group)
        group.meta.update(self._pending_meta)
        group.vector.update(self._pending_vector)
        group.retire.update(self._pending_retire)
        group.dots = await self._held_dots(ops)
        results: list[tuple[_Op, Any]] = []
        try:
            for op in ops:
                if op.future.done():  # its caller went away (cancelled); apply nothing for it
                    continue
                try:
                    results.append((op, self._decide(op, group)))
                except RequestError as exc:
                    op.future.set_exception(exc)
        finally:
            # A new incarnation holds from the moment it is decided, even if the group fails.
            for switch in group.switches:
                self._left_behind(switch)
        for op in ops:
            if isinstance(op, _Apply):
                self._pending_khashes.update(
                    r.khash for r in op.records if waiting(group, self.node_id, r.khash)
                )
        if group.exclude:
            applied = {kh for op in ops if isinstance(op, _Apply) for kh in op.khashes()}
            if group.may_publish:
                publish_sets(group, self._identity, khashes | applied)
            else:  # published once our actor is confirmed
                self._pending_sets |= applied
        elif finishing:
            self._pending_khashes = compensate(group, self._identity, self._pending_khashes)
            for copy in group.uncompensated:
                log.error("cannot compensate %s:%d without overflow", copy.actor, copy.seq)
        for kh in group.mixed:
            log.warning(
                "idempotency key %s was applied with different requests; the first stands",
                kh.hex(),
            )
        if group.exclude and not self.sets_rule:
            group.meta["sets_rule"] = "1"
        if group.dirty:
            started = time.perf_counter()
            await self._commit(group)
            self.commits += 1
            if group.may_publish:
                self._pending_sets.clear()
            self.sets_rule = group.exclude
            for observe in self.on_commit:
                observe(len(ops), time.perf_counter() - started)
            self._pending_meta.clear()
            self._pending_vector.clear()
            self._pending_retire.clear()
            self._publish(group)
        elif group.may_publish:  # nothing was due: none of them needs a set now
            self._pending_sets.clear()
        for op, result in results:
            if not op.future.done():
                op.future.set_result(result)
        if group.local_writes:
            for callback in self.on_local_commit:
                callback()

    async def _commit(self, group: Group) -> None:
        """Write one group in one transaction (tests replace this to inject failures)."""
        db = self._db
        assert db is not None
        numbered = self._number_actors(
            {actor for _, actor in group.rows} | {dup.actor for dup in group.new_sets}
        )
        try:
            if numbered:
                await db.executemany(
                    "INSERT INTO actors VALUES (?, ?)",
                    [(self._actor_ids[name], name) for name in numbered],
                )
            if group.rows:
                ids = self._actor_ids
                await db.executemany(
                    "INSERT INTO entries VALUES (?, ?, ?, ?, ?) ON CONFLICT (key, actor) DO UPDATE"
                    " SET seq = excluded.seq, total = excluded.total, floors = excluded.floors",
                    [
                        (key, ids[e.actor], e.seq, e.total, _floors_json(e))
                        for (key, _), e in group.rows.items()
                    ],
                )
            if group.new_records:
                now = time.time()
                await db.executemany(
                    "INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (r.actor, r.seq, r.khash, r.fingerprint, r.key, r.amount, now, reply)
                        for r, reply in self._records_rows(group)
                    ],
                )
            if group.marks:
                await db.executemany(
                    "INSERT INTO marks VALUES (?, ?, ?, ?) ON CONFLICT (actor, seq) DO UPDATE"
                    " SET by_actor = excluded.by_actor, by_seq = excluded.by_seq"
                    " WHERE (excluded.by_seq, excluded.by_actor) > (by_seq, by_actor)",
                    [(m[0], m[1], by[0], by[1]) for m, by in group.marks.items()],
                )
            if group.new_sets:
                await db.executemany(
                    "INSERT OR IGNORE INTO duplicates VALUES (?, ?, ?, ?, ?)",
                    [_set_row(dup) for dup in group.new_sets],
                )
            if group.vector:
                await db.executemany(
                    "INSERT INTO vector VALUES (?, ?) ON CONFLICT (actor) DO UPDATE"
                    " SET seq = max(seq, excluded.seq)",
                    group.vector.items(),
                )
            if group.meta:
                await db.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)", group.meta.items()
                )
            if group.retire:
                await db.executemany(_RETIRE, group.retire.items())
            await db.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                await db.rollback()
            for name in numbered:  # those numbers were never committed
                del self._actor_names[self._actor_ids.pop(name)]
            raise

    @staticmethod
    def _records_rows(group: Group) -> Iterator[tuple[Record, str | None]]:
        """The group's new records, each with its reply column: only the node that made a
        copy keeps what its reply showed (a record received from a peer has none)."""
        for record, reply in group.new_records:
            yield record, None if reply is None else encode_reply(reply)

    def _number_actors(self, names: Iterable[str]) -> list[str]:
        """Give each actor in ``names`` without a number the next one; the names numbered."""
        new = sorted(name for name in names if name not in self._actor_ids)
        for name in new:
            number = max(self._actor_names, default=0) + 1
            self._actor_ids[name] = number
            self._actor_names[number] = name
        return new

    def _publish(self, group: Group) -> None:
        for key, state in group.states.items():
            self._remember(key, state)
        self._set_keys.update(dup.key for dup in group.new_sets)
        for marked, by in group.marks.items():
            known = self._marks.get(marked)
            if known is None or (by[1], by[0]) > (known[1], known[0]):
                self._marks[marked] = by
        for actor, seq in group.vector.items():
            if seq > self._vector.get(actor, 0):
                self._vector[actor] = seq
        self.retirements = self.retirements.with_changes(group.retire)

    def _remember(self, key: str, state: CounterState) -> None:
        if self.config.cache_keys == 0:
            return
        self._cache[key] = state
        self._cache.move_to_end(key)
        while len(self._cache) > self.config.cache_keys:
            self._cache.popitem(last=False)

    async def _load_states(self, keys: set[str]) -> dict[str, CounterState]:
        """The committed states of ``keys``: from the cache, or else read from SQLite."""
        cached = {key: self._cache[key] for key in keys if key in self._cache}
        missing = [key for key in keys if key not in cached]
        db = self._db
        assert db is not None
        loaded: dict[str, list[Entry]] = {key: [] for key in missing}
        for chunk in _chunks(missing, 500):
            marks = ",".join("?" * len(chunk))
            names = self._actor_names
            for key, actor, seq, total, floors in await _rows(
                db,
                f"SELECT key, actor, seq, total, floors FROM entries WHERE key IN ({marks})",
                chunk,
            ):
                loaded[key].append(_entry_from_row(names[actor], seq, total, floors))
        return cached | {key: CounterState(entries) for key, entries in loaded.items()}

    async def _load_copies(self, khashes: set[bytes], group: Group) -> set[str]:
        """Every held copy of ``khashes`` into ``group``; the counter keys they name."""
        db = self._db
        assert db is not None
        keys: set[str] = set()
        for chunk in _chunks(sorted(khashes), 500):
            marks = ",".join("?" * len(chunk))
            rows = await _rows(
                db,
                "SELECT r.actor, r.seq, r.khash, r.fingerprint, r.key, r.amount, r.reply,"
                " m.by_actor, m.by_seq FROM records r LEFT JOIN marks m"
                " ON m.actor = r.actor AND m.seq = r.seq"
                f" WHERE r.khash IN ({marks})",
                chunk,
            )
            for actor, seq, kh, fp, key, amount, reply, by_actor, by_seq in rows:
                mark = (by_actor, by_seq) if by_actor is not None else None
                record = Record(actor, seq, kh, fp, key, amount, mark)
                group.copies.setdefault(kh, {})[record.dot] = record
                if reply is not None:
                    group.replies[record.dot] = decode_reply(reply, key)
                keys.add(key)
            for row in await _rows(
                db,
                f"{_SETS} WHERE khash IN ({marks})",
                chunk,
            ):
                dup = _set_from_row(*row)
                group.sets.setdefault(dup.khash, {})[dup.dot] = dup
                keys.add(dup.key)
        return keys

    async def _load_sets(self, keys: set[str], group: Group) -> None:
        """Every duplicate set of ``keys`` into ``group``, ruling their base states."""
        db = self._db
        assert db is not None
        group.set_marks = self._marks
        wanted = sorted(key for key in keys if key in self._set_keys)
        for chunk in _chunks(wanted, 500):
            marks = ",".join("?" * len(chunk))
            for row in await _rows(
                db,
                f"{_SETS} WHERE key IN ({marks})",
                chunk,
            ):
                dup = _set_from_row(*row)
                group.key_sets.setdefault(dup.key, {})[dup.dot] = dup
        for key, sets in group.key_sets.items():
            group.base[key] = group.base[key].with_duplicates(
                duplicates_of(sets.values(), self._marks)
            )

    async def _held_dots(self, ops: list[_Op]) -> dict[Dot, str]:
        """For remote entries in ``ops``: the key each of their dots is held under, if any."""
        ids = self._actor_ids
        dots = [
            (ids[e.actor], e.seq)
            for op in ops
            if isinstance(op, _Apply)
            for _, e in op.entries
            if e.actor in ids  # an actor without a number has no entry here yet
        ]
        held: dict[Dot, str] = {}
        db = self._db
        assert db is not None
        for chunk in _chunks(dots, 400):
            values = ",".join("(?, ?)" for _ in chunk)
            params = [x for dot in chunk for x in dot]
            for actor, seq, key in await _rows(
                db,
                f"SELECT actor, seq, key FROM entries WHERE (actor, seq) IN (VALUES {values})",
                params,
            ):
                held[(self._actor_names[actor], seq)] = key
        return held

    def _decide(self, op: _Op, group: Group) -> Any:
        """What ``op`` does within ``group`` (vvstore.writes decides), and its answer."""
        if isinstance(op, _Write):
            return prepare_writes(group, self._identity, op.writes)
        if isinstance(op, _Apply):
            return prepare_apply(group, self._identity, op.entries, op.records, op.marks, op.sets)
        if isinstance(op, _RuleBySets):
            return None
        if isinstance(op, _RaiseVector):
            return prepare_raise(group, self._identity, op.vector, self._vector)
        if isinstance(op, _Retire):
            return prepare_retire(group, self._identity, op.finals, self._vector)
        if isinstance(op, _Switch):
            if group.token is not None:  # else this group switched already: the actor is new
                group.switch(self._identity, op.reason)
            return None
        raise TypeError(f"unknown write operation {op!r}")

    # --- reads ---------------------------------------------------------------------------

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of one read on the reader connection, fetched in one call.

        One call matters: SQLite holds a connection's snapshot while any statement on it is
        active, so a cursor iterated across awaits would make every read that starts meanwhile
        see that older snapshot, and a client could miss its own acknowledged write. Reads
        still in flight when the store closes are waited for; reads after that, and SQLite
        errors, raise :class:`Unavailable`.
        """
        if self._reader is None or self._reads_closed:
            raise Unavailable("the node is shutting down")
        self._reads += 1
        self._reads_idle.clear()
        try:
            return await _rows(self._reader, sql, params)
        except sqlite3.Error as exc:
            raise Unavailable(f"the read failed: {exc}") from exc
        finally:
            self._reads -= 1
            if not self._reads:
                self._reads_idle.set()

    async def read(self, key: str) -> CounterState:
        """The committed state of ``key`` (empty if never written)."""
        rows = await self._query(
            "SELECT actor, seq, total, floors FROM entries WHERE key = ?", (key,)
        )
        names = self._actor_names
        entries = [_entry_from_row(names[a], s, t, f) for a, s, t, f in rows]
        if not (self.sets_rule and key in self._set_keys):
            return CounterState(entries)
        sets = [_set_from_row(*row) for row in await self._query(f"{_SETS} WHERE key = ?", (key,))]
        return CounterState(entries, duplicates_of(sets, self._marks))

    async def list_counters(
        self, *, prefix: str = "", after: str | None = None, limit: int = 100
    ) -> tuple[list[tuple[str, CounterState]], str | None]:
        """Keys in key order from ``after`` (exclusive) with ``prefix``; and the next cursor."""
        start = prefix if after is None or after < prefix else after
        inclusive = after is None or after < prefix
        op = ">=" if inclusive else ">"
        rows = await self._query(
            f"SELECT DISTINCT key FROM entries WHERE key {op} ? ORDER BY key LIMIT ?",
            (start, limit + 1),
        )
        keys = [key for (key,) in rows if key.startswith(prefix)]
        more = len(keys) > limit
        keys = keys[:limit]
        out = [(key, await self.read(key)) for key in keys]
        return out, (keys[-1] if more and keys else None)

    async def vector(self) -> VersionVector:
        """The committed node-level vector V."""
        vector = dict(await self._query("SELECT actor, seq FROM vector"))
        actor = self.actor  # read before the entries: a switch after this only adds
        own = await self._own_seq(actor)
        if own > vector.get(actor, 0):
            vector[actor] = own
        return VersionVector(vector)

    async def _unresolved_copies(self) -> set[bytes]:
        """Key hashes with an unmarked copy this node made and at least one other copy."""
        prefix = actor_prefix(self.node_id)
        db = self._db
        assert db is not None
        rows = await _rows(
            db,
            "SELECT DISTINCT r.khash FROM records r LEFT JOIN marks m"
            " ON m.actor = r.actor AND m.seq = r.seq"
            " WHERE m.actor IS NULL AND substr(r.actor, 1, ?) = ? AND r.amount != 0"
            " AND EXISTS (SELECT 1 FROM records o WHERE o.khash = r.khash"
            " AND (o.actor != r.actor OR o.seq != r.seq))",
            (len(prefix), prefix),
        )
        return {bytes(kh) for (kh,) in rows}

    async def _own_seq(self, actor: str) -> int:
        """The highest committed seq of ``actor``, through the dot index (0: none)."""
        number = self._actor_ids.get(actor)
        if number is None:
            return 0
        ((seq,),) = await self._query(_OWN_SEQ, (number,))
        return int(seq or 0)

    async def page(self, request: PullRequest) -> Page:
        """One page of a pull, from the current committed state.

        Every entry, record and mark whose dot is ``> cursor`` with ``seq >
        request.vector[actor]``, in ``(actor, seq)`` order, with no upper bound; at most
        ``page_entries`` items and about ``page_bytes`` bytes, cut only between seqs. On the
        first page (no snapshot) the committed vector is read before any item, so the items are
        at least as new as it.
        """
        snapshot = request.snapshot
        if snapshot is None or not (await self.vector()).descends(snapshot):
            snapshot = await self.vector()
        budget = self.config.page_bytes
        if request.page_bytes is not None:  # the requester's link is slow: smaller pages
            budget = min(budget, request.page_bytes)
        page = PageBuilder(self.config.page_entries, budget)
        actor: str | None
        if request.cursor is None:
            actor, after = self._next_actor(None), 0
        else:
            actor, after = request.cursor
        while actor is not None:
            bound = max(after, request.vector.get(actor))
            room = page.room + 1
            # Entries first, then the other streams (in _Kind's order): a requester raises its V
            # for our actor to the highest entry seq it received, which is sound only if every
            # record, mark and set at or below it was committed before this page read them.
            entries = await self._entries_after(actor, bound, room)
            streams = [
                entries,
                *await asyncio.gather(
                    self._query(_RECORDS_AFTER, (actor, bound, room)),
                    self._query(_MARKS_AFTER, (actor, bound, room)),
                    self._query(_SETS_AFTER, (actor, bound, room)),
                ),
            ]
            # A stream that filled its LIMIT may hold more beyond its last seq: stop there.
            cutoff = min((rows[-1][0] for rows in streams if len(rows) == room), default=None)
            by_seq: dict[int, list[tuple[_Kind, Any]]] = {}
            for kind, rows in zip(_Kind, streams, strict=True):
                for row in rows:
                    if cutoff is None or row[0] <= cutoff:
                        by_seq.setdefault(row[0], []).append((kind, row))
            for seq in sorted(by_seq):
                if not self._add_seq(page, actor, seq, by_seq[seq]):
                    return page.page(self.node_id, self.actor, snapshot, last=False)
            if cutoff is not None:
                after = cutoff
                continue
            actor, after = self._next_actor(actor), 0
        return page.page(self.node_id, self.actor, snapshot, last=True)

    @staticmethod
    def _add_seq(page: PageBuilder, actor: str, seq: int, rows: list[tuple[_Kind, Any]]) -> bool:
        """Offer the rows of one seq (entries, records, marks, by their stream) to ``page``."""
        entries: list[tuple[str, Entry]] = []
        records: list[Record] = []
        marked: list[Dot] = []
        sets: list[DuplicateSet] = []
        for kind, row in rows:
            if kind is _Kind.ENTRY:
                _, key, total, floors = row
                entries.append((key, _entry_from_row(actor, seq, total, floors)))
            elif kind is _Kind.RECORD:
                _, kh, fp, key, amount = row
                records.append(Record(actor, seq, bytes(kh), bytes(fp), key, amount))
            elif kind is _Kind.MARK:
                _, marked_actor, marked_seq = row
                marked.append((marked_actor, marked_seq))
            else:  # _Kind.SET
                _, kh, key, copies = row
                sets.append(_set_from_row(actor, seq, kh, key, copies))
        return page.add((actor, seq), entries, records, marked, sets)

    async def _entries_after(self, actor: str, bound: int, limit: int) -> list[Any]:
        number = self._actor_ids.get(actor)
        if number is None:
            return []
        return await self._query(_ENTRIES_AFTER, (number, bound, limit))

    def _next_actor(self, after: str | None) -> str | None:
        """The first actor with entries here after ``after`` in name order (None: no more)."""
        later = [name for name in self._actor_names.values() if after is None or name > after]
        return min(later, default=None)
