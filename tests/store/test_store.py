"""vvstore.store: durability, identity, group commit, failure injection, apply and pull pages.

Every test opens real SQLite files under tmp_path. Synchronisation is by polling with a
deadline (``wait_until``) or by events the test holds, never by a bare sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from vvstore.actor import is_actor_of
from vvstore.clock import VersionVector
from vvstore.codec import Reply, Write, reply_body
from vvstore.config import NodeConfig
from vvstore.counter import INT64_MAX, CounterState, Entry, Floor
from vvstore.errors import (
    ConflictingEntry,
    DataDirLocked,
    NodeIdMismatch,
    Overflow,
    SchemaTooNew,
    Unavailable,
)
from vvstore.harness.testing import write_schema_2
from vvstore.schema import SCHEMA_VERSION
from vvstore.store import DB_FILE, Store
from vvstore.wire import PullRequest

MakeConfig = Callable[..., NodeConfig]

X = "x~0000000000000001"
Y = "y~0000000000000002"


# --- helpers ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def opened(config: NodeConfig, seed: int = 1) -> AsyncIterator[Store]:
    """Open a store with a seeded rng and always close it."""
    store = await Store.open(config)
    try:
        yield store
    finally:
        await store.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = 1.0) -> None:
    """Poll ``predicate`` every 10 ms until it holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        await asyncio.sleep(0.01)


async def stays_false(predicate: Callable[[], bool], duration: float = 0.2) -> None:
    """Poll ``predicate`` for ``duration`` seconds and fail as soon as it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration
    while loop.time() < deadline:
        assert not predicate()
        await asyncio.sleep(0.01)
    assert not predicate()


def db_path(config: NodeConfig) -> Path:
    return Path(config.data_dir) / DB_FILE


def sql(config: NodeConfig, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the (closed) store's database with plain sqlite3 and commit."""
    with contextlib.closing(sqlite3.connect(db_path(config))) as conn:
        with conn:
            rows = conn.execute(statement, params).fetchall()
        return rows


def integrity_check(config: NodeConfig) -> str:
    """``PRAGMA integrity_check`` of the store's committed database ("ok" when healthy), read
    on a connection of its own beside the open store (WAL lets it)."""
    with contextlib.closing(sqlite3.connect(db_path(config))) as conn:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    return "\n".join(str(row[0]) for row in rows) or "no result"


def meta(config: NodeConfig) -> dict[str, str]:
    return {name: value for name, value in sql(config, "SELECT name, value FROM meta")}


async def value(store: Store, key: str) -> int:
    return (await store.read(key)).value()


async def store_pragma(store: Store, name: str) -> Any:
    """Read a per-connection pragma through the store's own writer connection."""
    assert store._db is not None
    async with store._db.execute(f"PRAGMA {name}") as cur:
        row = await cur.fetchone()
    assert row is not None
    return row[0]


def all_entries(states: dict[str, CounterState]) -> list[tuple[str, Entry]]:
    """Every (key, entry) of ``states`` in (actor, seq) order, as a full pull returns them."""
    out = [(key, entry) for key, state in states.items() for entry in state]
    return sorted(out, key=lambda item: item[1].dot)


# --- durability across reopen --------------------------------------------------------------


async def test_values_and_actor_survive_a_clean_reopen(make_config: MakeConfig) -> None:
    config = make_config()
    async with opened(config, seed=1) as store:
        actor, incarnation = store.actor, store.incarnation
        assert actor.startswith("n1~")
        await store.increment("a", 5)
        await store.increment("a", -2)
        await store.increment("b", 10)
        assert (await store.reset("b")).value() == 0
        await store.increment("b", 4)
        states = await store.batch([("c", 7), ("a", 1), ("c", 1)])
        assert [s.value() for s in states] == [7, 4, 8]
        before = {key: await store.read(key) for key in ("a", "b", "c")}
        vector = await store.vector()
    async with opened(config, seed=2) as store:
        assert store.actor == actor
        assert store.incarnation == incarnation
        assert {key: await value(store, key) for key in ("a", "b", "c")} == {"a": 4, "b": 4, "c": 8}
        assert {key: await store.read(key) for key in ("a", "b", "c")} == before
        assert await store.vector() == vector
        # The actor's counter was recovered: the next write continues after the last seq.
        state = await store.increment("a", 1)
        assert state.entries[actor].seq == vector.get(actor) + 1
        assert integrity_check(config) == "ok"


async def test_a_wiped_directory_gets_a_new_actor(make_config: MakeConfig) -> None:
    config = make_config()
    async with opened(config, seed=1) as store:
        old = store.actor
        await store.increment("k", 3)
    shutil.rmtree(config.data_dir)
    async with opened(config, seed=2) as store:
        assert store.actor != old
        assert await value(store, "k") == 0
        assert await store.vector() == VersionVector()


