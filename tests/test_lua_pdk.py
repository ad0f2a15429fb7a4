"""The ngx table of the Lua PDK, on a real LuaJIT runtime and real Twisted requests.

:class:`PDKHarness` is shared by the other ``test_lua_pdk_*`` modules.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from lupa import luajit21
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from kongish.http.interfaces import IProxiedRequest
from kongish.http.realip import RealIp
from kongish.lua.current import CurrentRequest
from kongish.lua.memory import MemoryCap
from kongish.lua.pdk import install_pdk
from kongish.lua.settings import LuaSettings
from kongish.runloop.context import RequestContext, UpstreamRequest
from kongish.settings import Settings


def _refuse_attributes(obj: Any, name: Any, setting: bool) -> None:
    raise AttributeError("access to Python attributes is not allowed")


class _CapturedRequest(Request):
    """A server Request that stops after parsing, for the test to use."""

    captured: list[Request] = []

    def process(self) -> None:
        self.captured.append(self)


def parse_request(raw: bytes, secure: bool = False) -> Request:
    """Parse ``raw`` HTTP bytes on a real HTTPChannel, as the proxy would receive them."""
    channel = HTTPChannel()
    channel.site = Site(Resource())  # type: ignore[attr-defined]  # Site.buildProtocol sets it; the stubs omit it
    channel.requestFactory = _CapturedRequest
    transport = StringTransport(hostAddress=IPv4Address("TCP", "10.0.0.2", 8000),
                                peerAddress=IPv4Address("TCP", "10.0.0.1", 54321))
    if secure:
        transport.getHost = lambda: IPv4Address("TCP", "10.0.0.2", 8443)  # type: ignore[method-assign]
    channel.makeConnection(transport)
    _CapturedRequest.captured.clear()
    channel.dataReceived(raw)
    request = _CapturedRequest.captured.pop()
    if secure:
        request.isSecure = lambda: True  # type: ignore[method-assign]
    return request


#: The coroutine driver: yields ("await", f, args...) or ("stop",) to Python;
#: going over a limit is a plain error.
_DRIVER = b"""
local await = function(f, ...) return coroutine.yield("await", f, ...) end
local stop = function() return coroutine.yield("stop") end
local exceed = function(message) error(message, 0) end
local function pack(...) return {n = select("#", ...), ...} end
local function start(fn)
  local co = coroutine.create(fn)
  return function(...)
    local results = pack(coroutine.resume(co, ...))
    return coroutine.status(co), results
  end
