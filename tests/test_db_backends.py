"""The ``database`` setting picks a storage backend from one table."""
from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from kongish.db.backends import BACKENDS, open_storage
from kongish.db.storage import IStorage
from kongish.settings import DATABASES, Settings
from tests.harness import deferred


class BackendTests(TestCase):
    def test_every_backend_is_a_database_choice(self) -> None:
        self.assertEqual(set(DATABASES), {*BACKENDS, "off"})

    @deferred
    async def test_sqlite_opens_under_the_prefix_and_off_has_none(self) -> None:
        prefix = self.mktemp()
        storage = await open_storage(Settings.parse({"prefix": prefix, "database": "sqlite"}), reactor)
        assert storage is not None
        self.addCleanup(storage.close)
        self.assertTrue(verifyObject(IStorage, storage))
        self.assertTrue(os.path.isfile(os.path.join(prefix, "kongish.db")))
        self.assertIsNone(await open_storage(Settings.parse({"prefix": prefix, "database": "off"}), reactor))
