"""Which items go on one sync page: the sending side of the page limits.

A page carries every item of one seq (an entry, a record, marks made by that dot, a duplicate
set published at it) or none of
them, so it is cut only between seqs; it holds at most ``limit`` items, and items of at most
``budget`` encoded bytes, measured by vvstore.wire's own encoders (UTF-8 bytes, as the receiver
counts them). A first seq larger than the budget still goes, alone: it fits
:data:`~vvstore.wire.MAX_PAGE_BYTES`, as every legal entry does. With its vector within
:data:`~vvstore.wire.MAX_VECTOR_BYTES`, the page is then within
:data:`~vvstore.wire.MAX_PAGE_BODY_BYTES`, the most a receiver reads.

Pure core: standard library and the other core modules only; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from vvstore.clock import VersionVector
from vvstore.counter import Entry
from vvstore.idempotency import DuplicateSet, Record
from vvstore.wire import (
    MAX_PAGE_BYTES,
    Page,
    duplicate_set_size,
    entry_size,
    mark_size,
    record_size,
)

__all__ = ["PageBuilder"]

Dot = tuple[str, int]


class PageBuilder:
    """Collects a page's items one seq at a time, within its item and byte budgets."""

    def __init__(self, limit: int, budget: int) -> None:
        self.limit = limit
        self.budget = min(budget, MAX_PAGE_BYTES)
        #: Encoded bytes and number of the items taken so far.
        self.size = 0
        self.count = 0
        self.entries: list[tuple[str, Entry]] = []
        self.records: list[Record] = []
        self.marks: list[tuple[Dot, Dot]] = []
        self.duplicates: list[DuplicateSet] = []
        #: The dot of the last seq taken (the next page starts after it); None: none taken.
        self.cursor: Dot | None = None

    @property
    def room(self) -> int:
        """How many more items the page may hold."""
        return max(0, self.limit - self.count)

    def add(
        self,
        dot: Dot,
        entries: Sequence[tuple[str, Entry]] = (),
        records: Sequence[Record] = (),
        marked: Sequence[Dot] = (),
        duplicates: Sequence[DuplicateSet] = (),
    ) -> bool:
        """Take every item of the seq ``dot``, or none when they do not fit (False).

        The first seq is always taken, whatever its size.
        """
        marks = [(dot, m) for m in marked]
        count = len(entries) + len(records) + len(marks) + len(duplicates)
        cost = (
            sum(entry_size(key, entry) for key, entry in entries)
            + sum(record_size(record) for record in records)
            + sum(mark_size(by, m) for by, m in marks)
            + sum(duplicate_set_size(dup) for dup in duplicates)
        )
        if self.count and (self.count + count > self.limit or self.size + cost > self.budget):
            return False
        self.entries.extend(entries)
        self.records.extend(records)
        self.marks.extend(marks)
        self.duplicates.extend(duplicates)
        self.count += count
        self.size += cost
        self.cursor = dot
        return True

    def page(self, node: str, actor: str, vector: VersionVector, last: bool) -> Page:
        """The page of what was taken; its cursor is None when ``last``."""
        return Page(
            node,
            actor,
            vector,
            tuple(self.entries),
            None if last else self.cursor,
            tuple(self.records),
            tuple(self.marks),
            duplicates=tuple(self.duplicates),
        )
