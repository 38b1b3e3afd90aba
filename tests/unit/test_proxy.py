"""FaultProxy forwards loopback links and injects faults per direction, on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from vvstore.harness.proxy import MAX_DELAYED_BYTES, PIECE_BYTES, FaultProxy, Policy

DEADLINE_S = 5.0
QUIET_S = 0.3  # how long "nothing arrives" is watched for


class Target:
    """A tiny TCP server on 127.0.0.1: records what it receives, echoes it back if asked."""

    def __init__(self, *, echo: bool = True) -> None:
        self.echo = echo
        self.received = bytearray()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while chunk := await reader.read(65536):
                self.received += chunk
                if self.echo:
                    writer.write(chunk)
                    await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


class Clients:
    """Opens client connections and closes every one of them at teardown."""

    def __init__(self) -> None:
        self._writers: list[asyncio.StreamWriter] = []

    async def open(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self._writers.append(writer)
        return reader, writer

    async def close(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    async with FaultProxy() as p:
        yield p


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    t = Target()
    await t.start()
    yield t
    await t.close()


@pytest.fixture
async def sink() -> AsyncIterator[Target]:
    t = Target(echo=False)
    await t.start()
    yield t
    await t.close()


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    c = Clients()
    yield c
    await c.close()


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    """Poll until ``predicate`` holds, failing after DEADLINE_S."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def stays(predicate: Callable[[], bool], what: str) -> None:
    """Check for QUIET_S that ``predicate`` keeps holding."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + QUIET_S
    while loop.time() < deadline:
        assert predicate(), what
        await asyncio.sleep(0.01)


async def closed_by_proxy(reader: asyncio.StreamReader) -> bool:
    """True when the connection ends (EOF or reset) before the deadline."""
    try:
        data = await asyncio.wait_for(reader.read(1), DEADLINE_S)
    except ConnectionResetError:
        return True
    return data == b""


async def link_port(proxy: FaultProxy, target: Target, src: str = "A", dst: str = "B") -> int:
    assert target._server is not None
    return await proxy.add_link(src, dst, target._server.sockets[0].getsockname()[1])


async def test_bytes_pass_and_are_counted_both_ways(
    proxy: FaultProxy, target: Target, clients: Clients
) -> None:
    reader, writer = await clients.open(await link_port(proxy, target))

    writer.write(b"hello")
    await writer.drain()

    assert await asyncio.wait_for(reader.readexactly(5), DEADLINE_S) == b"hello"
    assert proxy.bytes_carried("A", "B") == 5
    assert proxy.bytes_carried("B", "A") == 5
    stats = json.loads(json.dumps(proxy.stats()))
    assert stats["connections"] == {
        "accepted": 1,
        "refused": 0,
        "aborted": 0,
        "reset_by_loss": 0,
        "stalled_by_loss": 0,
        "open": 1,
    }


async def test_a_blackholed_direction_carries_nothing(
    proxy: FaultProxy, target: Target, clients: Clients
) -> None:
    _, writer = await clients.open(await link_port(proxy, target))
    proxy.set_direction("A", "B", "drop")

    writer.write(b"x" * 1000)
    await writer.drain()

    await eventually(lambda: proxy.bytes_dropped("A", "B") == 1000, "1000 bytes dropped")
    await stays(
        lambda: target.received == b"" and proxy.bytes_carried("A", "B") == 0,
        "nothing reaches the target",
    )
    assert not writer.is_closing()


async def test_a_one_way_cut_passes_requests_and_drops_replies(
    proxy: FaultProxy, target: Target, clients: Clients
) -> None:
    reader, writer = await clients.open(await link_port(proxy, target))
    proxy.cut("B", "A")

    writer.write(b"ping")
    await writer.drain()

    await eventually(lambda: target.received == b"ping", "the request at the target")
    await eventually(lambda: proxy.bytes_dropped("B", "A") == 4, "the reply dropped")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), QUIET_S)
    assert proxy.bytes_carried("B", "A") == 0


async def test_refuse_resets_new_and_existing_connections(
    proxy: FaultProxy, target: Target, clients: Clients
) -> None:
    port = await link_port(proxy, target)
    existing, _ = await clients.open(port)
    await eventually(lambda: target.connections == 1, "the first connection")

    proxy.set_direction("A", "B", "refuse")

    assert await closed_by_proxy(existing)
    fresh, _ = await clients.open(port)
    assert await closed_by_proxy(fresh)
    await stays(lambda: target.connections == 1, "no new connection reaches the target")
    assert proxy.stats()["connections"]["refused"] == 1


async def test_delay_forwards_in_order_after_the_delay(
    proxy: FaultProxy, target: Target, clients: Clients
) -> None:
    loop = asyncio.get_running_loop()
    _, writer = await clients.open(await link_port(proxy, target))
    proxy.set_direction("A", "B", "delay", delay=0.3)

    started = loop.time()
    writer.write(b"first,")
    await writer.drain()
    # Lifting the delay mid-stream must not let later bytes overtake the delayed ones.
    await eventually(lambda: proxy.bytes_delayed("A", "B") == 6, "the first chunk held")
    proxy.set_direction("A", "B", "pass")
    writer.write(b"second")
    await writer.drain()

    await eventually(lambda: len(target.received) == 12, "both chunks")
    assert loop.time() - started >= 0.3
    assert target.received == b"first,second"
    assert proxy.bytes_carried("A", "B") == 12
    assert proxy.bytes_delayed("A", "B") == 0


async def test_a_delayed_bulk_transfer_arrives_whole_and_in_order(
    proxy: FaultProxy, clients: Clients
) -> None:
    sink = Target(echo=False)
    await sink.start()
    try:
        _, writer = await clients.open(await link_port(proxy, sink))
        proxy.set_direction("A", "B", "delay", delay=0.05)
        payload = bytes(range(256)) * (5 * MAX_DELAYED_BYTES // 256)

        writer.write(payload)
        await writer.drain()

        await eventually(lambda: len(sink.received) == len(payload), "the whole payload")
        assert sink.received == payload
    finally:
        await proxy.close()
        await sink.close()


async def test_heal_resets_blackholed_connections_only(
    proxy: FaultProxy, target: Target, clients: Clients
) -> None:
    port = await link_port(proxy, target)
    idle_reader, idle_writer = await clients.open(port)
    blackholed_reader, blackholed_writer = await clients.open(port)
    await eventually(lambda: target.connections == 2, "two connections")
    proxy.partition({"A"}, {"B"})
    blackholed_writer.write(b"lost in the partition")
    await blackholed_writer.drain()
    await eventually(lambda: proxy.bytes_dropped("A", "B") > 0, "bytes dropped")

    proxy.heal()

    assert await closed_by_proxy(blackholed_reader)
    idle_writer.write(b"still here")
    assert await asyncio.wait_for(idle_reader.readexactly(10), DEADLINE_S) == b"still here"
    reader, writer = await clients.open(port)
    writer.write(b"new")
    assert await asyncio.wait_for(reader.readexactly(3), DEADLINE_S) == b"new"
    assert proxy.policies() == {}


async def test_partition_sets_directions_and_applies_whoever_opened(
    proxy: FaultProxy, clients: Clients
) -> None:
    node_a, node_b = Target(), Target()
    await node_a.start()
    await node_b.start()
    try:
        a_to_b = await link_port(proxy, node_b, "A", "B")
        b_to_a = await link_port(proxy, node_a, "B", "A")

        proxy.partition({"A"}, {"B", "C"})

        drop, ok = Policy("drop"), Policy("pass")
        assert proxy.policy("A", "B") == proxy.policy("B", "A") == drop
        assert proxy.policy("A", "C") == proxy.policy("C", "A") == drop
        assert proxy.policy("B", "C") == proxy.policy("C", "B") == ok
        assert proxy.policy("A", "client") == ok

        # Only A -> B is cut: A's requests to B vanish, B's requests to A pass but A's replies
        # on B's connection vanish.
        proxy.heal()
        proxy.cut("A", "B")
        _, from_a = await clients.open(a_to_b)
        reply_reader, from_b = await clients.open(b_to_a)
        from_a.write(b"A asks")
        from_b.write(b"B asks")
        await eventually(lambda: node_a.received == b"B asks", "B's request at A")
        await eventually(lambda: proxy.bytes_dropped("A", "B") == 12, "both A->B flows dropped")
        assert node_b.received == b""
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reply_reader.read(1), QUIET_S)
    finally:
        await proxy.close()
        await node_a.close()
        await node_b.close()


async def test_arguments_are_checked(proxy: FaultProxy) -> None:
    for host in ("10.0.0.1", "0.0.0.0", "::1", "localhost"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
            await proxy.add_link("A", "B", 9, host=host)
    with pytest.raises(ValueError, match="more than one group"):
        proxy.partition({"A"}, {"A", "B"})
    with pytest.raises(ValueError, match="collection of names"):
        proxy.partition("AB", "C")
    with pytest.raises(ValueError, match="needs delay"):
        proxy.set_direction("A", "B", "delay")
    with pytest.raises(ValueError, match="mode"):
        proxy.set_direction("A", "B", "slow")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no link"):
        proxy.isolate("A")


async def test_isolate_drops_both_ways_to_every_other_name(
    proxy: FaultProxy, target: Target
) -> None:
    await link_port(proxy, target, "A", "B")
    await link_port(proxy, target, "C", "A")

    proxy.isolate("A")

    assert set(proxy.policies()) == {("A", "B"), ("B", "A"), ("A", "C"), ("C", "A")}


async def test_close_leaves_no_task_pending(target: Target, clients: Clients) -> None:
    proxy = FaultProxy()
    port = await link_port(proxy, target)
    quiet, _ = await clients.open(port)
    _, blackholed = await clients.open(port)
    _, delayed = await clients.open(await link_port(proxy, target, "C", "B"))
    await eventually(lambda: target.connections == 3, "three connections")
    proxy.set_direction("A", "B", "drop")
    proxy.set_direction("C", "B", "delay", delay=60.0)
    blackholed.write(b"dropped")
    delayed.write(b"waiting a minute")
    await eventually(lambda: proxy.bytes_dropped("A", "B") == 7, "bytes dropped")

    await proxy.close()
    await proxy.close()

    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("faultproxy")] == []
    assert await closed_by_proxy(quiet)
    with pytest.raises(RuntimeError, match="closed"):
        await proxy.add_link("X", "Y", 9)


async def test_http_through_a_link_survives_partition_and_heal(proxy: FaultProxy) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        node_port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{await proxy.add_link('client', 'A', node_port)}/"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
            async with session.get(url) as response:
                assert await response.text() == "hello"

            proxy.partition({"client"}, {"A"})
            with pytest.raises(TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=QUIET_S)):
                    pass

            proxy.heal()
            async with session.get(url) as response:
                assert await response.text() == "hello"
        assert proxy.bytes_dropped("client", "A") > 0
    finally:
        await proxy.close()
        await runner.cleanup()


def numbered(size: int) -> bytes:
    """``size`` bytes whose pattern (period 251, prime) shows any loss or reordering."""
    return bytes(i % 251 for i in range(size))


async def test_a_bandwidth_limit_paces_a_bulk_transfer(
    proxy: FaultProxy, sink: Target, clients: Clients
) -> None:
    loop = asyncio.get_running_loop()
    _, writer = await clients.open(await link_port(proxy, sink))
    proxy.limit("A", "B", 100_000)
    payload = numbered(200_000)

    started = loop.time()
    writer.write(payload)
    await writer.drain()

    await eventually(lambda: len(sink.received) == len(payload), "the whole payload")
    assert loop.time() - started >= 1.8  # 200 KB at 100 KB/s
    assert sink.received == payload
    assert proxy.bytes_carried("A", "B") == len(payload)


async def test_connections_in_one_direction_share_its_bandwidth(
    proxy: FaultProxy, sink: Target, clients: Clients
) -> None:
    loop = asyncio.get_running_loop()
    port = await link_port(proxy, sink)
    _, first = await clients.open(port)
    _, second = await clients.open(port)
    await eventually(lambda: sink.connections == 2, "two connections")
    proxy.limit("A", "B", 100_000)

    started = loop.time()
    first.write(b"1" * 100_000)
    second.write(b"2" * 100_000)

    await eventually(lambda: len(sink.received) >= 100_000, "half of the bytes")
    # Sharing, not taking turns: so far each connection has had about half of the wire.
    assert sink.received.count(b"1") >= 30_000
    assert sink.received.count(b"2") >= 30_000
    await eventually(lambda: len(sink.received) == 200_000, "all the bytes")
    assert loop.time() - started >= 1.8  # 200 KB in all at 100 KB/s


async def test_bandwidth_and_latency_add_up(
    proxy: FaultProxy, sink: Target, clients: Clients
) -> None:
    loop = asyncio.get_running_loop()
    _, writer = await clients.open(await link_port(proxy, sink))
    proxy.limit("A", "B", 100_000, delay=0.5)
    payload = numbered(50_000)

    started = loop.time()
    writer.write(payload)
    await writer.drain()

    await stays(lambda: sink.received == b"", "nothing arrives within the latency")
    await eventually(lambda: len(sink.received) == len(payload), "the whole payload")
    assert loop.time() - started >= 0.95  # 0.5 s on the wire, then 0.5 s of latency
    assert sink.received == payload
    assert proxy.policy("A", "B") == Policy("delay", 0.5, 100_000.0)
    stats = json.loads(json.dumps(proxy.stats()))
    a_to_b = next(d for d in stats["directions"] if (d["from"], d["to"]) == ("A", "B"))
    assert a_to_b == {
        "from": "A",
        "to": "B",
        "mode": "delay",
        "delay": 0.5,
        "bandwidth": 100_000.0,
        "loss": 0.0,
        "carried": len(payload),
        "dropped": 0,
        "delayed": 0,
    }


async def test_a_bandwidth_limit_leaves_the_other_direction_alone(
    proxy: FaultProxy, target: Target, clients: Clients
) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await clients.open(await link_port(proxy, target))
    proxy.limit("B", "A", 20_000)  # the echoes only
    payload = numbered(20_000)

    started = loop.time()
    writer.write(payload)
    await writer.drain()

    await eventually(lambda: target.received == payload, "the request")
    assert proxy.bytes_carried("B", "A") < 10_000, "the request was paced like the echo"
    assert await asyncio.wait_for(reader.readexactly(len(payload)), DEADLINE_S) == payload
    assert loop.time() - started >= 0.9  # 20 KB of echo at 20 KB/s
    assert proxy.policy("A", "B") == Policy()


async def test_a_drop_under_a_bandwidth_limit_applies_within_a_piece(
    proxy: FaultProxy, sink: Target, clients: Clients
) -> None:
    _, writer = await clients.open(await link_port(proxy, sink))
    proxy.limit("A", "B", 20_000)  # a piece every 0.2 s
    writer.write(b"x" * 60_000)
    await writer.drain()
    await eventually(lambda: len(sink.received) >= PIECE_BYTES, "the first piece")

    proxy.cut("A", "B")
    carried = proxy.bytes_carried("A", "B")

    await eventually(
        lambda: proxy.bytes_carried("A", "B") + proxy.bytes_dropped("A", "B") == 60_000,
        "the rest dropped",
    )
    assert proxy.bytes_carried("A", "B") == carried == len(sink.received)


async def test_bandwidth_arguments_are_checked(proxy: FaultProxy) -> None:
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="bandwidth must be a finite number"):
            proxy.set_direction("A", "B", "pass", bandwidth=bad)
    with pytest.raises(ValueError, match="bandwidth must be a finite number"):
        proxy.set_direction("A", "B", "pass", bandwidth=True)
    with pytest.raises(ValueError, match="bandwidth must be a finite number"):
        proxy.set_direction("A", "B", "pass", bandwidth="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bandwidth must be a finite number"):
        proxy.limit("A", "B", math.inf)
    for mode in ("drop", "refuse"):
        with pytest.raises(
            ValueError, match=f"bandwidth only applies to modes 'pass' and 'delay', not '{mode}'"
        ):
            proxy.set_direction("A", "B", mode, bandwidth=1000)
    for rate in (0, -5.0, math.nan):
        with pytest.raises(ValueError, match="limit needs bytes_per_second > 0"):
            proxy.limit("A", "B", rate)
    with pytest.raises(ValueError, match="limit needs bytes_per_second > 0"):
        proxy.limit("A", "B", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delay must be a finite number"):
        proxy.limit("A", "B", 1000, delay=-1.0)
    assert proxy.policies() == {}  # a refused call sets nothing

    proxy.limit("A", "B", 1000)
    assert proxy.policy("A", "B") == Policy("pass", 0.0, 1000.0)
    assert proxy.policy("B", "A") == Policy()
    proxy.set_direction("A", "B", "pass")
    assert proxy.policies() == {}


def _lost(proxy: FaultProxy) -> int:
    connections = proxy.stats()["connections"]
    return int(connections["reset_by_loss"] + connections["stalled_by_loss"])


async def _send_chunks(
    proxy: FaultProxy, port: int, sink: Target, clients: Clients, count: int
) -> None:
    """Open ``count`` connections in turn, each sending one 100-byte chunk, and wait until that
    chunk was either delivered or lost before the next (so draws meet chunks in a fixed order)."""
    for number in range(count):
        before, received = _lost(proxy), len(sink.received)
        _, writer = await clients.open(port)
        writer.write(b"x" * 100)
        await writer.drain()
        await eventually(
            lambda before=before, received=received: (
                _lost(proxy) + (len(sink.received) - received) // 100 == before + 1
            ),
            f"chunk {number} delivered or lost",
        )


async def test_a_lossy_direction_resets_or_stalls_connections(
    proxy: FaultProxy, sink: Target, clients: Clients
) -> None:
    port = await link_port(proxy, sink)
    proxy.seed_loss(7)
    proxy.set_direction("A", "B", "pass", loss=1.0)

    await _send_chunks(proxy, port, sink, clients, 20)

    connections = proxy.stats()["connections"]
    assert connections["reset_by_loss"] > 0 and connections["stalled_by_loss"] > 0
    assert _lost(proxy) == 20
    assert sink.received == b""  # a lost chunk is never delivered
    assert proxy.bytes_dropped("A", "B") == 100 * connections["stalled_by_loss"]
    assert connections["open"] == connections["stalled_by_loss"]  # stalled ones stay open...

    proxy.set_direction("A", "B", "pass")  # ...until the direction stops being lossy
    await eventually(lambda: proxy.stats()["connections"]["open"] == 0, "stalled ones reset")
    assert proxy.stats()["connections"]["aborted"] == 20


async def test_a_partial_loss_loses_some_chunks_and_the_seed_fixes_which(
    sink: Target, clients: Clients
) -> None:
    outcomes = []
    for _ in range(2):
        async with FaultProxy() as proxy:
            port = await link_port(proxy, sink)
            proxy.seed_loss(2026)
            proxy.set_direction("A", "B", "pass", loss=0.3)
            sink.received.clear()
            await _send_chunks(proxy, port, sink, clients, 40)
            connections = proxy.stats()["connections"]
            lost = _lost(proxy)
            assert len(sink.received) == 100 * (40 - lost)
            outcomes.append((connections["reset_by_loss"], connections["stalled_by_loss"]))
    assert outcomes[0] == outcomes[1]
    assert 0 < sum(outcomes[0]) < 40


async def test_loss_arguments_are_checked(proxy: FaultProxy) -> None:
    for loss in (-0.1, 1.5, math.nan, True):
        with pytest.raises(ValueError, match="loss must be"):
            proxy.set_direction("A", "B", "pass", loss=loss)
    with pytest.raises(ValueError, match="loss only applies"):
        proxy.set_direction("A", "B", "drop", loss=0.5)
    proxy.set_direction("A", "B", "delay", 0.04, 250_000, loss=0.05)
    assert proxy.policy("A", "B") == Policy("delay", 0.04, 250_000.0, 0.05)
