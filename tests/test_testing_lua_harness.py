"""``kongish.testing.LuaHarness``: serverless code tested on the real engine, as a user
would test a function before installing it."""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kongish.lua.engine import LuaError, LuaLimitError
from kongish.testing import LuaHarness

#: The README's demo function.
HELLO = ("local qs=ngx.req.get_uri_args() if qs and qs.name then ngx.say('Hello '..qs.name..'!') "
         "else ngx.say('Hello Serverless Functions!') end ngx.exit(200)")


class LuaHarnessTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.lua = LuaHarness.start()

    def test_the_demo_function_answers(self) -> None:
        context = self.lua.request(b"GET /test?name=Kong HTTP/1.1\r\nHost: a\r\n\r\n")
        self.successResultOf(self.lua.run([HELLO], context))
        self.assertEqual((context.response.status, context.response.body, context.response.exited),
                         (200, [b"Hello Kong!\n"], True))

    def test_ngx_worker_exiting_once_the_process_stops(self) -> None:
        says = "ngx.say(tostring(ngx.worker.exiting()))"
        before = self.lua.request()
        self.successResultOf(self.lua.run([says], before))
        self.lua.engine.exiting()  # what a stopping KongishService does first
        after = self.lua.request()
        self.successResultOf(self.lua.run([says], after))
        self.assertEqual((before.response.body, after.response.body), ([b"false\n"], [b"true\n"]))

    def test_changes_to_the_upstream_request(self) -> None:
        context = self.lua.request(
            b"POST /a?x=1 HTTP/1.1\r\nHost: a\r\nX-In: v\r\nContent-Length: 2\r\n\r\nhi")
        self.successResultOf(self.lua.run([
            "kong.service.request.set_header('X-Out', kong.request.get_header('x-in') .. "
            "kong.request.get_raw_body()) kong.service.request.set_path('/b')"], context))
        upstream = context.upstream
        assert upstream is not None
        self.assertEqual((upstream.method, upstream.path, upstream.query), ("POST", "/b", "x=1"))
        self.assertEqual(upstream.headers.getRawHeaders(b"x-out"), [b"vhi"])
        self.assertFalse(context.response.exited)

    def test_each_phase_sees_its_own_api(self) -> None:
        context = self.lua.request(phase="header_filter")
        context.response.status = 201
        code = "kong.response.set_header('X-Status', kong.response.get_status())"
        self.successResultOf(self.lua.run([code], context))
        self.assertEqual(context.response.headers.getRawHeaders(b"x-status"), [b"201"])
        failure = self.failureResultOf(self.lua.run(["ngx.say('late')"], self.lua.request(phase="log")),
                                       LuaError)
        self.assertIn("API disabled in the context of log_by_lua*", failure.value.message)

    def test_the_sandbox_holds(self) -> None:
        failure = self.failureResultOf(self.lua.run(["os.execute('true')"], self.lua.request()), LuaError)
        self.assertIn("attempt to call field 'execute' (a nil value)", failure.value.message)

    def test_limits_hold(self) -> None:
        lua = LuaHarness.start({"lua_instruction_limit": "10000"})
        failure = self.failureResultOf(lua.run(["while true do end"], lua.request()), LuaLimitError)
        self.assertEqual(failure.value.message, "Lua code exceeded the limit of 10000 instructions")

    def test_waiting_runs_on_the_harness_clock(self) -> None:
        context = self.lua.request()
        waiting = self.lua.run(["ngx.sleep(2) ngx.say('awake') ngx.exit(200)"], context)
        self.lua.reactor.advance(1.5)
        self.assertNoResult(waiting)
        self.lua.reactor.advance(0.5)
        self.successResultOf(waiting)
        self.assertEqual(context.response.body, [b"awake\n"])

    def test_kong_settings_reach_the_code(self) -> None:
        lua = LuaHarness.start({"untrusted_lua": "on"})
        context = lua.request()
        code = "ngx.say(kong.configuration.untrusted_lua, type(os.execute))"
        self.successResultOf(lua.run([code], context))
        self.assertEqual(context.response.body, [b"onfunction\n"])

    def test_a_partial_request_is_refused(self) -> None:
        self.assertRaises(ValueError, self.lua.request, b"GET / HTTP/1.1\r\nHost: a\r\n")
