"""The pre-function and post-function plugins, with the real engine and PDK."""
from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kongish import KONG_VERSION
from kongish.lua.engine import LuaEngine, LuaError
from kongish.lua.sandbox import UNTRUSTED_LUA_OFF
from kongish.lua.settings import LuaSettings
from kongish.plugins.interface import IPlugin, IPluginHandlers
from kongish.plugins.pipeline import build_plugin_map
from kongish.plugins.serverless.handler import ServerlessPlugin, serverless_plugins
from kongish.runloop.context import RequestContext
from tests.test_lua_engine import new_context


def entity(name: str, entity_id: str = "id-1", **config: list[str]) -> dict[str, Any]:
    return {"id": entity_id, "name": name, "enabled": True, "route": None, "service": None,
            "consumer": None, "config": config}


def access(handlers: Any) -> RequestContext:
    context = new_context()
    context.phase = "access"
    handlers.run("access", context)
    return context


class ServerlessPluginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine = LuaEngine(LuaSettings(), Clock())
        self.pre, self.post = serverless_plugins(self.engine)

    def test_identity(self) -> None:
        for plugin, name, priority in [(self.pre, "pre-function", 1000000),
                                       (self.post, "post-function", -1000)]:
            self.assertTrue(verifyObject(IPlugin, plugin))
            self.assertEqual((plugin.name, plugin.priority, plugin.version),
                             (name, priority, KONG_VERSION))

    def test_schema_compiles_with_the_engine(self) -> None:
        for plugin in (self.pre, self.post):
            schema = plugin.config_schema
            errors = schema.errors(schema.fill_record({"access": ["x = 1", "print("]}))
            self.assertEqual(errors, {"access": [
                None,
                f"""error parsing {plugin.name}: [string "print("]:1: unexpected symbol near '<eof>'"""]})

    def test_consumer_scope_is_refused(self) -> None:
        self.assertEqual((self.pre.consumer_scoped, self.post.consumer_scoped), (False, False))

    def test_handlers_cover_the_phases_with_code(self) -> None:
        handlers = self.pre.configure(entity("pre-function", access=["x = 1"], log=["y = 2"],
                                             header_filter=[], rewrite=[]))
        self.assertTrue(verifyObject(IPluginHandlers, handlers))
        self.assertEqual(handlers.phases, frozenset({"access", "log"}))
        handlers.close()
        self.assertEqual(handlers.phases, frozenset())

    def test_legacy_functions_run_in_access(self) -> None:
        handlers = self.pre.configure(entity("pre-function", functions=["kong.response.exit(418)"]))
        self.assertEqual(handlers.phases, frozenset({"access"}))
        self.assertEqual(access(handlers).response.status, 418)

    def test_response_exit_with_a_table_body(self) -> None:
        handlers = self.pre.configure(entity(
            "pre-function", access=["return kong.response.exit(406, { message = 'Invalid' })"]))
        response = access(handlers).response
        self.assertEqual((response.status, response.exited, b"".join(response.body)),
                         (406, True, b'{"message":"Invalid"}'))

    def test_ngx_exit_with_ngx_status(self) -> None:
        handlers = self.post.configure(entity("post-function",
                                              access=["ngx.status = 503 ngx.exit(ngx.status)"]))
        self.assertEqual(access(handlers).response.status, 503)

    def test_exit_that_cannot_yield_still_ends_the_request(self) -> None:
        # Inside a C callback the stop cannot yield, and pcall catches that error: the
        # exit must already be recorded, as OpenResty records it before yielding.
        for code in ["pcall(table.sort, {3, 2, 1}, function(a, b) ngx.exit(403) end)",
                     "pcall(string.gsub, 'a', 'a', function() return kong.response.exit(401, 'no') end)"]:
            context = access(self.pre.configure(entity("pre-function", access=[code])))
            self.assertTrue(context.response.exited, code)
            self.assertIn(context.response.status, (401, 403), code)

    def test_runtime_error_is_raised_for_the_pipeline(self) -> None:
        handlers = self.pre.configure(entity(
            "pre-function", access=['error("this should stop the request with a 500")']))
        self.assertRaises(LuaError, access, handlers)

    def test_configuring_again_resets_upvalues(self) -> None:
        counter = entity("pre-function", access=[
            "local count = 0 return function() count = count + 1 "
            "kong.response.exit(200, tostring(count)) end"])
        bodies = []
        for handlers in (self.pre.configure(counter), self.pre.configure(counter)):
            for _ in range(2):
                bodies.append(b"".join(access(handlers).response.body))
        self.assertEqual(bodies, [b"1", b"2", b"1", b"2"])

    def test_pre_function_runs_before_post_function(self) -> None:
        plugins = {plugin.name: plugin for plugin in (self.pre, self.post)}
        plugin_map = build_plugin_map([
            entity("post-function", "id-2",
                   access=["kong.response.exit(200, kong.ctx.shared.seen .. ',post')"]),
            entity("pre-function", "id-1", access=["kong.ctx.shared.seen = 'pre'"]),
        ], plugins.get)
        context = new_context()
        self.assertIsNone(plugin_map.for_request(None, None).run("access", context,
                                    stop_on_exit=True))
        self.assertEqual(context.response.body, [b"pre,post"])

    def test_untrusted_lua_off_configures_but_fails_each_request(self) -> None:
        engine = LuaEngine(LuaSettings(untrusted_lua="off"), Clock())
        plugin = ServerlessPlugin("pre-function", 1000000, engine)
        handlers = plugin.configure(entity("pre-function", access=["kong.response.exit(418)"]))
        with self.assertRaises(LuaError) as raised:
            access(handlers)
        self.assertEqual(raised.exception.message, UNTRUSTED_LUA_OFF)
