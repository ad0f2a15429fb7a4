"""Worker processes through a real ``twist kongish`` with ``nginx_worker_processes = 2``.

Every request here goes on a new connection (``POOL`` keeps none), so each one
is accepted by whichever worker the kernel gives it to.
"""
from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Awaitable, Callable

import treq
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.task import deferLater

from tests.harness import POOL, deferred
from tests.test_e2e_hostile_lua import _Gateway
from tests.test_twist import free_port, spawn_twist

#: Which worker answers; it keeps its reactor busy for 20 ms, so that requests arriving
#: meanwhile are accepted by the other worker.
WHO = ("local started = ngx.now() repeat ngx.update_time() until ngx.now() - started > 0.02 "
       "ngx.say(ngx.worker.id(), ' ', ngx.worker.count(), ' ', ngx.worker.pid()) return ngx.exit(200)")
#: Lua stuck inside one C call, where the instruction hook never runs.
STUCK = ("local found = string.find(string.rep('a', 30000), '.-.-.-.-b') "
         "ngx.say('done') return ngx.exit(200)")
#: A catastrophic regex, which ngx.re bounds as PCRE's match limit does.
CATASTROPHIC = ("local m, err = ngx.re.match(('a'):rep(40) .. 'b', '^(a|aa)+$') "
                "ngx.say(tostring(err)) return ngx.exit(200)")


def answering(text: str) -> str:
    return f"ngx.say({text!r}) return ngx.exit(200)"


class _Workers(_Gateway):
    async def _start_workers(self, **settings: str) -> None:
        await self._launch({"KONGISH_NGINX_WORKER_PROCESSES": "2",
                            **{f"KONGISH_{name.upper()}": value for name, value in settings.items()}})

    async def _admin(self, method: str, path: str, **data: str) -> dict:
        response = await treq.request(method, f"http://127.0.0.1:{self.admin}{path}".encode(),
                                      data=data or None, pool=POOL)
        body = await response.content()
        self.assertLess(response.code, 300, body)
        return json.loads(body) if body else {}

    async def _worker_pids(self) -> list[int]:
        return sorted((await self._admin("GET", "/"))["pids"]["workers"])

    async def _answering_workers(self) -> int:
        """How many workers answer the master within its wait (a stuck one does not)."""
        return len((await self._admin("GET", "/status"))["workers"])

    async def _many(self, path: str, count: int = 10) -> list[tuple[int, bytes]]:
        return await gatherResults([ensureDeferred(self._get(path)) for _ in range(count)])

    async def _eventually(self, condition: Callable[[], Awaitable[bool]], what: str,
                          seconds: float = 30) -> None:
        for _ in range(int(seconds / 0.05)):
            if await condition():
                return
            await deferLater(reactor, 0.05, lambda: None)
        self.fail(f"never: {what}: {self.process.output[-3000:]!r}")


