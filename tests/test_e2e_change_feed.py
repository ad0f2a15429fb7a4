"""Two nodes on one SQLite file: the second follows the first through the change feed."""
from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.harness import deferred, start_gateway

HELLO = "return kong.response.exit(200, 'from the feed')"


class ChangeFeedTests(TestCase):
    @deferred
    async def test_follower_catches_up_and_rebuilds(self) -> None:
        prefix = self.mktemp()
        writer = await start_gateway(self, prefix=prefix)
        follower = await start_gateway(self, prefix=prefix)
        database = follower.node.database
        self.assertEqual(database.version, 0)

        await writer.expose("http://127.0.0.1:1", "/fed",
                            plugins=({"name": "pre-function", "config": {"access": [HELLO]}},))
        self.assertEqual((await follower.get("/fed"))[0], 404)  # not read yet
        self.assertTrue(await database.catch_up())
        self.assertEqual(database.version, writer.node.database.version)
        self.assertEqual((await follower.get("/fed"))[:2], (200, b"from the feed"))
        self.assertFalse(await database.catch_up())  # nothing new

        # the follower writes too: its version waits until it has read the writer's changes
        _, service, _ = await follower.call("POST", "/services", json={"name": "second", "url": "http://b.test"})
        status, _, _ = await writer.call("DELETE", "/routes/svc-fed")
        self.assertEqual(status, 204)
        before = database.version
        await follower.call("POST", "/services", json={"name": "third", "url": "http://c.test"})
        self.assertEqual(database.version, before)
        self.assertTrue(await database.catch_up())
        self.assertEqual((await follower.get("/fed"))[0], 404)
        self.assertEqual(sorted(s["name"] for s in database.tables["services"].values()),
                         ["second", "svc-fed", "third"])
        writer_database = writer.node.database
        self.assertTrue(await writer_database.catch_up())
        self.assertEqual(writer_database.tables, database.tables)
        self.assertEqual(writer_database.version, database.version)
        self.assertIn(service["id"], writer_database.tables["services"])
