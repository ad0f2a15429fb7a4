"""Entity storage in PostgreSQL, for a cluster of kongish nodes on one database.

psycopg (3) is the driver: it is libpq's own client, and its connection's socket can
be watched by the reactor, so a node hears ``NOTIFY`` without a thread waiting for
it. Every query still runs on one dedicated thread (``StorageThread``): the reactor
never waits on the database.

Several nodes write, so the database enforces what one node's memory cannot: each
write transaction takes one advisory lock (writes are serialised cluster-wide, and
the change feed's versions rise in commit order), checks the unique keys, the
foreign keys and the references a delete would break against what is stored, and
deletes the children a delete cascades to, whoever wrote them. A conflict fails the
write with Kong's error (409 for a name another node took first); an unreachable
database fails it with ``DatabaseUnavailable`` (503), and the next call reconnects.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import psycopg
from psycopg.types.json import Jsonb
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorCore
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from kongish import errors
from kongish.db.constraints import CASCADES, RESTRICTS, key_text, references, unique_keys
from kongish.db.storage import Change, ChangesSince, IWatchedStorage, NodeRow, Snapshot
from kongish.db.thread import StorageThread
from kongish.schema import ENTITIES
from kongish.settings import PostgresSettings

log = Logger()

#: The schema, as statements per version, applied by ``kongish migrations``.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE entities ("
        " entity_type text NOT NULL, id uuid NOT NULL, created_at bigint NOT NULL,"
        " entity jsonb NOT NULL, PRIMARY KEY (entity_type, id))",
        "CREATE INDEX entities_by_age ON entities (created_at)",
        "CREATE TABLE unique_keys ("
        " entity_type text NOT NULL, key text NOT NULL, id uuid NOT NULL, PRIMARY KEY (entity_type, key))",
        "CREATE INDEX unique_keys_by_entity ON unique_keys (entity_type, id)",
        # numbered by the writer under the write lock: no gap where a refused write was
        "CREATE TABLE changes ("
        " version bigint PRIMARY KEY, entity_type text NOT NULL, id uuid NOT NULL, entity jsonb)",
    ),
    (
        # one row per node, kept by its heartbeat: GET /clustering/nodes
        "CREATE TABLE nodes ("
        " id uuid PRIMARY KEY, hostname text NOT NULL, version text NOT NULL,"
        " config_version bigint NOT NULL, last_seen timestamptz NOT NULL)",
    ),
)
#: The table that says which migrations ran, one row per version.
MIGRATIONS_TABLE = "kongish_migrations"
#: What ``NOTIFY`` carries a write's version on.
CHANNEL = "kongish_config"
#: The advisory lock every write takes; migrations take the next one.
WRITE_LOCK, MIGRATION_LOCK = 0x6B6F6E67, 0x6B6F6E68
#: How many changes the feed keeps; a follower further behind reloads everything.
FEED_LENGTH = 10000
#: A node started while the database is down tries again after these pauses, doubling.
START_RETRY_FIRST, START_RETRY_LONGEST = 0.5, 10.0


class NotBootstrapped(Exception):
    """The database has no kongish schema, or an older one: ``kongish migrations`` first."""


def connect(settings: PostgresSettings, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A new connection (blocking: call it on a StorageThread or before the reactor runs)."""
    connection = psycopg.connect(**settings.connection_options(), autocommit=autocommit)
    if settings.timeout:
        connection.execute(f"SET statement_timeout = {int(settings.timeout * 1000)}")
        if not autocommit:
            connection.commit()
    return connection


def schema_version(connection: psycopg.Connection[Any]) -> int:
    """The newest migration applied, 0 on a database kongish never touched."""
    exists = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATIONS_TABLE,)).fetchone()
    if not exists or not exists[0]:
        return 0
    row = connection.execute(f"SELECT coalesce(max(version), 0) FROM {MIGRATIONS_TABLE}").fetchone()
    return int(row[0]) if row else 0


