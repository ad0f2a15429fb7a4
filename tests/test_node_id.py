"""The node id is made once and kept in the prefix, as Kong keeps ``<prefix>/kong.id``."""
from __future__ import annotations

import os
import uuid

from twisted.trial.unittest import SynchronousTestCase, TestCase

from kongish.node_id import InvalidNodeId, persistent_node_id
from tests.harness import deferred, start_gateway

GET_ID = "return kong.response.exit(200, kong.node.get_id())"


class PersistentNodeIdTests(SynchronousTestCase):
    def test_written_once_then_read(self) -> None:
        prefix = os.path.join(self.mktemp(), "not", "yet")
        first = persistent_node_id(prefix)
        self.assertEqual(str(uuid.UUID(first)), first)
        with open(os.path.join(prefix, "kong.id"), encoding="ascii") as stored:
            self.assertEqual(stored.read().strip(), first)
        self.assertEqual(persistent_node_id(prefix), first)
        self.assertEqual(os.listdir(prefix), ["kong.id"])

    def test_invalid_file_is_refused(self) -> None:
        prefix = self.mktemp()
        os.makedirs(prefix)
        with open(os.path.join(prefix, "kong.id"), "w", encoding="ascii") as stored:
            stored.write("not-a-uuid\n")
        error = self.assertRaises(InvalidNodeId, persistent_node_id, prefix)
        self.assertIn("contains invalid uuid: 'not-a-uuid'", str(error))


class RestartKeepsNodeIdTests(TestCase):
    @deferred
    async def test_admin_and_pdk_agree_across_restarts(self) -> None:
        prefix = self.mktemp()
        first = await start_gateway(self, prefix=prefix)
        _, info, _ = await first.call("GET", "/")
        await first.expose("http://127.0.0.1:1", "/id",
                           plugins=({"name": "pre-function", "config": {"access": [GET_ID]}},))
        _, from_lua, _ = await first.get("/id")
        await first.service.stopService()
        second = await start_gateway(self, prefix=prefix)
        _, again, _ = await second.call("GET", "/")
        _, from_lua_again, _ = await second.get("/id")
        self.assertEqual(again["node_id"], info["node_id"])
        self.assertEqual({from_lua, from_lua_again}, {info["node_id"].encode()})
