"""``GET /status`` counts connections as nginx's stub_status does, on both listeners."""
from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.harness import deferred, start_gateway


class ConnectionCountTests(TestCase):
    @deferred
    async def test_idle_reading_and_answering_connections_are_counted(self) -> None:
        gateway = await start_gateway(self)
        _, before, _ = await gateway.call("GET", "/status")
        # the Admin API connection asking is the one answering (writing)
        self.assertEqual({key: before["server"][key] for key in
                          ("connections_active", "connections_writing", "connections_reading")},
                         {"connections_active": 1, "connections_writing": 1, "connections_reading": 0})
        idle = [await gateway.connect(), await gateway.connect()]
        reading = await gateway.connect()
        for client in [*idle, reading]:
            self.addCleanup(client.transport.loseConnection)  # before the gateway stops
        reading.transport.write(b"GET /x HTTP/1.1\r\nHost: a\r\n")
        expected = {"connections_active": 4, "connections_reading": 1,
                    "connections_waiting": 2, "connections_writing": 1}
        seen: dict[str, int] = {}
        for _ in range(500):  # until the server has accepted and read what was sent
            _, body, _ = await gateway.call("GET", "/status")
            seen = {key: body["server"][key] for key in expected}
            if seen == expected:
                break
            await deferLater(reactor, 0.01)
        self.assertEqual(seen, expected)
        self.assertGreaterEqual(body["server"]["connections_accepted"],
                                before["server"]["connections_accepted"] + 3)
        self.assertEqual(body["server"]["connections_handled"], body["server"]["connections_accepted"])
        for client in [*idle, reading]:
            client.transport.loseConnection()
            await client.closed
        for _ in range(500):
            _, body, _ = await gateway.call("GET", "/status")
            if body["server"]["connections_active"] == 1:
                break
            await deferLater(reactor, 0.01)
        self.assertEqual(body["server"]["connections_active"], 1)
