"""The plugin pipeline: precedence, priority order, Deferred waits and short-circuits."""
from __future__ import annotations

from typing import Any, cast

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from kongish.http.interfaces import IProxiedRequest
from kongish.plugins.host import PluginHost
from kongish.plugins.interface import IPlugin, IPluginHandlers
from kongish.plugins.pipeline import PluginMap, build_plugin_map
from kongish.plugins.registry import PluginRegistry, UnknownPlugin
from kongish.runloop.context import RequestContext
from kongish.settings import Settings


@implementer(IPluginHandlers)
@attrs.define(eq=False)
class RecordingHandlers:
    """Appends ``label`` to a shared journal in each phase; may wait or exit."""

    label: str
    journal: list[str]
    phases: frozenset = frozenset({"access", "log"})
    waits: Deferred | None = None
    exits: bool = False
    closed: bool = False

    def run(self, phase: str, context: RequestContext) -> Deferred | None:
        self.journal.append(f"{phase}:{self.label}")
        if self.exits:
            context.exit(418)
        return self.waits

    def close(self) -> None:
        self.closed = True


@implementer(IPlugin)
@attrs.define(eq=False)
class RecordingPlugin:
    name: str
    priority: int
    journal: list[str]
    version: str = "1.0.0"
    config_schema: Any = None
    consumer_scoped: bool = True
    comma_escaped_fields: frozenset[str] = frozenset()
    made: list[RecordingHandlers] = attrs.Factory(list)

    def check_entity(self, entity: dict) -> dict:
        return {}

    def configure(self, entity: dict) -> RecordingHandlers:
        handlers = RecordingHandlers(f"{self.name}@{entity['id']}", self.journal,
                                     exits=entity.get("config", {}).get("exit", False))
        self.made.append(handlers)
        return handlers


def entity(plugin_id: str, name: str, route: str | None = None, service: str | None = None,
           **config: Any) -> dict:
    return {"id": plugin_id, "name": name, "enabled": True, "config": config, "consumer": None,
            "route": {"id": route} if route else None, "service": {"id": service} if service else None}


class PipelineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.journal: list[str] = []
        self.first = RecordingPlugin("first", 1000, self.journal)
        self.last = RecordingPlugin("last", -10, self.journal)
        self.plugins = {p.name: p for p in (self.first, self.last)}
        self.context = RequestContext(cast(IProxiedRequest, DummyRequest([b""])))

    def test_interfaces(self) -> None:
        verifyObject(IPlugin, self.first)
        verifyObject(IPluginHandlers, self.first.configure(entity("x", "first")))

    def test_most_specific_instance_wins_and_priority_orders(self) -> None:
        plugin_map = build_plugin_map([
            entity("g", "first"), entity("s", "first", service="S"), entity("rs", "first", "R", "S"),
            entity("gl", "last"), entity("r", "last", route="R"),
        ], self.plugins.get)
        chosen = [c.entity["id"] for c in plugin_map.for_request("R", "S").plugins]
        self.assertEqual(chosen, ["rs", "r"])
        self.assertEqual([c.entity["id"] for c in plugin_map.for_request("R2", "S").plugins], ["s", "gl"])
        self.assertEqual([c.entity["id"] for c in plugin_map.for_request(None, None).plugins], ["g", "gl"])

    def test_disabled_unknown_and_consumer_scoped_instances_do_not_apply(self) -> None:
        disabled = dict(entity("d", "first"), enabled=False)
        consumer = dict(entity("c", "last"), consumer={"id": "C"})
        plugin_map = build_plugin_map([disabled, consumer, entity("u", "unknown")], self.plugins.get)
        self.assertEqual(plugin_map.for_request(None, None).plugins, ())

    def test_unchanged_entities_keep_their_handlers_and_stale_ones_close(self) -> None:
        kept, dropped = entity("k", "first"), entity("d", "last")
        old = build_plugin_map([kept, dropped], self.plugins.get)
        new = build_plugin_map([dict(kept)], self.plugins.get, previous=old)
        self.assertIs(new.configured[0].handlers, old.configured[0].handlers)
        self.assertTrue(cast(RecordingHandlers, old.configured[1].handlers).closed)

    def test_phase_waits_for_deferreds_in_order(self) -> None:
        plugin_map = build_plugin_map([entity("a", "first"), entity("b", "last")], self.plugins.get)
        waiting: Deferred[None] = Deferred()
        self.first.made[0].waits = waiting
        result = plugin_map.for_request(None, None).run("access", self.context)
        self.assertEqual(self.journal, ["access:first@a"])
        waiting.callback(None)
        assert result is not None
        self.assertIsNone(self.successResultOf(result))
        self.assertEqual(self.journal, ["access:first@a", "access:last@b"])

    def test_exit_skips_later_access_handlers_but_not_log(self) -> None:
        plugin_map = build_plugin_map([entity("a", "first", exit=True), entity("b", "last")],
                                      self.plugins.get)
        chain = plugin_map.for_request(None, None)
        self.assertIsNone(chain.run("access", self.context, stop_on_exit=True))
        chain.run("log", self.context)
        self.assertEqual(self.journal, ["access:first@a", "log:first@a", "log:last@b"])
        self.assertEqual(self.context.response.status, 418)

    def test_handler_errors_propagate(self) -> None:
        plugin_map = build_plugin_map([entity("a", "first")], self.plugins.get)
        failing: Deferred[None] = Deferred()
        self.first.made[0].waits = failing
        result = plugin_map.for_request(None, None).run("access", self.context)
        failing.errback(ValueError("boom"))
        self.failureResultOf(result, ValueError)

    def test_empty_map(self) -> None:
        self.assertEqual(PluginMap(()).for_request("R", "S").plugins, ())

    def test_phases_without_handlers_run_nothing(self) -> None:
        plugin_map = build_plugin_map([entity("a", "first"), entity("b", "last")], self.plugins.get)
        chain = plugin_map.for_request(None, None)
        self.assertEqual((chain.handles("access"), chain.handles("body_filter")), (True, False))
        self.assertIsNone(chain.run("header_filter", self.context))
        self.assertEqual((self.journal, self.context.phase), ([], "header_filter"))


class RegistryTests(SynchronousTestCase):
    def test_bundled_off_and_entry_points(self) -> None:
        journal: list[str] = []
        bundled = [RecordingPlugin("pre", 1, journal), RecordingPlugin("post", 0, journal)]
        extra = RecordingPlugin("extra", 5, journal)
        host = PluginHost(MemoryReactorClock(), Settings.load(environ={}))
        given: list[object] = []

        def load(name: str, offered: object) -> RecordingPlugin | None:
            given.append(offered)
            return extra if name == "extra" else None
        registry = PluginRegistry.build(["bundled", "extra"], bundled, host, load)
        self.assertEqual(given, [host])
        self.assertEqual(sorted(registry.plugins), ["extra", "post", "pre"])
        self.assertIs(registry.lookup("extra"), extra)
        self.assertEqual(PluginRegistry.build(["off"], bundled, host).plugins, {})
        with self.assertRaises(UnknownPlugin):
            PluginRegistry.build(["nope"], bundled, host, lambda name, offered: None)