class WorkerTests(_Workers):
    @deferred
    async def test_new_connections_reach_both_workers(self) -> None:
        await self._start_workers()
        await self._route("who", WHO)
        seen: dict[int, int] = {}
        for _ in range(50):  # a batch reaches both as a rule; this bounds the wait for one that does
            for status, body in await self._many("/who"):
                self.assertEqual(status, 200, body)
                worker, count, pid = body.split()
                self.assertEqual(count, b"2")
                seen[int(worker)] = int(pid)
            if len(seen) == 2:
                break
        self.assertEqual(sorted(seen), [0, 1])
        self.assertEqual(sorted(seen.values()), await self._worker_pids())
        report = await self._admin("GET", "/status")
        self.assertEqual(sorted(worker["pid"] for worker in report["workers"]), sorted(seen.values()))
        self.assertEqual([vm["pid"] for vm in report["memory"]["workers_lua_vms"]],
                         [worker["pid"] for worker in report["workers"]])
        self.assertGreater(min(worker["rss"] for worker in report["workers"]), 0)
        self.assertEqual(report["server"]["total_requests"],
                         sum(worker["total_requests"] for worker in report["workers"]))
        self.assertGreaterEqual(report["server"]["total_requests"], len(seen))

    @deferred
    async def test_strict_a_write_is_served_by_every_worker_when_it_answers(self) -> None:
        await self._start_workers()
        for version in range(4):
            await self._route(f"v{version}", answering(f"v{version}"))
            self.assertEqual(await self._many(f"/v{version}"), [(200, f"v{version}\n".encode())] * 10)
        plugins = (await self._admin("GET", "/routes/v0/plugins"))["data"]
        changed = {"config.access[]": answering("changed")}
        await self._admin("PATCH", f"/plugins/{plugins[0]['id']}", **changed)
        self.assertEqual(await self._many("/v0"), [(200, b"changed\n")] * 10)
        await self._admin("DELETE", "/routes/v1")
        self.assertEqual({status for status, _ in await self._many("/v1")}, {404})

    @deferred
    async def test_eventual_workers_follow_a_write_soon(self) -> None:
        await self._start_workers(worker_consistency="eventual")
        await self._route("first", answering("first"))
        started = time.monotonic()

        async def served() -> bool:
            return await self._many("/first") == [(200, b"first\n")] * 10
        await self._eventually(served, "the write served by every worker")
        self.assertLess(time.monotonic() - started, 5)

    @deferred
    async def test_a_killed_worker_is_replaced(self) -> None:
        await self._start_workers()
        await self._route("who", WHO)
        before = await self._worker_pids()
        os.kill(before[0], signal.SIGKILL)
        await self._until(lambda: b"starting a new one" in self.process.output, "the master saw it exit")
        self.assertEqual({status for status, _ in await self._many("/who")}, {200})  # the other one answers

        async def replaced() -> bool:
            pids = await self._worker_pids()
            return len(pids) == 2 and before[0] not in pids and before[1] in pids
        await self._eventually(replaced, "a new worker in its place")
        self.assertEqual({status for status, _ in await self._many("/who")}, {200})

    @deferred
    async def test_a_stuck_worker_is_replaced_and_the_other_keeps_answering(self) -> None:
        await self._start_workers(lua_time_limit="1")
        await self._route("stuck", STUCK)
        await self._route("plain", answering("plain"))
        await self._route("regex", CATASTROPHIC)
        stuck = ensureDeferred(self._get("/stuck"))

        async def one_stuck() -> bool:
            return await self._answering_workers() == 1
        await self._eventually(one_stuck, "a worker stuck")
        slowest = 0.0
        for _ in range(20):  # only the other worker accepts now
            started = time.monotonic()
            self.assertEqual(await self._get("/plain"), (200, b"plain\n"))
            slowest = max(slowest, time.monotonic() - started)
        self.assertLess(slowest, 0.5)
        try:
            status, _ = await stuck
        except Exception:  # cut when its worker was killed
            status = 0
        self.assertIn(status, (0, 500))
        await self._until(lambda: b"its Lua has run route stuck, plugin pre-function, phase access for"
                          in self.process.output, "the log names what the stuck worker ran")

        async def both_answer() -> bool:
            return await self._answering_workers() == 2
        await self._eventually(both_answer, "a new worker in the stuck one's place")
        self.assertEqual({status for status, _ in await self._many("/regex")}, {200})
        self.assertEqual(self.process.output.count(b"killing it"), 1)  # the regex stalls nothing

    @deferred
    async def test_a_worker_past_the_rss_limit_is_replaced_gracefully(self) -> None:
        await self._start_workers(worker_rss_limit="160m", lua_memory_limit=str(512 * 1024 * 1024))
        # kept in the function's globals: the worker's memory stays high after the request
        await self._route("hoard", "hoard = hoard or {} for i = 1, 160 do "
                                   "hoard[#hoard + 1] = string.rep('x', 1048576) .. i end "
                                   "ngx.say(ngx.worker.pid()) return ngx.exit(200)")
        await self._route("who", WHO)
        status, body = await self._get("/hoard")
        self.assertEqual(status, 200, body)
        hoarder = int(body)

        async def replaced() -> bool:
            return hoarder not in await self._worker_pids() and len(await self._worker_pids()) == 2
        await self._eventually(replaced, "the worker over the limit replaced")
        self.assertIn(b"over worker_rss_limit", self.process.output)
        self.assertEqual({status for status, _ in await self._many("/who")}, {200})
        report = await self._admin("GET", "/status")
        self.assertLess(max(worker["rss"] for worker in report["workers"]), 160 * 1024 * 1024)

    @deferred
    async def test_a_request_in_flight_at_stop_is_answered_and_sees_the_worker_exiting(self) -> None:
        await self._start_workers()
        await self._route("slow", "kong.log.notice('slow request started') ngx.sleep(1) "
                                  "ngx.say(tostring(ngx.worker.exiting())) return ngx.exit(200)")
        answer = ensureDeferred(self._get("/slow"))
        await self._until(lambda: b"slow request started" in self.process.output,
                          "the request reached a worker")
        assert self.process.transport is not None
        self.process.transport.signalProcess(signal.SIGTERM)
        self.assertEqual(await answer, (200, b"true\n"))
        await self.process.ended

    @deferred
    async def test_stop_ends_every_worker(self) -> None:
        await self._start_workers()
        pids = await self._worker_pids()
        assert self.process.transport is not None
        self.process.transport.signalProcess(signal.SIGTERM)
        await self.process.ended  # twist ends itself with the signal it stopped on, once stopped
        self.assertIn(b"Main loop terminated", self.process.output)
        for pid in pids:
            self.assertFalse(os.path.exists(f"/proc/{pid}") and _alive(pid), pid)


