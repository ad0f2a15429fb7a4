"""``GET /metrics`` through a real ``twist kongish`` with two workers: the master sums them."""
from __future__ import annotations

import os
import signal

import treq
from twisted.internet.defer import ensureDeferred, gatherResults

from kongish.metrics import CONTENT_TYPE
from tests.harness import POOL, deferred
from tests.test_e2e_workers import _Workers
from tests.test_metrics import samples, value
from tests.test_twist import free_port, spawn_twist

#: Keeps its worker's reactor busy for 20 ms, so that requests arriving meanwhile go to the
#: other worker; fails when asked to, else says which worker ran it.
COUNTED = ("local started = ngx.now() repeat ngx.update_time() until ngx.now() - started > 0.02 "
           "if ngx.var.arg_fail then error('boom') end "
           "ngx.say(ngx.worker.id()) return ngx.exit(200)")


class _Counting(_Workers):
    async def _start_counting(self) -> None:
        self.status = free_port()
        await self._start_workers(status_listen=f"127.0.0.1:{self.status}")
        await self._route("counted", COUNTED)
        plugins = (await self._admin("GET", "/routes/counted/plugins"))["data"]
        self.plugin_id = plugins[0]["id"]

    async def _send_until_both_workers_ran(self) -> tuple[int, int]:
        """Batches of concurrent requests, 3 in 10 failing, until both workers answered one;
        how many were sent, and how many of them failed."""
        sent = failed = 0
        seen: set[bytes] = set()
        for _ in range(50):  # a batch reaches both as a rule; this bounds the wait for one that does
            paths = ["/counted?fail=1" if number % 3 == 0 else "/counted" for number in range(10)]
            for path, (status, body) in zip(paths, await self._many_of(paths), strict=True):
                if "fail" in path:
                    self.assertEqual(status, 500, body)
                    failed += 1
                else:
                    self.assertEqual(status, 200, body)
                    seen.add(body.strip())
                sent += 1
            if len(seen) == 2:
                return sent, failed
        self.fail(f"one worker answered everything: {seen}")

    async def _many_of(self, paths: list[str]) -> list[tuple[int, bytes]]:
        return await gatherResults([ensureDeferred(self._get(path)) for path in paths])


class WorkerMetricsTests(_Counting):
    async def _counts(self, port: int) -> tuple[float, float]:
        response = await treq.get(f"http://127.0.0.1:{port}/metrics".encode(), pool=POOL)
        text = await response.content()
        self.assertEqual(response.code, 200, text)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [CONTENT_TYPE.encode()])
        found = samples(text)
        return (value(found, "kongish_function_invocations_total", self.plugin_id),
                value(found, "kongish_function_errors_total", self.plugin_id, kind="runtime_error"))

    @deferred
    async def test_metrics_sum_both_workers_on_status_listen_and_the_admin_api(self) -> None:
        await self._start_counting()
        sent, failed = await self._send_until_both_workers_ran()
        self.assertGreater(failed, 0)
        for port in (self.status, self.admin):
            self.assertEqual(await self._counts(port), (sent, failed))
        response = await treq.get(f"http://127.0.0.1:{self.status}/status".encode(), pool=POOL)
        self.assertEqual(len((await response.json())["workers"]), 2)

    @deferred
    async def test_replaced_workers_counts_are_kept(self) -> None:
        await self._start_counting()
        sent, failed = await self._send_until_both_workers_ran()
        before = await self._worker_pids()
        # a reload replaces each worker gracefully: it tells its last counts as it exits
        assert self.process.transport is not None
        self.process.transport.signalProcess(signal.SIGHUP)
        await self._until(lambda: b"kongish workers reloaded" in self.process.output, "reloaded")
        reloaded = await self._worker_pids()
        self.assertEqual(set(before) & set(reloaded), set())
        self.assertEqual(await self._counts(self.status), (sent, failed))
        more, more_failed = await self._send_until_both_workers_ran()
        self.assertEqual(await self._counts(self.status), (sent + more, failed + more_failed))
        # a killed worker keeps what it told at the last scrape (just above): nothing since
        os.kill(reloaded[0], signal.SIGKILL)

        async def replaced() -> bool:
            pids = await self._worker_pids()
            return len(pids) == 2 and reloaded[0] not in pids
        await self._eventually(replaced, "a new worker in the killed one's place")
        self.assertEqual(await self._counts(self.admin), (sent + more, failed + more_failed))


class DeletedFunctionTests(_Counting):
    """A deleted plugin's series leave ``GET /metrics``: each worker drops its counts as it
    catches up, and the master those it keeps of replaced workers."""

    async def _launch(self, env: dict[str, str]) -> None:
        prefix, self.proxy, self.admin = self.mktemp(), free_port(), free_port()
        self.process = spawn_twist(prefix, (), ("--proxy-listen", f"127.0.0.1:{self.proxy}",
                                                "--admin-listen", f"127.0.0.1:{self.admin}"), env)
        self.addCleanup(lambda: None if self.process.ended.called
                        else ensureDeferred(self._stop(self.process)))
        await self._ready(self.process, self.admin)

    async def _invocations(self) -> dict[str, float]:
        """Invocations of the first access function, by plugin id."""
        response = await treq.get(f"http://127.0.0.1:{self.admin}/metrics".encode(), pool=POOL)
        text = await response.content()
        self.assertEqual(response.code, 200, text)
        return {dict(labels)["plugin_id"]: found for (name, labels), found in samples(text).items()
                if name == "kongish_function_invocations_total"}

    @deferred
    async def test_a_deleted_plugins_series_are_gone_and_start_again_from_zero(self) -> None:
        await self._launch({"KONGISH_NGINX_WORKER_PROCESSES": "2"})  # strict: a write is served when answered
        await self._route("counted", COUNTED)
        plugin = (await self._admin("GET", "/routes/counted/plugins"))["data"][0]
        self.plugin_id = plugin["id"]
        sent, _ = await self._send_until_both_workers_ran()
        # a reload replaces both workers: the master keeps what they counted
        assert self.process.transport is not None
        self.process.transport.signalProcess(signal.SIGHUP)
        await self._until(lambda: b"kongish workers reloaded" in self.process.output, "reloaded")
        more, _ = await self._send_until_both_workers_ran()
        self.assertEqual(await self._invocations(), {self.plugin_id: sent + more})
        await self._admin("DELETE", f"/plugins/{self.plugin_id}")
        self.assertEqual(await self._invocations(), {})
        # stored again under the same id: from zero, in the workers and in the master's sums
        await self._admin("PUT", f"/plugins/{self.plugin_id}", **{
            "name": "pre-function", "route.id": plugin["route"]["id"], "config.access[]": COUNTED})
        self.assertEqual(await self._invocations(), {})
        again, _ = await self._send_until_both_workers_ran()
        self.assertEqual(await self._invocations(), {self.plugin_id: again})
