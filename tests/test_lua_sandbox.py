"""Kong's untrusted_lua modes: what plugin code can and cannot reach, on real LuaJIT."""
from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kongish.lua.engine import LuaEngine, LuaError
from kongish.lua.settings import LuaSettings
from tests.test_lua_engine import make_engine, new_context, run

#: Kong's kong/tools/sandbox/environment/lua.lua, minus LuaJIT's optional table extras.
SAFE = """
_VERSION assert error ipairs next pairs pcall print select tonumber tostring type unpack xpcall
bit.arshift bit.band bit.bnot bit.bor bit.bswap bit.bxor bit.lshift bit.rol bit.ror bit.rshift
bit.tobit bit.tohex
coroutine.create coroutine.resume coroutine.running coroutine.status coroutine.wrap coroutine.yield
io.type jit.os jit.arch jit.version jit.version_num
math.abs math.acos math.asin math.atan math.atan2 math.ceil math.cos math.cosh math.deg math.exp
math.floor math.fmod math.frexp math.huge math.ldexp math.log math.log10 math.max math.min math.modf
math.pi math.pow math.rad math.random math.sin math.sinh math.sqrt math.tan math.tanh
os.clock os.date os.difftime os.time
string.byte string.char string.find string.format string.gmatch string.gsub string.len string.lower
string.match string.rep string.reverse string.sub string.upper
table.concat table.insert table.maxn table.remove table.sort
""".split()

FORBIDDEN = """
load loadstring loadfile dofile debug getmetatable setmetatable rawget rawset rawequal package
python collectgarbage module newproxy getfenv setfenv gcinfo ffi
os.execute os.exit os.remove os.rename os.getenv os.tmpname os.setlocale
io.open io.popen io.read io.write io.lines io.stdout io.stderr
string.dump math.randomseed jit.on jit.off jit.flush jit.attach jit.util jit.opt
""".split()


class SandboxGlobalsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine, self.probe, _ = make_engine()

    def types_of(self, names: list[str]) -> dict[str, str]:
        run(self.engine, " ".join(
            f"ngx.say('{name}', type({name}))" for name in names))
        return dict(self.probe.said())

    def test_safe_globals_are_there(self) -> None:
        self.assertNotIn("nil", self.types_of(SAFE).values())

    def test_unsafe_globals_are_absent(self) -> None:
        self.assertEqual(self.types_of(FORBIDDEN), dict.fromkeys(FORBIDDEN, "nil"))

    def test_string_methods_work_but_dump_is_gone(self) -> None:
        run(self.engine, "ngx.say(('ab'):rep(2), type(('').dump), ('x'):upper())")
        self.assertEqual(self.probe.said(), [("abab", "nil", "X")])

    def test_kong_and_ngx_come_from_the_pdk(self) -> None:
        engine = LuaEngine(LuaSettings(), Clock())
        with self.assertRaises(LuaError) as raised:
            run(engine, "error(type(kong.response.exit) .. ' ' .. type(ngx.exit), 0)")
        self.assertEqual(raised.exception.message, "function function")

    def test_library_tables_refuse_writes(self) -> None:
        for statement, message in [
            ("string.x = 1", "Cannot modify string.x. Protected by the sandbox."),
            ("string.rep = nil", "Cannot modify string.rep. Protected by the sandbox."),
            ("math.pi = 3", "Cannot modify math.pi. Protected by the sandbox."),
            ("table.insert = print", "Cannot modify table.insert. Protected by the sandbox."),
            ("os.time = os.clock", "Cannot modify os.time. Protected by the sandbox."),
            ("coroutine.wrap = nil", "Cannot modify coroutine.wrap. Protected by the sandbox."),
        ]:
            with self.assertRaises(LuaError) as raised:
                run(self.engine, statement)
            self.assertEqual(raised.exception.message, message)
        run(self.engine, "ngx.say(string.rep('y', 2), math.floor(math.pi))")
        self.assertEqual(self.probe.said(), [("yy", 3)])

    def test_global_writes_persist_per_chunk_only(self) -> None:
        writer = self.engine.load(["n = (n or 0) + 1 _G.via_g = n ngx.say(n, via_g)"])
        reader = self.engine.load(["ngx.say(type(n), type(via_g))"])
        for functions in (writer, writer, reader):
            self.engine.run(functions, new_context(), "pre-function", "key")
        self.assertEqual(self.probe.said(), [(1, 1), (2, 2), ("nil", "nil")])
        self.assertIsNone(self.engine.lua.globals()[b"n"])

    def test_require_is_refused_by_default(self) -> None:
        run(self.engine, "ngx.say(pcall(require, 'cjson'))")
        self.assertEqual(self.probe.said(), [(False, "require 'cjson' not allowed within sandbox")])

    def test_require_allows_configured_modules_only(self) -> None:
        engine, probe, _ = make_engine(sandbox_requires=("cjson",))
        run(engine, "ngx.say(require('cjson').encode({a = 1}), pcall(require, 'os'))")
        self.assertEqual(probe.said(), [('{"a":1}', False, "require 'os' not allowed within sandbox")])


