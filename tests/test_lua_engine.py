"""The Lua engine: compiling, Kong's upvalue rules, waiting, stopping and budgets, on real LuaJIT."""
from __future__ import annotations

import time
from typing import Any, cast

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from kongish.http.interfaces import IProxiedRequest
from kongish.lua.engine import LuaEngine, LuaError, LuaLimitError
from kongish.lua.sandbox import UNTRUSTED_LUA_OFF
from kongish.lua.settings import LuaSettings
from kongish.runloop.context import RequestContext


def new_context() -> RequestContext:
    return RequestContext(request=cast(IProxiedRequest, DummyRequest([b""])))


@attrs.define(eq=False)
class Probe:
    """A tiny ``ngx`` for engine tests, built on the engine's await and stop functions.

    ``ngx.say(...)`` records its arguments with the context current at the
    time; ``ngx.exit(status)`` records and stops; ``ngx.sleep(seconds, ...)``
    waits on the clock and returns its extra arguments; ``ngx.fail(message)``
    waits and then fails; ``ngx.now(...)`` answers at once, without a Deferred.
    """

    engine: LuaEngine
    clock: Clock
    records: list[tuple[RequestContext | None, tuple[Any, ...]]] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        ngx = self.engine.lua.execute(b"""
            local await, stop, record, later, fail, at_once = ...
            return {
              say = function(...) return record(...) end,
              exit = function(status) record("exit", status) return stop() end,
              sleep = function(seconds, ...) return await(later, seconds, ...) end,
              fail = function(message) return await(fail, message) end,
              now = function(...) return await(at_once, ...) end,
            }""", self.engine.await_fn, self.engine.stop_fn, self._record, self._later,
            self._fail, self._at_once)
        self.engine.lua.globals()[b"ngx"] = ngx

    def _record(self, *values: Any) -> None:
        self.records.append((self.engine.current.context, tuple(
            value.decode() if isinstance(value, bytes) else value for value in values)))

    def _later(self, seconds: float, *values: Any) -> Deferred:
        return deferLater(self.clock, seconds, lambda: values)

    def _fail(self, message: bytes) -> Deferred:
        def failing() -> None:
            raise ValueError(message.decode())
        return deferLater(self.clock, 1, failing)

    def _at_once(self, *values: Any) -> tuple[Any, ...]:
        return values

    def said(self) -> list[tuple[Any, ...]]:
        return [values for _, values in self.records]


def make_engine(**overrides: Any) -> tuple[LuaEngine, Probe, Clock]:
    clock = Clock()
    engine = LuaEngine(LuaSettings(**overrides), clock)
    return engine, Probe(engine, clock), clock


def run(engine: LuaEngine, *sources: str, context: RequestContext | None = None) -> Deferred | None:
    return engine.run(engine.load(sources), context or new_context(), "pre-function", "key")


class SettingsTests(SynchronousTestCase):
    def test_unknown_mode_and_empty_limits_are_refused(self) -> None:
        for bad in ({"untrusted_lua": "yes"}, {"instruction_limit": 0}, {"time_limit": 0},
                    {"memory_limit": -1}):
            self.assertRaises(ValueError, LuaSettings, **bad)


class CompileCheckTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine, self.probe, _ = make_engine()

    def test_luajit_message(self) -> None:
        self.assertEqual(self.engine.compile_check("print("),
                         """[string "print("]:1: unexpected symbol near '<eof>'""")

    def test_multiline_source_is_named_by_its_first_line(self) -> None:
        self.assertEqual(self.engine.compile_check("local x = 1\nprint("),
                         """[string "local x = 1..."]:2: unexpected symbol near '<eof>'""")

    def test_long_first_line_is_cut(self) -> None:
        source = "local x = 1 -- " + "a" * 100 + "\nprint("
        self.assertEqual(self.engine.compile_check(source),
                         '[string "local x = 1 -- ' + "a" * 30
                         + """..."]:2: unexpected symbol near '<eof>'""")

    def test_valid_code_passes_without_running(self) -> None:
        for source in ['("hello world!"):find("world")', 'error("should never happen")',
                       "local x = 1 return function() x = x + 1 end", 'return "hello-world"',
                       'ngx.say("ran")', "while true do end"]:
            self.assertIsNone(self.engine.compile_check(source), source)
        self.assertEqual(self.probe.records, [])

    def test_bytecode_is_refused(self) -> None:
        self.assertEqual(self.engine.compile_check("\x1bLJ\x02"),
                         "attempt to load chunk with wrong mode")

    @settings(max_examples=150, deadline=None)
    @given(st.text(max_size=80))
    def test_any_text_gets_an_answer_that_load_agrees_with(self, source: str) -> None:
        problem = self.engine.compile_check(source)
        self.assertIsInstance(problem, (str, type(None)))
        self.assertEqual(self.engine.load([source]).problem, problem)


class UpvalueTests(SynchronousTestCase):
    """Kong's rule: a chunk returning a function is replaced by that function."""

    COUNTER = "local count = 0 return function() count = count + 1 ngx.say(count) end"

    def setUp(self) -> None:
        self.engine, self.probe, _ = make_engine()

    def run_times(self, functions: Any, times: int) -> None:
        for _ in range(times):
            self.assertIsNone(self.engine.run(functions, new_context(), "pre-function", "key"))

    def test_counter_is_unique_over_50_requests(self) -> None:
        self.run_times(self.engine.load([self.COUNTER]), 50)
        self.assertEqual(self.probe.said(), [(n,) for n in range(1, 51)])

    def test_reload_starts_fresh_upvalues(self) -> None:
        self.run_times(self.engine.load([self.COUNTER]), 3)
        self.run_times(self.engine.load([self.COUNTER]), 2)
        self.assertEqual(self.probe.said(), [(1,), (2,), (3,), (1,), (2,)])

    def test_plain_chunk_runs_every_request_and_its_result_is_ignored(self) -> None:
        self.run_times(self.engine.load(["calls = (calls or 0) + 1 ngx.say(calls) return 42"]), 3)
        self.assertEqual(self.probe.said(), [(1,), (2,), (3,)])

    def test_chunks_run_in_order(self) -> None:
        self.run_times(self.engine.load(["ngx.say('first')", "ngx.say('second')"]), 1)
        self.assertEqual(self.probe.said(), [("first",), ("second",)])

    def test_early_exit_on_first_call_runs_the_chunk_once_per_request(self) -> None:
        self.run_times(self.engine.load(["ngx.say('chunk') ngx.exit(200)"]), 2)
        self.assertEqual(self.probe.said(), [("chunk",), ("exit", 200)] * 2)

    def test_early_exit_inside_returned_function_keeps_upvalues(self) -> None:
        source = "local n = 0 return function() n = n + 1 ngx.say(n) ngx.exit(200) end"
        self.run_times(self.engine.load([source]), 3)
        self.assertEqual(self.probe.said(), [(1,), ("exit", 200), (2,), ("exit", 200),
                                             (3,), ("exit", 200)])


class StopTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine, self.probe, _ = make_engine()

    def test_exit_inside_pcall_stops_the_phase(self) -> None:
        result = run(self.engine, "pcall(function() ngx.exit(403) end) ngx.say('after pcall')",
                     "ngx.say('next function')")
        self.assertIsNone(result)
        self.assertEqual(self.probe.said(), [("exit", 403)])

    def test_exit_inside_user_coroutine_stops_the_phase(self) -> None:
        run(self.engine, "coroutine.wrap(function() ngx.exit(401) end)() ngx.say('after')")
        self.assertEqual(self.probe.said(), [("exit", 401)])

    def test_engine_serves_again_after_a_stop(self) -> None:
        run(self.engine, "ngx.exit(500)")
        run(self.engine, "ngx.say('again')")
        self.assertEqual(self.probe.said(), [("exit", 500), ("again",)])


class AwaitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine, self.probe, self.clock = make_engine()

    def test_code_that_does_not_wait_returns_none(self) -> None:
        self.assertIsNone(run(self.engine, "ngx.say(ngx.now('a', 2))"))
        self.assertEqual(self.probe.said(), [("a", 2)])

    def test_await_resumes_with_the_deferred_result(self) -> None:
        done = run(self.engine, "local a, b = ngx.sleep(2, 'x', 7) ngx.say(a, b)")
        self.assertIsInstance(done, Deferred)
        self.assertNoResult(done)
        self.assertEqual(self.probe.said(), [])
        self.clock.advance(2)
        assert done is not None
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(self.probe.said(), [("x", 7)])

    def test_failed_deferred_is_a_lua_error(self) -> None:
        done = run(self.engine, "local ok, err = pcall(ngx.fail, 'upstream gone') ngx.say(ok, err)")
        self.clock.advance(1)
        assert done is not None
        self.successResultOf(done)
        self.assertEqual(self.probe.said(), [(False, "upstream gone")])

    def test_uncaught_failure_fails_the_run(self) -> None:
        done = run(self.engine, "ngx.fail('upstream gone')")
        self.clock.advance(1)
        error = self.failureResultOf(done, LuaError).value
        self.assertEqual(error.message, "upstream gone")

    def test_exit_after_waiting(self) -> None:
        done = run(self.engine, "ngx.sleep(1) ngx.exit(204) ngx.say('not reached')", "ngx.say('no')")
        self.clock.advance(1)
        assert done is not None
        self.successResultOf(done)
        self.assertEqual(self.probe.said(), [("exit", 204)])

    def test_await_inside_user_coroutine(self) -> None:
        done = run(self.engine, """
            local co = coroutine.wrap(function(x) local v = ngx.sleep(1, x * 2) coroutine.yield(v + 1) end)
            ngx.say(co(20))""")
        self.clock.advance(1)
        assert done is not None
        self.successResultOf(done)
        self.assertEqual(self.probe.said(), [(41,)])

    def test_interleaved_requests_see_their_own_context(self) -> None:
        functions = self.engine.load(["ngx.say('start') if ngx.delay then ngx.sleep(ngx.delay) end "
                                      "ngx.say('end')"])
        sleeper, quick = new_context(), new_context()
        self.engine.lua.execute(b"ngx.delay = 5")
        waiting = self.engine.run(functions, sleeper, "pre-function", "key")
        self.engine.lua.execute(b"ngx.delay = nil")
        finished = self.engine.run(functions, quick, "pre-function", "key")
        self.assertIsNone(finished)
        self.assertNoResult(waiting)
        self.assertIsNone(self.engine.current.context)
        self.clock.advance(5)
        assert waiting is not None
        self.successResultOf(waiting)
        self.assertEqual(self.probe.records, [(sleeper, ("start",)), (quick, ("start",)),
                                              (quick, ("end",)), (sleeper, ("end",))])
        self.assertIsNone(self.engine.current.context)

    def test_more_waiting_runs_than_idle_workers(self) -> None:
        functions = self.engine.load(["count = (count or 0) + 1 local mine = count "
                                      "ngx.sleep(1) if mine % 2 == 0 then ngx.exit(mine) end ngx.say(mine)"])
        for _ in range(2):
            waiting = [self.engine.run(functions, new_context(), "pre-function", "key")
                       for _ in range(100)]
            self.clock.advance(1)
            for done in waiting:
                assert done is not None
                self.successResultOf(done)
        self.assertEqual(self.probe.said(), [(n,) if n % 2 else ("exit", n) for n in range(1, 201)])

    def test_current_names_the_running_plugin(self) -> None:
        seen = []
        self.engine.lua.globals()[b"ngx"][b"who"] = lambda: seen.append(
            (self.engine.current.plugin_name, self.engine.current.plugin_key))
        context = new_context()
        self.engine.run(self.engine.load(["ngx.who()"]), context, "post-function", "id-1")
        self.assertEqual(seen, [("post-function", "id-1")])
        self.assertIsNone(self.engine.current.plugin_name)


class ErrorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine, self.probe, self.clock = make_engine()

    def test_runtime_error_carries_message_and_traceback(self) -> None:
        with self.assertRaises(LuaError) as raised:
            run(self.engine, "local function inner() error('this should stop the request') end\ninner()")
        self.assertEqual(raised.exception.message,
                         """[string "local function inner() error('this should sto..."]:1: """
                         "this should stop the request")
        self.assertIn("stack traceback:", raised.exception.traceback)
        self.assertIn("in function 'inner'", raised.exception.traceback)

    def test_non_string_error(self) -> None:
        with self.assertRaises(LuaError) as raised:
            run(self.engine, "error()")
        self.assertEqual(raised.exception.message, "nil")

    def test_python_exception_in_a_pdk_function(self) -> None:
        def broken() -> None:
            raise ValueError("header value must be a string")
        self.engine.lua.globals()[b"ngx"][b"broken"] = broken
        with self.assertRaises(LuaError) as raised:
            run(self.engine, "ngx.broken()")
        self.assertEqual(raised.exception.message, "header value must be a string")

    def test_later_functions_do_not_run_after_an_error(self) -> None:
        self.assertRaises(LuaError, run, self.engine, "error('x')", "ngx.say('no')")
        self.assertEqual(self.probe.said(), [])

    def test_yield_at_top_level_is_an_error(self) -> None:
        with self.assertRaises(LuaError) as raised:
            run(self.engine, "coroutine.yield(1)")
        self.assertEqual(raised.exception.message, "attempt to yield from outside a coroutine")
        run(self.engine, "ngx.say('still serving')")
        self.assertEqual(self.probe.said(), [("still serving",)])

    def test_code_cannot_resume_another_requests_worker(self) -> None:
        functions = self.engine.load(["if parked then ngx.say(coroutine.resume(parked)) "
                                      "else parked = coroutine.running() ngx.sleep(1) ngx.say('first') end"])
        waiting = self.engine.run(functions, new_context(), "pre-function", "key")
        self.engine.run(functions, new_context(), "pre-function", "key")
        self.clock.advance(1)
        assert waiting is not None
        self.successResultOf(waiting)
        self.assertEqual(self.probe.said(), [(False, "cannot resume non-suspended coroutine"),
                                             ("first",)])

    def test_untrusted_lua_off_fails_each_run(self) -> None:
        engine, probe, _ = make_engine(untrusted_lua="off")
        self.assertIsNone(engine.compile_check("ngx.say('x')"))
        functions = engine.load(["ngx.say('x')"])
        for _ in range(2):
            with self.assertRaises(LuaError) as raised:
                engine.run(functions, new_context(), "pre-function", "key")
            self.assertEqual(raised.exception.message, UNTRUSTED_LUA_OFF)
        self.assertEqual(probe.records, [])

    def test_code_that_does_not_compile_fails_each_run(self) -> None:
        functions = self.engine.load(["ngx.say('x')", "print("])
        self.assertRaises(LuaError, self.engine.run, functions, new_context(), "p", "k")
        self.assertEqual(self.probe.said(), [])


