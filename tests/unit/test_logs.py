"""vvstore.logs: the two thresholds, the JSON lines, and logging put back as it was."""

from __future__ import annotations

import io
import json
import logging
import sys

from vvstore.logs import JsonFormatter, configured


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("vvstore.sync", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    made.created = 0.25
    return made


def test_a_json_line_has_time_level_logger_message_and_extras() -> None:
    line = JsonFormatter().format(record("peer %s down\nfor %d s", "b", 3, peer="http://b"))
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "1970-01-01T00:00:00.250+00:00",
        "level": "WARNING",
        "logger": "vvstore.sync",
        "message": "peer b down\nfor 3 s",
        "peer": "http://b",
    }


def test_a_json_line_carries_the_exception_and_survives_unserialisable_extras() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        made = record("failed", thing=object())
        made.exc_info = sys.exc_info()
    doc = json.loads(JsonFormatter().format(made))
    assert "ValueError: boom" in doc["exception"]
    assert doc["thing"].startswith("<object object")


def test_vvstore_and_libraries_have_their_own_thresholds() -> None:
    stream = io.StringIO()
    with configured(level="DEBUG", format="text", libraries="WARNING", stream=stream):
        logging.getLogger("vvstore.store").debug("ours")
        logging.getLogger("aiosqlite").debug("executing noise")
        logging.getLogger("aiohttp.server").warning("theirs")
    lines = stream.getvalue().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "DEBUG vvstore.store: ours",
        "WARNING aiohttp.server: theirs",
    ]

    stream = io.StringIO()
    with configured(level="WARNING", format="json", libraries="DEBUG", stream=stream):
        logging.getLogger("vvstore").info("quiet")
        logging.getLogger("aiosqlite").debug("executing asked for")
    docs = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(d["logger"], d["message"]) for d in docs] == [("aiosqlite", "executing asked for")]


def test_logging_is_put_back_on_exit() -> None:
    root, ours = logging.getLogger(), logging.getLogger("vvstore")
    before = (list(root.handlers), root.level, ours.level)
    stream = io.StringIO()
    with configured(level="DEBUG", format="json", libraries="ERROR", stream=stream):
        assert len(root.handlers) == len(before[0]) + 1
    assert (list(root.handlers), root.level, ours.level) == before
    logging.getLogger("vvstore").error("after")
    assert stream.getvalue() == ""