@implementer(IWatchedStorage)
@attrs.define
class PostgresStorage:
    """``IStorage`` over PostgreSQL: one connection, driven from one thread."""

    settings: PostgresSettings
    _thread: StorageThread
    _connection: psycopg.Connection[Any] | None = None

    @classmethod
    def open(cls, settings: PostgresSettings, reactor: IReactorCore) -> Deferred[PostgresStorage]:
        """Connect and check the schema is the one this kongish writes. While the database
        cannot be reached, try again after a growing pause, saying so each time."""
        thread = StorageThread.start(reactor, name=f"kongish-postgres:{settings.host}:{settings.port}")
        storage = cls(settings, thread)
        opening = Deferred.fromCoroutine(storage._reach(reactor))
        opening.addErrback(thread.stop)
        return opening.addCallback(lambda _: storage)

    async def _reach(self, reactor: Any) -> None:
        pause = START_RETRY_FIRST
        while True:
            try:
                await self._thread.run(self._check_schema)
                return
            except errors.DatabaseUnavailable as unavailable:
                log.warn("kongish cannot reach PostgreSQL at {host}:{port} ({error}); trying again "
                         "in {pause}s", host=self.settings.host, port=self.settings.port,
                         error=unavailable.message, pause=pause)
            await deferLater(reactor, pause, lambda: None)
            pause = min(pause * 2, START_RETRY_LONGEST)

    def _check_schema(self) -> None:
        version = self._call(schema_version)
        if version < len(MIGRATIONS):
            raise NotBootstrapped(
                "Database needs bootstrapping or is older than this kongish: run "
                "'kongish migrations bootstrap' (or 'up')" if version else
                "Database needs bootstrapping: run 'kongish migrations bootstrap'")
        if version > len(MIGRATIONS):
            raise NotBootstrapped(f"database schema version {version} is newer than the newest this "
                                  f"kongish knows ({len(MIGRATIONS)})")

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(connection, *args)`` on this thread's connection, connecting first if
        needed; a lost or unreachable database is ``DatabaseUnavailable``."""
        try:
            if self._connection is None or self._connection.closed:
                self._connection = connect(self.settings)
            with self._connection.transaction():
                return function(self._connection, *args)
        except psycopg.OperationalError as error:
            if self._connection is not None:
                self._connection.close()
            self._connection = None
            raise errors.DatabaseUnavailable(str(error).strip().splitlines()[0]) from None

    def load(self) -> Deferred[Snapshot]:
        return self._thread.run(self._call, _load)

    def changes_since(self, version: int) -> Deferred[ChangesSince | None]:
        return self._thread.run(self._call, _changes_since, version)

    def write(self, changes: Sequence[Change]) -> Deferred[int]:
        try:  # encoded on the caller's thread: later changes to its dicts cannot race
            rows = [(change.entity_type, change.entity_id,
                     None if change.entity is None else json.loads(json.dumps(change.entity)))
                    for change in changes]
        except (TypeError, ValueError):
            return fail()
        return self._thread.run(self._call, _write, rows)

    def close(self) -> Deferred[None]:
        def closing() -> None:
            if self._connection is not None:
                self._connection.close()
        return self._thread.run(closing).addBoth(self._thread.stop)

    def heartbeat(self, node: NodeRow) -> Deferred[None]:
        return self._thread.run(self._call, _heartbeat, node)

    def nodes(self) -> Deferred[list[dict[str, Any]]]:
        return self._thread.run(self._call, _nodes)

    def watch(self, reactor: IReactorCore, changed: Callable[[], object], every: float) -> Notifications:
        """Call ``changed`` on each ``NOTIFY`` of a write, and every ``every`` seconds besides,
        which bounds what a notification lost in a reconnect costs."""
        notifications = Notifications(self.settings, reactor, changed)
        notifications.start(every)
        return notifications


def _heartbeat(connection: psycopg.Connection[Any], node: NodeRow) -> None:
    connection.execute(
        "INSERT INTO nodes (id, hostname, version, config_version, last_seen) VALUES (%s, %s, %s, %s, now()) "
        "ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, version = excluded.version, "
        "config_version = excluded.config_version, last_seen = excluded.last_seen",
        (node.id, node.hostname, node.version, node.config_version))


def _nodes(connection: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    rows = connection.execute("SELECT id, hostname, version, config_version, "
                              "extract(epoch FROM last_seen)::bigint FROM nodes ORDER BY id").fetchall()
    return [{"id": str(node_id), "hostname": hostname, "version": version, "config_version": config_version,
             "last_seen": last_seen} for node_id, hostname, version, config_version, last_seen in rows]


def _load(connection: psycopg.Connection[Any]) -> Snapshot:
    connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # rows and version of one moment
    rows = connection.execute("SELECT entity_type, entity FROM entities ORDER BY created_at, id").fetchall()
    entities: dict[str, list[dict[str, Any]]] = {}
    for entity_type, entity in rows:
        entities.setdefault(entity_type, []).append(entity)
    return Snapshot(_version(connection), entities)


def _version(connection: psycopg.Connection[Any]) -> int:
    """The last change's number, as this transaction sees the feed (which always keeps its
    last row)."""
    row = connection.execute("SELECT coalesce(max(version), 0) FROM changes").fetchone()
    return int(row[0]) if row else 0


def _changes_since(connection: psycopg.Connection[Any], version: int) -> ChangesSince | None:
    connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    current = _version(connection)
    oldest = connection.execute("SELECT min(version) FROM changes").fetchone()
    first = oldest[0] if oldest else None
    if version > current or (version < current and (first is None or first > version + 1)):
        return None  # another database, or trimmed away: the follower reloads
    rows = connection.execute("SELECT entity_type, id, entity FROM changes WHERE version > %s "
                              "ORDER BY version", (version,)).fetchall()
    return ChangesSince(current, tuple(Change(entity_type, str(entity_id), entity)
                                       for entity_type, entity_id, entity in rows))


_Row = tuple[str, str, "dict[str, Any] | None"]


def _write(connection: psycopg.Connection[Any], rows: list[_Row]) -> int:
    """One write, serialised with every other node's, checked against what is stored."""
    connection.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
    written = list(rows)
    planned = {(entity_type, entity_id) for entity_type, entity_id, _ in rows}
    for entity_type, entity_id, entity in rows:
        if entity is None:
            written += [row for row in _cascade(connection, entity_type, entity_id)
                        if (row[0], row[1]) not in planned]
    version = _version(connection)
    for entity_type, entity_id, entity in written:
        version += 1
        key = (entity_type, entity_id)
        connection.execute("DELETE FROM unique_keys WHERE entity_type = %s AND id = %s", key)
        if entity is None:
            connection.execute("DELETE FROM entities WHERE entity_type = %s AND id = %s", key)
        else:
            _store(connection, entity_type, entity_id, entity)
        connection.execute("INSERT INTO changes (version, entity_type, id, entity) VALUES (%s, %s, %s, %s)",
                           (version, entity_type, entity_id, None if entity is None else Jsonb(entity)))
    for entity_type, entity_id, entity in written:  # once all are in: a batch may hold both ends
        if entity is None:
            _check_unreferenced(connection, entity_type, entity_id)
        else:
            _check_parents(connection, entity_type, entity)
    connection.execute("DELETE FROM changes WHERE version <= %s", (version - FEED_LENGTH,))
    connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(version)))
    return version


