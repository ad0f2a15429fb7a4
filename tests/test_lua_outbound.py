"""``resty.http`` on the real Lua engine, calling out through an in-memory upstream client."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import error as net_errors
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from kongish.lua.cost import OUTBOUND_SLOT, OUTBOUND_TIMEOUT, FunctionCost, OutboundUse
from kongish.lua.engine import LuaError
from kongish.runloop.context import RequestContext
from kongish.testing import LuaHarness
from kongish.testing.upstream import StubRequest, StubResponse, StubUpstream

ALLOWED = {"untrusted_lua_sandbox_requires": "resty.http"}

INTROSPECT = """
local http = require "resty.http"
local res, err = http.new():request_uri("http://auth.test:8080/introspect", {
  method = "POST", body = "token=" .. (kong.request.get_header("x-token") or ""),
  headers = {["Content-Type"] = "application/x-www-form-urlencoded"},
})
if not res then return kong.response.exit(502, "introspection failed: " .. err) end
if res.status ~= 200 then return kong.response.exit(401, "bad token") end
kong.service.request.set_header("X-User", res.headers["x-user"])
"""


def _token_service(request: StubRequest) -> StubResponse:
    if request.body == b"token=good":
        return StubResponse(200, [("X-User", "alice")], b"{}")
    return StubResponse(401, (), b"no")


class RestyHttpTests(SynchronousTestCase):
    def start(self, handler: object = _token_service, settings: dict[str, str] | None = None) -> LuaHarness:
        self.upstream = StubUpstream(handler)  # type: ignore[arg-type]
        self.lua = LuaHarness.start({**ALLOWED, **(settings or {})}, outbound=self.upstream)
        self.costs: list[FunctionCost] = []
        self.lua.engine.observers.append(lambda context, cost: self.costs.append(cost))
        return self.lua

    def run_code(self, code: str, context: RequestContext) -> None:
        self.successResultOf(self.lua.run([code], context))

    def test_token_introspection_lets_a_good_token_through(self) -> None:
        lua = self.start()
        context = lua.request(b"GET / HTTP/1.1\r\nHost: a\r\nX-Token: good\r\n\r\n")
        self.run_code(INTROSPECT, context)
        self.assertFalse(context.response.exited)
        assert context.upstream is not None
        self.assertEqual(context.upstream.headers.getRawHeaders(b"x-user"), [b"alice"])
        sent = self.upstream.requests[0]
        self.assertEqual((sent.method, sent.host, sent.port, sent.path, sent.body),
                         ("POST", "auth.test", 8080, "/introspect", b"token=good"))
        self.assertEqual(sent.header("content-type"), ["application/x-www-form-urlencoded"])
        self.assertTrue(sent.header("user-agent")[0].startswith("lua-resty-http/"))
        self.assertTrue(sent.settings.tls_verify)
        self.assertEqual(self.costs[0].outbound_calls, 1)

    def test_token_introspection_refuses_a_bad_token(self) -> None:
        lua = self.start()
        context = lua.request(b"GET / HTTP/1.1\r\nHost: a\r\nX-Token: bad\r\n\r\n")
        self.run_code(INTROSPECT, context)
        self.assertEqual((context.response.status, context.response.body), (401, [b"bad token"]))

    def test_the_coroutine_waits_for_the_answer(self) -> None:
        pending: Deferred[StubResponse] = Deferred()
        lua = self.start(lambda request: pending)
        context = lua.request()
        done = lua.run(["local res = require('resty.http').new():request_uri('http://a.test/') "
                        "ngx.say(res.status, ' ', res.body) ngx.exit(200)"], context)
        self.assertNoResult(done)
        pending.callback(StubResponse(201, (), b"late"))
        self.successResultOf(done)
        self.assertEqual((context.response.status, context.response.body), (200, [b"201 late\n"]))

    def test_response_headers_in_any_case_and_repeated(self) -> None:
        lua = self.start(lambda request: StubResponse(
            200, [("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("X-Request-Id", "r1")], b""))
        context = lua.request()
        self.run_code("local res = require('resty.http').new():request_uri('http://a.test/') "
                      "local c = res.headers['Set-Cookie'] "
                      "ngx.say(#c, c[1], c[2], res.headers.x_request_id, res.headers['X-REQUEST-ID'])",
                      context)
        self.assertEqual(context.response.body, [b"2a=1b=2r1r1\n"])

    def test_query_from_a_table_and_from_the_uri(self) -> None:
        lua = self.start(lambda request: StubResponse(200, (), (request.query or "").encode()))
        context = lua.request()
        self.run_code("local h = require('resty.http').new() "
                      "ngx.say(h:request_uri('http://a.test/p?x=1').body) "
                      "ngx.say(h:request_uri('http://a.test/p', {query = {y = 'a b'}}).body)", context)
        self.assertEqual(context.response.body, [b"x=1\n", b"y=a%20b\n"])

    def test_connect_request_read_body_and_body_reader(self) -> None:
        lua = self.start(lambda request: StubResponse(200, (), b"abcdef"))
        context = lua.request()
        self.run_code("""
