"""SQLiteStorage against real files: durability, atomicity, ordering, clean shutdown."""
from __future__ import annotations

import os
import sqlite3
import threading
from typing import cast

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from kongish.db import sqlite as sqlite_module
from kongish.db.sqlite import MIGRATIONS, SchemaTooNew, SQLiteStorage
from kongish.db.storage import Change, ChangesSince, IStorage


def service(service_id: str, name: str, created_at: int = 1700000000) -> dict:
    return {"id": service_id, "name": name, "created_at": created_at, "updated_at": created_at,
            "host": "dead.end.com", "port": 80, "path": None, "tags": None}


def worker_threads(path: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if path in thread.name]


class SQLiteStorageTests(TestCase):
    def setUp(self):
        self.path = os.path.join(self.mktemp(), "prefix", "kongish.db")

    @inlineCallbacks
    def open(self):
        storage = yield SQLiteStorage.open(self.path, reactor)
        self.addCleanup(self.close_once, storage)
        return storage

    def close_once(self, storage):
        if worker_threads(self.path):
            return storage.close()

    @inlineCallbacks
    def test_provides_istorage(self):
        storage = yield self.open()
        self.assertTrue(verifyObject(IStorage, storage))

    @inlineCallbacks
    def test_open_creates_directory_and_wal_file(self):
        yield self.open()
        self.assertTrue(os.path.isfile(self.path))
        connection = sqlite3.connect(self.path)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA journal_mode").fetchone(), ("wal",))
        self.assertEqual(connection.execute("SELECT version FROM schema_version").fetchall(),
                         [(len(MIGRATIONS),)])

    @inlineCallbacks
    def test_empty_database_loads_nothing(self):
        storage = yield self.open()
        self.assertEqual((yield storage.load()).entities, {})

    @inlineCallbacks
    def test_writes_survive_a_restart(self):
        first = yield self.open()
        route = {"id": "r1", "created_at": 1700000005, "paths": ["/test"], "service": {"id": "s1"}}
        yield first.write([
            Change("services", "s1", service("s1", "plugin-testing", 1700000001)),
            Change("routes", "r1", route),
            Change("services", "s2", service("s2", "other", 1700000000)),
        ])
        yield first.close()

        second = yield self.open()
        loaded = yield second.load()
        self.assertEqual(loaded.version, 3)
        self.assertEqual(loaded.entities, {
            "services": [service("s2", "other", 1700000000), service("s1", "plugin-testing", 1700000001)],
            "routes": [route],
        })

    @inlineCallbacks
    def test_update_replaces_and_delete_removes(self):
        storage = yield self.open()
        yield storage.write([Change("services", "s1", service("s1", "a")),
                             Change("services", "s2", service("s2", "b"))])
        yield storage.write([Change("services", "s1", service("s1", "renamed")),
                             Change("services", "s2", None)])
        self.assertEqual((yield storage.load()).entities, {"services": [service("s1", "renamed")]})

    @inlineCallbacks
    def test_failing_change_leaves_nothing_written(self):
        storage = yield self.open()
        yield storage.write([Change("services", "s0", service("s0", "kept"))])
        batch = [
            Change("services", "s0", None),
            Change("services", "s1", service("s1", "a")),
            Change(cast(str, None), "s2", service("s2", "b")),  # NOT NULL entity_type: fails mid-transaction
        ]
        yield self.assertFailure(storage.write(batch), sqlite3.IntegrityError)
        self.assertEqual((yield storage.load()).entities, {"services": [service("s0", "kept")]})

    @inlineCallbacks
    def test_unencodable_entity_is_rejected_before_anything_is_written(self):
        storage = yield self.open()
        batch = [Change("services", "s1", service("s1", "a")),
                 Change("services", "s2", {"id": "s2", "bad": object()})]
        yield self.assertFailure(storage.write(batch), TypeError)
        self.assertEqual((yield storage.load()).entities, {})

    @inlineCallbacks
    def test_write_does_not_block_the_caller(self):
        storage = yield self.open()
        writing = storage.write([Change("services", "s1", service("s1", "a"))])
        self.assertFalse(writing.called)
        yield writing

    @inlineCallbacks
    def test_concurrent_writes_apply_in_submission_order(self):
        storage = yield self.open()
        writes = [storage.write([Change("services", "s1", service("s1", f"v{n}"))]) for n in range(50)]
        writes.append(storage.write([Change("services", "s2", service("s2", "last"))]))
        yield gatherResults(writes)
        loaded = yield storage.load()
        self.assertEqual(loaded.entities, {"services": [service("s1", "v49"), service("s2", "last")]})
        self.assertEqual(loaded.version, 51)

    @inlineCallbacks
    def test_close_stops_the_worker_thread(self):
        storage = yield self.open()
        self.assertEqual(len(worker_threads(self.path)), 1)
        yield storage.close()
        self.assertEqual(worker_threads(self.path), [])

    @inlineCallbacks
    def test_newer_schema_is_refused_and_the_worker_stopped(self):
        yield (yield self.open()).close()
        connection = sqlite3.connect(self.path)
        with connection:
            connection.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS) + 1,))
        connection.close()

        failure = yield self.assertFailure(SQLiteStorage.open(self.path, reactor), SchemaTooNew)
        self.assertIn(f"version {len(MIGRATIONS) + 1}", str(failure))
        self.assertEqual(worker_threads(self.path), [])

    @inlineCallbacks
    def test_reopening_keeps_the_schema_version(self):
        yield (yield self.open()).close()
        second = yield self.open()
        yield second.close()
        connection = sqlite3.connect(self.path)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("SELECT version FROM schema_version").fetchall(),
                         [(len(MIGRATIONS),)])


