"""Per-function metrics: counted from the engine's runs, merged across processes, exposed
in Prometheus's text format (``GET /metrics`` on the Admin API and ``status_listen``)."""
from __future__ import annotations

import json
from typing import Any

import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kongish.lua.cost import CPU_TIME_LIMIT, ERROR_KINDS, TIMER_PHASE, FunctionCost, FunctionId
from kongish.lua.engine import LuaError
from kongish.metrics import CONTENT_TYPE, LATENCY_BUCKETS, FunctionMetrics, exposition, merge_snapshots
from kongish.runloop.context import DRY_RUN_SLOT
from kongish.settings import Settings
from kongish.testing import LuaHarness, StubUpstream
from tests.harness import LOOPBACK, POOL, deferred, port_number, start_gateway

FUNCTION_LABELS = ("plugin", "plugin_id", "phase", "function")


def samples(text: bytes | str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels, as Prometheus would read it."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, plugin_id: str = "p1", phase: str = "access",
          function: int = 1, plugin: str = "pre-function", **extra: str) -> float:
    labels = {"plugin": plugin, "plugin_id": plugin_id, "phase": phase, "function": str(function), **extra}
    return found[(name, tuple(sorted(labels.items())))]


def cost(plugin_id: str = "p1", index: int = 1, phase: str = "access", **fields: Any) -> FunctionCost:
    return FunctionCost(FunctionId("pre-function", plugin_id, phase, index), **fields)