local httpc = require('resty.http').new()
httpc:set_timeouts(1000, 2000, 3000)
assert(httpc:connect{scheme = "http", host = "b.test", port = 81})
local res = assert(httpc:request{path = "/x", headers = {["X-A"] = {"1", "2"}}})
local parts = {}
repeat local chunk = res.body_reader(4) parts[#parts + 1] = chunk until not chunk
ngx.say(res.status, " ", table.concat(parts, "|"), " ", res:read_body(), " ",
        httpc:set_keepalive(), httpc:close())
""", context)
        self.assertEqual(context.response.body, [b"200 abcd|ef abcdef 11\n"])
        sent = self.upstream.requests[0]
        self.assertEqual((sent.host, sent.port, sent.header("x-a")), ("b.test", 81, ["1", "2"]))
        self.assertEqual((sent.settings.connect_timeout, sent.settings.write_timeout,
                          sent.settings.read_timeout), (1.0, 2.0, 3.0))

    def test_errors_come_back_as_nil_and_a_string(self) -> None:
        def refuse(request: StubRequest) -> StubResponse:
            raise net_errors.ConnectionRefusedError()
        lua = self.start(refuse)
        context = lua.request()
        self.run_code("local res, err = require('resty.http').new():request_uri('http://a.test/') "
                      "ngx.say(tostring(res), ' ', err) "
                      "ngx.say(select(2, require('resty.http').new():request_uri('ftp://a.test/')))", context)
        self.assertEqual(context.response.body, [b"nil connection refused\n", b"bad uri: ftp://a.test/\n"])

    def test_a_timeout_is_nil_timeout_and_counted(self) -> None:
        lua = self.start(lambda request: Deferred())
        context = lua.request()
        done = lua.run(["local h = require('resty.http').new() h:set_timeout(500) "
                        "local res, err = h:request_uri('http://a.test/') ngx.say(err)"], context)
        self.upstream.clock.advance(0.5)  # type: ignore[attr-defined]
        self.successResultOf(done)
        self.assertEqual(context.response.body, [b"timeout\n"])
        self.assertEqual((self.costs[0].outbound_timeouts, OUTBOUND_TIMEOUT), (1, "outbound_timeout"))

    def test_calls_count_against_the_request_budget(self) -> None:
        lua = self.start(lambda request: StubResponse(200, (), b"ok"), {"lua_outbound_calls": "2"})
        context = lua.request()
        call = ("local res, err = require('resty.http').new():request_uri('http://a.test/') "
                "ngx.say(res and res.body or err)")
        self.successResultOf(lua.run([call, call, call], context))
        self.assertEqual(context.response.body,
                         [b"ok\n", b"ok\n", b"outbound call budget exceeded (2 calls)\n"])
        self.assertEqual(len(self.upstream.requests), 2)

    def test_a_refused_budget_refuses_every_call(self) -> None:
        lua = self.start()
        context = lua.request()
        context.slots[OUTBOUND_SLOT] = OutboundUse(refused="no calls here")
        self.run_code("ngx.say(select(2, require('resty.http').new():request_uri('http://a.test/')))",
                      context)
        self.assertEqual((context.response.body, self.upstream.requests), ([b"no calls here\n"], []))

    def test_calls_work_in_the_log_phase(self) -> None:
        lua = self.start(lambda request: StubResponse(204))
        context = lua.request(phase="log")
        self.run_code("local res = require('resty.http').new():request_uri('http://hook.test/', "
                      "{method = 'POST', body = 'done'}) assert(res.status == 204)", context)
        self.assertEqual([(r.method, r.host, r.body) for r in self.upstream.requests],
                         [("POST", "hook.test", b"done")])

    def test_calls_work_in_the_response_filters(self) -> None:
        lua = self.start(lambda request: StubResponse(200, (), b"tag-" + request.path.encode()))
        header = lua.request(phase="header_filter")
        header.response.status = 200
        self.run_code("local res = require('resty.http').new():request_uri('http://tags.test/h') "
                      "kong.response.set_header('X-Tag', res.body)", header)
        self.assertEqual(header.response.headers.getRawHeaders(b"x-tag"), [b"tag-/h"])
        body = lua.request(phase="body_filter")
        body.body_chunk, body.body_eof = b"chunk", True
        self.run_code("local res = require('resty.http').new():request_uri('http://tags.test/b') "
                      "ngx.arg[1] = ngx.arg[1] .. ' ' .. res.body", body)
        self.assertEqual(body.body_chunk, b"chunk tag-/b")

    def test_nothing_that_ends_the_request_line_reaches_the_wire(self) -> None:
        lua = self.start(lambda request: StubResponse(200, (), request.method.encode()))
        context = lua.request()
        self.run_code("""
local h = require('resty.http').new()
local function show(res, err) ngx.say(res and res.body or err) end
show(h:request_uri('http://a.test/', {method = 'post'}))
show(h:request_uri('http://a.test/', {method = 'GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\nDELETE'}))
show(h:request_uri('http://a.test/', {query = 'q HTTP/1.1\\r\\n\\r\\nDELETE /admin'}))
show(h:request_uri('http://a.test/x y'))
show(h:request_uri('http://a.test/', {headers = {['X A'] = '1'}}))
show(h:request_uri('http://a b/'))
""", context)
        self.assertEqual([chunk.decode().removesuffix("\n") for chunk in context.response.body], [
            "POST", "bad method: GET / HTTP/1.1\r\nHOST: A\r\n\r\nDELETE",
            "bad query: q HTTP/1.1\r\n\r\nDELETE /admin", "bad path: /x y",
            "invalid header name: X A", "bad host: a b"])
        self.assertEqual([request.method for request in self.upstream.requests], ["POST"])

    def test_bad_timeouts_are_lua_errors(self) -> None:
        lua = self.start()
        for value in ("-5", "0/0", "math.huge", "'soon'"):
            failure = self.failureResultOf(
                lua.run([f"require('resty.http').new():set_timeout({value})"], lua.request()), LuaError)
            self.assertIn("bad timeout value", failure.value.message)

    def test_a_call_that_times_out_mid_body_stops_reading_it(self) -> None:
        never: Deferred[bytes] = Deferred()
        lua = self.start(lambda request: StubResponse(200, (), [b"part", never]),
                         {"lua_outbound_time": "1"})
        context = lua.request()
        done = lua.run(["ngx.say(select(2, require('resty.http').new():request_uri('http://a.test/')))"],
                       context)
        lua.reactor.advance(1)
        self.successResultOf(done)
        self.assertEqual(context.response.body, [b"timeout\n"])
        end = self.upstream.responses[0].end
        assert end is not None, "the body was aborted"
        self.assertTrue(end.aborted)

    def test_a_run_whose_client_left_is_still_told(self) -> None:
        lua = self.start(lambda request: Deferred())
        done = lua.run(["require('resty.http').new():request_uri('http://a.test/')"], lua.request())
        done.cancel()
        self.failureResultOf(done)
        (cost,) = self.costs
        self.assertEqual((cost.cancelled, cost.outbound_calls, cost.error), (True, 1, None))

    def test_only_when_the_sandbox_allows_it(self) -> None:
        upstream = StubUpstream(_token_service)
        lua = LuaHarness.start(outbound=upstream)
        failure = self.failureResultOf(lua.run(["require 'resty.http'"], lua.request()), LuaError)
        self.assertIn("require 'resty.http' not allowed within sandbox", failure.value.message)

    def test_without_a_client_calls_fail_softly(self) -> None:
        lua = LuaHarness.start(ALLOWED)
        context = lua.request()
        self.successResultOf(lua.run(
            ["ngx.say(select(2, require('resty.http').new():request_uri('http://a.test/')))"], context))
        self.assertEqual(context.response.body, [b"outbound calls are not available here\n"])


_HOSTS = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True)
_PATHS = st.from_regex(r"(/[A-Za-z0-9._~%-]{0,10}){0,4}", fullmatch=True)
_QUERIES = st.from_regex(r"[A-Za-z0-9=&%._-]{0,20}", fullmatch=True)


class ParseUriTests(SynchronousTestCase):
    lua = LuaHarness.start(ALLOWED)

    def parse(self, uri: str, query_in_path: bool = True) -> list[str]:
        context = self.lua.request()
        code = ("local p, err = require('resty.http'):parse_uri(%s, %s) "
                "if not p then ngx.print(err) return end "
                "for i = 1, 5 do ngx.print(tostring(p[i]), '\\n') end") % (
            _lua_string(uri), "true" if query_in_path else "false")
        self.successResultOf(self.lua.run([code], context))
        return b"".join(context.response.body).decode().split("\n")

    @given(st.sampled_from(["http", "https"]), _HOSTS, st.one_of(st.none(), st.integers(1, 65535)),
           _PATHS, _QUERIES)
    def test_uris_split_into_their_parts(self, scheme: str, host: str, port: int | None, path: str,
                                         query: str) -> None:
        uri = f"{scheme}://{host}{'' if port is None else f':{port}'}{path}{'?' + query if query else ''}"
        default = 443 if scheme == "https" else 80
        self.assertEqual(self.parse(uri, query_in_path=False)[:5],
                         [scheme, host, str(port or default), path or "/", query])
        joined = (path or "/") + ("?" + query if query else "")
        self.assertEqual(self.parse(uri)[:4], [scheme, host, str(port or default), joined])

    def test_bad_uris(self) -> None:
        self.assertEqual(self.parse("nope"), ["bad uri: nope"])
        self.assertEqual(self.parse("//a.test/"), ["schemaless URIs require a request context: //a.test/"])
        self.assertEqual(self.parse("http://[::1]:8080/x")[:4], ["http", "::1", "8080", "/x"])


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