end
return await, stop, exceed, start
"""


class PDKHarness:
    """One LuaJIT runtime with the PDK installed, running chunks as a phase handler."""

    def __init__(self, configuration: Mapping[str, Any] | None = None,
                 encoding: str | None = None) -> None:
        self.lua = luajit21.LuaRuntime(encoding=encoding, register_eval=False, register_builtins=False,
                                       attribute_filter=_refuse_attributes, max_memory=2 * 1024 * 1024)
        self.clock = Clock()
        self.current = CurrentRequest()
        await_fn, stop_fn, exceed_fn, self._start = self.lua.execute(_DRIVER)
        settings = Settings.parse({"lua_memory_limit": "1m", **(configuration or {})})
        install_pdk(self.lua, self.current, LuaSettings.from_settings(settings),
                    await_fn, stop_fn, exceed_fn, self._phase, memory=MemoryCap(self.lua, 1024 * 1024),
                    guard_primitives=self.lua.eval("function(primitives) return primitives end"),
                    reactor=self.clock, node_id="node-1")
        #: As the proxy finds the client behind trusted proxies (X-Real-IP, Kong's default).
        self.real_ip = RealIp(settings.trusted_ips)

    def _phase(self) -> bytes:
        return self.current.require().phase.encode()

    def context(self, raw: bytes = b"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: Example.com\r\n\r\n",
                upstream: bool = True, phase: str = "access", secure: bool = False) -> RequestContext:
        request = parse_request(raw, secure)
        context = RequestContext(cast(IProxiedRequest, request), phase=phase, real_ip=self.real_ip,
                                 request_id="0123456789abcdef0123456789abcdef")
        if upstream:
            path, _, query = request.uri.partition(b"?")
            context.upstream = UpstreamRequest(
                method=request.method.decode(), path=path.decode(),
                query=query.decode() if b"?" in request.uri else None,
                headers=Headers({b"host": [b"upstream.test"]}), host="upstream.test")
        return context

    def run(self, code: str | bytes, context: RequestContext, plugin: str = "pre-function",
            key: str = "plugin-1") -> Deferred:
        """Run ``code`` as a handler; fires with its return values, or fails with the Lua error."""
        function = self.lua.compile(code if isinstance(code, bytes) else code.encode())
        resume = self._start(function)
        done: Deferred = Deferred()

        def step(*arguments: Any) -> None:
            self.current.context, self.current.plugin_name, self.current.plugin_key = context, plugin, key
            status, results = resume(*arguments)
            self.current.context = None
            values = [results[i] for i in range(1, results[b"n"] + 1)]
            if not values[0]:
                done.errback(luajit21.LuaError(values[1]))
            elif status in (b"dead", "dead"):
                done.callback(values[1:])
            elif values[1] in (b"stop", "stop"):
                done.callback(["stopped"])
            else:
                function, *args = values[2:]
                pending = function(*args)
                (pending if isinstance(pending, Deferred) else succeed(pending)).addCallback(step)
        step()
        return done

    def result(self, test: SynchronousTestCase, code: str, context: RequestContext, **kwargs: Any) -> list:
        return test.successResultOf(self.run(code, context, **kwargs))

    def error(self, test: SynchronousTestCase, code: str, context: RequestContext) -> str:
        failure = test.failureResultOf(self.run(code, context), luajit21.LuaError)
        message = failure.value.args[0]
        return message.decode() if isinstance(message, bytes) else str(message)


class NgxOutputTests(SynchronousTestCase):
    """ngx.say, ngx.print, ngx.exit and ngx.status, including Kong's serverless spec cases."""

    def setUp(self) -> None:
        self.pdk = PDKHarness()
        self.context = self.pdk.context()

    def test_status_then_exit(self) -> None:
        self.assertEqual(self.pdk.result(self, "ngx.status = 503 ngx.exit(ngx.status)", self.context),
                         ["stopped"])
        self.assertEqual(self.context.response.status, 503)
        self.assertTrue(self.context.response.exited)
        self.assertEqual(self.context.response.body, [])

    def test_say_then_exit(self) -> None:
        self.pdk.result(self, 'ngx.status = 404 ngx.say("Not Found") ngx.exit(ngx.status)', self.context)
        self.assertEqual((self.context.response.status, self.context.response.body),
                         (404, [b"Not Found\n"]))
        self.assertTrue(self.context.response.exited)

    def test_code_after_exit_does_not_run(self) -> None:
        self.pdk.result(self, 'ngx.exit(200) ngx.say("never")', self.context)
        self.assertEqual(self.context.response.body, [])

    def test_print_defaults_status_and_flattens(self) -> None:
        self.pdk.result(self, 'ngx.print("a", 1, true, nil, ngx.null, {"x", {"y"}})', self.context)
        self.assertEqual(self.context.response.status, 200)
        self.assertEqual(self.context.response.body, [b"a1truenilnullxy"])
        self.assertFalse(self.context.response.exited)

    def test_one_argument_of_each_kind(self) -> None:
        self.pdk.result(self, 'ngx.print("a") ngx.say("b") ngx.say(1) ngx.print(false) ngx.say({"c"})',
                        self.context)
        self.assertEqual(self.context.response.body, [b"a", b"b\n", b"1\n", b"false", b"c\n"])

    def test_print_rejects_functions(self) -> None:
        self.assertIn("bad argument #1 to 'print'", self.pdk.error(self, "ngx.print(print)", self.context))

    def test_ok_only_stops_the_handler(self) -> None:
        self.assertEqual(self.pdk.result(self, "ngx.exit(ngx.OK)", self.context), ["stopped"])
        self.assertFalse(self.context.response.exited)

    def test_error_exits_with_500(self) -> None:
        self.pdk.result(self, "ngx.exit(ngx.ERROR)", self.context)
        self.assertEqual((self.context.response.status, self.context.response.exited), (500, True))

    def test_exit_in_response_phases_only_stops(self) -> None:
        for phase in ("header_filter", "body_filter", "log"):
            context = self.pdk.context(phase=phase)
            self.assertEqual(self.pdk.result(self, "ngx.exit(403)", context), ["stopped"])
            self.assertFalse(context.response.exited)

    def test_say_refused_in_log_phase(self) -> None:
        self.assertIn("API disabled in the context of log_by_lua*",
                      self.pdk.error(self, 'ngx.say("x")', self.pdk.context(phase="log")))

    def test_body_counter(self) -> None:
        code = ("ngx.req.read_body() count = tonumber(ngx.req.get_body_data()) + 1 "
                "ngx.say(count) ngx.exit(200)")
        count = b"0"
        for _ in range(10):
            context = self.pdk.context(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s"
                                       % (len(count), count))
            self.pdk.result(self, code, context)
            count = b"".join(context.response.body).strip()
        self.assertEqual(count, b"10")

    def test_status_reads_zero_before_any_response(self) -> None:
        self.assertEqual(self.pdk.result(self, "return ngx.status", self.context), [0])

    def test_redirect(self) -> None:
        self.pdk.result(self, 'ngx.redirect("/elsewhere", 301)', self.context)
        self.assertEqual(self.context.response.status, 301)
        self.assertEqual(self.context.response.headers.getRawHeaders(b"location"), [b"/elsewhere"])


class NgxHeaderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pdk = PDKHarness()
        self.context = self.pdk.context()

    def test_set_and_get_response_headers(self) -> None:
        result = self.pdk.result(self, """
            ngx.header["X-A"] = "v"
            ngx.header.content_type = "text/x"
            ngx.header.X_Multi = {"1", 2}
            return ngx.header["x-a"], ngx.header["Content-Type"], ngx.header.x_multi[2]
        """, self.context)
        self.assertEqual(result, [b"v", b"text/x", b"2"])
        headers = self.context.response.headers
        self.assertEqual(headers.getRawHeaders(b"x-multi"), [b"1", b"2"])
        self.pdk.result(self, "ngx.header.x_a = nil", self.context)
        self.assertFalse(headers.hasHeader(b"x-a"))

    def test_invalid_header_names_are_lua_errors(self) -> None:
        self.assertIn('invalid header name "X Y"',
                      self.pdk.error(self, 'ngx.header["X Y"] = "v"', self.context))
        self.assertIn('invalid header name "a',
                      self.pdk.error(self, 'ngx.req.set_header("a\\n", "v")', self.context))

    def test_setting_headers_after_they_were_sent(self) -> None:
        self.assertIn("after sending out response headers",
                      self.pdk.error(self, 'ngx.header.a = "b"', self.pdk.context(phase="body_filter")))

    def test_resp_get_headers(self) -> None:
        self.context.response.headers.addRawHeader(b"X-Two", b"1")
        self.context.response.headers.addRawHeader(b"X-Two", b"2")
        self.assertEqual(self.pdk.result(self, "return ngx.resp.get_headers().x_two[2]", self.context),
                         [b"2"])


class NgxRequestTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pdk = PDKHarness()
        raw = (b"POST /p%41th/../x?a=1&a=2&flag&e=&sp=a+b%20c HTTP/1.1\r\nHost: Example.com:8000\r\n"
               b"X-Multi: 1\r\nX-Multi: 2\r\nCookie: s=abc; t=1\r\n"
               b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\nk=v&k2=v%21")
        self.context = self.pdk.context(raw)

    def test_uri_args(self) -> None:
        result = self.pdk.result(self, """
            local args = ngx.req.get_uri_args()
            return args.a[1], args.a[2], args.flag, args.e, args.sp
        """, self.context)
        self.assertEqual(result, [b"1", b"2", True, b"", b"a b c"])

    def test_set_uri_args_changes_the_upstream_query(self) -> None:
        self.pdk.result(self, 'ngx.req.set_uri_args({b = "x y", a = {1, 2}})', self.context)
        assert self.context.upstream is not None
        self.assertEqual(self.context.upstream.query, "a=1&a=2&b=x%20y")

    def test_planned_upstream_is_made_only_when_asked_for(self) -> None:
        context = self.pdk.context(b"GET /p?a=1 HTTP/1.1\r\nHost: h\r\n\r\n", upstream=False)
        made: list[UpstreamRequest] = []

        def plan() -> UpstreamRequest:
            made.append(UpstreamRequest(method="GET", path="/p", query="a=1"))
            return made[-1]

        context.plan_upstream = plan
        self.assertEqual(self.pdk.result(self, "return ngx.req.get_uri_args().a", context), [b"1"])
        self.assertEqual((made, context.upstream_if_made()), ([], None))
        self.pdk.result(self, 'ngx.req.set_uri_args("a=2")', context)
        self.assertEqual(len(made), 1)
        self.assertIs(context.upstream, made[0])
        self.assertEqual((made[0].query, self.pdk.result(self, "return ngx.req.get_uri_args().a", context)),
                         ("a=2", [b"2"]))

    def test_var_args_nil_clears_the_upstream_query(self) -> None:
        self.pdk.result(self, "ngx.var.args = nil", self.context)
        assert self.context.upstream is not None
        self.assertIsNone(self.context.upstream.query)
        self.assertEqual(self.pdk.result(self, "return ngx.var.args, ngx.var.is_args", self.context),
                         [None, b""])

    def test_headers(self) -> None:
        result = self.pdk.result(self, """
            local h = ngx.req.get_headers()
            return h.host, h["X-MULTI"][2], h.x_multi[1], h["content-length"]
        """, self.context)
        self.assertEqual(result, [b"Example.com:8000", b"2", b"1", b"11"])

    def test_raw_headers_keep_case_without_lookup(self) -> None:
        result = self.pdk.result(self, """
            local h = ngx.req.get_headers(nil, true)
            return h.Host, h.host
        """, self.context)
        self.assertEqual(result, [b"Example.com:8000", None])

    def test_header_limit(self) -> None:
        self.assertEqual(self.pdk.result(self, "return select(2, ngx.req.get_headers(2))", self.context),
                         [b"truncated"])

    def test_set_and_clear_header_change_the_upstream_request(self) -> None:
        self.pdk.result(self, 'ngx.req.set_header("X-New", "v") ngx.req.set_header("X-L", {"a", "b"}) '
                              'ngx.req.clear_header("host")', self.context)
        assert self.context.upstream is not None
        headers = self.context.upstream.headers
        self.assertEqual(headers.getRawHeaders(b"x-new"), [b"v"])
        self.assertEqual(headers.getRawHeaders(b"x-l"), [b"a", b"b"])
        self.assertFalse(headers.hasHeader(b"host"))

    def test_rewrite_phase_changes_reach_the_client_request(self) -> None:
        context = self.pdk.context(upstream=False, phase="rewrite")
        self.pdk.result(self, 'ngx.req.set_header("X-R", "1") ngx.req.set_uri_args("q=1") '
                              'ngx.req.set_method(ngx.HTTP_PUT) ngx.req.set_body_data("new")', context)
        self.assertEqual(context.request.requestHeaders.getRawHeaders(b"x-r"), [b"1"])
        self.assertEqual(context.request.uri, b"/a/b?q=1")
        self.assertEqual(context.request.method, b"PUT")
        self.assertEqual(context.request.content.read(), b"new")

    def test_method_and_uri(self) -> None:
        self.pdk.result(self, 'ngx.req.set_method(ngx.HTTP_PATCH) ngx.req.set_uri("/new")', self.context)
        assert self.context.upstream is not None
        self.assertEqual((self.context.upstream.method, self.context.upstream.path), ("PATCH", "/new"))
        self.assertEqual(self.pdk.result(self, "return ngx.req.get_method()", self.context), [b"PATCH"])
        self.assertIn("unsupported HTTP method",
                      self.pdk.error(self, 'ngx.req.set_method("GET")', self.context))

    def test_body(self) -> None:
        result = self.pdk.result(self, """
            ngx.req.read_body()
            local before = ngx.req.get_body_data()
            local post = ngx.req.get_post_args()
            ngx.req.set_body_data("replaced")
            return before, post.k, post.k2, ngx.req.get_body_data(), ngx.req.get_body_file()
        """, self.context)
        self.assertEqual(result, [b"k=v&k2=v%21", b"v", b"v!", b"replaced", None])
        assert self.context.upstream is not None
        self.assertEqual(self.context.upstream.body, b"replaced")
        self.assertEqual(self.context.upstream.headers.getRawHeaders(b"content-length"), [b"8"])
        self.assertEqual(self.context.request.content.read(), b"k=v&k2=v%21")

    def test_streamed_body(self) -> None:
        self.pdk.result(self, 'ngx.req.init_body() ngx.req.append_body("a") ngx.req.append_body("b") '
                              'ngx.req.finish_body()', self.context)
        assert self.context.upstream is not None
        self.assertEqual(self.context.upstream.body, b"ab")

    def test_misc(self) -> None:
        result = self.pdk.result(self, """
            return ngx.req.http_version(), ngx.req.is_internal(), ngx.req.start_time() > 0,
                   ngx.req.raw_header(true)
        """, self.context)
        self.assertEqual(result[:3], [1.1, False, True])
        self.assertIn(b"X-Multi: 2\r\n", result[3])


class NgxVarTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pdk = PDKHarness()
        self.context = self.pdk.context(
            b"GET /p%41th//x?a=1&B=2 HTTP/1.1\r\nHost: Example.com:8000\r\nX-Foo: bar\r\n"
            b"Cookie: session=abc; other=1\r\n\r\n")

    def var(self, name: str) -> Any:
        return self.pdk.result(self, f"return ngx.var.{name}", self.context)[0]

    def test_variables(self) -> None:
        expected = {
            "uri": b"/pAth/x", "request_uri": b"/p%41th//x?a=1&B=2", "args": b"a=1&B=2",
            "query_string": b"a=1&B=2", "is_args": b"?", "host": b"example.com",
            "http_x_foo": b"bar", "cookie_session": b"abc", "cookie_missing": None,
            "arg_a": b"1", "arg_b": b"2", "arg_none": None, "remote_addr": b"10.0.0.1",
            "remote_port": 54321, "server_addr": b"10.0.0.2", "server_port": 8000, "scheme": b"http",
            "https": b"", "request_method": b"GET", "request_id": b"0123456789abcdef0123456789abcdef",
            "upstream_uri": b"/p%41th//x?a=1&B=2", "upstream_host": b"upstream.test",
            "server_protocol": b"HTTP/1.1", "unknown_variable": None,
        }
        self.assertEqual({name: self.var(name) for name in expected}, expected)

    def test_upstream_uri_is_writable(self) -> None:
        self.pdk.result(self, 'ngx.var.upstream_uri = "/new/path?z=9"', self.context)
        assert self.context.upstream is not None
        self.assertEqual((self.context.upstream.path, self.context.upstream.query), ("/new/path", "z=9"))

    def test_read_only_and_unknown_variables(self) -> None:
        self.assertIn('variable "uri" not changeable',
                      self.pdk.error(self, 'ngx.var.uri = "/x"', self.context))
        self.assertIn('variable "nope" not found for writing',
                      self.pdk.error(self, 'ngx.var.nope = "/x"', self.context))


class NgxContextTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pdk = PDKHarness()

    def test_ctx_is_per_request(self) -> None:
        first, second = self.pdk.context(), self.pdk.context()
        self.pdk.result(self, "ngx.ctx.n = 1", first)
        self.assertEqual(self.pdk.result(self, "return ngx.ctx.n", first), [1])
        self.assertEqual(self.pdk.result(self, "return ngx.ctx.n", second), [None])
        self.pdk.result(self, "ngx.ctx = {m = 2}", second)
        self.assertEqual(self.pdk.result(self, "return ngx.ctx.m", second), [2])

    def test_ctx_gets_the_timing_fields_as_the_proxy_sets_them(self) -> None:
        context = self.pdk.context()
        timings = context.timings
        timings.processing_start(10.0)
        timings.rewrite_start(10.001)
        timings.rewrite_end(10.002)
        timings.access_start(10.003)
        code = ("local c = ngx.ctx return c.KONG_PROCESSING_START, c.KONG_REWRITE_TIME, c.KONG_ACCESS_START, "
                "c.KONG_PROXY_LATENCY, c.KONG_PROXIED, type(c.KONG_ACCESS_START)")
        self.assertEqual(self.pdk.result(self, code, context), [10000, 1, 10003, None, None, b"number"])
        # a plugin's own value stays until the proxy sets the field again
        self.pdk.result(self, "ngx.ctx.KONG_ACCESS_START = 'mine'", context)
        self.assertEqual(self.pdk.result(self, "return ngx.ctx.KONG_ACCESS_START", context), [b"mine"])
        timings.access_end(10.005, proxying=True)
        timings.balancer(10.005)
        context.phase = "header_filter"
        timings.header_filter_start(10.020)
        code = ("local c = ngx.ctx return c.KONG_ACCESS_START, c.KONG_ACCESS_TIME, c.KONG_PROXIED, "
                "c.KONG_PROXY_LATENCY, c.KONG_WAITING_TIME, c.KONG_RESPONSE_LATENCY")
        self.assertEqual(self.pdk.result(self, code, context), [b"mine", 2, True, 5, 15, None])

    def test_body_filter_arg_round_trip(self) -> None:
        context = self.pdk.context(phase="body_filter")
        context.body_chunk, context.body_eof = b"hello", False
        result = self.pdk.result(self, "local chunk, eof = ngx.arg[1], ngx.arg[2] "
                                       "ngx.arg[1] = chunk:upper() ngx.arg[2] = true return chunk, eof",
                                 context)
        self.assertEqual(result, [b"hello", False])
        self.assertEqual((context.body_chunk, context.body_eof), (b"HELLO", True))

    def test_arg_set_to_nil_empties_the_chunk(self) -> None:
        context = self.pdk.context(phase="body_filter")
        context.body_chunk = b"data"
        self.pdk.result(self, "ngx.arg[1] = nil", context)
        self.assertEqual(context.body_chunk, b"")

    def test_arg_is_nil_outside_body_filter(self) -> None:
        self.assertEqual(self.pdk.result(self, "return ngx.arg[1]", self.pdk.context()), [None])

    def test_sleep_waits_on_the_reactor(self) -> None:
        context = self.pdk.context()
        done = self.pdk.run("ngx.sleep(1.5) ngx.say('woke')", context)
        self.assertNoResult(done)
        self.pdk.clock.advance(1.5)
        self.successResultOf(done)
        self.assertEqual(context.response.body, [b"woke\n"])

    def test_phase_worker_config(self) -> None:
        result = self.pdk.result(self, "return ngx.get_phase(), ngx.worker.id(), ngx.worker.count(), "
                                       "ngx.worker.pid() > 0, ngx.config.subsystem", self.pdk.context())
        self.assertEqual(result, [b"access", 0, 1, True, b"http"])

    def test_constants(self) -> None:
        result = self.pdk.result(self, "return ngx.OK, ngx.ERROR, ngx.HTTP_OK, ngx.HTTP_NOT_FOUND, "
                                       "ngx.HTTP_SERVICE_UNAVAILABLE, ngx.DEBUG, ngx.EMERG, ngx.HTTP_POST, "
                                       "ngx.null == __kongish_modules.cjson.null", self.pdk.context())
        self.assertEqual(result, [0, -1, 200, 404, 503, 8, 1, 8, True])

    def test_time(self) -> None:
        self.pdk.clock.advance(1700000000.25)
        result = self.pdk.result(self, "return ngx.now(), ngx.time(), ngx.utctime(), ngx.http_time(0), "
                                       "ngx.cookie_time(0), "
                                       "ngx.parse_http_time('Thu, 01 Jan 1970 00:00:10 GMT')",
                                 self.pdk.context())
        self.assertEqual(result, [1700000000.25, 1700000000, b"2023-11-14 22:13:20",
                                  b"Thu, 01 Jan 1970 00:00:00 GMT", b"Thu, 01-Jan-70 00:00:00 GMT", 10])

    def test_log_reaches_twisted_logger(self) -> None:
        from twisted.logger import globalLogPublisher
        events: list[dict] = []
        events_observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(events_observer)
        self.addCleanup(globalLogPublisher.removeObserver, events_observer)
        self.pdk.result(self, 'ngx.log(ngx.ERR, "a", 1, nil)', self.pdk.context())
        [event] = [e for e in events if e.get("log_namespace") == "kongish.lua"]
        self.assertEqual((event["text"], event["plugin"], event["log_level"].name),
                         ("a1nil", "pre-function", "error"))


class TextEncodingRuntimeTests(SynchronousTestCase):
    """A runtime that decodes Lua strings as UTF-8 still gets a working PDK for text."""

    def test_text_round_trip(self) -> None:
        pdk = PDKHarness(encoding="UTF-8")
        context = pdk.context()
        result = pdk.result(self, """
            ngx.header["X-A"] = "ü"
            ngx.say(ngx.var.host, " ", ngx.req.get_uri_args().x, " ", kong.request.get_path())
            return ngx.header["x-a"], ngx.re.match("héllo", "h(.)", "u")[1]
        """, context)
        self.assertEqual(result, ["ü", "é"])
        self.assertEqual(context.response.body, [b"example.com 1 /a/b\n"])
