"""vvstore's hand-written code against the libraries that could replace it (issue 16).

``python -m bench.libraries [--rounds 7] [--page 5000] [--batch 1000] [--records 100000]
[--tables 2000] [--retries 20000]``

Four areas, each ours against well-kept libraries, on three counts:

- **size**: the lines of code we own for the job (non-blank, non-comment source lines of the
  functions that do it, or of the adapter a library would need, docstrings left out), and
  the library's installed size;
- **speed**: one realistic job per area, every implementation of an area timed in the same
  round, rounds interleaved (the order rotates each round); the figure is the median over the
  rounds, the ratio is over ours (below 1 is faster than ours);
- **behaviour**: what each does with bad or unusual input, printed side by side.

The areas: codec (decode and validate a sync page of ``--page`` entries and a ``/batch`` body of
``--batch`` items: :mod:`vvstore.wire` and :mod:`vvstore.codec` against msgspec Structs, the
prototype in :mod:`bench.msgspec_codec`, which keeps every check msgspec cannot express);
logging (format ``--records`` records as JSON: :class:`vvstore.logs.JsonFormatter` against
python-json-logger and structlog); retry (``--retries`` keyed writes that fail three times then
succeed: :class:`vvstore.calls.Attempts` against tenacity and stamina); the demo's tables
(render a phase's table ``--tables`` times: the demo's own against rich). A library that is not
installed is reported as such and left out. See docs/design.md, "Libraries and hand-written
code".
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.metadata
import inspect
import io
import json
import logging
import random
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vvstore import calls, codec, errors, logs, wire
from vvstore.clock import VersionVector
from vvstore.counter import Entry, Floor
from vvstore.harness import demo
from vvstore.idempotency import (
    Record,
)
from vvstore.replies import MalformedReply

LIBRARIES = ("msgspec", "python-json-logger", "structlog", "tenacity", "stamina", "rich")
_MODULES = {"python-json-logger": "pythonjsonlogger"}


def available(dist: str) -> bool:
    """True when the distribution ``dist`` can be imported here."""
    try:
        importlib.import_module(_MODULES.get(dist, dist))
    except ImportError:
        return False
    return True


def owned_lines(*objects: Any) -> int:
    """Non-blank lines of the objects' source, without docstrings and comment lines."""
    total = 0
    for obj in objects:
        source = textwrap.dedent(inspect.getsource(obj))
        skip: set[int] = set()
        for node in ast.walk(ast.parse(source)):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
                doc = body[0]
                if isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
                    skip.update(range(doc.lineno, (doc.end_lineno or doc.lineno) + 1))
        total += sum(
            1
            for number, line in enumerate(source.splitlines(), start=1)
            if number not in skip and line.strip() and not line.strip().startswith("#")
        )
    return total


def installed_kb(dist: str) -> int:
    """Kilobytes of the files the distribution ``dist`` installed (0 when absent)."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return 0
    return sum(f.size or 0 for f in files) // 1024


def import_ms(module: str, repeats: int = 3) -> float:
    """Median extra milliseconds a fresh interpreter takes to import ``module``."""

    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        return time.perf_counter() - start

    extra = [run(f"import {module}") - run("pass") for _ in range(repeats)]
    return max(0.0, statistics.median(extra)) * 1000


@dataclass
class Area:
    """One area: its implementations (name -> the job), their sizes and behaviour probes."""

    title: str
    job: str
    cases: dict[str, Callable[[], object]] = field(default_factory=dict)
    lines: dict[str, str] = field(default_factory=dict)
    probes: list[tuple[str, dict[str, str]]] = field(default_factory=list)


def measure(cases: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each case over ``rounds`` interleaved rounds (order rotates)."""
    names = list(cases)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def outcome(fn: Callable[[], object]) -> str:
    """``accepted`` or the error's class and message, cut to fit a table."""
    try:
        fn()
    except Exception as exc:
        shown = str(exc) if isinstance(exc, _Shown) else f"{type(exc).__name__}: {exc}"
        return shown[:150]
    return "accepted"


