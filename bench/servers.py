"""The reference servers vvstore is measured against (rows 1, 2, 4 and 6 of the benchmark).

``python -m bench.servers MODE --port P --data-dir D [--durability full|normal]`` serves, on
127.0.0.1, the same routes as vvstore's write path with less and less behind them:

* ``ceiling``: ``POST /counters/{key}`` parses the same JSON body ``{"amount": 1}`` and answers
  a small JSON reply ``{"ok": true}``, with nothing behind it (the HTTP ceiling).
* ``durable``: the same handler plus one SQLite upsert through a group-committing writer
  (WAL, ``synchronous=FULL`` or ``NORMAL``): the writer takes everything queued, runs one
  ``executemany`` upsert and one commit, then answers every waiter. ``POST /batch`` takes
  ``{"increments": [{"key", "amount"}, ...]}`` as one queued operation (the minimal batch
  reference). What durability alone costs.
* ``per-request``: the seed's RDBMS approach: ``UPDATE counters SET value = value + ?`` and a
  commit per request (an ``INSERT`` when the row does not exist yet), one request at a time on
  one connection, with the same pragmas. ``POST /batch`` exists only to preload keys.

Every mode answers ``GET /health``. SQLite is reached through aiosqlite, as vvstore does, and
JSON through the standard library, as vvstore does. The process exits on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
from aiohttp import web

MODES = ("ceiling", "durable", "per-request")

SCHEMA = "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL)"
UPSERT = (
    "INSERT INTO counters (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = value + excluded.value"
)
UPDATE = "UPDATE counters SET value = value + ? WHERE key = ?"
INSERT = "INSERT INTO counters (key, value) VALUES (?, ?)"

OK = {"ok": True}


def _reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def _amount(body: bytes) -> int:
    obj = json.loads(body) if body.strip() else {}
    amount = obj.get("amount", 1) if isinstance(obj, dict) else None
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise web.HTTPBadRequest(text="amount must be an integer")
    return amount


def _items(body: bytes) -> list[tuple[str, int]]:
    obj = json.loads(body)
    items = obj.get("increments") if isinstance(obj, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= 1000:
        raise web.HTTPBadRequest(text="increments must be a list of 1 to 1000 items")
    out = []
    for item in items:
        key, amount = item.get("key"), item.get("amount", 1)
        if not isinstance(key, str) or not isinstance(amount, int) or isinstance(amount, bool):
            raise web.HTTPBadRequest(text="each item needs a string key and an integer amount")
        out.append((key, amount))
    return out


async def _open_db(data_dir: Path, durability: str) -> aiosqlite.Connection:
    data_dir.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(data_dir / "reference.sqlite3")
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
    await db.execute("PRAGMA busy_timeout=5000")
    await db.execute(SCHEMA)
    await db.commit()
    return db


class GroupWriter:
    """One task owns the connection: take all that is queued, one upsert, one commit, answer."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self.queue: asyncio.Queue[tuple[list[tuple[str, int]], asyncio.Future[None]]] = (
            asyncio.Queue()
        )
        self.commits = 0

    async def submit(self, items: list[tuple[str, int]]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((items, future))
        await future

    async def run(self) -> None:
        while True:
            ops = [await self.queue.get()]
            while not self.queue.empty():
                ops.append(self.queue.get_nowait())
            rows = [row for items, _ in ops for row in items]
            try:
                await self.db.executemany(UPSERT, rows)
                await self.db.commit()
                self.commits += 1
            except Exception as exc:  # fail the group, keep the writer
                with contextlib.suppress(Exception):
                    await self.db.rollback()
                for _, future in ops:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in ops:
                if not future.done():
                    future.set_result(None)


def make_app(mode: str, data_dir: Path, durability: str) -> web.Application:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    app = web.Application(client_max_size=2 * 1024 * 1024)
    state: dict[str, Any] = {}

    async def health(request: web.Request) -> web.Response:
        return _reply({"status": "ok", "mode": mode})

    async def ceiling(request: web.Request) -> web.Response:
        _amount(await request.read())
        return _reply(OK)

    async def durable(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        amount = _amount(await request.read())
        await state["writer"].submit([(key, amount)])
        return _reply(OK)

    async def durable_batch(request: web.Request) -> web.Response:
        await state["writer"].submit(_items(await request.read()))
        return _reply(OK)

    async def per_request(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        amount = _amount(await request.read())
        db: aiosqlite.Connection = state["db"]
        async with state["lock"]:  # one transaction at a time: a commit per request
            cursor = await db.execute(UPDATE, (amount, key))
            if cursor.rowcount == 0:
                await db.execute(INSERT, (key, amount))
            await db.commit()
        return _reply(OK)

    async def per_request_batch(request: web.Request) -> web.Response:
        items = _items(await request.read())
        db: aiosqlite.Connection = state["db"]
        async with state["lock"]:
            await db.executemany(UPSERT, items)
            await db.commit()
        return _reply(OK)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if mode == "ceiling":
            yield
            return
        db = await _open_db(data_dir, durability)
        state["db"] = db
        state["lock"] = asyncio.Lock()
        task = None
        if mode == "durable":
            state["writer"] = GroupWriter(db)
            task = asyncio.create_task(state["writer"].run())
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await db.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/health", health)
    handlers = {
        "ceiling": (ceiling, None),
        "durable": (durable, durable_batch),
        "per-request": (per_request, per_request_batch),
    }
    single, batch = handlers[mode]
    app.router.add_post("/counters/{key}", single)
    if batch is not None:
        app.router.add_post("/batch", batch)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__)
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--durability", choices=("full", "normal"), default="full")
    args = parser.parse_args(argv)
    web.run_app(
        make_app(args.mode, args.data_dir, args.durability),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
