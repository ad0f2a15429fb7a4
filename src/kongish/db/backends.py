"""Which ``IStorage`` the ``database`` setting names, and how each opens.

A backend is one entry here; ``off`` (DB-less) has none: such a node holds only what
declarative configuration loads.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet.defer import Deferred

from kongish.db.storage import IStorage
from kongish.settings import Settings


def _sqlite(settings: Settings, reactor: Any) -> Deferred[IStorage]:
    from kongish.db.sqlite import SQLiteStorage  # sqlite3 is imported only by nodes that use it

    opening = SQLiteStorage.open(settings.sqlite_path, reactor)
    return opening.addCallback(lambda storage: cast(IStorage, storage))


def _postgres(settings: Settings, reactor: Any) -> Deferred[IStorage]:
    from kongish.db.postgres import PostgresStorage  # psycopg is imported only by nodes that use it

    opening = PostgresStorage.open(settings.postgres, reactor)
    return opening.addCallback(lambda storage: cast(IStorage, storage))


#: ``database`` value -> opener; ``kongish.settings.DATABASES`` lists these and ``off``.
BACKENDS: dict[str, Callable[[Settings, Any], Deferred[IStorage]]] = {
    "sqlite": _sqlite, "postgres": _postgres}


async def open_storage(settings: Settings, reactor: Any) -> IStorage | None:
    """The configured store, opened; ``None`` for a DB-less node."""
    opener = BACKENDS.get(settings.database)
    return None if opener is None else await opener(settings, reactor)