# --- codec: the sync page and the /batch body -------------------------------------------------


def sample_page(entries: int, seed: int = 7) -> bytes:
    """A version-3 page as a node sends it: ``entries`` entries of 3 actors over random keys
    (one in five with two floors), a record for every other entry, a mark per 50."""
    rng = random.Random(seed)
    actors = sorted(f"{n}~{rng.getrandbits(64):016x}" for n in "ABC")
    per = -(-entries // len(actors))
    page_entries, records = [], []
    for i in range(entries):
        actor, seq = actors[i // per], i % per + 1
        key = f"user:{rng.randrange(1_000_000)}:clicks"
        floors = {}
        if i % 5 == 0:
            floors = {a: Floor(rng.randrange(1, 1000), rng.randrange(-99, 10_000)) for a in actors}
            floors.pop(actor)
        page_entries.append((key, Entry(actor, seq, rng.randrange(1, 100_000), floors)))
        if i % 2 == 0:
            khash, fingerprint = rng.randbytes(16), rng.randbytes(8)
            records.append(Record(actor, seq, khash, fingerprint, key, rng.randrange(1, 100)))
    marks = tuple(((r.actor, r.seq), (r.actor, r.seq)) for r in records[::50])
    page = wire.Page(
        node="A",
        actor=actors[0],
        vector=VersionVector.from_dict({a: per for a in actors}),
        entries=tuple(page_entries),
        next=(actors[-1], per),
        records=tuple(records),
        marks=marks,
    )
    return wire.encode_page(page)


def sample_batch(items: int, seed: int = 7) -> bytes:
    """A ``/batch`` body as the benchmark sends it: ``items`` keys, each with its own key."""
    rng = random.Random(seed)
    increments = [
        {
            "key": f"user:{rng.randrange(1_000_000)}:clicks",
            "amount": rng.randrange(1, 10),
            "idempotency_key": f"{rng.getrandbits(64):016x}/{i}",
        }
        for i in range(items)
    ]
    return json.dumps({"increments": increments}).encode()


_BATCH_PROBES: tuple[tuple[str, bytes], ...] = (
    ("duplicate field", b'{"increments":[{"key":"a","amount":1,"amount":2}]}'),
    ("NaN amount", b'{"increments":[{"key":"a","amount":NaN}]}'),
    ("float amount 1.0", b'{"increments":[{"key":"a","amount":1.0}]}'),
    ("boolean amount", b'{"increments":[{"key":"a","amount":true}]}'),
    ("amount 2**63", b'{"increments":[{"key":"a","amount":9223372036854775808}]}'),
    ("amount of 5,000 digits", b'{"increments":[{"key":"a","amount":' + b"9" * 5000 + b"}]}"),
    ("unknown field", b'{"increments":[{"key":"a","colour":1}]}'),
    ("second item's key missing", b'{"increments":[{"key":"a"},{"amount":2}]}'),
    ("key is a lone surrogate", b'{"increments":[{"key":"\\ud800"}]}'),
    ("key has a control char", b'{"increments":[{"key":"a\\u0001"}]}'),
    ("key is '..'", b'{"increments":[{"key":".."}]}'),
    ("key of 300 bytes", b'{"increments":[{"key":"' + b"k" * 300 + b'"}]}'),
    ("body not UTF-8", b'{"increments":[{"key":"\xff"}]}'),
    ("arrays nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000),
)


def _page_probes(good: bytes) -> tuple[tuple[str, bytes], ...]:
    doc = json.loads(good)
    actor = doc["entries"][0][0]

    def changed(edit: Callable[[dict[str, Any]], None]) -> bytes:
        copy = json.loads(good)
        edit(copy)
        return json.dumps(copy).encode()

    def seq_zero(d: dict[str, Any]) -> None:
        d["entries"][2][1] = 0

    def swapped(d: dict[str, Any]) -> None:
        d["entries"][0], d["entries"][1] = d["entries"][1], d["entries"][0]

    def newline(d: dict[str, Any]) -> None:
        d["entries"][1][0] = actor + "\n"

    def spaced_hash(d: dict[str, Any]) -> None:
        # 32 characters, but 15 bytes: bytes.fromhex skips whitespace
        d["records"][0][2] = d["records"][0][2][:30] + "  "

    def version(d: dict[str, Any]) -> None:
        d["v"] = 9

    return (
        ("format version 9", changed(version)),
        ("entries[2] seq 0", changed(seq_zero)),
        ("entries out of order", changed(swapped)),
        ("actor id + newline", changed(newline)),
        ("key hash of 30 hex + 2 spaces", changed(spaced_hash)),
    )


def codec_area(page_entries: int, batch_items: int) -> tuple[Area, Area]:
    page, body = sample_page(page_entries), sample_batch(batch_items)
    pages = Area("codec: sync page", f"decode and validate a {page_entries:,}-entry page")
    batches = Area("codec: /batch body", f"decode and validate a {batch_items:,}-item body")
    pages.cases["ours (wire.decode_page)"] = lambda: wire.decode_page(page)
    batches.cases["ours (codec.decode_batch)"] = lambda: codec.decode_batch(body)
    pages.lines["ours (wire.decode_page)"] = str(
        owned_lines(
            wire.decode_page,
            wire._entry,
            wire._record,
            wire._mark,
            wire._duplicate_set,
            wire._peer_json,
            wire._check_version,
            wire._exact_fields,
            wire._actor,
            wire._seq,
            wire._total,
            wire._hex,
            wire._digest,
            wire._listed,
            wire._vector,
            wire._vector_in,
            wire._cursor,
            wire._ordered,
        )
    )
    batches.lines["ours (codec.decode_batch)"] = str(
        owned_lines(codec.decode_batch, codec._fields, codec._amount, codec._client_json)
    )
    decoders: dict[str, tuple[Callable[[bytes], object], Callable[[bytes], object]]] = {
        "ours": (wire.decode_page, codec.decode_batch)
    }
    if available("msgspec"):
        from bench import msgspec_codec as ms

        kb = installed_kb("msgspec")
        pages.cases["msgspec Structs"] = lambda: ms.decode_page(page)
        batches.cases["msgspec Structs"] = lambda: ms.decode_batch(body)
        batch_part = owned_lines(ms.Item, ms.Batch, ms.decode_batch) + 1
        page_part = owned_lines(ms) - batch_part
        pages.lines["msgspec Structs"] = f"{page_part} + {kb} kB installed"
        batches.lines["msgspec Structs"] = f"{batch_part} + {kb} kB"
        if ms.decode_page(page) != wire.decode_page(page):
            raise AssertionError("the msgspec prototype decodes the page differently")
        if ms.decode_batch(body) != codec.decode_batch(body):
            raise AssertionError("the msgspec prototype decodes the batch differently")
        decoders["msgspec"] = (ms.decode_page, ms.decode_batch)
    pages.cases["json.loads only (no checks)"] = lambda: json.loads(page)
    batches.cases["json.loads only (no checks)"] = lambda: json.loads(body)
    for label, raw in _page_probes(page):
        pages.probes.append(
            (label, {name: outcome(lambda d=d[0], raw=raw: d(raw)) for name, d in decoders.items()})
        )
    for label, raw in _BATCH_PROBES:
        batches.probes.append(
            (label, {name: outcome(lambda d=d[1], raw=raw: d(raw)) for name, d in decoders.items()})
        )
    return pages, batches


# --- logging ------------------------------------------------------------------------------------


def _records(count: int) -> list[logging.LogRecord]:
    """Records as the sync loop and the API log them: a message with arguments, ``extra=``
    fields on one in two, an exception on one in a hundred."""
    logger = logging.getLogger("vvstore.sync")
    try:
        raise errors.PeerTimeout("no reply in 5 s")
    except errors.PeerTimeout:
        exc_info = sys.exc_info()
    out = []
    for i in range(count):
        extra = {"peer": "B", "round": i, "entries": i % 5000} if i % 2 else None
        out.append(
            logger.makeRecord(
                "vvstore.sync",
                logging.WARNING,
                "sync.py",
                1,
                "round with %s failed after %d pages",
                ("B", i % 7),
                exc_info if i % 100 == 0 else None,
                extra=extra,
            )
        )
    return out


def _json_logger() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        json_ensure_ascii=False,
    )


def _structlog() -> logging.Formatter:
    import structlog

    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            structlog.processors.format_exc_info,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(ensure_ascii=False, default=repr),
        ],
    )


