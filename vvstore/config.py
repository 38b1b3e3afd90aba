"""NodeConfig: everything one vvstore node is told, in one frozen, validated object.

The settings are one table: each field of :class:`NodeConfig` is declared once, with
:func:`setting` (``field(metadata=row(...))`` for the two without a default), which carries its
default, a one-line help with its unit, and the range, choices or check it must satisfy; its
type is the field's annotation. Everything else is derived from that declaration:

* :data:`SETTINGS`, the table itself (name, type, default, help, unit, range, choices, whether
  secret), one :class:`Setting` per field in declaration order;
* the validation in :meth:`NodeConfig.__post_init__`, generic over the table, plus the rules
  that tie fields together, written out;
* the ``vvstore serve`` flags (vvstore.cli): one per setting, ``--<name-with-dashes>``, with the
  table's type, default and help; a secret gets ``--<name>-file`` instead, since a secret is
  never a flag's value (it would show in ``ps`` and shell history);
* the environment variable of each setting, ``VVSTORE_<NAME>`` (``VVSTORE_<NAME>_FILE`` for a
  secret), read by :func:`env_layer`;
* the key of each setting in a TOML config file, ``<name>`` (``<name>_file`` for a secret),
  read by :func:`file_layer`.

Where a value comes from is a :class:`Sourced`; :func:`resolve` picks, for each setting, the
first source that gives it: flag, then environment, then file, then the table's default.

Adding a setting is therefore one declaration here (with a comment saying why its default is
what it is) and a row in docs/cli.md (a test fails until it is there).

Validation happens at construction and names the field, the value and the allowed range, so a
bad flag fails before anything is opened.

Pure core: standard library, :mod:`vvstore.errors` and :mod:`vvstore.auth` (for what a usable
secret is); no I/O: the environment is passed in as a mapping and a config file as its bytes,
and secret files are read by the caller (vvstore.cli).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from vvstore.auth import load_secret
from vvstore.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "NODE_ID_RE",
    "SETTINGS",
    "Durability",
    "LogLevel",
    "NodeConfig",
    "SecretRef",
    "Setting",
    "Source",
    "Sourced",
    "env_layer",
    "file_layer",
    "is_loopback_host",
    "missing_required",
    "parse_peer",
    "resolve",
]

NODE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")

Durability = Literal["full", "normal"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

#: The environment variable of a setting is this prefix and its name in capitals.
ENV_PREFIX: Final = "VVSTORE_"

#: A check beyond range and choices: ``(name, value)`` -> the error message, or None if valid.
Check = Callable[[str, Any], str | None]

# The groups settings are shown in (``vvstore serve --help``), in the order they first appear.
NODE: Final = "node"
SYNC: Final = "sync with peers"
WRITES: Final = "writes"
SECURITY: Final = "security"
IDEMPOTENCY: Final = "idempotency records"
PROCESS: Final = "process"


def is_loopback_host(host: str) -> bool:
    """True when ``host`` names a loopback address (127.0.0.0/8, ::1 or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the settings table: a :class:`NodeConfig` field and all that is said of it.

    ``type`` is the type of one value: ``str``, ``int`` or ``float``, taken from the field's
    annotation (``Literal[...]`` gives ``str`` and :attr:`choices`, ``tuple[T, ...]`` gives
    ``T`` and :attr:`repeated`, ``T | None`` gives ``T``). :attr:`default` is
    :data:`dataclasses.MISSING` for a required setting.
    """

    name: str
    type: type[str] | type[int] | type[float]
    default: object
    help: str
    group: str
    #: Unit of the value, plural ("seconds", "bytes", "pages"); empty when it has none.
    unit: str = ""
    #: Inclusive bounds (ints: ``low <= value <= high``; floats: ``value >= low``).
    low: float | None = None
    high: float | None = None
    #: A float that must be > 0.
    positive: bool = False
    choices: tuple[str, ...] = ()
    #: A tuple of values; its flag may be repeated.
    repeated: bool = False
    #: Read from a file, never given as a value; left out of repr (and, later, redacted).
    secret: bool = False
    #: The ``serve`` flag; "" derives it from the name (``--<name>``, ``--<name>-file``).
    flag: str = ""
    #: The flag's metavar: derived from the unit (SECONDS, BYTES, N), PATH for a secret's file;
    #: None lets argparse show the choices.
    metavar: str | None = None
    check: Check | None = None
    #: For a secret: an environment variable that may hold the secret itself (read after
    #: :attr:`env`, which names a file); "" when there is none.
    value_env: str = ""

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def key(self) -> str:
        """The setting's key in a config file: its name, ``<name>_file`` for a secret."""
        return f"{self.name}_file" if self.secret else self.name

    @property
    def env(self) -> str:
        """The setting's environment variable: ``VVSTORE_`` and :attr:`key` in capitals."""
        return ENV_PREFIX + self.key.upper()

    def validate(self, value: Any) -> None:
        """Raise :class:`ConfigError` naming this setting when ``value`` breaks its rules."""
        if self.check is not None:
            message = self.check(self.name, value)
            if message is not None:
                raise ConfigError(message)
        if self.secret:
            if value is not None:
                load_secret(value, what=self.name)
        elif self.choices:
            if value not in self.choices:
                allowed = " or ".join(map(repr, self.choices))
                raise ConfigError(f"{self.name} must be {allowed}, got {value!r}")
        elif self.type is int:
            if not isinstance(value, int) or not _within(value, self.low, self.high):
                raise ConfigError(
                    f"{self.name} must be an int in [{self.low}, {self.high}], got {value!r}"
                )
        elif self.positive:
            if not value > 0:
                raise ConfigError(
                    f"{self.name} must be a positive number of {self.unit}, got {value}"
                )
        elif self.low is not None and not value >= self.low:
            raise ConfigError(f"{self.name} must be >= {self.low} {self.unit}, got {value}")


def row(
    *,
    help: str,
    group: str,
    unit: str = "",
    low: float | None = None,
    high: float | None = None,
    positive: bool = False,
    secret: bool = False,
    flag: str = "",
    metavar: str | None = None,
    check: Check | None = None,
    value_env: str = "",
) -> dict[str, Any]:
    """A field's metadata: its row of :data:`SETTINGS` but for name, type and default.

    A required setting is declared ``name: T = field(metadata=row(...))``: mypy reads a
    ``field()`` without a default as required, and any other call as a default.
    """
    return {
        "setting": {
            "help": help,
            "group": group,
            "unit": unit,
            "low": low,
            "high": high,
            "positive": positive,
            "secret": secret,
            "flag": flag,
            "metavar": metavar,
            "check": check,
            "value_env": value_env,
        }
    }


def setting(default: Any, **about: Any) -> Any:
    """Declare a :class:`NodeConfig` field with a default; ``about`` goes to :func:`row`.

    Typed ``Any`` so that the field's annotation (``port: int = setting(8080, ...)``) is the type
    mypy sees, as with :func:`dataclasses.field`. A secret is left out of ``repr``.
    """
    return field(default=default, repr=not about.get("secret", False), metadata=row(**about))


def _within(value: int, low: float | None, high: float | None) -> bool:
    return (low is None or low <= value) and (high is None or value <= high)


def _node_id(name: str, value: Any) -> str | None:
    if isinstance(value, str) and NODE_ID_RE.fullmatch(value):
        return None
    return f"node id must match [A-Za-z0-9_-]{{1,40}}, got {value!r}"


def _not_empty(name: str, value: Any) -> str | None:
    return None if value else f"{name} must not be empty"


def parse_peer(spec: str) -> tuple[str | None, str]:
    """``(node id expected there or None, base URL)`` of a ``--peer`` value.

    ``b=http://host:port`` names the node expected at the URL; a bare ``http://host:port``
    leaves its name to be learned. The name is everything before the first ``=`` when that
    comes before the URL's ``://`` (a URL's query may hold ``=``, its scheme may not).

    :raises ConfigError: when the name is not a node id or the URL not ``http(s)://host[:port]``.
    """
    name: str | None = None
    head, sep, rest = spec.partition("=")
    if sep and "://" not in head:
        name, spec = head, rest
        if not NODE_ID_RE.fullmatch(name):
            raise ConfigError(
                f"peer name must be a node id, [A-Za-z0-9_-]{{1,40}}, got {name!r} in {head}={rest}"
            )
    parts = urlsplit(spec)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"peer URL must look like http://host:port, got {spec!r}")
    return name, spec.rstrip("/")