async def test_a_copied_directory_gets_a_new_actor_but_keeps_its_data(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    config = make_config()
    async with opened(config, seed=1) as store:
        original = store.actor
        await store.increment("k", 7)
    copy = make_config(data_dir=str(tmp_path / "copy"))
    shutil.copytree(config.data_dir, copy.data_dir)
    async with opened(copy, seed=2) as store:
        assert store.actor != original
        assert store.actor.startswith("n1~")
        assert await value(store, "k") == 7
        state = await store.increment("k", 1)
        assert state.value() == 8
        assert set(state.entries) == {original, store.actor}
    # The original directory keeps its actor.
    async with opened(config, seed=3) as store:
        assert store.actor == original
        assert await value(store, "k") == 7


async def test_a_copied_directory_keeps_its_earlier_actors_in_v_from_the_start(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    """Issue 8.4: V held no earlier actor until the first commit (identity was decided before
    the counter was loaded), so the first pull fetched all of the earlier actors' entries."""
    config = make_config()
    async with opened(config) as store:
        first = store.actor
        for i in range(5):
            await store.increment(f"k{i}", 1)
    copy = make_config(data_dir=str(tmp_path / "copy"))
    shutil.copytree(config.data_dir, copy.data_dir)
    async with opened(copy) as store:
        second = store.actor
        assert second != first
        assert await store.vector() == VersionVector({first: 5})
        await store.increment("k0", 1)
    again = make_config(data_dir=str(tmp_path / "again"))
    shutil.copytree(copy.data_dir, again.data_dir)
    async with opened(again) as store:
        assert store.actor not in (first, second)
        vector = await store.vector()
        assert vector == VersionVector({first: 5, second: 1})
        # A peer asking with this V gets nothing back: nothing is shipped twice.
        page = await store.page(PullRequest(vector))
        assert page.entries == () and page.last


async def test_a_copied_directory_starts_as_another_node_with_a_fresh_actor(
    make_config: MakeConfig, tmp_path: Path
) -> None:
    config = make_config("n1")
    async with opened(config) as store:
        await store.increment("k", 2)
        first = store.actor
    copy = make_config("n2", data_dir=str(tmp_path / "copy"))
    shutil.copytree(config.data_dir, copy.data_dir)
    async with opened(copy, seed=5) as store:
        assert is_actor_of(store.actor, "n2") and store.actor != first
        assert "a copy of node 'n1'" in (store.incarnation_reason or "")
        assert await value(store, "k") == 2
        assert (await store.vector())[first] == 1
        await store.increment("k", 1)
    # The copy is node n2 from now on; the original directory is still n1's.
    async with opened(copy, seed=6) as store:
        assert is_actor_of(store.actor, "n2") and await value(store, "k") == 3
    async with opened(config, seed=7) as store:
        assert store.actor == first


async def test_another_node_id_is_refused(make_config: MakeConfig) -> None:
    config = make_config("n1")
    async with opened(config) as store:
        await store.increment("k", 1)
    other = make_config("n2", data_dir=config.data_dir)
    with pytest.raises(NodeIdMismatch) as info:
        await Store.open(other)
    assert "'n1'" in str(info.value) and "'n2'" in str(info.value)
    assert info.value.code == "node_id_mismatch"
    # The refused open released the directory: the right node opens it again.
    async with opened(config, seed=3) as store:
        assert await value(store, "k") == 1


async def test_a_second_open_of_the_same_directory_is_refused(make_config: MakeConfig) -> None:
    config = make_config()
    async with opened(config, seed=1) as store:
        with pytest.raises(DataDirLocked) as info:
            await Store.open(config)
        assert "in use" in str(info.value)
        assert info.value.code == "data_dir_locked"
        # The first store is unaffected.
        assert (await store.increment("k", 1)).value() == 1
    async with opened(config, seed=3) as store:
        assert await value(store, "k") == 1


async def test_a_newer_schema_is_refused_with_a_clear_message(make_config: MakeConfig) -> None:
    config = make_config()
    async with opened(config) as store:
        await store.increment("k", 1)
    sql(config, "INSERT INTO schema_migrations VALUES (999, 'from the future', 0.0)")
    with pytest.raises(SchemaTooNew) as info:
        await Store.open(config)
    message = str(info.value)
    assert "999" in message
    assert str(SCHEMA_VERSION) in message
    assert "upgrade" in message
    # Nothing was changed and the lock was released: without the row, it opens again.
    sql(config, "DELETE FROM schema_migrations WHERE version = 999")
    async with opened(config, seed=3) as store:
        assert await value(store, "k") == 1


@pytest.mark.parametrize(("durability", "synchronous"), [("full", 2), ("normal", 1)])
async def test_wal_and_synchronous_are_set_at_every_open(
    make_config: MakeConfig, durability: str, synchronous: int
) -> None:
    config = make_config(durability=durability)
    async with opened(config) as store:
        assert await store_pragma(store, "synchronous") == synchronous
        assert str(await store_pragma(store, "journal_mode")).lower() == "wal"
    assert sql(config, "PRAGMA journal_mode")[0][0].lower() == "wal"
    # Someone switches the file out of WAL; the next open puts it back.
    sql(config, "PRAGMA journal_mode=DELETE")
    assert sql(config, "PRAGMA journal_mode")[0][0].lower() == "delete"
    async with opened(config, seed=2) as store:
        assert await store_pragma(store, "synchronous") == synchronous
        with contextlib.closing(sqlite3.connect(db_path(config))) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"


async def test_tables_are_strict(make_config: MakeConfig) -> None:
    config = make_config()
    async with opened(config):
        pass
    tables = dict(sql(config, "SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    for name in ("entries", "vector", "meta", "schema_migrations"):
        assert "STRICT" in tables[name].upper(), name


async def test_integrity_check_is_ok(make_config: MakeConfig) -> None:
    config = make_config()
    async with opened(config) as store:
        await store.batch([("a", 1), ("b", 2)])
        assert integrity_check(config) == "ok"


# --- incarnations --------------------------------------------------------------------------


async def test_unclean_shutdown_and_reboot_under_normal_durability_gets_a_new_actor(
    make_config: MakeConfig,
) -> None:
    config = make_config(durability="normal")
    async with opened(config, seed=1) as store:
        old, incarnation = store.actor, store.incarnation
        await store.increment("k", 2)
    assert meta(config)["clean_shutdown"] == "1"
    sql(config, "UPDATE meta SET value = '0' WHERE name = 'clean_shutdown'")
    sql(config, "UPDATE meta SET value = 'other-boot' WHERE name = 'boot_id'")
    async with opened(config, seed=2) as store:
        assert store.actor != old
        assert store.incarnation == incarnation + 1
        assert await value(store, "k") == 2
        state = await store.increment("k", 1)
        assert state.entries[store.actor].seq == 1
        assert state.value() == 3
        new = store.actor
    # The switch was committed: a clean reopen keeps the new actor.
    async with opened(config, seed=3) as store:
        assert store.actor == new


async def test_unclean_shutdown_without_a_reboot_under_normal_durability_keeps_the_actor(
    make_config: MakeConfig,
) -> None:
    config = make_config(durability="normal")
    async with opened(config, seed=1) as store:
        old = store.actor
    sql(config, "UPDATE meta SET value = '0' WHERE name = 'clean_shutdown'")
    async with opened(config, seed=2) as store:
        assert store.actor == old


async def test_unclean_shutdown_and_reboot_under_full_durability_keeps_the_actor(
    make_config: MakeConfig,
) -> None:
    config = make_config(durability="full")
    async with opened(config, seed=1) as store:
        old = store.actor
        await store.increment("k", 2)
    sql(config, "UPDATE meta SET value = '0' WHERE name = 'clean_shutdown'")
    sql(config, "UPDATE meta SET value = 'other-boot' WHERE name = 'boot_id'")
    async with opened(config, seed=2) as store:
        assert store.actor == old
        assert (await store.increment("k", 1)).entries[old].seq == 2


async def test_a_reboot_after_an_unclean_normal_run_gets_a_new_actor_even_if_now_full(
    make_config: MakeConfig,
) -> None:
    """What was lost depends on the durability the data was written under, not the new flag:
    a node that ran with durability=normal, lost power and restarts with durability=full may
    have lost acknowledged writes whose seqs peers hold, so it must not reuse its actor."""
    normal = make_config(durability="normal")
    async with opened(normal, seed=1) as store:
        old = store.actor
        await store.increment("k", 2)
    sql(normal, "UPDATE meta SET value = '0' WHERE name = 'clean_shutdown'")
    sql(normal, "UPDATE meta SET value = 'other-boot' WHERE name = 'boot_id'")
    async with opened(make_config(durability="full"), seed=2) as store:
        assert store.actor != old


# --- group commit ---------------------------------------------------------------------------


async def test_concurrent_increments_are_all_counted_in_few_commits(
    make_config: MakeConfig,
) -> None:
    async with opened(make_config()) as store:
        before = store.commits
        states = await asyncio.gather(*(store.increment("k", 1) for _ in range(200)))
        commits = store.commits - before
        values = [s.value() for s in states]
        assert len(set(values)) == 200
        assert set(values) == set(range(1, 201))
        assert await value(store, "k") == 200
        assert 1 <= commits < 200 / 5
        assert (await store.vector()).get(store.actor) == 200


async def test_a_failed_commit_fails_every_waiter_of_its_group_and_counts_none(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config()
    async with opened(config) as store:
        await store.increment("k", 1)
        vector = await store.vector()
        commits = store.commits

        async def failing(group: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store, "_commit", failing)
        results = await asyncio.gather(
            store.increment("k", 1),
            store.increment("k", 2),
            store.increment("other", 5),
            store.batch([("k", 1), ("b", 1)]),
            return_exceptions=True,
        )
        for result in results:
            assert isinstance(result, Unavailable), result
            assert result.code == "unavailable"
            assert result.definite is False
        assert store.commits == commits
        monkeypatch.undo()

        assert await value(store, "k") == 1
        assert await value(store, "other") == 0
        assert await store.vector() == vector
        # The writer survived: a later write succeeds and continues from the committed state.
        assert (await store.increment("k", 10)).value() == 11
        assert (await store.increment("other", 1)).value() == 1
    async with opened(config, seed=2) as store:
        assert await value(store, "k") == 11
        assert await value(store, "other") == 1
        assert await value(store, "b") == 0


async def test_a_commit_failing_inside_the_transaction_is_rolled_back(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure hits the COMMIT statement itself: the rows written before it are undone."""
    config = make_config()
    async with opened(config) as store:
        await store.increment("k", 1)
        assert store._db is not None

        async def failing_commit() -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store._db, "commit", failing_commit)
        results = await asyncio.gather(
            store.increment("k", 1), store.increment("j", 1), return_exceptions=True
        )
        assert all(isinstance(r, Unavailable) for r in results), results
        monkeypatch.undo()
        assert await value(store, "k") == 1
        assert await value(store, "j") == 0
        assert (await store.increment("j", 3)).value() == 3
        assert (await store.increment("k", 1)).value() == 2
        assert integrity_check(config) == "ok"
    async with opened(config, seed=2) as store:
        assert await value(store, "k") == 2
        assert await value(store, "j") == 3


async def test_no_reply_before_its_commit(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with opened(make_config()) as store:
        release = asyncio.Event()
        entered = asyncio.Event()
        original = store._commit

        async def held(group: Any) -> None:
            entered.set()
            await release.wait()
            await original(group)

        monkeypatch.setattr(store, "_commit", held)
        task = asyncio.create_task(store.increment("k", 5))
        try:
            await wait_until(entered.is_set)
            await stays_false(task.done)
            assert await value(store, "k") == 0
            release.set()
            await wait_until(task.done)
            assert task.result().value() == 5
            assert await value(store, "k") == 5
        finally:
            release.set()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)


async def test_readers_see_nothing_of_a_transaction_before_its_commit(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held at the COMMIT statement, after the rows are written: the reader sees none of them."""
    async with opened(make_config()) as store:
        assert store._db is not None
        original = store._db.commit
        release = asyncio.Event()
        entered = asyncio.Event()

        async def held_commit() -> None:
            entered.set()
            await release.wait()
            await original()

        monkeypatch.setattr(store._db, "commit", held_commit)
        task = asyncio.create_task(store.increment("k", 5))
        try:
            await wait_until(entered.is_set)
            await stays_false(task.done)
            assert await value(store, "k") == 0
            assert await store.vector() == VersionVector()
            release.set()
            await wait_until(task.done)
            assert task.result().value() == 5
            assert await value(store, "k") == 5
        finally:
            release.set()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)


async def test_one_refused_request_never_rolls_back_the_others_of_its_group(
    make_config: MakeConfig,
) -> None:
    config = make_config()
    async with opened(config) as store:
        assert (await store.increment("big", INT64_MAX)).value() == INT64_MAX
        before = store.commits
        results = await asyncio.gather(
            store.increment("a", 1),
            store.increment("big", 1),
            store.increment("b", 2),
            store.batch([("c", 1), ("big", 1)]),
            store.increment("d", 3),
            return_exceptions=True,
        )
        assert store.commits - before == 1  # they really shared one group
        a, big, b, batch, d = results
        assert isinstance(big, Overflow)
        assert big.code == "overflow"
        assert isinstance(batch, Overflow)
        assert isinstance(a, CounterState) and a.value() == 1
        assert isinstance(b, CounterState) and b.value() == 2
        assert isinstance(d, CounterState) and d.value() == 3
        expected = {"a": 1, "b": 2, "c": 0, "d": 3, "big": INT64_MAX}
        assert {key: await value(store, key) for key in expected} == expected
    async with opened(config, seed=2) as store:
        assert {key: await value(store, key) for key in expected} == expected


async def test_the_write_queue_is_bounded(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with opened(make_config(queue_limit=5)) as store:
        release = asyncio.Event()
        entered = asyncio.Event()
        original = store._commit

        async def held(group: Any) -> None:
            entered.set()
            await release.wait()
            await original(group)

        monkeypatch.setattr(store, "_commit", held)
        first = asyncio.create_task(store.increment("k", 1))
        tasks: list[asyncio.Task[CounterState]] = []
        try:
            await wait_until(entered.is_set)  # the writer holds the first write
            tasks = [asyncio.create_task(store.increment("k", 1)) for _ in range(8)]
            accepted, refused = tasks[:5], tasks[5:]
            await wait_until(lambda: all(t.done() for t in refused))
            for task in refused:
                error = task.exception()
                assert isinstance(error, Unavailable)
                assert error.retry_after is not None and error.retry_after > 0
                assert error.definite is False
            assert not any(t.done() for t in [first, *accepted])
            release.set()
            states = await asyncio.wait_for(asyncio.gather(first, *accepted), 5)
            assert sorted(s.value() for s in states) == [1, 2, 3, 4, 5, 6]
            assert await value(store, "k") == 6
            # Room again once drained.
            assert (await store.increment("k", 1)).value() == 7
        finally:
            release.set()
            await asyncio.wait_for(asyncio.gather(first, *tasks, return_exceptions=True), 5)


async def test_close_answers_the_waiters_of_a_group_it_abandons(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit stuck past the shutdown timeout: close cancels the writer, and every waiter of
    that group must still get an answer (Unavailable, indefinite), not hang forever."""
    store = await Store.open(make_config(shutdown_timeout=0.1))
    release = asyncio.Event()
    entered = asyncio.Event()
    original = store._commit

    async def stuck(group: Any) -> None:
        entered.set()
        await release.wait()
        await original(group)

    monkeypatch.setattr(store, "_commit", stuck)
    task = asyncio.create_task(store.increment("k", 1))
    try:
        await wait_until(entered.is_set)
        await store.close()
        await wait_until(task.done, timeout=2.0)
        assert isinstance(task.exception(), Unavailable)
    finally:
        release.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


async def test_a_remote_entry_claiming_a_dot_allocated_in_the_same_group_is_refused_alone(
    make_config: MakeConfig,
) -> None:
    """An increment allocates (me, 2) for "a"; a page in the same group claims (me, 2) for "b".

    Across two groups the page is refused with ConflictingEntry (the dot is held for another
    key); within one group the page must be refused the same way, and the increment commit."""
    async with opened(make_config()) as store:
        me = store.actor
        await store.increment("a", 1)
        before = store.commits
        increment, applied = await asyncio.gather(
            store.increment("a", 1),
            store.apply([("b", Entry(me, 2, 7))]),
            return_exceptions=True,
        )
        assert store.commits - before <= 1  # one group
        assert isinstance(increment, CounterState), increment
        assert increment.value() == 2
        assert isinstance(applied, ConflictingEntry), applied
        assert await value(store, "a") == 2
        assert await value(store, "b") == 0


async def test_a_refused_page_does_not_refuse_another_page_of_its_group(
    make_config: MakeConfig,
) -> None:
    """Page 1 is refused (conflicting entry for "a"); nothing of it is applied, so its entry
    (y:1 for "c") must not make page 2's y:1 for "d" look like a dot held for another key."""
    async with opened(make_config()) as store:
        await store.apply([("a", Entry(X, 1, 3))])
        first, second = await asyncio.gather(
            store.apply([("c", Entry(Y, 1, 5)), ("a", Entry(X, 1, 99))]),
            store.apply([("d", Entry(Y, 1, 5))]),
            return_exceptions=True,
        )
        assert isinstance(first, ConflictingEntry)
        assert await value(store, "c") == 0
        assert not isinstance(second, BaseException), second
        assert second.applied == 1
        assert await value(store, "d") == 5


async def test_close_drains_queued_writes_then_refuses_new_ones(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config()
    store = await Store.open(config)
    actor = store.actor
    release = asyncio.Event()
    entered = asyncio.Event()
    original = store._commit

    async def held(group: Any) -> None:
        entered.set()
        await release.wait()
        await original(group)

    monkeypatch.setattr(store, "_commit", held)
    first = asyncio.create_task(store.increment("k", 1))
    queued: list[asyncio.Task[CounterState]] = []
    closing: asyncio.Task[None] | None = None
    try:
        await wait_until(entered.is_set)
        queued = [asyncio.create_task(store.increment("k", 1)) for _ in range(2)]
        await wait_until(lambda: store._queue.qsize() == 2)
        closing = asyncio.create_task(store.close())
        await wait_until(lambda: store._closing)
        with pytest.raises(Unavailable):
            await store.increment("k", 1)
        release.set()
        states = await asyncio.wait_for(asyncio.gather(first, *queued), 5)
        assert sorted(s.value() for s in states) == [1, 2, 3]
        await asyncio.wait_for(closing, 5)
    finally:
        release.set()
        await asyncio.gather(first, *queued, return_exceptions=True)
        if closing is not None:
            await asyncio.gather(closing, return_exceptions=True)
        await store.close()
    assert meta(config)["clean_shutdown"] == "1"
    async with opened(config, seed=2) as reopened:
        assert reopened.actor == actor
        assert await value(reopened, "k") == 3


async def test_local_commit_callbacks_fire_after_local_writes_only(
    make_config: MakeConfig,
) -> None:
    async with opened(make_config()) as store:
        calls: list[int] = []
        store.on_local_commit.append(lambda: calls.append(store.commits))
        await store.increment("k", 1)
        assert calls == [store.commits]
        await store.apply([("k", Entry(X, 1, 1))])
        await store.raise_vector(VersionVector({X: 1}))
        await store.increment("k", 0)  # a no-op writes nothing
        assert len(calls) == 1
        await store.batch([("a", 1), ("b", 1)])
        assert len(calls) == 2


# --- reset and overflow ---------------------------------------------------------------------


async def test_reset_cancels_what_it_saw_and_a_later_remote_entry_adds_its_new_part(
    make_config: MakeConfig,
) -> None:
    config = make_config()
    async with opened(config) as store:
        me = store.actor
        await store.increment("k", 5)
        result = await store.apply([("k", Entry(X, 1, 3))])
        assert (result.received, result.applied) == (1, 1)
        assert await value(store, "k") == 8
        state = await store.reset("k")
        assert state.value() == 0
        own = state.entries[me]
        assert (own.seq, own.total) == (2, 5)
        assert dict(own.floors) == {me: Floor(1, 5), X: Floor(1, 3)}
        assert await value(store, "k") == 0
        # x wrote again without seeing the reset: only its new part (10 - 3) counts.
        await store.apply([("k", Entry(X, 2, 10))])
        assert await value(store, "k") == 7
        assert (await store.increment("k", 1)).value() == 8
        # The floors are carried forward by the later increment.
        assert dict((await store.read("k")).entries[me].floors) == {me: Floor(1, 5), X: Floor(1, 3)}
    async with opened(config, seed=2) as store:
        assert await value(store, "k") == 8


async def test_a_value_beyond_int64_via_merge_is_exact_and_guarded_locally(
    make_config: MakeConfig,
) -> None:
    config = make_config()
    half = 3 * 2**61  # 1.5 * 2**62, within int64
    async with opened(config) as store:
        await store.apply([("k", Entry(X, 1, half)), ("k", Entry(Y, 1, half))])
        assert await value(store, "k") == 3 * 2**62
        assert INT64_MAX < 3 * 2**62
        with pytest.raises(Overflow):
            await store.increment("k", 1)
        assert await value(store, "k") == 3 * 2**62
        assert (await store.increment("k", -1)).value() == 3 * 2**62 - 1
        # Negative side too: moving further from zero is refused.
        await store.apply([("n", Entry(X, 2, -half)), ("n", Entry(Y, 2, -half))])
        assert await value(store, "n") == -3 * 2**62
        with pytest.raises(Overflow):
            await store.increment("n", -1)
        assert (await store.increment("n", 1)).value() == -3 * 2**62 + 1
    async with opened(config, seed=2) as store:
        assert await value(store, "k") == 3 * 2**62 - 1
        assert await value(store, "n") == -3 * 2**62 + 1


# --- apply ----------------------------------------------------------------------------------


async def test_apply_is_idempotent(make_config: MakeConfig) -> None:
    async with opened(make_config()) as store:
        page = [("a", Entry(X, 1, 3)), ("b", Entry(X, 2, 4)), ("a", Entry(Y, 1, 1))]
        first = await store.apply(page)
        assert (first.received, first.applied) == (3, 3)
        state = {key: await store.read(key) for key in ("a", "b")}
        assert {k: s.value() for k, s in state.items()} == {"a": 4, "b": 4}
        again = await store.apply(page)
        assert (again.received, again.applied) == (3, 0)
        assert {key: await store.read(key) for key in ("a", "b")} == state
        # A newer entry, then the older one again: the older one changes nothing.
        assert (await store.apply([("a", Entry(X, 3, 9))])).applied == 1
        newer = await store.read("a")
        assert newer.value() == 10
        assert (await store.apply([("a", Entry(X, 1, 3))])).applied == 0
        assert await store.read("a") == newer
        # Applying entries does not raise V: that happens only after a complete pull.
        assert await store.vector() == VersionVector()


async def test_a_conflicting_entry_refuses_the_whole_page(make_config: MakeConfig) -> None:
    async with opened(make_config()) as store:
        await store.apply([("a", Entry(X, 1, 3))])
        # Same dot, same key, different total.
        with pytest.raises(ConflictingEntry) as info:
            await store.apply([("c", Entry(Y, 1, 5)), ("a", Entry(X, 1, 99))])
        assert info.value.code == "conflicting_entry"
        assert await value(store, "c") == 0
        assert await value(store, "a") == 3
        # Same dot held for another key.
        with pytest.raises(ConflictingEntry):
            await store.apply([("c", Entry(Y, 1, 5)), ("b", Entry(X, 1, 3))])
        assert await value(store, "c") == 0
        assert await value(store, "b") == 0
        # The page is fine on its own.
        assert (await store.apply([("c", Entry(Y, 1, 5))])).applied == 1
        assert await value(store, "c") == 5


# --- idempotency records --------------------------------------------------------------------


async def test_a_record_keeps_what_its_reply_showed_and_old_bodies_still_replay(
    make_config: MakeConfig,
) -> None:
    """The store keeps no reply JSON: a record's reply column holds what the reply showed, in
    the codec's storage encoding. Rows of earlier releases hold the body itself; both replay
    as first answered, across a reopen, however the counters moved since."""
    config = make_config()
    async with opened(config) as store:
        first_new, first_old = await store.write([Write("k", 5, "new"), Write("j", 3, "old")])
    stored = dict(sql(config, "SELECT key, reply FROM records"))
    assert isinstance(json.loads(stored["k"]), list)  # not a reply body
    # What an earlier release stored for "old": the JSON body of its reply.
    legacy = json.dumps(reply_body(first_old), separators=(",", ":"))
    sql(config, "UPDATE records SET reply = ? WHERE key = 'j'", (legacy,))
    async with opened(config, seed=2) as store:
        await store.batch([("k", 1), ("j", 1)])
        again_new, again_old = await store.write([Write("k", 5, "new"), Write("j", 3, "old")])
    assert again_new.replayed and isinstance(again_new.reply, Reply)
    assert (
        reply_body(again_new)
        == reply_body(first_new)
        == {
            "key": "k",
            "value": 5,
            "version": {store.actor: 1},
        }
    )
    assert again_old.replayed and again_old.reply == json.loads(legacy)
    assert (again_new.state.value(), again_old.state.value()) == (6, 4)


# --- pull pages and the node-level vector ----------------------------------------------------


async def populate(store: Store) -> dict[str, CounterState]:
    """Local writes on a, b, c (a twice) and remote entries of x and y; every key's state."""
    await store.increment("a", 1)
    await store.increment("b", 2)
    await store.increment("c", 3)
    await store.increment("a", 4)
    await store.apply([("a", Entry(X, 1, 10)), ("b", Entry(X, 2, 20)), ("c", Entry(X, 4, 40))])
    await store.apply([("c", Entry(Y, 1, 100))])
    return {key: await store.read(key) for key in ("a", "b", "c")}


async def test_a_pull_from_nothing_returns_every_entry_in_actor_seq_order(
    make_config: MakeConfig,
) -> None:
    async with opened(make_config()) as store:
        states = await populate(store)
        expected = all_entries(states)
        assert len(expected) == 7
        page = await store.page(PullRequest(VersionVector()))
        assert list(page.entries) == expected
        assert page.next is None and page.last
        assert page.vector == await store.vector()
        assert page.node == "n1" and page.actor == store.actor


async def test_paging_with_the_cursor_walks_every_entry_once(make_config: MakeConfig) -> None:
    async with opened(make_config(page_entries=2)) as store:
        expected = all_entries(await populate(store))
        seen: list[tuple[str, Entry]] = []
        cursor: tuple[str, int] | None = None
        snapshot: VersionVector | None = None
        for _ in range(20):
            page = await store.page(PullRequest(VersionVector(), cursor, snapshot))
            if snapshot is None:
                snapshot = page.vector
                assert snapshot == await store.vector()
            assert page.vector == snapshot
            assert len(page.entries) <= 2
            seen.extend(page.entries)
            if page.next is None:
                break
            assert page.entries and page.next == page.entries[-1][1].dot
            cursor = page.next
        else:
            raise AssertionError("the walk did not end")
        assert seen == expected


async def test_a_pull_skips_what_the_vector_covers(make_config: MakeConfig) -> None:
    async with opened(make_config(page_entries=2)) as store:
        expected = all_entries(await populate(store))
        have = VersionVector({store.actor: 3, X: 2})
        wanted = [(k, e) for k, e in expected if e.seq > have.get(e.actor)]
        assert 0 < len(wanted) < len(expected)
        seen: list[tuple[str, Entry]] = []
        cursor: tuple[str, int] | None = None
        for _ in range(20):
            page = await store.page(PullRequest(have, cursor))
            seen.extend(page.entries)
            if page.next is None:
                break
            cursor = page.next
        assert seen == wanted


async def test_raise_vector_is_a_pointwise_max_and_an_idle_pull_is_empty(
    make_config: MakeConfig,
) -> None:
    async with opened(make_config()) as store:
        await populate(store)
        own = (await store.vector()).get(store.actor)
        assert own == 4
        await store.raise_vector(VersionVector({X: 4, Y: 1}))
        assert await store.vector() == VersionVector({store.actor: own, X: 4, Y: 1})
        await store.raise_vector(VersionVector({X: 2, Y: 7}))
        assert await store.vector() == VersionVector({store.actor: own, X: 4, Y: 7})
        vector = await store.vector()
        page = await store.page(PullRequest(vector))
        assert page.entries == () and page.next is None
        assert page.vector == vector


async def test_a_vector_beyond_our_counter_switches_to_a_new_actor(
    make_config: MakeConfig,
) -> None:
    config = make_config()
    async with opened(config) as store:
        old, incarnation = store.actor, store.incarnation
        await store.increment("k", 2)
        seq = (await store.vector()).get(old)
        await store.raise_vector(VersionVector({old: seq + 10, X: 1}))
        assert store.actor != old
        assert store.incarnation == incarnation + 1
        assert (await store.vector()).get(X) == 1
        state = await store.increment("k", 3)
        assert state.value() == 5
        assert state.entries[store.actor].seq == 1
        assert state.entries[old].seq == seq
        new = store.actor
    async with opened(config, seed=2) as store:
        assert store.actor == new
        assert (await store.increment("k", 1)).entries[new].seq == 2


async def test_an_applied_entry_of_our_own_actor_beyond_our_counter_switches_actor(
    make_config: MakeConfig,
) -> None:
    async with opened(make_config()) as store:
        old = store.actor
        await store.increment("k", 1)
        await store.apply([("j", Entry(old, 5, 9))])
        assert store.actor != old
        assert await value(store, "j") == 9
        assert (await store.increment("j", 1)).entries[store.actor].seq == 1


async def test_list_counters_pages_in_key_order(make_config: MakeConfig) -> None:
    async with opened(make_config()) as store:
        await store.batch([("b/1", 1), ("a", 2), ("b/2", 3), ("b/3", 4), ("c", 5)])
        first, cursor = await store.list_counters(prefix="b/", limit=2)
        assert [(k, s.value()) for k, s in first] == [("b/1", 1), ("b/2", 3)]
        assert cursor == "b/2"
        rest, cursor = await store.list_counters(prefix="b/", after=cursor, limit=2)
        assert [(k, s.value()) for k, s in rest] == [("b/3", 4)]
        assert cursor is None
        everything, cursor = await store.list_counters()
        assert [k for k, _ in everything] == ["a", "b/1", "b/2", "b/3", "c"]
        assert cursor is None


async def test_a_closed_store_refuses_reads_and_writes(make_config: MakeConfig) -> None:
    store = await Store.open(make_config())
    await store.close()
    with pytest.raises(Unavailable):
        await store.increment("k", 1)
    with pytest.raises(Unavailable):
        await store.read("k")


async def test_reads_in_flight_when_the_store_closes_finish_or_get_unavailable(
    make_config: MakeConfig,
) -> None:
    # A peer's pull served while this node shuts down: every read either completes or raises
    # Unavailable (a clean 503), never a raw "Connection closed" from the SQLite thread.
    store = await Store.open(make_config(page_entries=50))
    await store.batch([(f"k{i}", 1) for i in range(2_000)])
    pulls = [asyncio.create_task(store.page(PullRequest(VersionVector()))) for _ in range(20)]
    reads = [asyncio.create_task(store.read(f"k{i}")) for i in range(100)]
    await asyncio.sleep(0)  # let them start before the close begins
    await store.close()
    outcomes = await asyncio.gather(*pulls, *reads, return_exceptions=True)
    unexpected = [
        o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, Unavailable)
    ]
    assert not unexpected, unexpected
    with pytest.raises(Unavailable):
        await store.page(PullRequest(VersionVector()))


async def test_a_schema_2_database_is_migrated_with_every_entry_intact(
    make_config: MakeConfig,
) -> None:
    # Build the database as a vvstore of schema 2 left it: actor ids as text in entries, "{}"
    # for no floors. Migration 3 numbers the actors and must keep every entry as it was.
    config = make_config()
    path = db_path(config)
    path.parent.mkdir(parents=True)
    write_schema_2(
        path,
        [
            ("k", Y, 4, 7, "{}"),
            ("k", X, 2, 5, '{"y~0000000000000002":[3,6]}'),
            ("j", X, 1, 2, "{}"),
        ],
        vector=[(Y, 4)],
    )
    async with opened(config) as store:
        k = await store.read("k")
        assert sorted(k, key=lambda e: e.actor) == [
            Entry(X, 2, 5, {Y: Floor(3, 6)}),
            Entry(Y, 4, 7),
        ]
        assert k.value() == 5 + (7 - 6)
        assert (await store.read("j")).value() == 2
        page = await store.page(PullRequest(VersionVector()))
        assert [(key, e.actor, e.seq) for key, e in page.entries] == [
            ("j", X, 1),
            ("k", X, 2),
            ("k", Y, 4),
        ]
        assert (await store.vector()).get(Y) == 4
        # Writes after the migration number the node's own actor next to the migrated ones.
        state = await store.increment("k", 1)
        assert state.value() == 7
    assert sql(config, "SELECT MAX(version) FROM schema_migrations") == [(SCHEMA_VERSION,)]
    actors = dict(sql(config, "SELECT name, id FROM actors"))
    assert set(actors) == {X, Y, store.actor} and len(set(actors.values())) == 3
    assert sql(config, "SELECT COUNT(*) FROM entries WHERE floors = '{}'") == [(0,)]
    assert sql(config, "PRAGMA integrity_check") == [("ok",)]


async def test_a_failed_commit_takes_back_the_actor_numbers_it_gave(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config()
    async with opened(config) as store:
        real = store._db.executemany  # type: ignore[union-attr]
        failing = True

        async def fail_on_entries(statement: str, rows: Any) -> Any:
            if failing and statement.startswith("INSERT INTO entries"):
                raise sqlite3.OperationalError("disk I/O error")
            return await real(statement, rows)

        monkeypatch.setattr(store._db, "executemany", fail_on_entries)
        with pytest.raises(Unavailable):
            await store.increment("k", 1)
        assert store.actor not in store._actor_ids and not store._actor_names
        failing = False
        assert (await store.increment("k", 2)).value() == 2
        assert (await store.read("k")).value() == 2
    assert sql(config, "SELECT COUNT(*) FROM actors") == [(1,)]