def logging_area(count: int) -> Area:
    area = Area("logging", f"format {count:,} records as JSON lines")
    records = _records(count)
    formatters: dict[str, logging.Formatter] = {"ours (logs.JsonFormatter)": logs.JsonFormatter()}
    area.lines["ours (logs.JsonFormatter)"] = str(owned_lines(logs.JsonFormatter) + 3)
    if available("python-json-logger"):
        formatters["python-json-logger"] = _json_logger()
        kb = installed_kb("python-json-logger")
        area.lines["python-json-logger"] = f"{owned_lines(_json_logger)} + {kb} kB installed"
    if available("structlog"):
        formatters["structlog ProcessorFormatter"] = _structlog()
        kb = installed_kb("structlog")
        area.lines["structlog ProcessorFormatter"] = f"{owned_lines(_structlog)} + {kb} kB"
    for name, formatter in formatters.items():
        area.cases[name] = lambda f=formatter: [f.format(r) for r in records]
    logger = logging.getLogger("vvstore.probe")

    class Unencodable:
        def __repr__(self) -> str:
            return "<Unencodable>"

    probes: dict[str, tuple[str, dict[str, Any] | None]] = {
        "newline, non-ASCII, an extra field": ("one\ntwo: é", {"peer": "B"}),
        "extra value not JSON": ("x", {"value": Unencodable()}),
        "extra fields 'time' and 'level'": ("x", {"time": "then", "level": 0}),
    }
    for label, (message, extra) in probes.items():
        record = logger.makeRecord(
            "vvstore.probe", logging.INFO, "f", 1, message, (), None, extra=extra
        )
        area.probes.append(
            (
                label,
                {
                    n: outcome(lambda f=f, r=record: _line(f.format(r)))
                    for n, f in formatters.items()
                },
            )
        )
    return area


