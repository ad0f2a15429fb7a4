"""The durable side of the entity database, kept behind one small interface.

The in-memory database answers every read; a storage backend hands back everything
at start-up, makes each batch of changes durable, and keeps a change feed: every
batch raises the configuration version, and the changes since any recent version can
be read back. Worker processes and other nodes follow that feed to stay current; a
PostgreSQL backend provides the same three things.
"""
from __future__ import annotations

from typing import Any

import attrs
from zope.interface import Interface


@attrs.frozen
class Change:
    """One entity to store (``entity`` is its full Admin API dict) or to delete (``None``)."""

    entity_type: str
    entity_id: str
    entity: dict[str, Any] | None


@attrs.frozen
class Snapshot:
    """Every stored entity, ``{entity_type: [entity, ...]}`` oldest first, at ``version``."""

    version: int
    entities: dict[str, list[dict[str, Any]]]


@attrs.frozen
class NodeRow:
    """What a node of a cluster says of itself in its heartbeat."""

    id: str
    hostname: str
    version: str
    #: The configuration version it serves.
    config_version: int


@attrs.frozen
class ChangesSince:
    """The changes after some version, in the order they were made, up to ``version``."""

    version: int
    changes: tuple[Change, ...]


class IStorage(Interface):
    """Durable entity storage: whole-database reads, atomic batched writes, a change feed."""

    def load():
        """Return a Deferred firing with a ``Snapshot``: the entities and their version, read
        together."""

    def write(changes):
        """Apply a sequence of ``Change`` in one transaction.

        Return a Deferred that fires with the new configuration version once the
        transaction is durable, or fails with nothing written.
        """

    def changes_since(version):
        """Return a Deferred firing with the ``ChangesSince`` ``version``, or with ``None``
        when the feed no longer reaches back that far (the follower reloads then)."""

    def close():
        """Release the backend; return a Deferred that fires when it is released."""


class IWatchedStorage(IStorage):
    """A store other nodes write to, which says when they did (PostgreSQL's NOTIFY)."""

    def watch(reactor, changed, every):
        """Call ``changed()`` whenever another writer may have stored changes, and every
        ``every`` seconds besides; return what ``stop()`` ends."""

    def heartbeat(node):
        """Store the ``NodeRow`` of this node, stamped now; return a Deferred."""

    def nodes():
        """Return a Deferred firing with every node's last heartbeat: dicts of ``id``,
        ``hostname``, ``version``, ``config_version`` and ``last_seen`` (epoch seconds)."""