def _cascade(connection: psycopg.Connection[Any], entity_type: str, entity_id: str) -> list[_Row]:
    """The children a delete takes with it, as stored now (another node may have added some)."""
    gone: list[_Row] = []
    for child_type in CASCADES.get(entity_type, ()):
        for (child,) in connection.execute("SELECT entity FROM entities WHERE entity_type = %s",
                                           (child_type,)).fetchall():
            if references(child, entity_id):
                gone.append((child_type, child["id"], None))
    return gone


def _store(connection: psycopg.Connection[Any], entity_type: str, entity_id: str,
           entity: dict[str, Any]) -> None:
    for key in unique_keys(entity_type, entity):
        text = key_text(key)
        taken = connection.execute("SELECT id FROM unique_keys WHERE entity_type = %s AND key = %s",
                                   (entity_type, text)).fetchone()
        if taken is not None and str(taken[0]) != entity_id:
            raise errors.UniqueViolation(key)
        connection.execute("INSERT INTO unique_keys (entity_type, key, id) VALUES (%s, %s, %s)",
                           (entity_type, text, entity_id))
    connection.execute(
        "INSERT INTO entities (entity_type, id, created_at, entity) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (entity_type, id) DO UPDATE SET "
        "created_at = excluded.created_at, entity = excluded.entity",
        (entity_type, entity_id, entity.get("created_at") or 0, Jsonb(entity)))


