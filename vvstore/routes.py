"""The routes of the HTTP API: each one's method, path, credential and handler, in one table.

Both sides read :data:`ROUTES`: :func:`vvstore.api.create_app` registers the handler each row
names, and :func:`vvstore.auth.credential_for` looks a request up here to decide which
credential it needs before any handler runs. A new route is a row here and its handler in
api.py; the tests check that the app, the OpenAPI document and docs/api.md agree with the table.

A path is literal except for a ``{name}`` placeholder, which may only end a path and stands for
the rest of it: one or more characters, ``/`` included (a counter key may hold ``/``). Routes
that share a path share one aiohttp resource, so a wrong method there is a 405, not a 404.
``HEAD`` is served wherever ``GET`` is, and needs what ``GET`` needs.

Pure core: standard library only, no I/O; in particular nothing of aiohttp, so that
:mod:`vvstore.auth` can read the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

__all__ = ["HELLO_PATH", "ROUTES", "Credential", "Route", "route_for"]

#: What a route asks of the caller: nothing, the clients' bearer token, or the cluster's HMAC.
Credential = Literal["none", "token", "cluster"]


@dataclass(frozen=True, slots=True)
class Route:
    """One route of the API.

    :ivar method: upper-case HTTP method (``GET`` also serves ``HEAD``).
    :ivar path: the path as the docs write it, e.g. ``/counters/{key}``.
    :ivar credential: what a request must carry (see :mod:`vvstore.auth`).
    :ivar handler: the name of the function in :mod:`vvstore.api` that serves it.
    """

    method: str
    path: str
    credential: Credential
    handler: str


#: Where a node asks who answers at a peer's address (:mod:`vvstore.signing`, "Identity").
HELLO_PATH: Final = "/sync/hello"

#: Every route the API serves: the client routes, then the node-to-node ones.
ROUTES: Final[tuple[Route, ...]] = (
    Route("GET", "/health", "none", "health"),
    Route("GET", "/status", "token", "status"),
    Route("GET", "/metrics", "token", "metrics"),
    Route("GET", "/openapi.yaml", "token", "openapi"),
    Route("GET", "/counters", "token", "list_counters"),
    Route("GET", "/counters/{key}", "token", "get_counter"),
    Route("POST", "/counters/{key}", "token", "post_counter"),
    Route("DELETE", "/counters/{key}", "token", "delete_counter"),
    Route("POST", "/batch", "token", "post_batch"),
    Route("POST", "/sync/pull", "cluster", "sync_pull"),
    Route("POST", "/sync/notice", "cluster", "sync_notice"),
    Route("POST", "/sync/retired", "cluster", "sync_retired"),
    Route("POST", HELLO_PATH, "cluster", "sync_hello"),
)

_BY_METHOD_AND_PATH: Final[Mapping[tuple[str, str], Route]] = MappingProxyType(
    {(route.method, route.path): route for route in ROUTES}
)
# (literal prefix, path) of each path that ends in a placeholder: "/counters/{key}" matches
# any request path that begins with "/counters/" and goes on.
_PLACEHOLDER_PATHS: Final = tuple(
    sorted({(route.path.partition("{")[0], route.path) for route in ROUTES if "{" in route.path})
)


def route_for(method: str, path: str) -> Route | None:
    """The route that serves ``method`` on the request path ``path``, or None.

    The method is matched without regard to case, and ``HEAD`` is ``GET``. A query after ``?``
    is ignored.
    """
    method = method.upper()
    if method == "HEAD":
        method = "GET"
    path = path.partition("?")[0]
    for prefix, template in _PLACEHOLDER_PATHS:
        if path.startswith(prefix) and len(path) > len(prefix):
            path = template
            break
    return _BY_METHOD_AND_PATH.get((method, path))
