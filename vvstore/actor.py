"""Actor ids: the syntax of the identity that writes entries, and the one place that parses it.

An actor id is ``<node id>~<16 lower-case hex digits>``: the operator's name for the node (see
:data:`vvstore.config.NODE_ID_RE`) and a 64-bit random token drawn when the node begins an
incarnation (a new data directory, or a restart that may have lost acknowledged writes). A
node has one actor at a time and may have had several; every entry is written by exactly one.
Node ids never hold ``~``, so the node id of an actor id is everything before its first ``~``,
and ``<node id>~`` begins the actor ids of that node and of no other.

Code that needs the node of an actor, or asks whether an actor is a node's, calls
:func:`node_of` or :func:`is_actor_of` here rather than splitting on ``~`` itself.

Pure core: standard library and :mod:`vvstore.config` only; no I/O, and no randomness (the
token is passed in).
"""

from __future__ import annotations

import re
from typing import Final

from vvstore.config import NODE_ID_RE

__all__ = ["ACTOR_ID_RE", "actor_prefix", "is_actor_of", "make_actor_id", "node_of"]

_SEPARATOR: Final = "~"

#: A whole actor id (use ``fullmatch``). NODE_ID_RE is one quantified character class, so it
#: concatenates without a group; the OpenAPI document's ActorId pattern is this one, anchored.
ACTOR_ID_RE: Final = re.compile(NODE_ID_RE.pattern + _SEPARATOR + "[0-9a-f]{16}")


def make_actor_id(node_id: str, token: int) -> str:
    """The actor id ``<node id>~<16 lower-case hex>`` for a 64-bit random ``token``.

    Only the low 64 bits of ``token`` are used. ``node_id`` is not validated here (NodeConfig
    validates it).
    """
    return f"{actor_prefix(node_id)}{token & (2**64 - 1):016x}"


def node_of(actor_id: str) -> str:
    """The node id in ``actor_id``: everything before its first ``~``.

    Not a validator: a string without ``~`` comes back whole. Ids from another process are
    checked against :data:`ACTOR_ID_RE` by the codec before anything reads them.
    """
    return actor_id.partition(_SEPARATOR)[0]


def actor_prefix(node_id: str) -> str:
    """``<node id>~``: what every actor id of ``node_id`` begins with, and no other node's.

    For prefix matching where a function cannot be called, such as a SQL query.
    """
    return node_id + _SEPARATOR


def is_actor_of(actor_id: str, node_id: str) -> bool:
    """Whether ``actor_id`` is one of the actors (any incarnation) of node ``node_id``."""
    return actor_id.startswith(actor_prefix(node_id))