def _line(text: str) -> None:
    """Raise the formatted line itself, when it is one line of JSON, for the probe's table."""
    if "\n" in text:
        raise ValueError(f"spans {text.count(chr(10)) + 1} lines")
    json.loads(text)
    raise _Shown(text)


class _Shown(Exception):
    """Not an error: carries a probe's output into :func:`outcome`'s table."""


# --- retry --------------------------------------------------------------------------------------


_FAILURES = 3  # each call fails this many times, then succeeds
_ATTEMPTS, _DELAY, _NODES = 5, 0.1, 3


def _ours(count: int) -> list[float]:
    """``count`` keyed writes, each failing :data:`_FAILURES` times: the delays asked for."""
    call = calls.increment("k", 1, "key-1")
    slept: list[float] = []
    for _ in range(count):
        plan = calls.Attempts(call, nodes=_NODES, start=0, attempts=_ATTEMPTS, retry_delay=_DELAY)
        for failure in range(_FAILURES):
            delay = plan.retry_after(errors.PeerTimeout(f"no reply ({failure})"))
            if delay is None:
                raise AssertionError("a keyed write is tried again")
            slept.append(delay)
    return slept


def _tenacity_policy(
    call: calls.Call[Any], current: list[int], sleep: Callable[[float], None]
) -> Any:
    """The client's retry rule (module docstring of :mod:`vvstore.calls`) on tenacity."""
    import tenacity

    def rotate(_: tenacity.RetryCallState) -> None:
        current[0] = (current[0] + 1) % _NODES

    tries = _NODES if call.is_read else _ATTEMPTS if call.keyed else 1
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(tries),
        wait=tenacity.wait_none() if call.is_read else tenacity.wait_exponential(_DELAY),
        retry=tenacity.retry_if_exception(
            lambda e: (
                isinstance(e, errors.VVStoreError)
                and not isinstance(e, MalformedReply)
                and not e.definite
            )
        ),
        before_sleep=rotate,
        sleep=sleep,
        reraise=True,
    )


