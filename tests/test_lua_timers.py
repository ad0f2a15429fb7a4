"""``ngx.timer`` and per-function costs on the real Lua engine, on a memory clock."""
from __future__ import annotations

from typing import cast

from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from kongish.lua.cost import CPU_TIME_LIMIT, INSTRUCTION_LIMIT, RUNTIME_ERROR, TIMER_PHASE, FunctionCost
from kongish.lua.engine import LuaError
from kongish.runloop.context import RequestContext
from kongish.testing import LuaHarness

#: Each test's functions tell what their timers did with ``print``, which logs.
SHARED = {"untrusted_lua": "sandbox"}


class _Costs:
    def __init__(self, lua: LuaHarness) -> None:
        self.seen: list[tuple[RequestContext | None, FunctionCost]] = []
        lua.engine.observers.append(lambda context, cost: self.seen.append((context, cost)))

    def of_phase(self, phase: str) -> list[FunctionCost]:
        return [cost for _, cost in self.seen if cost.function.phase == phase]


class TimerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.lua = LuaHarness.start(SHARED)
        self.costs = _Costs(self.lua)
        self.logged: list[LogEvent] = []
        observer = cast(ILogObserver, self.logged.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def run_code(self, code: str) -> RequestContext:
        context = self.lua.request()
        self.successResultOf(self.lua.run([code], context))
        return context

    def fired(self) -> list[str]:
        """What timers printed, ``print('FIRED', ...)``."""
        return [str(event["text"]).removeprefix("FIRED") for event in self.logged
                if str(event.get("text", "")).startswith("FIRED")]

    def test_a_timer_runs_after_its_delay_with_its_arguments(self) -> None:
        context = self.run_code("""
local ok = ngx.timer.at(2, function(premature, a, b)
  print('FIRED', tostring(premature) .. ':' .. a .. ':' .. tostring(b))
end, 'x', nil)
ngx.say(ok, ' ', ngx.timer.pending_count())
""")
        self.assertEqual(context.response.body, [b"true 1\n"])
        self.lua.reactor.advance(1.9)
        self.assertEqual(self.fired(), [])
        self.lua.reactor.advance(0.1)
        self.assertEqual(self.fired(), ["false:x:nil"])
        timer_costs = self.costs.of_phase(TIMER_PHASE)
        self.assertEqual([(c.function.plugin_name, c.function.index, c.error) for c in timer_costs],
                         [("pre-function", 1, None)])

    def test_every_repeats_until_the_process_stops(self) -> None:
        self.run_code("ngx.timer.every(1, function(premature) print('FIRED', premature) end)")
        for _ in range(3):
            self.lua.reactor.advance(1)
        self.lua.engine.exiting()
        self.assertEqual(self.fired(), ["false", "false", "false", "true"])
        self.lua.reactor.advance(5)
        self.assertEqual(len(self.fired()), 4)

    def test_pending_timers_run_prematurely_when_the_process_stops(self) -> None:
        self.run_code("ngx.timer.at(60, function(premature) print('FIRED', premature) end)")
        self.lua.engine.exiting()
        self.assertEqual(self.fired(), ["true"])
        context = self.run_code("ngx.say(select(2, ngx.timer.at(1, function() end)))")
        self.assertEqual(context.response.body, [b"process exiting\n"])

    def test_a_timer_may_wait(self) -> None:
        self.run_code("ngx.timer.at(0, function() ngx.sleep(5) print('FIRED', 'slept') end)")
        self.lua.reactor.advance(0)
        context = self.run_code("ngx.say(ngx.timer.running_count(), ngx.timer.pending_count())")
        self.assertEqual(context.response.body, [b"10\n"])
        self.lua.reactor.advance(5)
        self.assertEqual(self.fired(), ["slept"])

    def test_the_pending_limit(self) -> None:
        lua = LuaHarness.start({**SHARED, "nginx_http_lua_max_pending_timers": "2"})
        context = lua.request()
        self.successResultOf(lua.run(["for i = 1, 2 do ngx.say(ngx.timer.at(1, print)) end "
                                      "ngx.say(select(2, ngx.timer.at(1, print)))"], context))
        self.assertEqual(context.response.body, [b"true\n", b"true\n", b"too many pending timers\n"])

    def test_the_running_limit_drops_a_timer_with_nginxs_line(self) -> None:
        lua = LuaHarness.start({**SHARED, "nginx_http_lua_max_running_timers": "1"})
        self.successResultOf(lua.run(["for i = 1, 2 do ngx.timer.at(0, function() "
                                      "print('FIRED', i) ngx.sleep(1) end) end"], lua.request()))
        lua.reactor.advance(0)
        self.assertIn("1 lua_max_running_timers are not enough",
                      [str(event.get("log_format", "")).format(**event) for event in self.logged])
        lua.reactor.advance(1)
        context = lua.request()
        self.successResultOf(lua.run(["ngx.say(ngx.timer.running_count())"], context))
        self.assertEqual((self.fired(), context.response.body), (["1"], [b"0\n"]))

    def test_a_failing_timer_is_logged_with_who_started_it(self) -> None:
        self.run_code("ngx.timer.at(0, function() error('tick failed') end)")
        self.lua.reactor.advance(0)
        messages = [event["reason"] for event in self.logged if "reason" in event
                    and "timer started by function" in str(event.get("log_format"))]
        self.assertEqual(len(messages), 1)
        self.assertIn("tick failed", messages[0])
        self.assertEqual([c.error for c in self.costs.of_phase(TIMER_PHASE)], [RUNTIME_ERROR])

    def test_each_timer_run_has_the_full_budget(self) -> None:
        lua = LuaHarness.start({**SHARED, "lua_instruction_limit": "100000"})
        costs = _Costs(lua)
        self.successResultOf(lua.run(["ngx.timer.at(0, function() while true do end end)"], lua.request()))
        lua.reactor.advance(0)
        self.assertIn(costs.of_phase(TIMER_PHASE)[0].error, (INSTRUCTION_LIMIT, CPU_TIME_LIMIT))

    def test_request_apis_are_not_there_in_a_timer(self) -> None:
        self.run_code("ngx.timer.at(0, function() ngx.req.get_headers() end)")
        self.lua.reactor.advance(0)
        (cost,) = self.costs.of_phase(TIMER_PHASE)
        self.assertEqual(cost.error, RUNTIME_ERROR)
        self.assertIn("no request is being served", cost.message or "")

    def test_bad_arguments(self) -> None:
        for code, message in [("ngx.timer.at(-1, print)", "invalid delay"),
                              ("ngx.timer.every(0, print)", "delay cannot be zero"),
                              ("ngx.timer.at(0/0, print)", "invalid delay"),
                              ("ngx.timer.at(math.huge, print)", "invalid delay"),
                              ("ngx.timer.at(1)", "bad argument #2 to 'at' (function expected, got nil)"),
                              ("ngx.timer.at('1', print)",
                               "bad argument #1 to 'at' (number expected, got string)")]:
            failure = self.failureResultOf(self.lua.run([code], self.lua.request()), LuaError)
            self.assertIn(message, failure.value.message)
        self.assertEqual(self.lua.engine.timers.counts(), (0, 0))  # none is left pending


class FunctionCostTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.lua = LuaHarness.start({"lua_instruction_limit": "200000"})
        self.costs = _Costs(self.lua)

    def test_each_function_of_a_phase_is_counted_on_its_own(self) -> None:
        context = self.lua.request()
        self.successResultOf(self.lua.run(["local n = 0 for i = 1, 20000 do n = n + i end", "ngx.say('two')"],
                                          context))
        first, second = (cost for _, cost in self.costs.seen)
        self.assertEqual([(c.function.phase, c.function.index, c.error) for c in (first, second)],
                         [("access", 1, None), ("access", 2, None)])
        self.assertGreater(first.instructions, second.instructions)
        self.assertGreaterEqual(first.instructions, 20000)
        self.assertIs(self.costs.seen[0][0], context)

    def test_ngx_exit_ends_the_phase_and_the_next_function_never_runs(self) -> None:
        context = self.lua.request()
        self.successResultOf(self.lua.run(["ngx.exit(204)", "ngx.say('not reached')"], context))
        self.assertEqual((context.response.status, context.response.body, len(self.costs.seen)), (204, [], 1))

    def test_errors_by_kind(self) -> None:
        for code, kind in [("error('boom')", RUNTIME_ERROR), ("while true do end", INSTRUCTION_LIMIT)]:
            self.failureResultOf(self.lua.run([code, "ngx.say('after')"], self.lua.request()), LuaError)
            self.assertEqual(self.costs.seen[-1][1].error, kind)
        self.assertIn("boom", self.costs.seen[0][1].message or "")
        self.assertEqual(len(self.costs.seen), 2)  # the function after a failed one does not run

    def test_a_waiting_function_is_charged_its_wait(self) -> None:
        done = self.lua.run(["ngx.sleep(3)", "ngx.say('then')"], self.lua.request())
        self.lua.reactor.advance(3)
        self.successResultOf(done)
        self.assertEqual([cost.function.index for _, cost in self.costs.seen], [1, 2])
        self.assertEqual(self.costs.seen[0][1].wall_seconds, 3)  # on the engine's clock