class ChangeFeedTests(TestCase):
    """Every write raises the version; the changes since a version read back in order."""

    def setUp(self):
        self.path = os.path.join(self.mktemp(), "kongish.db")

    @inlineCallbacks
    def open(self):
        storage = yield SQLiteStorage.open(self.path, reactor)
        self.addCleanup(storage.close)
        return storage

    @inlineCallbacks
    def test_versions_and_changes_since(self):
        storage = yield self.open()
        self.assertEqual((yield storage.load()).version, 0)
        self.assertEqual((yield storage.changes_since(0)), ChangesSince(0, ()))
        first = yield storage.write([Change("services", "s1", service("s1", "a")),
                                     Change("services", "s2", service("s2", "b"))])
        second = yield storage.write([Change("services", "s2", None)])
        self.assertEqual((first, second), (2, 3))
        self.assertEqual((yield storage.changes_since(0)), ChangesSince(3, (
            Change("services", "s1", service("s1", "a")), Change("services", "s2", service("s2", "b")),
            Change("services", "s2", None))))
        self.assertEqual((yield storage.changes_since(2)), ChangesSince(3, (Change("services", "s2", None),)))
        self.assertEqual((yield storage.changes_since(3)), ChangesSince(3, ()))
        self.assertIsNone((yield storage.changes_since(4)))  # a version this database never had

    @inlineCallbacks
    def test_a_failed_write_raises_no_version(self):
        storage = yield self.open()
        yield self.assertFailure(storage.write([Change(cast(str, None), "x", service("x", "x"))]),
                                 sqlite3.IntegrityError)
        self.assertEqual((yield storage.changes_since(0)), ChangesSince(0, ()))

    @inlineCallbacks
    def test_trimmed_feed_asks_for_a_reload(self):
        self.patch(sqlite_module, "FEED_LENGTH", 2)
        storage = yield SQLiteStorage.open(self.path, reactor)
        for name in "abcd":
            yield storage.write([Change("services", "s1", service("s1", name))])
        self.assertIsNone((yield storage.changes_since(1)))
        self.assertEqual((yield storage.changes_since(2)), ChangesSince(4, (
            Change("services", "s1", service("s1", "c")), Change("services", "s1", service("s1", "d")))))
        yield storage.close()
        reopened = yield SQLiteStorage.open(self.path, reactor)
        self.addCleanup(reopened.close)
        self.assertEqual((yield reopened.load()).version, 4)  # the version survives trimming and restarts
