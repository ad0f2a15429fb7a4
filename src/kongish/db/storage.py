"""The durable side of the entity database, kept behind one small interface.

The in-memory database answers every read; a storage backend only has to hand
back everything at start-up and make each batch of changes durable. That is
all a later PostgreSQL backend would need to provide as well.
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


class IStorage(Interface):
    """Durable entity storage: whole-database reads, atomic batched writes."""

    def load():
        """Return a Deferred firing with ``{entity_type: [entity, ...]}``, oldest first."""

    def write(changes):
        """Apply a sequence of ``Change`` in one transaction.

        Return a Deferred that fires with ``None`` once the transaction is
        durable, or fails with nothing written.
        """

    def close():
        """Release the backend; return a Deferred that fires when it is released."""
