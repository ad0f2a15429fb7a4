"""Attempts to break out of the Lua sandbox or past its budgets, with the real PDK.

Each test is an attack that once worked (or could have): it must now fail
cleanly, as a Lua error or a ``LuaLimitError``, and the engine must go on
serving.
"""
from __future__ import annotations

import time
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from kongish.lua.engine import LuaEngine, LuaError, LuaLimitError
from kongish.lua.settings import LuaSettings
from kongish.runloop.context import RequestContext
from tests.test_lua_engine import new_context

#: Real globals sandboxed code must never get hold of, whatever it walks through.
UNSAFE = """
load loadstring loadfile dofile require getfenv setfenv getmetatable setmetatable
rawget rawset rawequal collectgarbage newproxy module gcinfo
os.execute os.exit os.getenv os.remove os.rename os.tmpname os.setlocale
io.open io.popen io.read io.write io.lines io.close io.input io.output
package.loadlib jit.on jit.off jit.flush math.randomseed
""".split()


def engine_with(**settings: Any) -> LuaEngine:
    return LuaEngine(LuaSettings(**settings), Clock())


def run(engine: LuaEngine, source: str, context: RequestContext | None = None) -> bytes:
    """Run ``source`` in the access phase; what it said."""
    context = context or new_context()
    context.phase = "access"
    engine.run(engine.load([source]), context, "pre-function", "id-1")
    return b"".join(context.response.body)


class LimitCase(SynchronousTestCase):
    def assertFails(self, engine: LuaEngine, source: str, message: str,
                    kind: type[LuaError] = LuaError, seconds: float = 3) -> None:
        started = time.monotonic()
        with self.assertRaises(kind) as raised:
            run(engine, source)
        self.assertLess(time.monotonic() - started, seconds)
        self.assertEqual(raised.exception.message, message)
        self.assertEqual(run(engine, "ngx.say('still serving')"), b"still serving\n")


class ReachTests(SynchronousTestCase):
    """What sandboxed code can get hold of through kong, ngx and the safe globals."""

    WALK = """
        local unsafe, found = kong.__unsafe, {}
        local seen = {}
        local function walk(value, path)
          local kind = type(value)
          if kind == "function" and unsafe[value] then found[#found + 1] = path .. "=" .. unsafe[value] end
          if kind == "userdata" then found[#found + 1] = path .. "=userdata" end
          if kind ~= "table" or seen[value] then return end
          seen[value] = true
          for key, item in pairs(value) do walk(item, path .. "." .. tostring(key)) end
        end
        walk(_G, "_G")
        for _, library in ipairs({"string", "table", "math", "os", "io", "bit", "jit", "coroutine"}) do
          for name in ("byte char find format gmatch gsub rep sub sort concat insert remove "
                       .. "clock date time type resume wrap create floor random arch"):gmatch("%S+") do
            walk(_G[library] and _G[library][name], library .. "." .. name)
          end
        end
        walk(("").gsub, "string method gsub")
        table.sort(found)
        ngx.say(table.concat(found, " "))
    """

    def reachable(self, **settings: Any) -> bytes:
        engine = engine_with(**settings)
        engine.lua.execute(b"""
            local unsafe = {}
            for name in (...):gmatch("%S+") do
              local value = _G
              for part in name:gmatch("[^.]+") do value = value and value[part] end
              if value then unsafe[value] = name end
            end
            for name, value in pairs(debug) do unsafe[value] = "debug." .. name end
            kong.__unsafe = unsafe""", " ".join(UNSAFE).encode())
        return run(engine, self.WALK)

    def test_no_unsafe_function_and_no_python_object_is_reachable(self) -> None:
        self.assertEqual(self.reachable(), b"_G.ngx.null=userdata\n")

    def test_allowed_requires_add_only_their_modules(self) -> None:
        self.assertEqual(self.reachable(sandbox_requires=("cjson",)), b"_G.ngx.null=userdata\n")

    def test_pdk_functions_never_run_metamethods_of_tables_passed_for_strings(self) -> None:
        said = run(engine_with(), """
            local ran = false
            local fake = {encode = function() ran = true return "" end}
            for _, call in ipairs({ngx.parse_http_time, kong.ip.is_trusted, ngx.md5,
                                   function(t) return ngx.re.find("a", "a", t) end}) do
              pcall(call, fake)
            end
            ngx.say(ran, " ", select(2, pcall(ngx.parse_http_time, fake)))""")
        self.assertEqual(
            said, b"false bad argument #1 to 'parse_http_time' (string expected, got table)\n")

    def test_string_metatable_reads_only_the_string_library(self) -> None:
        said = run(engine_with(), "local ok, err = pcall(function() ('').x = 1 end) "
                                  "ngx.say(type(('').x), type(('').dump), type(('').rep), ok, "
                                  "err:match('attempt to index a string value'))")
        self.assertEqual(said, b"nilnilfunctionfalseattempt to index a string value\n")

    def test_error_values_of_any_type_end_the_request(self) -> None:
        engine = engine_with()
        for source, start in [("error({code = 1})", "table: "), ("error(ngx.null)", "userdata: NULL"),
                              ("error(print)", "function: "), ("error(nil)", "nil")]:
            with self.assertRaises(LuaError) as raised:
                run(engine, source)
            self.assertTrue(raised.exception.message.startswith(start), raised.exception.message)

    def test_no_function_changes_what_another_one_sees(self) -> None:
        """Unlike Kong, where ``ngx`` and ``kong`` are one writable table for every plugin."""
        engine = engine_with(sandbox_requires=("cjson",))
        for write, name in [("ngx.kongish_marker = 1", "ngx.kongish_marker"),
                            ("ngx.say = print", "ngx.say"),
                            ("ngx.req.get_headers = nil", "ngx.req.get_headers"),
                            ("kong.response.exit = nil", "kong.response.exit"),
                            ("kong.log.err = print", "kong.log.err"),
                            ("string.format = nil", "string.format"),
                            ("require('cjson').encode = nil", "cjson.encode")]:
            said = run(engine, f"ngx.say(select(2, pcall(function() {write} end)))")
            self.assertEqual(said, f"Cannot modify {name}. Protected by the sandbox.\n".encode())
        run(engine, "table.insert(string, 'x') table.insert(kong.configuration.plugins, 'pwned') "
                    "kong.configuration.plugins[1] = 'pwned'")
        said = run(engine, "ngx.say(#string, ' ', kong.configuration.plugins[1], ' ', "
                           "type(ngx.say), ' ', type(require('cjson').encode))")
        self.assertEqual(said, b"0 bundled function function\n")


