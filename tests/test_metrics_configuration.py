"""Function metrics follow the configuration: the counts of a function that no longer
exists (its plugin deleted or disabled, an index its phase no longer has) are dropped
when the node's plugin map is rebuilt, in a single process, in a worker and in what a
master keeps of its workers' counts; a run that ends after its function was dropped is
not counted. A function whose code changed at the same plugin id, phase and index keeps
its counts (a Prometheus counter does not go down while its series exists)."""
from __future__ import annotations

import copy
from typing import Any, cast

import attrs
import treq
from twisted.internet.defer import ensureDeferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kongish.admin.call import AdminCall
from kongish.admin.metrics import metrics as metrics_endpoint
from kongish.db.storage import Change
from kongish.lua.cost import TIMER_PHASE, FunctionId
from kongish.lua.settings import WorkerIdentity
from kongish.metrics import FunctionMetrics, LiveFunctions, Snapshot, exposition, merge_snapshots
from kongish.node import Node
from kongish.testing import ProxyHarness, StubResponse
from kongish.workers.supervisor import Worker, WorkerSupervisor
from tests.harness import POOL, deferred, start_gateway
from tests.test_metrics import cost, samples, value

PRE = "8b5e6f61-5a3b-4d7f-9a6e-1d1f3c3b9a01"
POST = "8b5e6f61-5a3b-4d7f-9a6e-1d1f3c3b9a02"
SLEEPY = "8b5e6f61-5a3b-4d7f-9a6e-1d1f3c3b9a03"

CONFIG = {"_format_version": "3.0", "services": [{
    "name": "backend", "url": "http://backend.test", "routes": [
        {"name": "counted", "paths": ["/counted"], "plugins": [
            {"id": PRE, "name": "pre-function", "config": {
                "access": ["local a = 1", "local b = 2", "local c = 3"]}},
            {"id": POST, "name": "post-function", "config": {"header_filter": ["local d = 4"]}}]},
        {"name": "sleepy", "paths": ["/sleepy"], "plugins": [
            {"id": SLEEPY, "name": "pre-function", "config": {
                "access": ["ngx.sleep(1)", "local e = 5"]}}]}]}]}

REQUEST = b"GET /counted HTTP/1.1\r\nHost: gateway.test\r\n\r\n"


def invocations(snapshot: Snapshot) -> dict[tuple[str, str, int], int]:
    """Invocations by (plugin id, phase, function index)."""
    return {(counts["plugin_id"], counts["phase"], counts["function"]): counts["invocations"]
            for counts in snapshot["functions"]}


def write(node: Node, plugin_id: str, entity: dict[str, Any] | None) -> None:
    """Store (or, with None, delete) a plugin entity as a write does: the tables, then the listeners."""
    plugins = node.database.tables["plugins"]
    if entity is None:
        del plugins[plugin_id]
    else:
        plugins[plugin_id] = entity
    for listener in list(node.database.listeners):
        listener([Change("plugins", plugin_id, entity)])


def changed(node: Node, plugin_id: str, **config: Any) -> dict[str, Any]:
    entity = copy.deepcopy(node.database.tables["plugins"][plugin_id])
    entity["config"].update(config)
    return entity