class DeclarativeWorkerTests(_Workers):
    @deferred
    async def test_posted_configuration_is_served_by_every_worker(self) -> None:
        await self._start_workers(database="off")
        for name in ("one", "two"):
            config = json.dumps({"_format_version": "3.0", "services": [{
                "name": name, "url": "http://127.0.0.1:1", "routes": [{"name": name, "paths": [f"/{name}"]}],
                "plugins": [{"name": "pre-function", "config": {"access": [answering(name)]}}]}]})
            response = await treq.post(f"http://127.0.0.1:{self.admin}/config".encode(),
                                       data={"config": config}, pool=POOL)
            self.assertEqual(response.code, 201, await response.text())
            self.assertEqual(await self._many(f"/{name}"), [(200, f"{name}\n".encode())] * 10)
        self.assertEqual({status for status, _ in await self._many("/one")}, {404})


class ReloadTests(_Workers):
    @deferred
    async def test_sighup_replaces_workers_with_the_new_configuration_refusing_nothing(self) -> None:
        prefix, self.proxy, self.admin = self.mktemp(), free_port(), free_port()
        os.makedirs(prefix)
        conf = os.path.join(prefix, "kong.conf")
        with open(conf, "w") as file:
            file.write("nginx_worker_processes = 2\n")
        self.process = spawn_twist(prefix, (), (
            "--config", conf, "--proxy-listen", f"127.0.0.1:{self.proxy}", "--admin-listen",
            f"127.0.0.1:{self.admin}"), {"KONGISH_NGINX_WORKER_PROCESSES": "2"})
        self.addCleanup(lambda: None if self.process.ended.called
                        else ensureDeferred(self._stop(self.process)))
        await self._ready(self.process, self.admin)
        await self._route("plain", answering("plain"))
        before = await self._worker_pids()
        response = await treq.get(f"http://127.0.0.1:{self.proxy}/plain".encode(), pool=POOL)
        self.assertTrue(response.headers.hasHeader(b"x-kong-response-latency"))
        await response.content()
        with open(conf, "a") as file:
            file.write("headers = off\n")
        assert self.process.transport is not None
        self.process.transport.signalProcess(signal.SIGHUP)
        answers: list[int] = []
        while b"kongish workers reloaded" not in self.process.output:  # bounded by the _until below
            answers += [status for status, _ in await self._many("/plain", 5)]
            if len(answers) > 5000:
                break
        await self._until(lambda: b"kongish workers reloaded" in self.process.output, "reloaded")
        self.assertEqual(set(answers), {200})
        after = await self._worker_pids()
        self.assertEqual(set(before) & set(after), set())
        response = await treq.get(f"http://127.0.0.1:{self.proxy}/plain".encode(), pool=POOL)
        self.assertFalse(response.headers.hasHeader(b"x-kong-response-latency"))
        self.assertEqual(await response.content(), b"plain\n")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie awaiting its parent's wait does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
