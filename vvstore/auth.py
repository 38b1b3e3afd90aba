"""Which credential each route needs, and the bearer token that client routes take.

Two secrets, two audiences:

* **Client routes** (counters, batch, status, metrics, the OpenAPI document) take
  ``Authorization: Bearer <token>``. :class:`TokenAuth` keeps only the SHA-256 of the token
  and compares SHA-256 digests with :func:`hmac.compare_digest`, so the comparison takes the
  same time whatever the presented value, its length included.
* **Sync routes** (``/sync/pull``, ``/sync/notice``) are called by other nodes, which sign each
  request with a cluster secret shared by every node: :mod:`vvstore.signing`.

This module also says which credential each route needs (from the route table,
:mod:`vvstore.routes`) and what a usable secret is, and reads one from a file or the
environment (:func:`read_secret`), for the token and the cluster secret alike.

Pure core: standard library, :mod:`vvstore.errors` and :mod:`vvstore.routes` (the route table)
only. No I/O: :func:`read_secret` is handed the function that reads a file. A refused token is
an :class:`~vvstore.errors.Unauthorized` (HTTP 401) with its own ``code``; an unusable secret
is a :class:`~vvstore.errors.ConfigError`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from vvstore.errors import ConfigError, Unauthorized
from vvstore.routes import ROUTES, Credential, route_for

__all__ = [
    "AUTHORIZATION_HEADER",
    "MIN_SECRET_BYTES",
    "ROUTE_CREDENTIALS",
    "Credential",
    "TokenAuth",
    "check_secret_length",
    "credential_for",
    "load_secret",
    "load_token",
    "read_secret",
]

#: The header carrying ``Bearer <token>`` on client routes.
AUTHORIZATION_HEADER: Final = "Authorization"
#: Shortest token or cluster secret accepted: 256 bits, if it is random bytes.
MIN_SECRET_BYTES: Final = 32
# A token travels in a header: aiohttp refuses header lines over 8190 bytes.
_MAX_TOKEN_BYTES: Final = 4096
#: Which credential each route needs, by (method, path): a view of :data:`vvstore.routes.ROUTES`,
#: the one table of routes. ``HEAD`` goes with ``GET``.
ROUTE_CREDENTIALS: Final[Mapping[tuple[str, str], Credential]] = MappingProxyType(
    {(route.method, route.path): route.credential for route in ROUTES}
)


def credential_for(method: str, path: str) -> Credential:
    """The credential a request needs, from the route table (:func:`vvstore.routes.route_for`).

    ``path`` is the request path; a query after ``?`` is ignored. Any non-empty key under
    ``/counters/`` is the ``/counters/{key}`` route. A method and path the table does not list
    needs the **token**: a caller without it gets 401 rather than 404 or 405, so the routes
    that exist are not revealed to someone who may not use them, and ``/health`` stays the only
    open door.
    """
    route = route_for(method, path)
    return route.credential if route is not None else "token"


def load_secret(data: str | bytes, *, what: str = "secret", source: str | None = None) -> bytes:
    """A secret as read from a file or the environment: surrounding whitespace stripped, validated.

    A trailing newline left by an editor or ``echo`` is therefore harmless; a secret is text
    (``openssl rand -hex 32`` makes a good one), not binary. ``source``, when given
    (``"file '/etc/x'"``, ``"$VVSTORE_TOKEN"``), is named in the error.
    :class:`~vvstore.config.NodeConfig` validates its ``token`` and ``cluster_secret`` with this
    function, and :func:`read_secret` loads them with it.

    :raises ConfigError: when fewer than :data:`MIN_SECRET_BYTES` bytes remain.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    raw = raw.strip()
    check_secret_length(raw, what, source)
    return raw


