"""Hostile Lua through a real ``twist kongish``: a bad function costs its own request a 500.

Each test starts the gateway with a small ``lua_memory_limit`` (so bombs are
quick), installs the attacks and a victim route, and checks that after each
attack the process still serves the victim and its Admin API.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable

import treq
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers

from tests.harness import POOL, deferred
from tests.test_twist import _TwistProcess, free_port, spawn_twist

MEMORY_LIMIT = 32 * 1024 * 1024

VICTIM = "local h = ngx.req.get_headers() ngx.say('victim ok') return ngx.exit(200)"

#: Ways to fill the VM, then make the PDK (Python) work near the cap.
MEMORY_ATTACKS = {
    # small allocations up to the cap, then a PDK call
    "fill-then-say": "local hold = {} for _, size in ipairs({8388608, 1048576, 65536, 4096, 256, 16}) "
                     "do pcall(function() while true do hold[#hold+1] = string.rep('x', size) .. #hold end "
                     "end) end ngx.say('survived') return ngx.exit(200)",
    # within a few KB of the cap, then PDK calls returning large strings
    "fill-then-large-result": "local s = string.rep('a', 1048576) local hold = {} "
                              "for _, size in ipairs({8388608, 1048576, 65536, 1024, 64}) do "
                              "pcall(function() while true do hold[#hold+1] = string.rep('x', size) "
                              ".. #hold end end) end "
                              "for i = 1, 20 do pcall(ngx.encode_base64, s) pcall(ngx.req.get_headers) end "
                              "return ngx.exit(200)",
    "coroutine-bomb": "local t = {} while true do t[#t+1] = coroutine.create(function() end) end",
    # kept in the function's globals, so it outlives the request
    "global-hoard": "hoard = hoard or {} "
                    "while true do hoard[#hoard+1] = string.rep('y', 65536) .. #hoard end",
    # kept in a returned function's upvalues
    "upvalue-hoard": "local hoard = {} return function() "
                     "while true do hoard[#hoard+1] = string.rep('z', 65536) .. #hoard end end",
    "cache-fill": "for i = 1, 1e6 do kong.cache:get('k' .. i, nil, "
                  "function() return {string.rep('c', 1048576) .. i} end) end return ngx.exit(200)",
}


class _Gateway(_TwistProcess, TestCase):
    """A running ``twist kongish`` with a victim route."""

    async def _start(self, **settings: str) -> None:
        await self._launch({f"KONGISH_{name.upper()}": value for name, value in settings.items()})
        await self._route("victim", VICTIM)

    async def _launch(self, env: dict[str, str]) -> None:
        prefix, self.proxy, self.admin = self.mktemp(), free_port(), free_port()
        self.memory_limit = int(env.get("KONGISH_LUA_MEMORY_LIMIT", 256 * 1024 * 1024))
        self.process = spawn_twist(prefix, (), ("--proxy-listen", f"127.0.0.1:{self.proxy}",
                                                "--admin-listen", f"127.0.0.1:{self.admin}"), env)
        self.addCleanup(lambda: None if self.process.ended.called
                        else ensureDeferred(self._stop(self.process)))
        await self._ready(self.process, self.admin)

    async def _until(self, condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
        """Wait, within a bound, for ``condition``: the gateway's log reaches this process
        through a pipe, after the answers it wrote to sockets."""
        for _ in range(int(seconds / 0.05)):
            if condition():
                return
            await deferLater(reactor, 0.05, lambda: None)
        self.fail(f"never: {what}: {self.process.output[-2000:]!r}")

    async def _logged(self, text: bytes, count: int = 1) -> None:
        """Wait until ``text`` is in the gateway's output ``count`` times, then check it is not more."""
        await self._until(lambda: self.process.output.count(text) >= count, text.decode())
        self.assertEqual(self.process.output.count(text), count, text)

    def _cpu_seconds(self) -> float:
        """CPU time the gateway process has used: what an attack costs, whatever the machine's load."""
        assert self.process.transport is not None
        with open(f"/proc/{self.process.transport.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    async def _route(self, name: str, code: str) -> None:
        base = f"http://127.0.0.1:{self.admin}"
        for path, data in [("/services", {"name": name, "url": "http://127.0.0.1:1"}),
                           (f"/services/{name}/routes", {"name": name, "paths[]": f"/{name}"}),
                           (f"/routes/{name}/plugins", {"name": "pre-function", "config.access[]": code})]:
            response = await treq.post((base + path).encode(), data=data, pool=POOL)
            self.assertEqual(response.code, 201, await response.text())

    async def _get(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.proxy}{path}".encode()
        response = await treq.get(url, pool=POOL, timeout=60)
        return response.code, await response.content()

    async def _healthy(self, after: str) -> None:
        self.assertEqual(await self._get("/victim"), (200, b"victim ok\n"),
                         f"after {after}: {self.process.output[-3000:]!r}")
        response = await treq.get(f"http://127.0.0.1:{self.admin}/status?unit=b".encode(), pool=POOL)
        self.assertEqual(response.code, 200, f"after {after}")
        status = json.loads(await response.content())
        used = int(status["memory"]["workers_lua_vms"][0]["http_allocated_gc"])
        self.assertLess(used, self.memory_limit, f"after {after}: the VM is still full")


class HostileLuaTests(_Gateway):
    """Memory and CPU bombs (issue 9, items 1, 2 and 5)."""

    @deferred
    async def test_memory_bombs_cost_only_their_request(self) -> None:
        await self._start(lua_memory_limit=str(MEMORY_LIMIT), lua_time_limit="5",
                          lua_instruction_limit="100000000")
        for name, code in MEMORY_ATTACKS.items():
            await self._route(name, code)
        for round_ in range(2):  # again, on a VM that has been through every attack
            for name in MEMORY_ATTACKS:
                status, body = await self._get(f"/{name}")
                self.assertEqual(status, 500, f"{name}: {body!r}")
                await self._healthy(f"{name}, round {round_ + 1}")
        self.assertFalse(self.process.ended.called)
        self.assertNotIn(b"PANIC", self.process.output)

    @deferred
    async def test_budgets_are_charged_across_resumes(self) -> None:
        """``ngx.sleep(0)`` resumes are each too short for the budget hook; their sum is not."""
        await self._start(lua_time_limit="0.2")
        await self._route("spinner", "while true do ngx.sleep(0) end")
        await self._route("counted", "local n = 0 while true do n = n + 1 ngx.sleep(0) end")
        for name in ("spinner", "counted"):
            status, body = await self._get(f"/{name}")
            self.assertEqual(status, 500, body)
            await self._healthy(name)
        await self._until(lambda: b"exceeded the CPU time limit of 0.2s" in self.process.output, "logged")

    @deferred
    async def test_c_and_pdk_work_is_charged_call_by_call(self) -> None:
        """Loops of one slow C or PDK call each: the hook alone (every 1000 instructions)
        let such a loop run for seconds past a 0.25 s budget; each call is now charged."""
        await self._start(lua_time_limit="0.25")
        attacks = {
            "md5": "local s = string.rep('a', 48 * 1048576) while true do ngx.md5(s) end",
            "upper": "local s = string.rep('a', 64 * 1048576) while true do s:upper() end",
            "sort": "local t = {} for i = 1, 1000000 do t[i] = (i * 7919) % 1000003 end "
                    "while true do table.sort(t) end",
            "base64": "local s = string.rep('a', 32 * 1048576) while true do ngx.encode_base64(s) end",
        }
        for name, code in attacks.items():
            await self._route(name, code)
        for name in attacks:
            started = self._cpu_seconds()
            status, body = await self._get(f"/{name}")
            used = self._cpu_seconds() - started
            self.assertEqual(status, 500, body)
            self.assertLess(used, 1.5, f"{name} held the process for {used:.1f} CPU seconds")
            await self._healthy(name)


#: Tries to change what other functions call and read, under pcall. Six writes are refused;
#: two (into kong.configuration.plugins and the string library) land in its own copy or view.
HIJACKER = """
local stash = {}
local attempts = {
  function() local real = ngx.req.get_headers
    ngx.req.get_headers = function(...)
      local h = real(...) stash[#stash+1] = h.authorization return h end end,
  function() local say = ngx.say ngx.say = function(...) return say('[hijacked] ', ...) end end,
  function() kong.response.exit = function() end end,
  function() kong.configuration.plugins[1] = 'pwned' end,
  function() table.insert(string, 'x') end,
  function() string.upper = function() return 'pwned' end end,
  function() local cjson = require('cjson') local encode = cjson.encode
    cjson.encode = function(v) stash[#stash+1] = 'seen' return encode(v) end end,
  function() ngx.__stash = stash end,
}
local refused = 0
for _, attempt in ipairs(attempts) do
  if not pcall(attempt) then refused = refused + 1 end
end
ngx.say(refused, ' of ', #attempts, ' refused')
return ngx.exit(200)
"""

#: Reads what the hijacker tried to change.
READER = """
local h = ngx.req.get_headers()
ngx.say(h.authorization, ' ', kong.configuration.plugins[1], ' ', #string, ' ', string.upper('ok'),
        ' ', require('cjson').encode({1}), ' ', tostring(ngx.__stash))
return kong.response.exit(200)
"""


class IsolationTests(_Gateway):
    """One function cannot change what another one calls or reads (issue 9, item 3)."""

    @deferred
    async def test_no_function_changes_another_ones_view(self) -> None:
        await self._start(untrusted_lua_sandbox_requires="cjson")
        await self._route("hijacker", HIJACKER)
        await self._route("reader", READER)
        for _ in range(2):  # the second time, on what the first one left
            self.assertEqual(await self._get("/hijacker"), (200, b"6 of 8 refused\n"))
            url = f"http://127.0.0.1:{self.proxy}/reader".encode()
            response = await treq.get(url, headers=Headers({b"Authorization": [b"Bearer secret"]}), pool=POOL)
            self.assertEqual((response.code, await response.content()),
                             (200, b"Bearer secret bundled 0 OK [1] nil\n"))
            await self._healthy("the hijacker")


class AbandonedTests(_Gateway):
    """A request whose client left ends at its Lua's next yield, as nginx ends it (item 6)."""

    @deferred
    async def test_code_waiting_for_a_client_that_left_is_ended(self) -> None:
        await self._start()
        await self._route("forever", "ngx.sleep(1e9) ngx.say('never')")
        await self._route("looping", "while true do pcall(ngx.sleep, 3600) end")
        abandoned = {"forever": 20, "looping": 5}
        for name in abandoned:  # nginx runs the log phase of a request whose client left
            response = await treq.post(f"http://127.0.0.1:{self.admin}/routes/{name}/plugins".encode(), data={
                "name": "post-function",
                "config.log[]": "kong.log.notice('ended ', ngx.var.uri, ' ', kong.response.get_status())"},
                pool=POOL)
            self.assertEqual(response.code, 201, await response.text())
        for name, count in abandoned.items():
            waits = [treq.get(f"http://127.0.0.1:{self.proxy}/{name}".encode(), persistent=False)
                     for _ in range(count)]
            await self._healthy(f"{name} started")  # the requests are in: their code waits
            for waiting in waits:
                waiting.cancel()  # the client closes its connection
                waiting.addErrback(lambda failure: None)
        for name, count in abandoned.items():
            line = f'"text": "ended /{name} 499"'.encode()  # once per JSON event
            await self._logged(line, count)
        await self._healthy("the abandoned requests")


class RouteRegexTests(_Gateway):
    """A backtracking route regex costs at most its bound, not the node (item 9)."""

    @deferred
    async def test_a_catastrophic_route_regex_does_not_hold_the_node(self) -> None:
        await self._start()
        base = f"http://127.0.0.1:{self.admin}"
        response = await treq.post(f"{base}/services/victim/routes".encode(),
                                   data={"name": "redos", "paths[]": "~/redos/(a+)+$"}, pool=POOL)
        self.assertEqual(response.code, 201, await response.text())
        for count in (28, 40):
            started = self._cpu_seconds()
            status, _ = await self._get("/redos/" + "a" * count + "!")
            used = self._cpu_seconds() - started
            self.assertEqual(status, 404)  # a regex that gives up does not match
            self.assertLess(used, 2, f"{count} a's held the node for {used:.1f} CPU seconds")
            await self._healthy(f"{count} a's")
        status, _ = await self._get("/redos/aaa")  # matched: proxied to the victim's closed port
        self.assertEqual(status, 502)


class BodyFilterErrorTests(_Gateway):
    """A body_filter that fails before anything was sent gives Kong's 500, not an empty reply."""

    @deferred
    async def test_an_early_body_filter_error_is_a_500(self) -> None:
        await self._start()
        base = f"http://127.0.0.1:{self.admin}"
        for path, data in [("/services", {"name": "upstream", "url": f"{base}/status"}),
                           ("/services/upstream/routes", {"name": "upstream", "paths[]": "/upstream"}),
                           ("/routes/upstream/plugins", {"name": "post-function",
                                                         "config.body_filter[]": "error('filter broke')"})]:
            response = await treq.post((base + path).encode(), data=data, pool=POOL)
            self.assertEqual(response.code, 201, await response.text())
        for _ in range(2):
            status, body = await self._get("/upstream")
            self.assertEqual(status, 500)
            self.assertTrue(body.startswith(b"An unexpected error occurred"), body)
            await self._healthy("a failed body_filter")
        await self._until(lambda: b"filter broke" in self.process.output, "the filter's error logged")


class InvalidStatusTests(_Gateway):
    """Only final HTTP statuses leave the gateway; others are Kong's 500 and a log line (item 11)."""

    @deferred
    async def test_non_final_statuses_are_a_500(self) -> None:
        await self._start()
        codes = {"continue": "return kong.response.exit(100, 'x')",
                 "switching": "return kong.response.exit(101)",
                 "thousand": "return ngx.exit(1000)", "huge": "return ngx.exit(1e300)",
                 "set-then": "ngx.status = 199 return kong.response.exit(ngx.status, 'x')"}
        for name, code in codes.items():
            await self._route(name, code)
        for name in codes:
            status, body = await self._get(f"/{name}")
            self.assertEqual(status, 500, name)
            self.assertTrue(body.startswith(b"An unexpected error occurred"), body)
        await self._logged(b"not a final HTTP status; answering 500", len(codes))
        await self._route("fine", "return kong.response.exit(599, 'ok')")
        self.assertEqual(await self._get("/fine"), (599, b"ok"))
        await self._healthy("non-final statuses")


class SecretsTests(_Gateway):
    """Settings that carry secrets read ``******`` from Lua and from ``GET /`` (item 10)."""

    @deferred
    async def test_secrets_are_masked_for_lua_and_the_admin_api(self) -> None:
        config = {"_format_version": "3.0", "consumers": [{"username": "u", "custom_id": "secret-id"}],
                  "services": [{"name": "reader", "url": "http://127.0.0.1:1", "routes": [
                      {"name": "reader", "paths": ["/reader"]}], "plugins": [
                      {"name": "pre-function", "config": {"access": [
                          "local c = kong.configuration "
                          "ngx.say(c.declarative_config_string, ' ', tostring(c.pg_password)) "
                          "return ngx.exit(200)"]}}]}]}
        await self._launch({"KONGISH_DATABASE": "off", "KONGISH_PG_PASSWORD": "hunter2",
                            "KONGISH_DECLARATIVE_CONFIG_STRING": json.dumps(config)})
        self.assertEqual(await self._get("/reader"), (200, b"****** ******\n"))
        response = await treq.get(f"http://127.0.0.1:{self.admin}/".encode(), pool=POOL)
        configuration = json.loads(await response.content())["configuration"]
        self.assertEqual((configuration["declarative_config_string"], configuration["pg_password"]),
                         ("******", "******"))
        self.assertNotIn(b"secret-id", await (await treq.get(
            f"http://127.0.0.1:{self.admin}/".encode(), pool=POOL)).content())
