"""Anti-entropy: one pull round as a function, and a loop that only schedules rounds.

A pull asks a peer for every entry newer than our node-level vector V (as it stands when each
page is asked for), page by page, applies each page idempotently, and raises V to the
responder's committed vector S only after the page marked last, only if every page carried the
same responder actor and S (and, for the responder's own actor, to the highest seq of it
received: see :meth:`PullRound.finish`). Because the responder
sends from its current committed state (which descends S) every entry whose seq is above V,
after the last page we hold, for every actor X and key, X's entry at least as new as the
responder held when it read S; the responder's own V was sound, so ``max(V, S)`` is sound.
Asking with a later V on a later page skips only what a committed V says we hold. A round that
fails, is abandoned or sees S change never raises V: soundness is never traded for progress.
An interrupted round keeps its cursor and S, and resumes while the responder's actor is the
same and its vector still descends S (the responder keeps S then); otherwise it starts afresh.

Vectors travel compact against a retirement map (:mod:`vvstore.retirement`): the one the
responder was last seen to hold, else our own. A responder holding another map answers the
first page with ``differs``; the round then fetches the responder's whole map, merges it into
ours, and asks again compact against exactly that map. A peer that refuses our format version
(an older release) is spoken to in the version before (down to 1, with whole vectors), and
asked again in the newest version every :data:`VERSION_RETRY` seconds.

This module declares the :class:`Replica` and :class:`Peer` protocols it needs and imports
neither aiohttp nor aiosqlite. Time and randomness are passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from vvstore.actor import node_of
from vvstore.clock import VersionVector
from vvstore.counter import Entry
from vvstore.errors import (
    MalformedPayload,
    PeerError,
    PeerTimeout,
    RoundAbandoned,
    UnsupportedVersion,
    VVStoreError,
)
from vvstore.idempotency import Dot, DuplicateSet, Record
from vvstore.retirement import Retirements
from vvstore.wire import (
    DUPLICATE_SETS_VERSION,
    FORMAT_VERSION,
    MAX_PAGE_BYTES,
    Notice,
    Page,
    PullRequest,
    RetiredPage,
    RetiredRequest,
)

__all__ = [
    "TROUBLE_LOG_INTERVAL",
    "VERSION_RETRY",
    "Applied",
    "Peer",
    "PeerLink",
    "PullRound",
    "Replica",
    "RoundResult",
    "SyncLoop",
    "behind",
    "fetch_retirements",
]

log = logging.getLogger(__name__)

#: Seconds before a peer that refused our newest format version is asked in it again.
VERSION_RETRY = 300.0
#: Seconds between two log lines about the same trouble with one peer.
TROUBLE_LOG_INTERVAL = 60.0
# Pages of a peer's retirement map one round may fetch (5,000 retirements each).
_MAX_RETIRED_PAGES = 1000


class Applied(Protocol):
    """What a round reads of :meth:`Replica.apply`'s answer (the store's ApplyResult has it)."""

    @property
    def applied(self) -> int:
        """Entries of the page that changed the local state (not already held)."""
        ...


class Replica(Protocol):
    """The local side of a round (the store provides it)."""

    async def vector(self) -> VersionVector: ...

    async def apply(
        self,
        entries: Sequence[tuple[str, Entry]],
        records: Sequence[Record],
        marks: Sequence[tuple[Dot, Dot]],
        sets: Sequence[DuplicateSet],
    ) -> Applied: ...

    async def rule_by_sets(self) -> None:
        """Let duplicate sets rule from now on (every peer speaks their format)."""

    async def raise_vector(self, vector: VersionVector) -> None: ...

    @property
    def retirements(self) -> Retirements:
        """The committed retirement map."""
        ...

    async def retire(self, finals: dict[str, int]) -> int: ...


class Peer(Protocol):
    """The remote side of a round (HTTP in production, the in-memory network in tests)."""

    @property
    def url(self) -> str: ...

    @property
    def bytes_received(self) -> int:
        """Bytes of sync responses received from this peer so far."""
        ...

    @property
    def bytes_sent(self) -> int:
        """Bytes of sync requests sent to this peer so far."""
        ...

    async def pull(self, request: PullRequest) -> Page: ...

    async def notify(self, notice: Notice) -> None: ...

    async def retired(self, request: RetiredRequest) -> RetiredPage: ...


async def fetch_retirements(peer: Peer) -> Retirements:
    """The peer's whole retirement map, page by page.

    :raises RoundAbandoned: the map changed while it was paged (its digest at the end is not
        that of what was fetched), or it took more than its page budget.
    """
    finals: dict[str, int] = {}
    after: str | None = None
    for _ in range(_MAX_RETIRED_PAGES):
        page = await peer.retired(RetiredRequest(after))
        finals.update(page.items)
        if page.next is None:
            fetched = Retirements(finals)
            if fetched.digest != page.digest:
                raise RoundAbandoned("the peer's retirements changed while they were fetched")
            return fetched
        if after is not None and page.next <= after:
            raise MalformedPayload("the peer's retirement cursor did not advance")
        after = page.next
    raise RoundAbandoned(f"the peer's retirements took more than {_MAX_RETIRED_PAGES} pages")


def behind(ours: VersionVector, theirs: VersionVector) -> int:
    """Events ``theirs`` has that ``ours`` lacks: sum over actors of max(0, theirs - ours)."""
    return sum(max(0, seq - ours.get(actor)) for actor, seq in theirs.items())


@dataclass(slots=True)
class RoundResult:
    """What one pull round did (the loop records it in the peer's :class:`PeerLink`).

    :ivar peer_url: the URL of the peer pulled from.
    :ivar complete: True once V was raised after the last page.
    :ivar pages: pages fetched and applied.
    :ivar entries: entries received; ``applied`` of them changed the local state.
    :ivar records: idempotency records received.
    :ivar responder_actor: the responder's actor id, from the first page.
    :ivar before: V as it stood when the round began (what the round asked beyond).
    :ivar snapshot: S, the responder's committed vector from the first page.
    :ivar retired: the retirement map the round's vectors were compact against (the
        responder's, as it stood), or None in version 1.
    :ivar fetched_retirements: whether the round fetched the responder's retirement map.
    """

    peer_url: str
    complete: bool = False
    pages: int = 0
    entries: int = 0
    records: int = 0
    applied: int = 0
    responder_actor: str | None = None
    before: VersionVector = field(default_factory=VersionVector)
    snapshot: VersionVector | None = None
    retired: Retirements | None = None
    fetched_retirements: bool = False


class PullRound:
    """One pull from one peer, steppable page by page (tests interleave steps with faults).

    ``await start()``, then ``await next_page()`` until it returns True, then
    ``await finish()`` raises V. :func:`pull_once` runs the three in order.
    """

    def __init__(
        self,
        replica: Replica,
        peer: Peer,
        *,
        max_pages: int,
        version: int = FORMAT_VERSION,
        retired: Retirements | None = None,
        page_bytes: int | None = None,
    ) -> None:
        self.replica = replica
        self.peer = peer
        self.max_pages = max_pages
        self.version = version
        #: The most page bytes to ask for (None: the responder's own size); see PeerLink.
        self.page_bytes = page_bytes
        # The highest seq of the responder's own actor this round received (see finish()).
        self._own_max = 0
        # The map to compact against: the responder's as last seen (None: ours).
        self._retired = retired
        self.result = RoundResult(peer_url=peer.url)
        self._cursor: tuple[str, int] | None = None
        self._done = False

    async def start(self) -> None:
        """Fix V as it stands when the round begins."""
        self.result.before = await self.replica.vector()
        if self.version >= 2 and self._retired is None:
            self._retired = self.replica.retirements

    async def next_page(self) -> bool:
        """Fetch and apply one page; True once the last page has been applied.

        After any of these errors the round is over and V is not raised.

        :raises RoundAbandoned: the round already took ``max_pages`` pages, or the responder
            changed identity, S or its retirement map mid-round.
        :raises MalformedPayload: the responder's cursor did not advance.
        :raises UnsupportedVersion: the responder does not speak the round's version.
        :raises PeerError: the call failed.
        """
        result = self.result
        if result.pages >= self.max_pages:
            raise RoundAbandoned(f"round exceeded its budget of {self.max_pages} pages")
        # V as it stands now, not as the round began: entries another round (with another
        # peer) brought in the meantime are not fetched again. Any committed V is sound here.
        vector = await self.replica.vector() if result.pages else result.before
        request = PullRequest(
            vector, self._cursor, result.snapshot, self.version, page_bytes=self.page_bytes
        )
        if self._retired is not None:
            request = dataclasses.replace(request, retired=self._retired)
        page = await self.peer.pull(request)
        result.pages += 1
        if page.differs is not None:
            if self._cursor is not None or result.fetched_retirements:
                raise RoundAbandoned("the responder's retirements changed during the round")
            # Learn the responder's map (ours grows by it), then ask again compact against it.
            fetched = await fetch_retirements(self.peer)
            if fetched.digest != page.differs:
                raise RoundAbandoned("the responder's retirements changed during the round")
            await self.replica.retire(dict(fetched))
            self._retired, result.fetched_retirements = fetched, True
            return False
        result.retired = self._retired
        if result.snapshot is None:
            result.snapshot, result.responder_actor = page.vector, page.actor
        elif page.vector != result.snapshot or page.actor != result.responder_actor:
            # Legitimate (a restart into a new incarnation; a vector that no longer descends S),
            # but the round cannot be completed: the next one starts afresh.
            raise RoundAbandoned("the responder's actor or vector changed during the round")
        if page.next is not None and self._cursor is not None and page.next <= self._cursor:
            raise MalformedPayload("the responder's cursor did not advance")
        if page.entries or page.records or page.marks or page.duplicates:
            # Entries only: the responder reads a page's entries before its other streams, so
            # every item at or below an entry's seq was committed before that read and is on
            # this page or a later one; a record seen without its entry proves nothing.
            own = page.actor
            seqs = [e.seq for _, e in page.entries if e.actor == own]
            self._own_max = max([self._own_max, *seqs])
            outcome = await self.replica.apply(
                page.entries, page.records, page.marks, page.duplicates
            )
            result.entries += len(page.entries)
            result.records += len(page.records)
            result.applied += outcome.applied
        self._cursor = page.next
        self._done = page.last
        return self._done

    async def finish(self) -> RoundResult:
        """Raise V to max(V, S), queued after every page's rows (so committed no earlier).

        For the responder's own actor r, V goes further, to the highest seq of an entry of r
        the round received: the responder writes r's items itself, each at a seq above all it
        wrote before, and the round read r's stream in seq order to its end, entries first on
        each page, so every item of r up to that seq (or a newer version of it) was on some
        page. Entries written during a long
        round are therefore not shipped again by the next one. For other actors the responder
        may hold a later seq without an earlier one (it is itself mid-round), so S it is.
        """
        if not self._done or self.result.snapshot is None:
            raise RuntimeError("finish() before the last page was applied")
        target = self.result.snapshot
        own = self.result.responder_actor
        if own is not None and self._own_max > target.get(own):
            target = target.merge(VersionVector({own: self._own_max}))
        await self.replica.raise_vector(target)
        self.result.complete = True
        return self.result


async def pull_once(
    replica: Replica,
    peer: Peer,
    *,
    max_pages: int,
    version: int = FORMAT_VERSION,
    retired: Retirements | None = None,
) -> RoundResult:
    """One complete pull round from ``peer`` (see :class:`PullRound`)."""
    round_ = PullRound(replica, peer, max_pages=max_pages, version=version, retired=retired)
    await round_.start()
    while not await round_.next_page():
        pass
    return await round_.finish()


@dataclass(slots=True)
class PeerLink:
    """What this node knows of one peer, for scheduling and for /status."""

    peer: Peer
    node: str | None = None
    reachable: bool = False
    last_success: float | None = None
    last_error: str | None = None
    behind: int = 0
    failures: int = 0
    #: Rounds that failed or were abandoned since start (``failures`` counts the latest run).
    failed_rounds: int = 0
    rounds: int = 0
    pulled_pages: int = 0
    pulled_entries: int = 0
    #: The peer's committed vector S from the last complete round (None until one completes).
    vector: VersionVector | None = None
    #: The merge of every vector the peer announced in a notice: what it is known to hold.
    heard: VersionVector = field(default_factory=VersionVector)
    #: The format version we speak to the peer, and when to try the newest again (if older).
    version: int = FORMAT_VERSION
    version_retry_at: float = 0.0
    #: The format version of the last complete round (0: none yet).
    spoken: int = 0
    #: The round an interruption left (None: none): the next round resumes it from its cursor.
    pending: PullRound | None = None
    #: Rounds resumed after an interruption, in this process.
    resumed: int = 0
    #: The page size asked of the peer (None: its own): halved after a page timed out, doubled
    #: back after each complete round.
    page_bytes: int | None = None
    #: One round at a time on this link (rounds with different peers run at once).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Set when a notice to this peer is due (its own task sends it).
    notice_due: asyncio.Event = field(default_factory=asyncio.Event)
    #: The S of this link's round in progress (None: none), and when it began, in rounds.
    active: VersionVector | None = None
    ticket: int = 0
    #: Set (and replaced) each time this link's round applies a page or ends.
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    def progressed(self) -> None:
        self.progress.set()
        self.progress = asyncio.Event()

    #: The peer's retirement map as last seen (what our vectors to it are compact against).
    retired: Retirements | None = None
    #: Peer trouble is logged when it starts or changes, then at most once a minute: when and
    #: what was last logged, and how many failures went unlogged since.
    trouble_logged_at: float | None = None
    trouble_logged: str | None = None
    trouble_unlogged: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.peer.url,
            "node": self.node,
            "reachable": self.reachable,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "behind": self.behind,
            "rounds": self.rounds,
            "pulled_pages": self.pulled_pages,
            "pulled_entries": self.pulled_entries,
            "pulled_bytes": self.peer.bytes_received,
            "format_version": self.version,
        }


class SyncLoop:
    """Schedules pull rounds with every peer and sends debounced write notices.

    Per peer, a round every ``interval`` seconds (+-20% jitter), sooner when a notice shows the
    peer has something we lack. A failing peer backs off, doubling from ``interval`` up to
    ``backoff_cap``, with jitter, and resets on success. Each peer has its own task and its own
    round, so a dead, blackholed or slow peer delays no other. Two rounds with different peers
    rarely fetch the same entries: each page asks only for what is above V as it stands then,
    and a round whose S another round (begun first, and making progress) already brings waits
    for it (:meth:`_yield_to`). A round interrupted by the link (a timeout, a reset connection,
    a refused call) is resumed from its cursor by the next one, and a page timeout halves the
    pages asked for. A failed round is logged with its context and never ends the loop.
    """

    def __init__(
        self,
        replica: Replica,
        peers: Sequence[Peer],
        *,
        node_id: str,
        actor: Callable[[], str],
        interval: float,
        backoff_cap: float,
        round_timeout: float,
        page_bytes: int = MAX_PAGE_BYTES,
        min_page_bytes: int = 4096,
        yield_timeout: float = 0.5,
        max_pages: int,
        notice_delay: float,
        rng: random.Random,
        clock: Callable[[], float],
        on_all_heard: Callable[[], None] | None = None,
    ) -> None:
        self.replica = replica
        self.links = [PeerLink(peer) for peer in peers]
        self.node_id = node_id
        self._current_actor = actor
        self.interval = interval
        self.backoff_cap = backoff_cap
        self.round_timeout = round_timeout
        self.page_bytes = page_bytes
        self.min_page_bytes = min_page_bytes
        self.yield_timeout = yield_timeout
        self._tickets = itertools.count(1)
        self.max_pages = max_pages
        self.notice_delay = notice_delay
        self._rng = rng
        self._clock = clock
        self._notice_due = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Called once, after a complete round with every peer since start (and its vector
        # applied): what the store's start-up fence waits for.
        self._on_all_heard = on_all_heard

    def start(self) -> None:
        for link in self.links:
            link.wake.set()  # a first round at once: it is what confirms our actor
            self._tasks.append(asyncio.create_task(self._run_link(link)))
        if self.links:
            self._tasks.append(asyncio.create_task(self._run_notices()))
            for link in self.links:
                self._tasks.append(asyncio.create_task(self._run_link_notices(link)))

    async def stop(self) -> None:
        """Cancel every link's task and wait for it; never raises (a node's close goes on)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("a sync task ended with an error while stopping")
        self._tasks.clear()

    def local_write(self) -> None:
        """Called after a local commit: schedule a debounced notice to every peer."""
        self._notice_due.set()

    def notice_received(self, notice: Notice, ours: VersionVector) -> None:
        """Pull soon from the sender, unless our vector already descends (holds all of) its.

        A notice in a newer format version than we speak to its sender (it was upgraded) makes
        us speak that version to it from the next round on.
        """
        known = [link for link in self.links if link.node == notice.node]
        for link in known:
            link.heard = link.heard.merge(notice.vector)
            if notice.version > link.version:  # the peer was upgraded: speak its version now
                link.version = min(notice.version, FORMAT_VERSION)
                link.wake.set()
        if not notice.differs and ours.descends(notice.vector):
            return
        for link in known or [link for link in self.links if link.node is None]:
            link.wake.set()

    def _delay(self, link: PeerLink) -> float:
        base = self.interval
        if link.failures:
            base = min(self.backoff_cap, self.interval * 2 ** min(link.failures, 30))
        return base * self._rng.uniform(0.8, 1.2)

    async def _run_link(self, link: PeerLink) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancellation
            # that arrives as the event is set, and close() would wait for this task forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._delay(link)):
                    await link.wake.wait()
            link.wake.clear()
            await self.round(link)

    async def round(self, link: PeerLink) -> RoundResult | None:
        """Run one pull round with ``link``'s peer, recording the outcome; never raises."""
        if link.version < FORMAT_VERSION and self._clock() >= link.version_retry_at:
            link.version = FORMAT_VERSION
        async with link.lock:
            try:
                async with asyncio.timeout(self.round_timeout):
                    result = await self._pull(link)
            except UnsupportedVersion as exc:
                link.pending = None
                if link.version > 1:
                    # An older release: speak the version before, at once, and ask again later.
                    link.version, link.version_retry_at = (
                        link.version - 1,
                        self._clock() + VERSION_RETRY,
                    )
                    log.info(
                        "%s speaks an older format (%s): using version %d",
                        link.peer.url,
                        exc,
                        link.version,
                    )
                    link.wake.set()
                await self._failed(link, exc)
                return None
            except (VVStoreError, TimeoutError, OSError) as exc:
                if isinstance(exc, PeerTimeout | TimeoutError):
                    # No byte for a read timeout (or a round over its time): smaller pages.
                    size = link.page_bytes or self.page_bytes
                    link.page_bytes = max(self.min_page_bytes, size // 2)
                if not isinstance(exc, PeerError | TimeoutError | OSError):
                    link.pending = None  # not a fault of the link: the next round starts afresh
                await self._failed(link, exc)
                return None
            except Exception as exc:
                # A bug, not a network fault: log it whole, and keep the loop alive.
                link.pending = None
                log.exception("pull from %s raised unexpectedly", link.peer.url)
                await self._failed(link, exc)
                return None
        if link.page_bytes is not None:  # the link works: back towards full pages
            doubled = 2 * link.page_bytes
            link.page_bytes = None if doubled >= self.page_bytes else doubled
        if link.failures:
            log.warning(
                "pull from %s works again after %d failed attempts", link.peer.url, link.failures
            )
            link.trouble_logged_at, link.trouble_logged, link.trouble_unlogged = None, None, 0
        link.failures = 0
        link.reachable = True
        link.last_success = self._clock()
        link.last_error = None
        link.retired = result.retired
        if result.responder_actor is not None:
            link.node = node_of(result.responder_actor)
        if result.snapshot is not None:
            # What the peer had (its S) that we still lack now the round is done: 0 once
            # caught up with it, whatever the round fetched.
            try:
                link.behind = behind(await self.replica.vector(), result.snapshot)
            except VVStoreError:  # the store is closing: the figure no longer matters
                link.behind = behind(result.before, result.snapshot)
            link.vector = result.snapshot
        link.rounds += 1
        link.pulled_pages += result.pages
        link.pulled_entries += result.entries
        link.spoken = link.version
        if all(other.spoken >= DUPLICATE_SETS_VERSION for other in self.links):
            # Every peer runs a release that carries duplicate sets: they may rule now.
            with contextlib.suppress(VVStoreError):
                await self.replica.rule_by_sets()
        if self._on_all_heard is not None and all(other.rounds for other in self.links):
            self._on_all_heard()
            self._on_all_heard = None
        return result

    async def _pull(self, link: PeerLink) -> RoundResult:
        """Run ``link``'s round to its end: the one an interruption left (resumed from its
        cursor), or a new one. A resumed round whose responder changed starts afresh at once.
        """
        round_ = link.pending
        resuming = round_ is not None and round_.version == link.version
        if round_ is not None and resuming:
            round_.max_pages = round_.result.pages + self.max_pages
            link.resumed += 1
        else:
            round_ = PullRound(
                self.replica,
                link.peer,
                max_pages=self.max_pages,
                version=link.version,
                retired=link.retired,
            )
            await round_.start()
        link.pending = round_  # until it completes or is abandoned: an interruption resumes it
        # A new round's first page is small: it learns the responder's S cheaply, and if another
        # round that began first already brings all of S, this one waits for it (below).
        round_.page_bytes = link.page_bytes
        if round_.result.pages == 0:
            floor = self.min_page_bytes
            round_.page_bytes = min(floor, link.page_bytes or floor)
        try:
            while not await round_.next_page():
                if link.active is None and round_.result.snapshot is not None:
                    link.active, link.ticket = round_.result.snapshot, next(self._tickets)
                    await self._yield_to(link)
                round_.page_bytes = link.page_bytes
                link.progressed()
            link.pending = None
            return await round_.finish()  # V raised before a waiting round goes on
        except RoundAbandoned:
            link.pending = None
            if resuming:
                # The responder's actor changed or its vector no longer descends S: afresh.
                log.info("%s changed since the round began: starting it again", link.peer.url)
                return await self._pull(link)
            raise
        finally:
            link.active = None
            link.progressed()

    async def _yield_to(self, link: PeerLink) -> None:
        """Wait while a round with another peer that began first is bringing all of this
        round's S and keeps making progress: what it brings raises V, and this round's next
        pages, asked with V as it stands, then skip it. Two rounds fetching the same entries at
        once is what this avoids. The wait goes on only while the other round applies a page
        at least every ``yield_timeout`` seconds: a slow, stalled or dead round delays nobody
        for longer.
        """
        mine = link.active
        assert mine is not None
        while True:
            blocker = next(
                (
                    other
                    for other in self.links
                    if other is not link
                    and other.active is not None
                    and other.ticket < link.ticket
                    and other.active.descends(mine)
                ),
                None,
            )
            if blocker is None:
                return
            try:
                async with asyncio.timeout(self.yield_timeout):
                    await blocker.progress.wait()
            except TimeoutError:
                return  # it is slow or stalls: go on alone

    async def _failed(self, link: PeerLink, exc: BaseException) -> None:
        link.failures += 1
        link.failed_rounds += 1
        link.reachable = False
        link.last_error = f"{type(exc).__name__}: {exc}"
        # Logged when the trouble starts or changes kind, then at most once a minute: a dead
        # peer does not fill the log with a line per backoff.
        kind, now = type(exc).__name__, self._clock()
        if (
            link.trouble_logged == kind
            and link.trouble_logged_at is not None
            and now - link.trouble_logged_at < TROUBLE_LOG_INTERVAL
        ):
            link.trouble_unlogged += 1
            return
        unlogged, link.trouble_unlogged = link.trouble_unlogged, 0
        link.trouble_logged_at, link.trouble_logged = now, kind
        ours: str
        try:
            # Retired actors held in full are left out, so the line stays O(live actors).
            retired = self.replica.retirements
            ours = str(retired.compact((await self.replica.vector()).to_dict()))
            if retired:
                ours += f" and {len(retired)} retired actors (digest {retired.digest})"
        except VVStoreError as read_error:
            ours = f"unknown ({read_error})"
        log.warning(
            "pull from %s failed (attempt %d, our vector %s): %s%s",
            link.peer.url,
            link.failures,
            ours,
            link.last_error,
            f" ({unlogged} more failures like it since the last line)" if unlogged else "",
        )

    async def _run_notices(self) -> None:
        while True:
            await self._notice_due.wait()
            if self.notice_delay:
                await asyncio.sleep(self.notice_delay)  # debounce: one notice per burst
            self._notice_due.clear()
            for link in self.links:
                link.notice_due.set()

    async def _run_link_notices(self, link: PeerLink) -> None:
        """Notices to one peer, one at a time, each with V as it stands when it is sent: a
        peer that does not answer delays notices to no other peer."""
        while True:
            await link.notice_due.wait()
            link.notice_due.clear()
            try:
                notice = Notice(self.node_id, self._current_actor(), await self.replica.vector())
            except VVStoreError:  # the store is closing
                continue
            await self._notify(link, notice)

    async def _notify(self, link: PeerLink, notice: Notice) -> None:
        """Send ``notice`` in the link's version, compact against the peer's map as last seen."""
        retired = link.retired or self.replica.retirements
        notice = dataclasses.replace(notice, version=link.version, retired=retired)
        try:
            await link.peer.notify(notice)
        except (VVStoreError, OSError, TimeoutError) as exc:
            log.debug("notice to %s failed: %s", link.peer.url, exc)