def _tenacity(count: int) -> list[float]:
    call = calls.increment("k", 1, "key-1")
    slept: list[float] = []
    for _ in range(count):
        failed = [0]

        def attempt(failed: list[int] = failed) -> None:
            if failed[0] < _FAILURES:
                failed[0] += 1
                raise errors.PeerTimeout("no reply")

        _tenacity_policy(call, [0], slept.append)(attempt)
    return slept


def _stamina_policy(call: calls.Call[Any]) -> Any:
    """The same rule on stamina (the node moves on in the caller's loop)."""
    import stamina

    return stamina.retry_context(
        on=lambda e: (
            isinstance(e, errors.VVStoreError)
            and not isinstance(e, MalformedReply)
            and not e.definite
        ),
        attempts=_NODES if call.is_read else _ATTEMPTS if call.keyed else 1,
        timeout=None,
        wait_initial=0.0 if call.is_read else _DELAY,
        wait_max=3600.0,
        wait_jitter=0.0,
    )


def _stamina(count: int) -> list[float]:
    call = calls.increment("k", 1, "key-1")
    slept: list[float] = []
    for _ in range(count):
        current, failed = 0, 0
        for attempt in _stamina_policy(call):
            with attempt:
                if attempt.num > 1:
                    current = (current + 1) % _NODES
                if failed < _FAILURES:
                    failed += 1
                    slept.append(attempt.next_wait)
                    raise errors.PeerTimeout("no reply")
    return slept


def retry_area(count: int) -> Area:
    area = Area("retry", f"{count:,} keyed writes that fail {_FAILURES} times, then succeed")
    area.cases["ours (calls.Attempts)"] = lambda: _ours(count)
    area.lines["ours (calls.Attempts)"] = str(owned_lines(calls.Attempts))
    delays = {"ours": _ours(1)}
    if available("tenacity"):
        area.cases["tenacity (sleep injected)"] = lambda: _tenacity(count)
        kb = installed_kb("tenacity")
        area.lines["tenacity (sleep injected)"] = f"{owned_lines(_tenacity_policy)} + {kb} kB"
        delays["tenacity"] = _tenacity(1)
    if available("stamina"):
        import stamina
        import stamina.instrumentation

        # By default stamina logs every retry and counts it in Prometheus; ours does neither.
        stamina.instrumentation.set_on_retry_hooks([])

        def quick() -> list[float]:
            with stamina.set_testing(True, attempts=_ATTEMPTS):  # waits skipped
                return _stamina(count)

        area.cases["stamina (testing mode)"] = quick
        kb = installed_kb("stamina")
        area.lines["stamina (testing mode)"] = f"{owned_lines(_stamina_policy) + 2} + {kb} kB"
        delays["stamina"] = _stamina(1)  # really sleeps, once
    area.probes.append(
        ("delays of one call, s", {n: " ".join(f"{d:g}" for d in v) for n, v in delays.items()})
    )
    return area


# --- the demo's tables --------------------------------------------------------------------------


def _phase(nodes: int = 3, keys: int = 4) -> demo.PhaseResult:
    rng = random.Random(3)
    actors = [f"{n}~{rng.getrandbits(64):016x}" for n in "ABCDEFGH"[:nodes]]
    states = []
    for n, actor in enumerate(actors):
        version = {a: rng.randrange(1, 40_000) for a in actors}
        counters = {
            f"key-{k}": demo.CounterReading(rng.randrange(0, 2_000_000), version, ())
            for k in range(keys)
        }
        states.append(demo.NodeState("ABCDEFGH"[n], actor, version, counters))
    return demo.PhaseResult("healthy", [list("ABC")], states=states)