class CStackTests(LimitCase):
    """C calls into Lua nest on the C stack; past Lua 5.1's 200 they are an error, not a crash."""

    def test_recursive_gsub_callbacks(self) -> None:
        self.assertFails(engine_with(), "local function f(s) return (s:gsub('.', f)) end f('abc')",
                         """[string "local function f(s) return (s:gsub('.', f)) e..."]:1: """
                         "C stack overflow")

    def test_library_gsub_is_guarded_too(self) -> None:
        said = run(engine_with(), """
            local function f(s) return (string.gsub(s, '.', f)) end
            ngx.say(select(2, pcall(f, 'abc')):match('C stack overflow'))""")
        self.assertEqual(said, b"C stack overflow\n")

    def test_nested_coroutines(self) -> None:
        self.assertFails(engine_with(), "local function f() return coroutine.wrap(f)() end f()",
                         "C stack overflow")

    def test_nested_sort_comparators(self) -> None:
        self.assertFails(engine_with(), """
            local function f() table.sort({2, 1}, function(a, b) f() return a < b end) end
            f()""", """[string "..."]:2: C stack overflow""")

    def test_nesting_below_the_limit_works(self) -> None:
        said = run(engine_with(), """
            local function gsubs(d) if d == 0 then return 'x' end
              return (('a'):gsub('a', function() return gsubs(d - 1) end)) end
            local function wraps(d) if d == 0 then return 'y' end return coroutine.wrap(wraps)(d - 1) end
            ngx.say(gsubs(190), wraps(190))""")
        self.assertEqual(said, b"xy\n")

    def test_nesting_is_counted_per_run_across_waits(self) -> None:
        clock = Clock()
        engine = LuaEngine(LuaSettings(), clock)
        context = new_context()
        context.phase = "access"
        done = engine.run(engine.load(["""
            local function wraps(d, sleep_at)
              if d == sleep_at then ngx.sleep(1) end
              if d == 0 then return 'deep enough' end
              return coroutine.wrap(wraps)(d - 1, sleep_at)
            end
            ngx.say(wraps(150, 100))
            ngx.say(pcall(wraps, 250, 100))"""]), context, "pre-function", "id-1")
        run(engine, "ngx.say(coroutine.wrap(function() return 'meanwhile' end)())")
        clock.advance(1)
        clock.advance(1)
        assert done is not None
        self.successResultOf(done)
        self.assertEqual(b"".join(context.response.body), b"deep enough\nfalseC stack overflow\n")

    def test_guarded_functions_keep_results_and_errors(self) -> None:
        said = run(engine_with(), """
            local t = {3, 1, 2}
            table.sort(t, function(a, b) return a > b end)
            local s, n = ("a-b-c"):gsub("-", function() return "+" end, 1)
            local ok, err = pcall(string.gsub, "x", "x", function() error({code = 7}) end)
            ngx.say(t[1], t[2], t[3], " ", s, n, " ", err.code, " ", ("ab"):gsub("%w", "%0%0"))""")
        self.assertEqual(said, b"321 a+b-c1 7 aabb2\n")

    def test_deep_lua_recursion_is_a_stack_overflow(self) -> None:
        engine = engine_with()
        self.assertFails(engine, "local function f(n) return f(n + 1) + 1 end f(1)", "stack overflow")
        self.assertEqual(run(engine, "local function f() return pcall(f) end ngx.say(select('#', f()) > 0)"),
                         b"true\n")


