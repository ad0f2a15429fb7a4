"""``PostgresStorage`` on a real PostgreSQL: the ``IStorage`` contract, and the rules it
enforces itself because other nodes write to the same database."""
from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from kongish import errors
from kongish.db.migrations import run
from kongish.db.postgres import NotBootstrapped, PostgresStorage
from kongish.db.storage import Change, IWatchedStorage
from kongish.settings import Settings
from tests import postgres
from tests.harness import deferred

SERVICE: dict[str, Any] = {"id": "6f6c6e6b-0000-4000-8000-000000000001", "name": "s", "created_at": 1,
                           "host": "x"}
ROUTE: dict[str, Any] = {"id": "6f6c6e6b-0000-4000-8000-000000000002", "name": "r", "created_at": 2,
         "service": {"id": SERVICE["id"]}, "paths": ["/r"]}
PLUGIN: dict[str, Any] = {"id": "6f6c6e6b-0000-4000-8000-000000000003", "name": "pre-function",
                          "created_at": 3,
          "route": {"id": ROUTE["id"]}, "service": None, "consumer": None, "config": {}}


class PostgresStorageTests(TestCase):
    async def _storage(self, bootstrapped: bool = True) -> PostgresStorage:
        settings = Settings.load(environ={}, overrides=postgres.fresh_database())
        if bootstrapped:
            await deferToThread(lambda: list(run(settings, "bootstrap")))
        self.settings = settings
        storage = await PostgresStorage.open(settings.postgres, reactor)
        self.addCleanup(storage.close)
        return storage

    @deferred
    async def test_the_contract_load_write_and_feed(self) -> None:
        storage = await self._storage()
        self.assertTrue(verifyObject(IWatchedStorage, storage))
        self.assertEqual(((await storage.load()).version, (await storage.load()).entities), (0, {}))
        version = await storage.write([Change("services", SERVICE["id"], SERVICE),
                                       Change("routes", ROUTE["id"], ROUTE)])
        self.assertEqual(version, 2)
        snapshot = await storage.load()
        self.assertEqual((snapshot.version, snapshot.entities),
                         (2, {"services": [SERVICE], "routes": [ROUTE]}))
        since = await storage.changes_since(1)
        assert since is not None
        self.assertEqual((since.version, [change.entity_id for change in since.changes]), (2, [ROUTE["id"]]))
        self.assertIsNone(await storage.changes_since(5))  # from another database: reload

    @deferred
    async def test_what_another_node_stored_decides_uniqueness_and_references(self) -> None:
        storage = await self._storage()
        await storage.write([Change("services", SERVICE["id"], SERVICE)])
        other = dict(SERVICE, id="6f6c6e6b-0000-4000-8000-00000000000a")
        with self.assertRaises(errors.UniqueViolation) as taken:
            await storage.write([Change("services", other["id"], other)])
        self.assertEqual(taken.exception.fields, {"name": "s"})
        await storage.write([Change("services", SERVICE["id"], dict(SERVICE, host="y"))])  # its own name
        orphan = dict(ROUTE, service={"id": other["id"]})
        with self.assertRaises(errors.ForeignKeyViolation):
            await storage.write([Change("routes", orphan["id"], orphan)])
        await storage.write([Change("routes", ROUTE["id"], ROUTE), Change("plugins", PLUGIN["id"], PLUGIN)])
        with self.assertRaises(errors.ReferencedBy):
            await storage.write([Change("services", SERVICE["id"], None)])
        self.assertEqual((await storage.load()).version, 4)  # the refused writes stored nothing

    @deferred
    async def test_a_delete_takes_children_another_node_added(self) -> None:
        storage = await self._storage()
        await storage.write([Change("services", SERVICE["id"], SERVICE), Change("routes", ROUTE["id"], ROUTE),
                             Change("plugins", PLUGIN["id"], PLUGIN)])
        version = await storage.write([Change("routes", ROUTE["id"], None)])  # the plugin goes too
        since = await storage.changes_since(3)
        assert since is not None
        self.assertEqual((version, [(change.entity_type, change.entity) for change in since.changes]),
                         (5, [("routes", None), ("plugins", None)]))
        self.assertEqual((await storage.load()).entities, {"services": [SERVICE]})

    @deferred
    async def test_a_database_not_bootstrapped_is_refused(self) -> None:
        with self.assertRaises(NotBootstrapped) as refused:
            await self._storage(bootstrapped=False)
        self.assertIn("kongish migrations bootstrap", str(refused.exception))

    @deferred
    async def test_watch_hears_another_writer_at_once(self) -> None:
        storage = await self._storage()
        heard: list[bool] = []
        notifications = storage.watch(reactor, lambda: heard.append(True), every=3600)
        self.addCleanup(notifications.stop)
        for _ in range(200):  # until it listens: it says so with a first call
            if heard:
                break
            await deferLater(reactor, 0.01, lambda: None)
        heard.clear()
        writer = await PostgresStorage.open(self.settings.postgres, reactor)
        self.addCleanup(writer.close)
        await writer.write([Change("services", SERVICE["id"], SERVICE)])
        for _ in range(200):
            if heard:
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(heard, [True])