def _rich_table(phase: demo.PhaseResult, out: io.StringIO) -> None:
    from rich.console import Console
    from rich.table import Table

    keys = list(phase.states[0].counters)
    table = Table(box=None, pad_edge=False, header_style="dim")
    table.add_column("node")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_column("total", justify="right")
    table.add_column("version vector", style="dim")
    for state in phase.states:
        table.add_row(
            state.node,
            *(f"{state.counters[key].value:,}" for key in keys),
            f"{sum(state.values().values()):,}",
            demo._vector_text(state.version),
        )
    Console(file=out, no_color=True, width=80).print(table)


def tables_area(count: int) -> Area:
    area = Area("demo tables", f"render a 3-node, 4-key phase table {count:,} times")
    phase = _phase()

    def ours() -> str:
        out = io.StringIO()
        report = demo.TextReport(out, out)
        for _ in range(count):
            report._table(phase)
        return out.getvalue()

    area.cases["ours (TextReport._table)"] = ours
    area.lines["ours (TextReport._table)"] = str(owned_lines(demo.TextReport._table))
    widths: dict[str, str] = {}
    plain = io.StringIO()
    demo.TextReport(plain, plain)._table(phase)
    widths["ours (TextReport._table)"] = _widest(plain.getvalue())
    if available("rich"):

        def rich() -> str:
            out = io.StringIO()
            for _ in range(count):
                _rich_table(phase, out)
            return out.getvalue()

        area.cases["rich Table"] = rich
        area.lines["rich Table"] = (
            f"{owned_lines(_rich_table) - 2} + {installed_kb('rich')} kB, "
            f"import {import_ms('rich.table, rich.console'):.0f} ms"
        )
        out = io.StringIO()
        _rich_table(phase, out)
        widths["rich Table"] = _widest(out.getvalue())
    area.probes.append(("80 columns, vectors wider", widths))
    return area


def _widest(text: str) -> str:
    lines = text.rstrip("\n").splitlines()
    return f"{len(lines)} lines, widest {max(len(line) for line in lines)} columns"


# --- the report ---------------------------------------------------------------------------------


def report(areas: Sequence[Area], rounds: int) -> None:
    for area in areas:
        print(f"\n## {area.title}: {area.job} (median of {rounds} interleaved rounds)")
        figures = measure(area.cases, rounds)
        reference = next(iter(figures.values()))
        print(f"{'implementation':34} {'ms':>9} {'/ours':>6}  lines we own (+ library)")
        for name, seconds in figures.items():
            lines = area.lines.get(name, "-")
            print(f"{name:34} {seconds * 1000:9.2f} {seconds / reference:6.2f}  {lines}")
        for label, results in area.probes:
            print(f"  {label}:")
            for name, text in results.items():
                print(f"    {name:10.10} {text}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.libraries", description=__doc__)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--page", type=int, default=5000, help="entries in the sync page")
    parser.add_argument("--batch", type=int, default=1000, help="items in the /batch body")
    parser.add_argument("--records", type=int, default=100_000, help="log records formatted")
    parser.add_argument("--retries", type=int, default=20_000, help="calls retried")
    parser.add_argument("--tables", type=int, default=2000, help="tables rendered")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 50:
        parser.error("--rounds must be 1..50")
    if not 1 <= args.page <= wire.MAX_PAGE_ENTRIES or not 1 <= args.batch <= 1000:
        parser.error(f"--page must be 1..{wire.MAX_PAGE_ENTRIES}, --batch 1..1000")
    if min(args.records, args.retries, args.tables) < 1:
        parser.error("--records, --retries and --tables must be at least 1")
    missing = [lib for lib in LIBRARIES if not available(lib)]
    print(f"python {sys.version.split()[0]}; not installed: {', '.join(missing) or 'none'}")
    areas = [
        *codec_area(args.page, args.batch),
        logging_area(args.records),
        retry_area(args.retries),
        tables_area(args.tables),
    ]
    report(areas, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