def _peer_urls(name: str, specs: Any) -> str | None:
    urls: dict[str, str | None] = {}
    for spec in specs:
        try:
            node, url = parse_peer(spec)
        except ConfigError as exc:
            return exc.message
        if url in urls:
            return f"peer {url} is given twice"
        urls[url] = node
    named = [node for node in urls.values() if node is not None]
    if len(named) != len(set(named)):
        return f"a peer name is given to two URLs: {sorted(named)}"
    return None


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """The configuration of one node. Frozen; validated when constructed.

    Each field is a row of :data:`SETTINGS`; its ``help`` says what it is, the comment above
    it why it has its default and what changing it costs. The rows look alike on purpose: each
    is one declaration of one setting, and nothing else restates it.

    :raises ConfigError: naming the first field out of range.
    """

    # Stored in the database on first start; a later start with another node id is refused.
    node_id: str = field(
        metadata=row(help="this node's name, [A-Za-z0-9_-]{1,40}", group=NODE, check=_node_id)
    )
    # Created if missing; one process at a time may serve it (a lock file enforces that).
    data_dir: str = field(
        metadata=row(
            help="directory for the SQLite database and its lock file",
            group=NODE,
            check=_not_empty,
        )
    )
    # Loopback by default: exposing a node is an explicit choice.
    host: str = setting("127.0.0.1", help="address to bind", group=NODE)
    # The start-up line and /status report the port actually bound.
    port: int = setting(8080, help="TCP port; 0 picks a free one", group=NODE, low=0, high=65535)
    # "full": SQLite synchronous=FULL, an acknowledged write survives a power loss.
    # "normal": synchronous=NORMAL, survives a process crash, not a power loss; faster.
    durability: Durability = setting(  # noqa: RUF009 (setting() is a dataclasses.field())
        "full",
        help="full: survives power loss; normal: survives a process crash, not a power loss",
        group=NODE,
    )
    # Empty: a single node. Naming the node (b=http://...) makes a stale address or another
    # member answering there a refusal, not a silent change of peer (docs/security.md).
    peers: tuple[str, ...] = setting(
        (),
        help="another node: [NODE=]http://host:port, NODE the node id expected there (repeatable)",
        group=SYNC,
        flag="--peer",
        metavar="[NODE=]URL",
        check=_peer_urls,
    )
    # Jittered by +-20%. A notice of a peer's write can start a round sooner.
    sync_interval: float = setting(
        1.0,
        help="seconds between anti-entropy rounds with each peer",
        group=SYNC,
        unit="seconds",
        positive=True,
    )
    # At start, a node that resumed its actor holds local writes until every peer has answered
    # a round (a restore in place would otherwise reuse dots peers hold), and after this long
    # begins a fresh actor instead: longer waits out a slow peer, shorter adds actors sooner.
    identity_confirm_timeout: float = setting(
        5.0,
        help="seconds local writes may wait at start for every peer to confirm the node's actor,"
        " before the node begins a fresh one",
        group=SYNC,
        unit="seconds",
        positive=True,
    )
    # The backoff on a failing peer doubles from sync_interval up to this.
    backoff_cap: float = setting(
        2.0,
        help="longest backoff on a failing peer, in seconds",
        group=SYNC,
        unit="seconds",
        positive=True,
    )
    peer_connect_timeout: float = setting(
        2.0,
        help="seconds to wait for a TCP connection to a peer",
        group=SYNC,
        unit="seconds",
        positive=True,
    )
    # It measures progress, not the call's total time, so a slow link that keeps delivering
    # completes any page; a dead or blackholed peer is noticed after this long. Raise it for
    # links that stall for seconds.
    peer_read_timeout: float = setting(
        2.0,
        help="seconds a sync call may go without receiving a byte; not the call's total time,"
        " so slow links complete",
        group=SYNC,
        unit="seconds",
        positive=True,
    )
    # When it is cut short, V is not raised; the next round resumes it from its cursor while
    # the peer still holds what the round began from. Long enough for a node started empty to
    # pull a large state in one round.
    round_timeout: float = setting(
        600.0,
        help="seconds a pull round may take before it is cut short (the next one resumes it)",
        group=SYNC,
        unit="seconds",
        positive=True,
    )
    round_max_pages: int = setting(
        10_000,
        help="most pages one pull round may fetch before it is abandoned",
        group=SYNC,
        unit="pages",
        low=1,
        high=10_000_000,
    )
    # Coalesces a burst of writes into one notice.
    notice_delay: float = setting(
        0.05,
        help="seconds to wait after a local write before notifying peers",
        group=SYNC,
        unit="seconds",
        low=0,
    )
    # Beyond it a write gets 503 with Retry-After.
    queue_limit: int = setting(
        10_000,
        help="most writes waiting for the writer",
        group=WRITES,
        unit="writes",
        low=1,
        high=10_000_000,
    )
    # One transaction: one commit, one fsync.
    max_group: int = setting(
        2_000,
        help="most writes the writer applies in one transaction",
        group=WRITES,
        unit="writes",
        low=1,
        high=100_000,
    )
    # At most 5,000 entries and 1 MiB, the most any node accepts (vvstore.wire's
    # MAX_PAGE_ENTRIES and MAX_PAGE_BYTES). A single entry larger than page_bytes still goes,
    # alone on its page. Smaller pages suit slow links: each is one request.
    page_entries: int = setting(
        5_000,
        help="most entries in one sync page this node sends",
        group=SYNC,
        unit="entries",
        low=1,
        high=5000,
    )
    page_bytes: int = setting(
        1 << 20,
        help="most encoded bytes of entries, records and marks in one sync page this node sends",
        group=SYNC,
        unit="bytes",
        low=1024,
        high=1 << 20,
    )
    # The size of a new round's first page (it learns the peer's vector cheaply) and the floor
    # of the halving after a page timed out: small enough for a link of a few kbit/s to
    # deliver one page within the read timeout.
    min_page_bytes: int = setting(
        4096,
        help="smallest sync page this node asks a peer for: a round's first page, and the"
        " floor when pages that timed out are halved",
        group=SYNC,
        unit="bytes",
        low=1024,
        high=1 << 20,
    )
    # A round whose peer's vector another round (with another peer, begun first) already
    # brings waits for it while it applies a page at least this often: longer fetches fewer
    # entries twice, shorter lets a slow peer hold a fast one back less.
    yield_timeout: float = setting(
        0.5,
        help="seconds a round waits for each page of another round that brings everything it"
        " would, before it goes on itself",
        group=SYNC,
        unit="seconds",
        positive=True,
    )
    # An LRU; misses read SQLite. 0 keeps none.
    cache_keys: int = setting(
        100_000,
        help="keys whose state the writer keeps in memory",
        group=WRITES,
        unit="keys",
        low=0,
        high=100_000_000,
    )
    # Writes still queued after it fail with 503 (unavailable).
    shutdown_timeout: float = setting(
        5.0,
        help="seconds SIGTERM may spend draining the queue before exit",
        group=WRITES,
        unit="seconds",
        positive=True,
    )
    # None: the client routes are open to anyone who can reach the node (serve logs a WARNING
    # when it binds beyond loopback without one).
    token: str | None = setting(
        None,
        help="bearer token every client route but GET /health requires, at least 32 bytes",
        group=SECURITY,
        secret=True,
        # The client commands read it too: one variable serves a shell's client and nodes.
        value_env="VVSTORE_TOKEN",
    )
    # Every node holds the same one. Required when a peer or the bind address is not
    # loopback (checked below).
    cluster_secret: str | None = setting(
        None,
        help="shared secret that signs sync traffic between nodes, at least 32 bytes",
        group=SECURITY,
        secret=True,
    )
    # Rotation (docs/security.md): the secret and token being replaced stay accepted, never
    # used to sign or sent, until every node and client has the new ones.
    previous_cluster_secret: str | None = setting(
        None,
        help="cluster secret being replaced, still accepted from peers (needs a cluster secret)",
        group=SECURITY,
        secret=True,
    )
    previous_token: str | None = setting(
        None,
        help="bearer token being replaced, still accepted from clients (needs a token)",
        group=SECURITY,
        secret=True,
    )
    # The nodes' clocks must agree within it (NTP); a replayed request is refused by the nonce
    # cache within it, by its timestamp after it.
    clock_window: float = setting(
        30.0,
        help="seconds a signed sync request's timestamp may differ from our clock",
        group=SECURITY,
        unit="seconds",
        positive=True,
    )
    # Purged only once older than this and covered by the vector last received from every
    # peer: a client's retry within it is answered, not applied twice.
    idempotency_retention: float = setting(
        24 * 3600.0,
        help="seconds an idempotency record is kept at least",
        group=IDEMPOTENCY,
        unit="seconds",
        positive=True,
    )
    # Beyond it the oldest purgeable records go first, then the oldest.
    idempotency_cap: int = setting(
        1_000_000,
        help="most idempotency records kept",
        group=IDEMPOTENCY,
        unit="records",
        low=1,
        high=1_000_000_000,
    )
    purge_interval: float = setting(
        60.0,
        help="seconds between purges of old idempotency records",
        group=IDEMPOTENCY,
        unit="seconds",
        positive=True,
    )
    # A slow or stalled client would otherwise hold its connection while it trickles a body in.
    body_timeout: float = setting(
        10.0,
        help="seconds a client may take to send a request body before it is refused",
        group=SECURITY,
        unit="seconds",
        positive=True,
    )
    # Until a connection presents a valid credential (the token, the cluster signature, or a
    # request on an open client route), it is closed this long after it opened, whatever it is
    # doing: sending headers slowly, trickling a body, or idling. Longer tolerates slower
    # honest clients on a bad link; shorter frees a flooded node sooner.
    unauthenticated_timeout: float = setting(
        5.0,
        help="seconds a connection may stay open before it presents a valid credential",
        group=SECURITY,
        unit="seconds",
        positive=True,
    )
    # Beyond it a new connection is closed at once; connections already authenticated (peers
    # keep theirs open) are not counted, so a flood delays new callers, never members.
    unauthenticated_connections: int = setting(
        256,
        help="most connections open at once that have not yet presented a valid credential",
        group=SECURITY,
        unit="connections",
        low=1,
        high=1_000_000,
    )
    # The process settings below are read by the command line, not the node; they are rows of
    # the table so that every source reaches them alike. uvloop is an extra (vvstore[speed]);
    # asyncio is always there. Whether it is installed is checked when the loop is made.
    loop: Literal["asyncio", "uvloop"] = setting(
        "asyncio",
        help="event loop: asyncio, or uvloop (pip install 'vvstore[speed]')",
        group=PROCESS,
    )
    # vvstore's own loggers only; other libraries' follow log_libraries.
    log_level: LogLevel = setting(  # noqa: RUF009 (a dataclasses.field())
        "INFO", help="logging threshold of vvstore's own messages", group=PROCESS
    )
    # One line per request costs about 10 us of a request's ~140 us of CPU (python -m
    # bench.profile): off for the last bit of throughput, where metrics are enough.
    access_log: Literal["on", "off"] = setting(
        "on", help="one log line per request (vvstore.access)", group=PROCESS
    )
    # json: one object per line, for a log collector; text is for people.
    log_format: Literal["text", "json"] = setting(
        "text", help="text lines, or one JSON object per line", group=PROCESS
    )
    # Apart from log_level, so that DEBUG on vvstore does not bring every SQL statement of
    # aiosqlite and every event of asyncio and aiohttp with it.
    log_libraries: LogLevel = setting(  # noqa: RUF009 (a dataclasses.field())
        "WARNING",
        help="logging threshold of the libraries vvstore uses (aiosqlite, aiohttp, asyncio)",
        group=PROCESS,
    )

    def __post_init__(self) -> None:
        for row in SETTINGS:
            row.validate(getattr(self, row.name))
        # The rules that tie settings together.
        for previous, current in (
            ("previous_cluster_secret", "cluster_secret"),
            ("previous_token", "token"),
        ):
            if getattr(self, previous) is not None and getattr(self, current) is None:
                raise ConfigError(f"{previous} needs a {current}: it is accepted alongside it")
        if self.cluster_secret is None and not all(
            is_loopback_host(urlsplit(parse_peer(spec)[1]).hostname or "") for spec in self.peers
        ):
            raise ConfigError(
                "peers on non-loopback addresses need a cluster secret (--cluster-secret-file):"
                " sync traffic would otherwise be unauthenticated"
            )
        if self.cluster_secret is None and not is_loopback_host(self.host):
            raise ConfigError(
                f"binding {self.host} beyond loopback needs a cluster secret"
                " (--cluster-secret-file): the sync routes would otherwise serve every counter"
                " to anyone who can reach the node"
            )