def read_secret(
    path: str | None,
    *,
    what: str,
    read: Callable[[str], bytes],
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The secret in the file ``path``, else in the variable ``env`` of ``environ``, else None.

    The one home of secret loading: ``vvstore serve`` reads its token and cluster secret, and
    the client commands their token, with this function; it strips and validates with
    :func:`load_secret`, the rule :class:`TokenAuth`, :class:`ClusterAuth` and
    :class:`~vvstore.config.NodeConfig` apply too. It lives in this module, not in the CLI or
    vvstore.config, because this module owns what a usable secret is (at least
    :data:`MIN_SECRET_BYTES`, the key of the HMAC and the token it compares), so the rule, its
    messages and the loading that applies them stay together. This module is pure core and does
    no I/O itself: the caller passes ``read`` (``lambda p: Path(p).read_bytes()``) and
    ``environ`` (:data:`os.environ`), as time and randomness are passed in elsewhere.

    An empty ``env`` variable counts as unset.

    :raises ConfigError: naming the file when it cannot be read, and the file or variable when
        its secret is too short or not UTF-8 text.
    """
    if path is not None:
        source = f"file {path!r}"
        try:
            data = read(path)
        except OSError as exc:
            raise ConfigError(f"cannot read the {what} file {path!r}: {exc.strerror}") from None
    elif env is not None and environ is not None and environ.get(env):
        source, data = f"${env}", environ[env].encode("utf-8")
    else:
        return None
    secret = load_secret(data, what=what, source=source)
    try:
        return secret.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"the {what} in {source} must be UTF-8 text") from None


def load_token(data: str | bytes) -> TokenAuth:
    """A :class:`TokenAuth` from the contents of a token file (surrounding whitespace stripped).

    :raises ConfigError: when the token is too short or holds characters a header cannot carry.
    """
    return TokenAuth(load_secret(data, what="token"))


class TokenAuth:
    """The bearer token of the client routes.

    The token is at least :data:`MIN_SECRET_BYTES` and at most 4096 bytes of visible ASCII
    (``0x21``-``0x7e``), so it fits in a header as is. Only its SHA-256 is compared.

    ``previous``, during a rotation, is the token being replaced: it is accepted too, by the
    same rule, until the clients have the new one; :attr:`previous_uses` counts the requests
    that presented it.

    :raises ConfigError: when a token is too short, too long or not visible ASCII, or the
        previous token is the current one.
    """

    __slots__ = ("_digest", "_previous_digest", "_token", "previous_uses")

    def __init__(self, token: bytes, *, previous: bytes | None = None) -> None:
        _check_token(token, "token")
        self._token = token
        self._digest = hashlib.sha256(token).digest()
        self._previous_digest: bytes | None = None
        if previous is not None:
            _check_token(previous, "previous token")
            self._previous_digest = hashlib.sha256(previous).digest()
            if hmac.compare_digest(self._previous_digest, self._digest):
                raise ConfigError(
                    "the previous token is the current one: give the new token as the current"
                    " one, or drop the previous"
                )
        #: Requests accepted with the previous token since this object was made.
        self.previous_uses = 0

    def __repr__(self) -> str:
        return "TokenAuth(<redacted>)"

    def authorization(self) -> str:
        """The value a client sends in the ``Authorization`` header: ``Bearer <token>``."""
        return "Bearer " + self._token.decode("ascii")

    def check(self, authorization: str | None) -> None:
        """Accept the value of a request's ``Authorization`` header, or refuse it.

        The scheme is matched without regard to case (RFC 9110 section 11.1).

        :raises Unauthorized: ``missing_token`` when the header or the token is absent,
            ``wrong_scheme`` when the scheme is not Bearer, ``wrong_token`` otherwise.
        """
        if authorization is None:
            raise Unauthorized("missing bearer token", code="missing_token")
        parts = authorization.split(maxsplit=1)
        if not parts:
            raise Unauthorized("missing bearer token", code="missing_token")
        if parts[0].lower() != "bearer":
            raise Unauthorized(
                "authorization scheme must be Bearer (Authorization: Bearer <token>)",
                code="wrong_scheme",
            )
        if len(parts) == 1:
            raise Unauthorized("missing bearer token", code="missing_token")
        presented = hashlib.sha256(parts[1].strip().encode("utf-8", "replace")).digest()
        if hmac.compare_digest(presented, self._digest):
            return
        if self._previous_digest is not None and hmac.compare_digest(
            presented, self._previous_digest
        ):
            self.previous_uses += 1
            return
        raise Unauthorized("wrong token", code="wrong_token")


def _check_token(token: bytes, what: str) -> None:
    if not isinstance(token, bytes):
        raise TypeError(f"{what} must be bytes, got {type(token).__name__}")
    check_secret_length(token, what)
    if len(token) > _MAX_TOKEN_BYTES:
        raise ConfigError(f"{what} must be at most {_MAX_TOKEN_BYTES} bytes, got {len(token)}")
    if any(not 0x21 <= byte <= 0x7E for byte in token):
        raise ConfigError(
            f"{what} must be visible ASCII (no spaces, control or non-ASCII characters) "
            "to travel in an Authorization header"
        )


def check_secret_length(secret: bytes, what: str, source: str | None = None) -> None:
    """Refuse a secret shorter than :data:`MIN_SECRET_BYTES` (naming it, and where it came from)."""
    if len(secret) < MIN_SECRET_BYTES:
        where = f" in {source}" if source is not None else ""
        raise ConfigError(
            f"{what}{where} must be at least {MIN_SECRET_BYTES} bytes, got {len(secret)} "
            "(make one with: openssl rand -hex 32)"
        )