class LiveFunctionsTests(SynchronousTestCase):
    """``FunctionMetrics.follow`` and ``merge_snapshots(live=)`` on given costs."""

    def test_follow_drops_the_others_and_keeps_counting_the_live(self) -> None:
        metrics = FunctionMetrics()
        for index in (1, 2, 3):
            metrics.observe(None, cost("p1", index))
        metrics.observe(None, cost("p2"))
        metrics.follow(LiveFunctions.of([FunctionId("pre-function", "p1", "access", 1)]))
        self.assertEqual(invocations(metrics.snapshot()), {("p1", "access", 1): 1})
        metrics.observe(None, cost("p1", 1))
        metrics.observe(None, cost("p1", 2))  # ended after its index was dropped: not counted
        metrics.observe(None, cost("p2"))
        self.assertEqual(invocations(metrics.snapshot()), {("p1", "access", 1): 2})
        found = samples(exposition(metrics.snapshot()))
        self.assertEqual(value(found, "kongish_function_invocations_total", "p1"), 2)
        self.assertNotIn(("kongish_function_invocations_total", (
            ("function", "2"), ("phase", "access"), ("plugin", "pre-function"), ("plugin_id", "p1"))), found)

    def test_until_told_every_function_is_counted(self) -> None:
        metrics = FunctionMetrics()
        self.assertIsNone(metrics.live)
        metrics.observe(None, cost("anything", 7))
        self.assertEqual(invocations(metrics.snapshot()), {("anything", "access", 7): 1})

    def test_timers_count_while_their_plugin_is_configured(self) -> None:
        live = LiveFunctions.of([FunctionId("pre-function", "p1", "access", 1)])
        self.assertIn(FunctionId("pre-function", "p1", TIMER_PHASE, 1), live)
        self.assertIn(FunctionId("pre-function", "p1", TIMER_PHASE, 2), live)
        self.assertIn(FunctionId("lua", "", TIMER_PHASE, 0), live)  # started outside any plugin
        self.assertNotIn(FunctionId("pre-function", "p2", TIMER_PHASE, 1), live)
        self.assertNotIn(FunctionId("post-function", "p1", TIMER_PHASE, 1), live)
        self.assertNotIn(FunctionId("pre-function", "p1", "header_filter", 1), live)
        self.assertNotIn(("pre-function", "p1", "access", 1), live)

    def test_a_merge_keeps_the_live_functions_of_every_snapshot(self) -> None:
        one, two = FunctionMetrics(), FunctionMetrics()
        one.observe(None, cost("p1"))
        one.observe(None, cost("gone"))
        two.observe(None, cost("p1"))
        two.observe(None, cost("p1", 2))
        live = LiveFunctions.of([FunctionId("pre-function", "p1", "access", 1)])
        self.assertEqual(invocations(merge_snapshots([one.snapshot(), two.snapshot()], live)),
                         {("p1", "access", 1): 2})
        self.assertEqual(len(merge_snapshots([one.snapshot(), two.snapshot()])["functions"]), 3)