def _check_parents(connection: psycopg.Connection[Any], entity_type: str, entity: dict[str, Any]) -> None:
    for field, parent_type in ENTITIES[entity_type].foreign.items():
        reference = entity.get(field)
        if reference is None:
            continue
        found = connection.execute("SELECT 1 FROM entities WHERE entity_type = %s AND id = %s",
                                   (parent_type, reference["id"])).fetchone()
        if found is None:
            raise errors.ForeignKeyViolation(reference, parent_type, field)


def _check_unreferenced(connection: psycopg.Connection[Any], entity_type: str, entity_id: str) -> None:
    for child_type in RESTRICTS.get(entity_type, ()):
        for (child,) in connection.execute("SELECT entity FROM entities WHERE entity_type = %s",
                                           (child_type,)).fetchall():
            if references(child, entity_id):
                raise errors.ReferencedBy(entity_type, child_type)


#: The first pause before listening again after the connection was lost; it doubles, up to
#: ``db_update_frequency``.
RELISTEN_FIRST = 0.1


@attrs.define(eq=False)
class Notifications:
    """A connection that ``LISTEN``s for writes, read by the reactor; reconnected when lost."""

    settings: PostgresSettings
    reactor: Any
    changed: Callable[[], object]
    _connection: psycopg.Connection[Any] | None = None
    #: The reactor watches a duplicate of the connection's socket: libpq closes its own when
    #: the server goes, and a number the reactor still watched could be a client's next.
    _fd: int = -1
    _poll: LoopingCall | None = None
    _connecting: bool = False
    _every: float = 5.0
    _pause: float = RELISTEN_FIRST
    _retry: Any = None
    _stopped: bool = False

    def start(self, every: float) -> None:
        self._every = every
        self._poll = LoopingCall(self.changed)
        self._poll.clock = self.reactor
        self._poll.start(every, now=False)
        self._listen()

    def _listen(self) -> None:
        self._retry = None
        if self._connecting or self._stopped:
            return
        self._connecting = True

        def listening() -> psycopg.Connection[Any]:
            connection = connect(self.settings, autocommit=True)
            connection.execute(f"LISTEN {CHANNEL}")
            return connection

        deferToThreadPool(self.reactor, self.reactor.getThreadPool(), listening).addCallbacks(
            self._listening, self._not_listening)

    def _listening(self, connection: psycopg.Connection[Any]) -> None:
        self._connecting = False
        if self._stopped:
            connection.close()
            return
        if self._pause > RELISTEN_FIRST:
            log.info("kongish listens for configuration changes again")
        self._connection, self._pause = connection, RELISTEN_FIRST
        self._fd = os.dup(connection.fileno())
        self.reactor.addReader(self)
        self.changed()  # what was written while nobody listened

    def _not_listening(self, failure: Any) -> None:
        self._connecting = False
        if self._pause == RELISTEN_FIRST:  # once per outage
            log.warn("kongish cannot listen for configuration changes: {error}; trying again, and "
                     "polling every {every}s meanwhile", error=str(failure.value).strip().splitlines()[0],
                     every=self._every)
        self._again()

    def _again(self) -> None:
        if not self._stopped and self._retry is None:
            self._retry = self.reactor.callLater(self._pause, self._listen)
            self._pause = min(self._pause * 2, self._every)

    # IReadDescriptor

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            connection.pgconn.consume_input()
            notified = False
            while connection.pgconn.notifies() is not None:
                notified = True
        except psycopg.Error:
            self._lost()
            return
        if notified:
            self.changed()

    def connectionLost(self, reason: Any) -> None:
        self._lost()

    def logPrefix(self) -> str:
        return "kongish-postgres-listen"

    def _lost(self) -> None:
        if self._connection is not None:
            self.reactor.removeReader(self)
            os.close(self._fd)
            connection, self._connection, self._fd = self._connection, None, -1
            connection.close()
            self._pause = RELISTEN_FIRST * 2  # says "again" once it is back
            self._again()

    def stop(self) -> None:
        self._stopped = True
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._lost()