class PythonWorkTests(LimitCase):
    """PDK work done in Python, which the Lua budget hook cannot see."""

    def test_catastrophic_ngx_re_pattern_fails_like_pcre_match_limit(self) -> None:
        self.assertFails(engine_with(time_limit=0.3), """
            local m, err = ngx.re.match(("a"):rep(40) .. "b", "^(a|aa)+$")
            error(err, 0)""", "pcre_exec() failed: -8")

    def test_catastrophic_ngx_re_in_a_loop_hits_the_cpu_limit(self) -> None:
        self.assertFails(engine_with(time_limit=0.3), """
            while true do pcall(ngx.re.find, ("a"):rep(40) .. "b", "^(a|aa)+$") end""",
                         "Lua code exceeded the CPU time limit of 0.3s", LuaLimitError)

    def test_ngx_re_matches_normally_within_the_budget(self) -> None:
        said = run(engine_with(time_limit=0.3), """
            local m = ngx.re.match("hello world", [[(\\w+) (?<second>\\w+)]])
            ngx.say(m[0], "|", m[1], "|", m.second)""")
        self.assertEqual(said, b"hello world|hello|world\n")

    def test_body_output_is_limited_per_request(self) -> None:
        limit = 8 * 1024 * 1024
        self.assertFails(engine_with(memory_limit=limit), """
            local chunk = ("x"):rep(1024 * 1024)
            for i = 1, 100 do pcall(ngx.say, chunk) end""",
                         f"Lua code exceeded the output limit of {limit} bytes", LuaLimitError)

    def test_header_values_are_limited_per_request(self) -> None:
        limit = 8 * 1024 * 1024
        engine = engine_with(memory_limit=limit)
        for source in ["local v = ('x'):rep(1024 * 1024) for i = 1, 100 do ngx.header['x-' .. i] = v end",
                       "local v = ('x'):rep(1024 * 1024) for i = 1, 100 do "
                       "kong.response.add_header('x', v) end",
                       "local v, many = ('x'):rep(1024 * 1024), {} for i = 1, 1000 do many[i] = v end "
                       "ngx.header.x = many"]:
            self.assertFails(engine, source, f"Lua code exceeded the output limit of {limit} bytes",
                             LuaLimitError)

    def test_output_within_the_limit_is_kept(self) -> None:
        said = run(engine_with(memory_limit=8 * 1024 * 1024),
                   "for i = 1, 3 do ngx.print(('x'):rep(1024 * 1024)) end")
        self.assertEqual(len(said), 3 * 1024 * 1024)


class LogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def logged(self) -> list[tuple[str, LogLevel, str]]:
        return [(event["log_namespace"], event["log_level"], event["text"]) for event in self.events
                if event.get("log_namespace") == "kongish.lua"]

    def test_print_logs_at_notice_like_openresty(self) -> None:
        engine = engine_with()
        run(engine, "print('hello ', nil, ' ', true, ' ', 1) ngx.log(ngx.NOTICE, 'same')")
        self.assertEqual(self.logged(), [("kongish.lua", LogLevel.info, "hello nil true 1"),
                                         ("kongish.lua", LogLevel.info, "same")])

    def test_print_logs_in_untrusted_lua_on_too(self) -> None:
        run(engine_with(untrusted_lua="on"), "print('via env') _G.print('via _G')")
        self.assertEqual([text for _, _, text in self.logged()], ["via env", "via _G"])

    def test_messages_are_cut_like_nginx_error_log_lines(self) -> None:
        run(engine_with(), "ngx.log(ngx.ERR, ('x'):rep(1e6)) kong.log.err(('y'):rep(1e6))")
        self.assertEqual([len(text) for _, _, text in self.logged()], [2048, 2048])