class NodeRebuildTests(SynchronousTestCase):
    """A node's counts through the whole proxy flow (``ProxyHarness``) as its plugins change."""

    def setUp(self) -> None:
        self.harness = ProxyHarness.start(CONFIG, lambda request: StubResponse(200, body=b"ok"))
        self.addCleanup(self.harness.close)
        self.node = self.harness.node

    def _send(self, times: int = 1) -> None:
        for _ in range(times):
            self.harness.send(REQUEST)
        self.assertEqual(self.harness.transport.value().count(b"HTTP/1.1 200 OK"), self.sent + times)
        self.sent += times

    sent = 0

    def test_a_phase_with_fewer_functions_drops_the_others_and_keeps_counting_the_first(self) -> None:
        self._send(2)
        self.assertEqual(invocations(self.node.metrics.snapshot()), {
            (PRE, "access", 1): 2, (PRE, "access", 2): 2, (PRE, "access", 3): 2,
            (POST, "header_filter", 1): 2})
        # other code at the same plugin id, phase and index: the same series, still counting
        write(self.node, PRE, changed(self.node, PRE, access=["local changed = true"]))
        self.assertEqual(invocations(self.node.metrics.snapshot()), {
            (PRE, "access", 1): 2, (POST, "header_filter", 1): 2})
        self._send()
        self.assertEqual(invocations(self.node.metrics.snapshot()), {
            (PRE, "access", 1): 3, (POST, "header_filter", 1): 3})
        # the index configured again starts from zero
        write(self.node, PRE, changed(self.node, PRE, access=["local a = 1", "local b = 2"]))
        self._send()
        self.assertEqual(invocations(self.node.metrics.snapshot()), {
            (PRE, "access", 1): 4, (PRE, "access", 2): 1, (POST, "header_filter", 1): 4})

    def test_a_phase_emptied_a_plugin_disabled_or_deleted_drops_its_functions(self) -> None:
        self._send()
        write(self.node, PRE, changed(self.node, PRE, access=None, header_filter=["local x = 1"]))
        self.assertEqual(invocations(self.node.metrics.snapshot()), {(POST, "header_filter", 1): 1})
        self._send()
        self.assertEqual(invocations(self.node.metrics.snapshot()), {
            (PRE, "header_filter", 1): 1, (POST, "header_filter", 1): 2})
        disabled = copy.deepcopy(self.node.database.tables["plugins"][POST])
        disabled["enabled"] = False
        write(self.node, POST, disabled)
        self.assertEqual(invocations(self.node.metrics.snapshot()), {(PRE, "header_filter", 1): 1})
        write(self.node, PRE, None)
        self._send()
        self.assertEqual(invocations(self.node.metrics.snapshot()), {})
        self.assertEqual(samples(exposition(self.node.metrics.snapshot())), {})

    def test_a_whole_configuration_replaced_drops_what_it_no_longer_has(self) -> None:
        self._send()
        entities = {name: list(table.values()) for name, table in self.node.database.tables.items()}
        entities["plugins"] = [plugin for plugin in entities["plugins"] if plugin["id"] != POST]
        self.node.load_declarative(entities, None)
        self.assertEqual(invocations(self.node.metrics.snapshot()), {
            (PRE, "access", 1): 1, (PRE, "access", 2): 1, (PRE, "access", 3): 1})

    def _runs(self) -> list[FunctionId]:
        """The functions whose runs end from now on, as the engine tells its observers."""
        ran: list[FunctionId] = []
        self.node.lua_engine.observers.append(lambda context, cost: ran.append(cost.function))
        return ran

    def test_a_run_still_waiting_when_its_plugin_is_deleted_is_not_counted(self) -> None:
        ran = self._runs()
        self.harness.send(b"GET /sleepy HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        self.assertEqual(self.harness.transport.value(), b"")  # in ngx.sleep
        write(self.node, SLEEPY, None)
        self.harness.reactor.advance(1)
        # the request goes on with the code it started with (as Kong's does); its first
        # function ends after the drop, and its second starts after it: neither is counted
        self.assertIn(b"HTTP/1.1 200 OK", self.harness.transport.value())
        self.assertEqual([function.index for function in ran], [1, 2])
        self.assertEqual(invocations(self.node.metrics.snapshot()), {})

    def test_a_run_still_waiting_when_its_index_is_dropped_is_not_counted(self) -> None:
        self.harness.send(b"GET /sleepy HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        write(self.node, SLEEPY, changed(self.node, SLEEPY, access=["local only = 1"]))
        self.harness.reactor.advance(1)
        self.assertIn(b"HTTP/1.1 200 OK", self.harness.transport.value())
        # index 1 exists still: its run counts there; index 2 does not
        self.assertEqual(invocations(self.node.metrics.snapshot()), {(SLEEPY, "access", 1): 1})

    def test_a_timer_of_a_deleted_plugin_is_no_longer_counted(self) -> None:
        timer = "ngx.timer.every(1, function() local n = 0 end)"
        code = f"if not started then started = true {timer} end"
        write(self.node, PRE, changed(self.node, PRE, access=[code]))
        self._send()
        self.harness.reactor.advance(1)
        self.assertEqual(invocations(self.node.metrics.snapshot()), {
            (PRE, "access", 1): 1, (PRE, TIMER_PHASE, 1): 1, (POST, "header_filter", 1): 1})
        ran = self._runs()
        write(self.node, PRE, None)
        self.harness.reactor.advance(1)  # the timer goes on (as OpenResty's do): uncounted
        self.harness.reactor.advance(1)
        self.assertEqual(ran, [FunctionId("pre-function", PRE, TIMER_PHASE, 1)] * 2)
        self.assertEqual(invocations(self.node.metrics.snapshot()), {(POST, "header_filter", 1): 1})


@attrs.define
class _Workers:
    """A master's workers as ``GET /metrics`` reads them: the snapshots they told."""

    snapshots: list[Snapshot]
    pids: list[int] = attrs.Factory(list)

    async def stats(self) -> list[dict[str, Any]]:
        return []

    async def metrics(self) -> list[Snapshot]:
        return self.snapshots


def _told(*plugin_ids: str) -> Snapshot:
    """A worker's snapshot: one run of each plugin's first access function."""
    metrics = FunctionMetrics()
    for plugin_id in plugin_ids:
        metrics.observe(None, cost(plugin_id))
    return metrics.snapshot()


class MasterTests(SynchronousTestCase):
    """What a master keeps and serves of its workers' counts."""

    def setUp(self) -> None:
        self.harness = ProxyHarness.start(CONFIG, lambda request: StubResponse(200))
        self.addCleanup(self.harness.close)
        self.node = self.harness.node

    def _served(self) -> dict[tuple[str, str, int], int]:
        call = cast(AdminCall, attrs.make_class("Call", {"node": attrs.field()})(self.node))
        status, document = self.successResultOf(ensureDeferred(metrics_endpoint(call)))
        self.assertEqual(status, 200)
        return {(dict(labels)["plugin_id"], dict(labels)["phase"], int(dict(labels)["function"])): int(found)
                for (name, labels), found in samples(document.payload).items()
                if name == "kongish_function_invocations_total"}

    def test_the_master_serves_the_functions_it_has_of_what_a_lagging_worker_tells(self) -> None:
        self.node.workers = _Workers([_told(PRE, SLEEPY), _told(PRE)])
        self.assertEqual(self._served(), {(PRE, "access", 1): 2, (SLEEPY, "access", 1): 1})
        write(self.node, SLEEPY, None)  # the master has it no more; a worker not caught up still tells it
        self.assertEqual(self._served(), {(PRE, "access", 1): 2})

    def test_ended_and_running_workers_counts_are_pruned_at_each_rebuild(self) -> None:
        supervisor = WorkerSupervisor(self.node.settings, self.harness.reactor, self.node, [], "info")
        supervisor.stopping = True  # nothing is started again here
        self.node.database.listeners.append(supervisor._prune_metrics)  # as ``start`` does
        ended, running = Worker(WorkerIdentity(0, 2)), Worker(WorkerIdentity(1, 2))
        ended.metrics, running.metrics = _told(PRE, SLEEPY), _told(PRE, SLEEPY)
        supervisor._processes += [ended, running]
        supervisor._ended(ended, Failure(Exception("stopped")))
        self.assertEqual(invocations(supervisor._retired_metrics),
                         {(PRE, "access", 1): 1, (SLEEPY, "access", 1): 1})
        entity = self.node.database.tables["plugins"][SLEEPY]
        write(self.node, SLEEPY, None)
        self.assertEqual(invocations(supervisor._retired_metrics), {(PRE, "access", 1): 1})
        assert running.metrics is not None
        self.assertEqual(invocations(running.metrics), {(PRE, "access", 1): 1})
        # stored again under the same id: its series starts from zero, not from the old sums
        write(self.node, SLEEPY, entity)
        self.node.workers = supervisor
        self.assertEqual(self._served(), {(PRE, "access", 1): 1})
        # a worker that ends after a deletion adds nothing of the deleted plugin
        write(self.node, PRE, None)
        running.metrics = _told(PRE, SLEEPY)
        supervisor._ended(running, Failure(Exception("stopped")))
        self.assertEqual(invocations(supervisor._retired_metrics), {(SLEEPY, "access", 1): 1})


class ServedTests(TestCase):
    """Through a real gateway on loopback: a deleted plugin's series leave ``GET /metrics``."""

    @deferred
    async def test_a_deleted_plugins_series_leave_the_admin_apis_metrics(self) -> None:
        gateway = await start_gateway(self)  # ports the kernel picks: no race with other tests
        await gateway.expose("http://127.0.0.1:1", "/counted", plugins=(
            {"name": "pre-function", "config": {"access": ["local a = 1", "return ngx.exit(200)"]}},))
        status, body, _ = await gateway.call("GET", "/routes/svc-counted/plugins")
        self.assertEqual(status, 200, body)
        plugin_id = body["data"][0]["id"]
        for _ in range(3):
            status, _, _ = await gateway.get("/counted")
            self.assertEqual(status, 200)

        async def scraped() -> dict[Any, float]:
            response = await treq.get((gateway.admin + "/metrics").encode(), pool=POOL)
            self.assertEqual(response.code, 200)
            return samples(await response.content())

        found = await scraped()
        self.assertEqual(value(found, "kongish_function_invocations_total", plugin_id, function=1), 3)
        self.assertEqual(value(found, "kongish_function_invocations_total", plugin_id, function=2), 3)
        status, body, _ = await gateway.call("DELETE", f"/plugins/{plugin_id}")
        self.assertEqual(status, 204, body)
        found = await scraped()
        self.assertEqual([key for key in found if ("plugin_id", plugin_id) in key[1]], [])
        self.assertEqual(found, {})
        status, _, _ = await gateway.get("/counted")  # no plugin now: the upstream, which is not there
        self.assertEqual(status, 502)
        self.assertEqual(await scraped(), {})