class SandboxEnvironmentTests(SynchronousTestCase):
    """untrusted_lua_sandbox_environment: read-only views of named globals."""

    def setUp(self) -> None:
        self.engine, self.probe, _ = make_engine(
            sandbox_environment=("os.getenv", "package", "no.such.thing"))

    def test_named_globals_join_the_safe_ones(self) -> None:
        run(self.engine, "ngx.say(type(os.getenv), type(os.time), type(package.path), type(no))")
        self.assertEqual(self.probe.said(), [("function", "function", "string", "nil")])

    def test_views_refuse_writes_at_any_depth(self) -> None:
        for statement, message in [
            ("os.getenv = nil", "Cannot modify os.getenv. Protected by the sandbox."),
            ("package.path = ''", "Cannot modify package.path. Protected by the sandbox."),
            ("package.loaded.evil = {}", "Cannot modify package.loaded.evil. Protected by the sandbox."),
        ]:
            with self.assertRaises(LuaError) as raised:
                run(self.engine, statement)
            self.assertEqual(raised.exception.message, message)
        self.assertIsNone(self.engine.lua.eval("package.loaded.evil"))


class UntrustedLuaOnTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine, self.probe, _ = make_engine(untrusted_lua="on")

    def test_full_globals(self) -> None:
        run(self.engine, "ngx.say(type(debug.getinfo), type(io.open), type(load), type(require('cjson')))")
        self.assertEqual(self.probe.said(), [("function", "function", "function", "table")])

    def test_global_writes_land_in_the_chunk(self) -> None:
        writer = self.engine.load(["leaked = (leaked or 0) + 1 ngx.say(leaked)"])
        reader = self.engine.load(["ngx.say(type(leaked))"])
        for functions in (writer, writer, reader):
            self.engine.run(functions, new_context(), "pre-function", "key")
        self.assertEqual(self.probe.said(), [(1,), (2,), ("nil",)])
        self.assertIsNone(self.engine.lua.globals()[b"leaked"])


class PythonObjectTests(SynchronousTestCase):
    """Whatever Python objects Lua holds, it can call them but never reach inside."""

    ATTRIBUTES = ("__class__", "__dict__", "__globals__", "__traceback__", "f_globals", "append")

    def probe_userdata(self, engine: LuaEngine, found: str) -> list[tuple[object, ...]]:
        """Try attributes on each userdata in the Lua table ``found``; report what worked."""
        said: list[tuple[object, ...]] = []
        engine.lua.globals()[b"ngx"][b"say"] = lambda *values: said.append(values)
        names = ", ".join(f"'{name}'" for name in self.ATTRIBUTES)
        run(engine, f"""
            for _, value in ipairs({found}) do
              for _, name in ipairs({{{names}}}) do
                local ok, found = pcall(function() return value[name] end)
                if ok and found ~= nil then ngx.say('read', name) end
                if pcall(function() value[name] = 1 end) then ngx.say('wrote', name) end
              end
              ngx.say(type(value))
            end""")
        return said

    def test_functions_and_exceptions_seen_by_sandboxed_code(self) -> None:
        engine, _, _ = make_engine()
        def broken() -> None:
            raise ValueError("no")
        engine.lua.globals()[b"ngx"][b"broken"] = broken
        said = self.probe_userdata(engine, "{ngx.broken, select(2, pcall(ngx.broken)), python}")
        self.assertEqual(said, [(b"userdata",), (b"userdata",)])

    def test_every_userdata_reachable_with_full_globals(self) -> None:
        engine, _, _ = make_engine(untrusted_lua="on")
        said = self.probe_userdata(engine, """(function()
              local found, seen = {}, {}
              local function walk(t, depth)
                if seen[t] or depth > 4 then return end
                seen[t] = true
                for k, v in pairs(t) do
                  for _, x in ipairs({k, v}) do
                    if type(x) == 'userdata' then found[#found + 1] = x
                    elseif type(x) == 'table' then walk(x, depth + 1) end
                  end
                end
              end
              walk(debug.getregistry(), 0)
              walk(_G, 0)
              return found
            end)()""")
        self.assertTrue(said)
        self.assertEqual(set(said), {(b"userdata",)})

    def test_no_python_module_in_any_mode(self) -> None:
        for mode in ("sandbox", "on"):
            engine, probe, _ = make_engine(untrusted_lua=mode)
            run(engine, "ngx.say(type(python), (pcall(require, 'python')))")
            self.assertEqual(probe.said(), [("nil", False)], mode)