def _value_type(hint: Any) -> tuple[Any, tuple[str, ...], bool]:
    """``(type of one value, choices, repeated)`` from a field's resolved annotation."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return type(args[0]), args, False
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        one, choices, _ = _value_type(args[0])
        return one, choices, True
    if origin in (types.UnionType, typing.Union) and type(None) in args and len(args) == 2:
        return _value_type(next(a for a in args if a is not type(None)))
    if hint in (str, int, float):
        return hint, (), False
    raise TypeError(f"a setting cannot have the type {hint!r}")


def _metavar(name: str, about: dict[str, Any], choices: tuple[str, ...]) -> str | None:
    if about["metavar"]:
        return str(about["metavar"])
    if choices:
        return None  # argparse shows {a,b}
    if about["secret"]:
        return "PATH"
    unit = str(about["unit"])
    if unit in ("seconds", "bytes"):
        return unit.upper()
    return "N" if unit else name.upper()


def _table() -> tuple[Setting, ...]:
    hints = typing.get_type_hints(NodeConfig)
    rows = []
    for f in fields(NodeConfig):
        about = dict(f.metadata["setting"])
        one, choices, repeated = _value_type(hints[f.name])
        if one is int and (about["low"] is None or about["high"] is None):
            raise TypeError(f"the int setting {f.name} needs low and high")
        dashed = f.name.replace("_", "-")
        about["flag"] = about["flag"] or (f"--{dashed}-file" if about["secret"] else f"--{dashed}")
        about["metavar"] = _metavar(f.name, about, choices)
        rows.append(
            Setting(
                name=f.name,
                type=one,
                default=f.default,
                choices=choices,
                repeated=repeated,
                **about,
            )
        )
    return tuple(rows)


#: The settings table: one row per NodeConfig field, in declaration order.
SETTINGS: Final[tuple[Setting, ...]] = _table()


# --- where settings come from ----------------------------------------------------------------

#: Where a setting's value came from, from the first consulted to the last.
Source = Literal["flag", "env", "file", "default"]


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret is to be read from: a file, or the environment variable holding it.

    The sources give a secret's whereabouts, never the secret: the caller reads it (with
    :func:`vvstore.auth.read_secret`), and ``vvstore config`` can show the path without it.
    """

    path: str | None = None
    variable: str | None = None


