"""A kongish cluster: two real ``twist kongish`` nodes on one real PostgreSQL database."""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests import postgres
from tests.harness import POOL, deferred
from tests.test_twist import REPO, _Collect, _TwistProcess, free_port, spawn_twist


def answering(text: str) -> str:
    return f"ngx.say({text!r}) return ngx.exit(200)"


class _Node:
    def __init__(self, process: _Collect, proxy: int, admin: int) -> None:
        self.process, self.proxy, self.admin = process, proxy, admin

    async def admin_call(self, method: str, path: str, **data: str) -> tuple[int, dict]:
        response = await treq.request(method, f"http://127.0.0.1:{self.admin}{path}".encode(),
                                      data=data or None, pool=POOL)
        body = await response.content()
        return response.code, json.loads(body) if body else {}

    async def get(self, path: str) -> tuple[int, bytes]:
        response = await treq.get(f"http://127.0.0.1:{self.proxy}{path}".encode(), pool=POOL, timeout=30)
        return response.code, await response.content()


class _Cluster(_TwistProcess, TestCase):
    where: dict[str, str] | None = None

    async def _database(self) -> dict[str, str]:
        """A bootstrapped database of its own, which the nodes started next use."""
        self._use(postgres.fresh_database(self.where))
        code = await self._migrations("bootstrap")
        self.assertEqual(code[2], 0, code)
        return self.env

    def _use(self, settings: dict[str, str]) -> None:
        # no access log: the tests read each node's output through a pipe
        self.env = {"KONGISH_PROXY_ACCESS_LOG": "off", "KONGISH_ADMIN_ACCESS_LOG": "off",
                    **{f"KONGISH_{name.upper()}": value for name, value in settings.items()}}

    def _migrations(self, action: str) -> Deferred[tuple[bytes, bytes, int]]:
        environment = dict(os.environ, **self.env,
                           PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "src"), *sys.path]))
        return getProcessOutputAndValue(sys.executable, ["-m", "kongish.cli", "migrations", action],
                                        env=environment)

    async def _node(self) -> _Node:
        proxy, admin = free_port(), free_port()
        process = spawn_twist(self.mktemp(), (), ("--proxy-listen", f"127.0.0.1:{proxy}",
                                                  "--admin-listen", f"127.0.0.1:{admin}"), self.env)
        self.addCleanup(lambda: None if process.ended.called else ensureDeferred(self._stop(process)))
        await self._ready(process, admin)
        return _Node(process, proxy, admin)

    async def _route(self, node: _Node, name: str, code: str) -> None:
        for path, data in [("/services", {"name": name, "url": "http://127.0.0.1:1"}),
                           (f"/services/{name}/routes", {"name": name, "paths[]": f"/{name}"}),
                           (f"/routes/{name}/plugins", {"name": "pre-function", "config.access[]": code})]:
            status, body = await node.admin_call("POST", path, **data)
            self.assertEqual(status, 201, body)

    async def _until(self, node: _Node, path: str, expected: tuple[int, bytes | None],
                     seconds: float) -> float:
        """Seconds until ``node`` answers ``path`` with ``expected`` (any body for None), polled;
        fails past ``seconds``."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            status, body = await node.get(path)
            if status == expected[0] and expected[1] in (None, body):
                return time.monotonic() - started
            await deferLater(reactor, 0.01, lambda: None)
        self.fail(f"{path} never answered {expected} within {seconds}s")


class ClusterTests(_Cluster):
    @deferred
    async def test_a_write_on_one_node_is_served_by_the_other_within_a_second(self) -> None:
        await self._database()
        a, b = await self._node(), await self._node()
        await self._route(a, "first", answering("first"))
        await self._until(b, "/first", (200, b"first\n"), seconds=1)
        status, plugins = await b.admin_call("GET", "/routes/first/plugins")
        await a.admin_call("PATCH", f"/plugins/{plugins['data'][0]['id']}",
                           **{"config.access[]": answering("changed")})
        await self._until(b, "/first", (200, b"changed\n"), seconds=1)
        await b.admin_call("DELETE", "/routes/first")  # the other way, and the cascade to its plugin
        await self._until(a, "/first", (404, None), seconds=1)
        self.assertEqual((await a.admin_call("GET", "/plugins"))[1]["data"], [])

    @deferred
    async def test_every_node_keeps_a_row_in_the_list_of_nodes(self) -> None:
        await self._database()
        a, b = await self._node(), await self._node()
        await self._route(a, "first", answering("first"))
        await self._until(b, "/first", (200, b"first\n"), seconds=5)
        ids = {(await node.admin_call("GET", "/"))[1]["node_id"] for node in (a, b)}
        self.assertEqual(len(ids), 2)
        for _ in range(200):  # each writes its row at start, then every db_update_frequency
            status, listed = await b.admin_call("GET", "/clustering/nodes")
            if {row["id"] for row in listed["data"]} == ids:
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual({row["id"] for row in listed["data"]}, ids)
        for row in listed["data"]:
            self.assertEqual(set(row), {"id", "hostname", "version", "config_version", "last_seen"})
            self.assertLess(abs(row["last_seen"] - time.time()), 60)

    @deferred
    async def test_concurrent_creates_of_one_name_on_both_nodes_make_one_service(self) -> None:
        await self._database()
        a, b = await self._node(), await self._node()
        answers = await gatherResults([
            ensureDeferred(node.admin_call("POST", "/services", name="same", url="http://127.0.0.1:1"))
            for _ in range(25) for node in (a, b)])
        statuses = sorted(status for status, _ in answers)
        self.assertEqual(statuses, [201] + [409] * 49)
        conflicts = [body for status, body in answers if status == 409]
        self.assertEqual({(body["code"], body["name"], json.dumps(body["fields"])) for body in conflicts},
                         {(5, "unique constraint violation", '{"name": "same"}')})
        for node in (a, b):
            status, services = await node.admin_call("GET", "/services")
            self.assertEqual([service["name"] for service in services["data"]], ["same"])

    @deferred
    async def test_every_acknowledged_write_of_a_killed_node_is_on_the_other(self) -> None:
        await self._database()
        a, b = await self._node(), await self._node()
        acknowledged: list[str] = []

        async def burst() -> None:
            for index in range(1000):
                try:
                    status, body = await a.admin_call("POST", "/services", name=f"s{index}",
                                                      url="http://127.0.0.1:1")
                except Exception:  # cut by the kill
                    return
                if status == 201:
                    acknowledged.append(body["id"])

        writing = ensureDeferred(burst())
        while len(acknowledged) < 20:
            await deferLater(reactor, 0.01, lambda: None)
        assert a.process.transport is not None
        a.process.transport.signalProcess(signal.SIGKILL)
        await writing
        await a.process.ended
        for _ in range(200):
            status, services = await b.admin_call("GET", "/services?size=1000")
            if {service["id"] for service in services["data"]} >= set(acknowledged):
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertLessEqual(set(acknowledged), {service["id"] for service in services["data"]})


class MigrationTests(_Cluster):
    @deferred
    async def test_bootstrap_twice_at_once_then_up_and_list(self) -> None:
        self._use(postgres.fresh_database(self.where))
        first, second = await gatherResults([self._migrations("bootstrap"), self._migrations("bootstrap")])
        self.assertEqual((first[2], second[2]), (0, 0), (first, second))
        self.assertEqual(sorted([b"migrating 001: done" in first[0], b"migrating 001: done" in second[0]]),
                         [False, True])  # one of them did it, under the lock
        up = await self._migrations("up")
        self.assertEqual((up[0], up[2]), (b"Database is already up-to-date\n", 0))
        self.assertEqual((await self._migrations("list"))[0], b"executed: 001\nexecuted: 002\n")

    @deferred
    async def test_a_node_on_a_database_not_bootstrapped_says_so_and_exits(self) -> None:
        self._use(postgres.fresh_database(self.where))
        self.assertEqual((await self._migrations("list"))[0], b"pending: 001\npending: 002\n")
        process = spawn_twist(self.mktemp(), (), ("--proxy-listen", f"127.0.0.1:{free_port()}",
                                                  "--admin-listen", f"127.0.0.1:{free_port()}"), self.env)
        self.assertEqual(await process.ended, 1)
        self.assertIn(b"Database needs bootstrapping: run 'kongish migrations bootstrap'", process.output)


class OutageTests(_Cluster):
    @deferred
    async def test_the_proxy_serves_through_an_outage_and_writes_wait_for_the_database(self) -> None:
        server = postgres.OwnServer()  # this test stops its database
        self.addCleanup(server.stop)
        self.where = server.where
        await self._database()
        self.env["KONGISH_DB_UPDATE_FREQUENCY"] = "1"  # bounds the catch-up after the outage
        a, b = await self._node(), await self._node()
        await self._route(a, "kept", answering("kept"))
        await self._until(b, "/kept", (200, b"kept\n"), seconds=5)
        failures: list[object] = []
        loading = True

        async def load(node: _Node) -> int:
            served = 0
            while loading:
                try:
                    if await node.get("/kept") == (200, b"kept\n"):
                        served += 1
                    else:
                        failures.append("wrong answer")
                except Exception as error:
                    failures.append(error)
            return served

        under_load = gatherResults([ensureDeferred(load(node)) for node in (a, b) for _ in range(3)])
        await deferToThread_(server.stop)
        status, body = await a.admin_call("POST", "/services", name="during", url="http://127.0.0.1:1")
        self.assertEqual((status, body["code"], body["name"]), (503, 8, "database error"), body)
        self.assertEqual((await b.admin_call("GET", "/services/kept"))[0], 200)  # reads serve from memory
        await deferToThread_(server.start)
        for _ in range(100):  # the first write after it is back may find the old connection gone
            status, body = await a.admin_call("POST", "/services", name="after", url="http://127.0.0.1:1")
            if status == 201:
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(status, 201, body)
        await self._route(a, "later", answering("later"))
        await self._until(b, "/later", (200, b"later\n"), seconds=10)
        loading = False
        served = await under_load
        self.assertEqual(failures, [])
        self.assertGreater(min(served), 0)

    @deferred
    async def test_a_node_started_while_the_database_is_down_waits_for_it(self) -> None:
        server = postgres.OwnServer()
        self.addCleanup(server.stop)
        self.where = server.where
        await self._database()
        await deferToThread_(server.stop)
        proxy, admin = free_port(), free_port()
        process = spawn_twist(self.mktemp(), (), ("--proxy-listen", f"127.0.0.1:{proxy}",
                                                  "--admin-listen", f"127.0.0.1:{admin}"), self.env)
        self.addCleanup(lambda: None if process.ended.called else ensureDeferred(self._stop(process)))
        for _ in range(600):
            if process.output.count(b"cannot reach PostgreSQL") >= 2 or process.ended.called:
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertFalse(process.ended.called, process.output[-2000:])
        self.assertGreaterEqual(process.output.count(b"cannot reach PostgreSQL"), 2)  # it tries again
        await deferToThread_(server.start)
        await self._ready(process, admin)
        await self._route(_Node(process, proxy, admin), "late", answering("late"))
        self.assertEqual(await _Node(process, proxy, admin).get("/late"), (200, b"late\n"))


def deferToThread_(function: object) -> Deferred[object]:
    from twisted.internet.threads import deferToThread

    return deferToThread(function)  # type: ignore[arg-type]
