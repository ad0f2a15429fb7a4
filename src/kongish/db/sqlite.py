"""Entity storage in one SQLite file, for single-node kongish.

sqlite3 calls block, so every one of them runs on a single dedicated worker
thread: the reactor never waits on the disk, and the writes of concurrent
Admin API requests are applied one after another in the order they were made.
"""
from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorCore
from zope.interface import implementer

from kongish.db.storage import Change, ChangesSince, IStorage, Snapshot
from kongish.db.thread import StorageThread

#: (entity_type, id, (created_at, JSON text) or None for a deletion)
_Row = tuple[str, str, "tuple[int, str] | None"]

#: The schema, as statements per version: a database at version N gets versions N+1... applied.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE entities ("
        " entity_type TEXT NOT NULL, id TEXT NOT NULL, created_at INTEGER NOT NULL,"
        " entity TEXT NOT NULL, PRIMARY KEY (entity_type, id))",
        "CREATE INDEX entities_by_age ON entities (created_at)",
    ),
    (
        # the change feed: one row per change; the configuration version is the last row's
        "CREATE TABLE changes ("
        " version INTEGER PRIMARY KEY AUTOINCREMENT, entity_type TEXT NOT NULL, id TEXT NOT NULL,"
        " entity TEXT)",
    ),
)

#: How many changes the feed keeps; a follower further behind reloads everything.
FEED_LENGTH = 10000


class SchemaTooNew(Exception):
    """The database was written by a newer kongish; reading it could lose data."""


@implementer(IStorage)
@attrs.define
class SQLiteStorage:
    """``IStorage`` over one SQLite file in WAL mode, driven from one worker thread."""

    _connection: sqlite3.Connection
    _worker: StorageThread

    @classmethod
    def open(cls, path: str, reactor: IReactorCore) -> Deferred[SQLiteStorage]:
        """Create (or upgrade) the database at ``path`` and its directory, then wrap it."""
        worker = StorageThread.start(reactor, name=f"kongish-sqlite:{path}")
        opening = worker.run(connect_migrated, path)
        opening.addErrback(worker.stop)
        return opening.addCallback(lambda connection: cls(connection, worker))

    def load(self) -> Deferred[Snapshot]:
        return self._worker.run(_load, self._connection)

    def changes_since(self, version: int) -> Deferred[ChangesSince | None]:
        return self._worker.run(_changes_since, self._connection, version)

    def write(self, changes: Sequence[Change]) -> Deferred[int]:
        # Encoded here, on the caller's thread, so that later changes to the
        # caller's dicts cannot race with the worker.
        try:
            rows = [(change.entity_type, change.entity_id, _encode(change.entity)) for change in changes]
        except (TypeError, ValueError):  # not JSON-ready: json.dumps's errors
            return fail()
        return self._worker.run(_write, self._connection, rows)

    def close(self) -> Deferred[None]:
        return self._worker.run(self._connection.close).addBoth(self._worker.stop)


def connect_migrated(path: str) -> sqlite3.Connection:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # Transactions are explicit (see _write); the pool's only thread is the only user.
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        # FULL makes each commit durable in WAL mode, not only consistent.
        connection.execute("PRAGMA synchronous=FULL")
        _migrate(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def schema_version(path: str) -> int:
    """The schema version of the database at ``path``; 0 when there is none yet."""
    if not os.path.exists(path):
        return 0
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = connection.execute("SELECT version FROM schema_version").fetchone()
    except sqlite3.OperationalError:  # no such table
        return 0
    finally:
        connection.close()
    return row[0] if row else 0


def _migrate(connection: sqlite3.Connection) -> None:
    with _transaction(connection):
        connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = connection.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if version > len(MIGRATIONS):
            raise SchemaTooNew(
                f"database schema version {version} is newer than the newest this kongish "
                f"knows ({len(MIGRATIONS)})"
            )
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                connection.execute(statement)
        connection.execute("DELETE FROM schema_version")
        connection.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS),))


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` when the block raises."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> None:
        self._connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback) -> None:
        self._connection.execute("ROLLBACK" if kind else "COMMIT")


def _load(connection: sqlite3.Connection) -> Snapshot:
    entities: dict[str, list[dict[str, Any]]] = {}
    with _transaction(connection):  # the entities and the version of one moment
        rows = connection.execute(
            "SELECT entity_type, entity FROM entities ORDER BY created_at, rowid"
        ).fetchall()
        version = _version(connection)
    for entity_type, text in rows:
        entities.setdefault(entity_type, []).append(json.loads(text))
    return Snapshot(version, entities)


def _version(connection: sqlite3.Connection) -> int:
    """The last change's number; AUTOINCREMENT keeps it after the feed is trimmed."""
    row = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
    return row[0] if row else 0


def _changes_since(connection: sqlite3.Connection, version: int) -> ChangesSince | None:
    with _transaction(connection):
        current = _version(connection)
        oldest = connection.execute("SELECT min(version) FROM changes").fetchone()[0]
        if version > current or (version < current and (oldest is None or oldest > version + 1)):
            return None  # from another database, or trimmed away: the follower reloads
        rows = connection.execute(
            "SELECT entity_type, id, entity FROM changes WHERE version > ? ORDER BY version", (version,)
        ).fetchall()
    changes = tuple(Change(entity_type, entity_id, None if text is None else json.loads(text))
                    for entity_type, entity_id, text in rows)
    return ChangesSince(current, changes)


def _write(connection: sqlite3.Connection, rows: list[_Row]) -> int:
    with _transaction(connection):
        for entity_type, entity_id, encoded in rows:
            if encoded is None:
                connection.execute(
                    "DELETE FROM entities WHERE entity_type = ? AND id = ?", (entity_type, entity_id)
                )
            else:
                created_at, text = encoded
                connection.execute(
                    "INSERT INTO entities (entity_type, id, created_at, entity) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (entity_type, id) DO UPDATE SET "
                    "created_at = excluded.created_at, entity = excluded.entity",
                    (entity_type, entity_id, created_at, text),
                )
            connection.execute("INSERT INTO changes (entity_type, id, entity) VALUES (?, ?, ?)",
                               (entity_type, entity_id, None if encoded is None else encoded[1]))
        version = _version(connection)
        connection.execute("DELETE FROM changes WHERE version <= ?", (version - FEED_LENGTH,))
        return version


def _encode(entity: dict[str, Any] | None) -> tuple[int, str] | None:
    if entity is None:
        return None
    return entity.get("created_at") or 0, json.dumps(entity, separators=(",", ":"))