@dataclass(frozen=True, slots=True)
class Sourced:
    """A setting's value and where it came from.

    ``value`` is a :class:`SecretRef` (or None) for a secret. ``origin`` names the flag, the
    variable or the file (``--port``, ``$VVSTORE_PORT``, ``node.toml``); it is empty for a
    default.
    """

    value: Any
    source: Source
    origin: str = ""


def _kind(one: type) -> str:
    return {int: "an integer", float: "a number", str: "a string"}[one]


def _from_text(row: Setting, text: str, origin: str) -> Any:
    """The value of ``row`` that the environment text ``text`` spells; refused naming ``origin``."""
    parts = [p.strip() for p in text.split(",") if p.strip()] if row.repeated else [text]
    values = []
    for part in parts:
        try:
            values.append(row.type(part))
        except ValueError:
            raise ConfigError(f"{origin} must be {_kind(row.type)}, got {part!r}") from None
    return tuple(values) if row.repeated else values[0]


def _checked(row: Setting, value: Any, origin: str) -> Any:
    """``value``, validated against ``row`` now, so that an error can name where it came from."""
    try:
        row.validate(value)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc.message}") from None
    return value


def env_layer(environ: Mapping[str, str]) -> dict[str, Sourced]:
    """The settings given by the environment: ``VVSTORE_<NAME>`` for each row of the table.

    A variable that is empty counts as unset. A repeated setting is a comma-separated list
    (``VVSTORE_PEERS=http://a:8080,http://b:8080``). A secret comes from the file its
    ``VVSTORE_<NAME>_FILE`` names, else from the variable that may hold it (``VVSTORE_TOKEN``).

    :raises ConfigError: naming the variable whose value has the wrong type or is out of range.
    """
    found: dict[str, Sourced] = {}
    for row in SETTINGS:
        text = environ.get(row.env, "")
        if row.secret:
            if text:
                found[row.name] = Sourced(SecretRef(path=text), "env", f"${row.env}")
            elif row.value_env and environ.get(row.value_env):
                var = row.value_env
                found[row.name] = Sourced(SecretRef(variable=var), "env", f"${var}")
        elif text:
            origin = f"${row.env}"
            value = _checked(row, _from_text(row, text, origin), origin)
            found[row.name] = Sourced(value, "env", origin)
    return found