class CountedFromTheEngineTests(SynchronousTestCase):
    """Real runs on the Lua engine, counted by an observer on it."""

    def harness(self, settings: dict[str, str] | None = None, **kwargs: Any) -> LuaHarness:
        lua = LuaHarness.start(settings, **kwargs)
        self.metrics = FunctionMetrics()
        lua.engine.observers.append(self.metrics.observe)
        return lua

    def test_a_dry_run_is_not_counted(self) -> None:
        lua = self.harness()
        real, dry = lua.request(), lua.request()
        dry.slots[DRY_RUN_SLOT] = True
        for context in (real, dry, dry):
            self.successResultOf(lua.run(["ngx.say('hi')"], context, plugin_id="p1"))
        found = samples(exposition(self.metrics.snapshot()))
        self.assertEqual(value(found, "kongish_function_invocations_total"), 1)

    def test_invocations_and_runtime_errors_of_each_function(self) -> None:
        lua = self.harness()
        code = ["if ngx.var.arg_fail then error('boom') end", "local n = 0 for i = 1, 5000 do n = n + i end"]
        for number in range(7):
            fail = number % 3 == 0  # 0, 3, 6: three runs fail, and the second function never runs
            context = lua.request(b"GET /?fail=1 HTTP/1.1\r\nHost: a\r\n\r\n" if fail else
                                  b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            done = lua.run(code, context, plugin_id="p1")
            if fail:
                self.failureResultOf(done)
            else:
                self.successResultOf(done)
        found = samples(exposition(self.metrics.snapshot()))
        self.assertEqual(value(found, "kongish_function_invocations_total"), 7)
        self.assertEqual(value(found, "kongish_function_errors_total", kind="runtime_error"), 3)
        self.assertEqual(value(found, "kongish_function_invocations_total", function=2), 4)
        self.assertEqual(value(found, "kongish_function_errors_total", function=2, kind="runtime_error"), 0)
        for kind in ERROR_KINDS:
            if kind != "runtime_error":
                self.assertEqual(value(found, "kongish_function_errors_total", kind=kind), 0)
        self.assertEqual(value(found, "kongish_function_latency_seconds_count"), 7)
        self.assertEqual(value(found, "kongish_function_latency_seconds_bucket", le="+Inf"), 7)
        self.assertGreater(value(found, "kongish_function_instructions_total", function=2), 0)
        self.assertGreaterEqual(value(found, "kongish_function_cpu_seconds_total"), 0)

    def test_limits_are_counted_by_kind(self) -> None:
        lua = self.harness({"lua_instruction_limit": "100000", "lua_memory_limit": "8m"})
        self.failureResultOf(lua.run(["while true do end"], lua.request(), plugin_id="spin"))
        self.failureResultOf(lua.run(["while true do end"], lua.request(), plugin_id="spin"))
        bomb = "local t = {} for i = 1, 1e6 do t[i] = ('x'):rep(1e4) .. i end"
        self.failureResultOf(lua.run([bomb], lua.request(), plugin_id="bomb"))
        found = samples(exposition(self.metrics.snapshot()))
        self.assertEqual(value(found, "kongish_function_errors_total", "spin", kind="instruction_limit"), 2)
        self.assertEqual(value(found, "kongish_function_invocations_total", "spin"), 2)
        # a run that hit the instruction limit used the whole budget, counted in steps of 1000
        self.assertEqual(value(found, "kongish_function_instructions_total", "spin"), 2 * 100000)
        self.assertEqual(value(found, "kongish_function_errors_total", "bomb", kind="memory_limit"), 1)
        self.assertEqual(value(found, "kongish_function_errors_total", "bomb", kind="instruction_limit"), 0)

    def test_outbound_timeouts_are_counted_per_call(self) -> None:
        upstream = StubUpstream(lambda request: Deferred())
        lua = self.harness({"untrusted_lua_sandbox_requires": "resty.http"}, outbound=upstream)
        code = ("local h = require('resty.http').new() h:set_timeout(500) "
                "h:request_uri('http://a.test/') h:request_uri('http://a.test/') ngx.say('done')")
        done = lua.run([code], lua.request(), plugin_id="caller")
        upstream.clock.advance(0.5)  # type: ignore[attr-defined]
        upstream.clock.advance(0.5)  # type: ignore[attr-defined]
        self.successResultOf(done)
        found = samples(exposition(self.metrics.snapshot()))
        self.assertEqual(value(found, "kongish_function_invocations_total", "caller"), 1)
        self.assertEqual(value(found, "kongish_function_errors_total", "caller", kind="outbound_timeout"), 2)
        self.assertEqual(value(found, "kongish_function_errors_total", "caller", kind="runtime_error"), 0)


class CountsTests(SynchronousTestCase):
    """The counts of given costs, exactly."""

    def test_latency_histogram_instructions_and_cpu(self) -> None:
        metrics = FunctionMetrics()
        for wall in (0.0001, 0.0005, 0.003, 0.003, 0.2, 20.0):
            metrics.observe(None, cost(wall_seconds=wall, instructions=2000, cpu_seconds=0.25))
        metrics.observe(None, cost(error=CPU_TIME_LIMIT, cpu_seconds=1.0))
        found = samples(exposition(metrics.snapshot()))
        buckets = {bound: value(found, "kongish_function_latency_seconds_bucket", le=str(bound))
                   for bound in LATENCY_BUCKETS}
        self.assertEqual(buckets[0.0005], 3)  # 0.0001, 0.0005 and the CPU-limited run's 0 s
        self.assertEqual(buckets[0.0025], 3)
        self.assertEqual(buckets[0.005], 5)
        self.assertEqual(buckets[0.25], 6)
        self.assertEqual(buckets[10.0], 6)
        self.assertEqual(value(found, "kongish_function_latency_seconds_bucket", le="+Inf"), 7)
        self.assertEqual(value(found, "kongish_function_latency_seconds_count"), 7)
        self.assertAlmostEqual(value(found, "kongish_function_latency_seconds_sum"), 20.2066)
        self.assertEqual(value(found, "kongish_function_instructions_total"), 12000)
        self.assertEqual(value(found, "kongish_function_cpu_seconds_total"), 2.5)
        self.assertEqual(value(found, "kongish_function_errors_total", kind="cpu_time_limit"), 1)

    def test_timer_runs_have_their_phase(self) -> None:
        metrics = FunctionMetrics()
        metrics.observe(None, cost(phase=TIMER_PHASE))
        found = samples(exposition(metrics.snapshot()))
        self.assertEqual(value(found, "kongish_function_invocations_total", phase="timer"), 1)

    def test_every_metric_is_named_and_labelled_as_documented(self) -> None:
        metrics = FunctionMetrics()
        metrics.observe(None, cost())
        families = {family.name: family for family in text_string_to_metric_families(
            exposition(metrics.snapshot()).decode())}
        self.assertEqual({name: family.type for name, family in families.items()}, {
            "kongish_function_invocations": "counter", "kongish_function_errors": "counter",
            "kongish_function_latency_seconds": "histogram", "kongish_function_instructions": "counter",
            "kongish_function_cpu_seconds": "counter"})
        kinds = sorted(sample.labels["kind"] for sample in families["kongish_function_errors"].samples)
        self.assertEqual(kinds, sorted(ERROR_KINDS))
        for family in families.values():
            for sample in family.samples:
                self.assertLessEqual(set(FUNCTION_LABELS), set(sample.labels))

    def test_nothing_run_is_an_empty_exposition(self) -> None:
        self.assertEqual(samples(exposition(FunctionMetrics().snapshot())), {})

    def test_two_nodes_in_one_process_count_apart(self) -> None:
        first, second = FunctionMetrics(), FunctionMetrics()
        first.observe(None, cost())
        self.assertEqual(samples(exposition(second.snapshot())), {})
        found = samples(exposition(first.snapshot()))
        self.assertEqual(value(found, "kongish_function_invocations_total"), 1)


class MergeTests(SynchronousTestCase):
    def test_two_workers_snapshots_sum(self) -> None:
        one, two = FunctionMetrics(), FunctionMetrics()
        for _ in range(3):
            one.observe(None, cost(wall_seconds=0.002, instructions=1000, cpu_seconds=0.5))
        one.observe(None, cost(error="runtime_error", wall_seconds=3.0))
        two.observe(None, cost(error="runtime_error", outbound_timeouts=2, instructions=3000))
        two.observe(None, cost(plugin_id="p2", index=2))
        # as the control channel carries them
        snapshots = [json.loads(json.dumps(metrics.snapshot())) for metrics in (one, two)]
        found = samples(exposition(merge_snapshots(snapshots)))
        self.assertEqual(value(found, "kongish_function_invocations_total"), 5)
        self.assertEqual(value(found, "kongish_function_errors_total", kind="runtime_error"), 2)
        self.assertEqual(value(found, "kongish_function_errors_total", kind="outbound_timeout"), 2)
        self.assertEqual(value(found, "kongish_function_instructions_total"), 6000)
        self.assertEqual(value(found, "kongish_function_cpu_seconds_total"), 1.5)
        self.assertEqual(value(found, "kongish_function_latency_seconds_bucket", le="0.0005"), 1)
        self.assertEqual(value(found, "kongish_function_latency_seconds_bucket", le="0.0025"), 4)
        self.assertEqual(value(found, "kongish_function_latency_seconds_bucket", le="2.5"), 4)
        self.assertEqual(value(found, "kongish_function_latency_seconds_bucket", le="5.0"), 5)
        self.assertAlmostEqual(value(found, "kongish_function_latency_seconds_sum"), 3.006)
        self.assertEqual(value(found, "kongish_function_invocations_total", "p2", function=2), 1)
        self.assertEqual(merge_snapshots([one.snapshot()]), one.snapshot())

    def test_snapshots_of_other_buckets_are_refused(self) -> None:
        snapshot = FunctionMetrics().snapshot()
        snapshot["buckets"] = [1.0]
        self.assertRaises(ValueError, merge_snapshots, [snapshot])


class ServedTests(TestCase):
    """``GET /metrics`` on a node's Admin API and its status listener."""

    async def _get(self, url: str) -> tuple[int, bytes, Any]:
        response = await treq.get(url.encode(), pool=POOL)
        return response.code, await response.content(), response.headers

    @deferred
    async def test_served_on_the_admin_api_and_status_listen(self) -> None:
        gateway = await start_gateway(self, database="off", status_listen=LOOPBACK)
        self.assertEqual(len(gateway.service.ports), 3)
        status_url = f"http://127.0.0.1:{port_number(gateway.service.ports[2])}"
        config = {"_format_version": "3.0", "services": [{
            "name": "s", "url": "http://127.0.0.1:1", "routes": [{"paths": ["/m"], "plugins": [{
                "id": "8b5e6f61-5a3b-4d7f-9a6e-1d1f3c3b9a01", "name": "pre-function", "config": {
                    "access": ["if ngx.var.arg_fail then error('boom') end return ngx.exit(200)"]}}]}]}]}
        status, body, _ = await gateway.call("POST", "/config", json={"config": json.dumps(config)})
        self.assertEqual(status, 201, body)
        for path in ("/m", "/m?fail=1", "/m", "/m?fail=1", "/m"):
            status, _, _ = await gateway.get(path)
            self.assertEqual(status, 500 if "fail" in path else 200)
        for base in (gateway.admin, status_url):
            status, text, headers = await self._get(base + "/metrics")
            self.assertEqual(status, 200)
            self.assertEqual(headers.getRawHeaders(b"content-type"), [CONTENT_TYPE.encode()])
            found = samples(text)
            plugin = "8b5e6f61-5a3b-4d7f-9a6e-1d1f3c3b9a01"
            self.assertEqual(value(found, "kongish_function_invocations_total", plugin), 5)
            self.assertEqual(value(found, "kongish_function_errors_total", plugin, kind="runtime_error"), 2)
        self.flushLoggedErrors(LuaError)
        status, body, _ = await self._get(status_url + "/status")
        self.assertEqual(status, 200)
        self.assertIn("server", json.loads(body))
        status, body, _ = await self._get(status_url + "/services")  # the Admin API is not there
        self.assertEqual(status, 404)
        status, body, _ = await gateway.call("GET", "/endpoints")
        self.assertIn("/metrics", body["data"])

    @deferred
    async def test_status_listen_is_off_by_default(self) -> None:
        self.assertEqual(Settings.load(environ={}).status_listen, ())
        self.assertEqual(Settings.load(environ={}).raw["status_listen"], "off")
        gateway = await start_gateway(self, database="off")
        self.assertEqual(len(gateway.service.ports), 2)  # the proxy and the Admin API only
        self.assertEqual(len(gateway.service.admin_factories), 1)