class LimitTests(SynchronousTestCase):
    def assertServes(self, engine: LuaEngine, probe: Probe) -> None:
        run(engine, "ngx.say('alive')")
        self.assertEqual(probe.said()[-1], ("alive",))

    def assertLimited(self, engine: LuaEngine, source: str, message: str, seconds: float = 3) -> None:
        started = time.monotonic()
        with self.assertRaises(LuaLimitError) as raised:
            run(engine, source)
        self.assertLess(time.monotonic() - started, seconds)
        self.assertEqual(raised.exception.message, message)
        self.assertIsNone(engine.current.context)

    def test_infinite_loop_hits_the_instruction_limit(self) -> None:
        engine, probe, _ = make_engine()
        self.assertLimited(engine, "while true do end",
                           "Lua code exceeded the limit of 10000000 instructions")
        self.assertServes(engine, probe)

    def test_pcall_and_xpcall_cannot_swallow_the_limit(self) -> None:
        engine, probe, _ = make_engine(instruction_limit=200_000)
        message = "Lua code exceeded the limit of 200000 instructions"
        self.assertLimited(engine, "while true do pcall(function() while true do end end) end", message)
        self.assertLimited(engine, "while true do xpcall(function() while true do end end, "
                                   "function() while true do end end) end", message)
        self.assertLimited(engine, "coroutine.wrap(function() while true do end end)()", message)
        self.assertServes(engine, probe)

    def test_no_hook_is_left_after_any_ending(self) -> None:
        engine, probe, clock = make_engine(instruction_limit=200_000)
        gethook = engine.lua.eval("debug.gethook")
        for source in ["ngx.say('done')", "error('failed')", "ngx.exit(200)", "ngx.sleep(1)",
                       "pcall(function() while true do end end)", "coroutine.yield()"]:
            try:
                run(engine, source)
            except LuaError:
                pass
            self.assertEqual(gethook(), (None, b"", 0), source)
        clock.advance(1)
        self.assertEqual(gethook(), (None, b"", 0))

    def test_a_run_over_budget_leaves_waiting_runs_alone(self) -> None:
        engine, probe, clock = make_engine(instruction_limit=200_000)
        waiting = run(engine, "local s = 0 ngx.sleep(1) for i = 1, 10000 do s = s + i end ngx.say(s)")
        self.assertLimited(engine, "while true do end",
                           "Lua code exceeded the limit of 200000 instructions")
        clock.advance(1)
        assert waiting is not None
        self.successResultOf(waiting)
        self.assertEqual(probe.said(), [(50005000,)])

    def test_the_budget_is_per_run(self) -> None:
        engine, probe, _ = make_engine(instruction_limit=300_000)
        functions = engine.load(["local s = 0 for i = 1, 50000 do s = s + i end ngx.say(s)"])
        for _ in range(5):
            engine.run(functions, new_context(), "pre-function", "key")
        self.assertEqual(probe.said(), [(1250025000,)] * 5)

    def test_the_budget_spans_waits(self) -> None:
        engine, probe, clock = make_engine(instruction_limit=300_000)
        done = run(engine, "for round = 1, 10 do ngx.sleep(1) for i = 1, 50000 do end end")
        for _ in range(10):
            clock.advance(1)
        self.assertEqual(self.failureResultOf(done, LuaLimitError).value.message,
                         "Lua code exceeded the limit of 300000 instructions")

    def test_slow_c_calls_hit_the_time_limit(self) -> None:
        engine, probe, _ = make_engine(time_limit=0.2)
        self.assertLimited(engine, 'local t={} while true do t[#t+1]=("x"):rep(1e6) end',
                           "Lua code exceeded the CPU time limit of 0.2s")
        self.assertServes(engine, probe)

    def test_memory_bomb_hits_the_memory_limit(self) -> None:
        limit = 64 * 1024 * 1024
        engine, probe, _ = make_engine(memory_limit=limit)
        self.assertLimited(engine, "local t = {} local i = 0 while true do i = i + 1 "
                                   "t[i] = ('x'):rep(1e5) .. i end",
                           f"Lua code exceeded the memory limit of {limit} bytes")
        self.assertLess(engine.memory_used(), limit // 2)
        self.assertServes(engine, probe)

    def test_memory_error_caught_by_pcall_is_an_ordinary_value(self) -> None:
        engine, probe, _ = make_engine(memory_limit=64 * 1024 * 1024)
        run(engine, "ngx.say(pcall(string.rep, 'x', 1e9))")
        self.assertEqual(probe.said(), [(False, "not enough memory")])
