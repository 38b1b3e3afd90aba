"""How ``vvstore serve`` logs: text lines or JSON objects, vvstore's threshold apart from others'.

Two thresholds, from two settings: ``log_level`` for vvstore's own loggers (``vvstore`` and
below) and ``log_libraries`` for everyone else's (aiosqlite, aiohttp, asyncio), so that DEBUG on
vvstore does not bring every statement aiosqlite runs with it. The JSON format writes one object
per line with ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, then any fields a
call passed with ``extra=``, and ``exception`` when there is one.

Process setup for the command line: it changes the root logger, so the library never calls it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final, TextIO

__all__ = ["TEXT_FORMAT", "JsonFormatter", "configured"]

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The attributes every LogRecord has; the others came from ``extra=``.
_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name not in doc:
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=repr)


@contextlib.contextmanager
def configured(
    *, level: str, format: str, libraries: str, stream: TextIO | None = None
) -> Iterator[None]:
    """Send every log record to ``stream`` (standard error) in ``format`` ("text" or "json").

    vvstore's loggers pass ``level`` and above, every other logger ``libraries`` and above.
    On exit the handler is removed and both thresholds are put back, so that a caller in the
    same process (a test calling the CLI's ``main``) finds logging as it was.
    """
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT))
    root, ours = logging.getLogger(), logging.getLogger("vvstore")
    before = root.level, ours.level
    root.addHandler(handler)
    root.setLevel(libraries)
    ours.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(before[0])
        ours.setLevel(before[1])