def _from_toml(row: Setting, value: Any, where: str) -> Any:
    """The value of ``row`` that the TOML value ``value`` gives; refused naming ``where``."""
    if row.repeated and not isinstance(value, list):
        raise ConfigError(f"{where} must be an array, got {value!r}")
    items = value if row.repeated else [value]
    for item in items:
        wanted = (int, float) if row.type is float else (row.type,)
        if not isinstance(item, wanted) or isinstance(item, bool):
            raise ConfigError(
                f"{where} must be {_kind(row.type)}, got {item!r} ({type(item).__name__})"
            )
    converted = [row.type(item) for item in items]
    return tuple(converted) if row.repeated else converted[0]


def file_layer(data: bytes, path: str) -> dict[str, Sourced]:
    """The settings given by a TOML config file (``data``, its bytes; ``path``, its name).

    The file is flat: one key per setting, the setting's name (``port = 8080``), or
    ``<name>_file`` with the path of the file holding a secret (``token_file = "/etc/..."``).
    Paths are taken as they are written: a relative one is relative to the working directory,
    as on the command line.

    :raises ConfigError: naming the file and the key, for a file that is not TOML, a key that
        is no setting, a value of the wrong type or out of range, or a secret written in it.
    """
    origin = f"file {path!r}"
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config {origin} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {origin} is not valid TOML: {exc}") from None
    by_key = {row.key: row for row in SETTINGS}
    found: dict[str, Sourced] = {}
    for key, value in document.items():
        where = f"config {origin}, key {key!r}"
        row = by_key.get(key)
        if row is None:
            secret = by_key.get(f"{key}_file")
            if secret is not None and secret.secret:
                raise ConfigError(
                    f"{where}: a secret is never written in the config file;"
                    f" give the path of a file holding it as {secret.key}"
                )
            close = difflib.get_close_matches(key, by_key, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: no such setting{hint}")
        if row.secret:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where} must be the path of a file, got {value!r}")
            found[row.name] = Sourced(SecretRef(path=value), "file", path)
        else:
            value = _checked(row, _from_toml(row, value, where), where)
            found[row.name] = Sourced(value, "file", path)
    return found


def resolve(
    flags: Mapping[str, Sourced], env: Mapping[str, Sourced], file: Mapping[str, Sourced]
) -> dict[str, Sourced]:
    """Each setting from the first source that gives it: flag, environment, file, default.

    A required setting no source gives is left out (see :func:`missing_required`).
    """
    chosen: dict[str, Sourced] = {}
    for row in SETTINGS:
        for layer in (flags, env, file):
            if row.name in layer:
                chosen[row.name] = layer[row.name]
                break
        else:
            if not row.required:
                chosen[row.name] = Sourced(row.default, "default")
    return chosen


def missing_required(chosen: Mapping[str, Sourced]) -> None:
    """Refuse a resolved set of settings that lacks a required one, saying how to give it.

    :raises ConfigError: naming the flag, the variable and the config file key.
    """
    for row in SETTINGS:
        if row.name not in chosen:
            raise ConfigError(
                f"{row.name} is required: give {row.flag}, set {row.env}"
                f" or write {row.key} in the --config file"
            )
