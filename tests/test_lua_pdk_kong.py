"""The kong table of the Lua PDK."""
from __future__ import annotations

import json
from typing import cast

from twisted.logger import ILogObserver
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from kongish.runloop.context import RequestContext, UpstreamResponse
from tests.test_lua_pdk import PDKHarness

_RAW = (b"POST /a/%62?x=1&x=2&y HTTP/1.1\r\nHost: Example.com:8000\r\nX-One: 1\r\n"
        b"X-Forwarded-Proto: HTTPS\r\nX-Forwarded-Host: proxy.test:9000\r\nX-Forwarded-Port: 9000\r\n"
        b"X-Real-IP: 192.0.2.7\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n"
        b'{"k":[1,"v"]}')


class KongRequestTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pdk = PDKHarness()
        self.context = self.pdk.context(_RAW)

    def test_request_getters(self) -> None:
        result = self.pdk.result(self, """
            local r = kong.request
            return r.get_scheme(), r.get_host(), r.get_port(), r.get_http_version(), r.get_method(),
                   r.get_path(), r.get_raw_path(), r.get_path_with_query(), r.get_raw_query(),
                   r.get_query_arg("x"), r.get_query().y, r.get_header("x_one"), r.get_headers()["X-ONE"],
                   r.get_raw_body(), r.get_body().k[2], r.get_id()
        """, self.context)
        self.assertEqual(result, [
            b"http", b"example.com", 8000, 1.1, b"POST", b"/a/b", b"/a/%62", b"/a/b?x=1&x=2&y",
            b"x=1&x=2&y", b"1", True, b"1", b"1", b'{"k":[1,"v"]}', b"v",
            b"0123456789abcdef0123456789abcdef"])

    def test_forwarded_values_ignored_for_untrusted_clients(self) -> None:
        result = self.pdk.result(self, """
            local r = kong.request
            return r.get_forwarded_scheme(), r.get_forwarded_host(), r.get_forwarded_port(),
                   kong.client.get_forwarded_ip(), kong.ip.is_trusted("10.0.0.1")
        """, self.context)
        self.assertEqual(result, [b"http", b"example.com", 8000, b"10.0.0.1", False])

    def test_forwarded_values_from_trusted_clients(self) -> None:
        pdk = PDKHarness({"trusted_ips": "10.0.0.0/8, ::1"})
        result = pdk.result(self, """
            local r = kong.request
            return r.get_forwarded_scheme(), r.get_forwarded_host(), r.get_forwarded_port(),
                   kong.client.get_forwarded_ip(), kong.ip.is_trusted("10.0.0.1"), kong.ip.is_trusted("::1")
        """, pdk.context(_RAW))
        self.assertEqual(result, [b"https", b"proxy.test", 9000, b"192.0.2.7", True, True])

    def test_configured_default_limits(self) -> None:
        pdk = PDKHarness({"lua_max_uri_args": "2", "lua_max_req_headers": "1"})
        context = pdk.context(b"GET /?a=1&b=2&c=3 HTTP/1.1\r\nHost: h\r\nX-One: 1\r\n\r\n")
        result = pdk.result(self, """
            local function count(t) local n = 0 for _ in pairs(t) do n = n + 1 end return n end
            local args, truncated = ngx.req.get_uri_args()
            return count(args), truncated, count(kong.request.get_query()), count(ngx.req.get_uri_args(3)),
                   count(ngx.req.get_headers()), count(kong.request.get_headers(2)),
                   count(ngx.decode_args("x=1&y=2&z=3"))
        """, context)
        self.assertEqual(result, [2, b"truncated", 2, 3, 1, 2, 2])

    def test_body_errors(self) -> None:
        context = self.pdk.context(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: 3\r\n\r\n{x}")
        self.assertEqual(self.pdk.result(self, "return kong.request.get_body()", context),
                         [None, b"invalid json body", b"application/json"])
        self.assertEqual(self.pdk.result(self, 'return kong.request.get_body("text/plain")', context),
                         [None, b"unsupported content type 'text/plain'", b"text/plain"])

    def test_form_body(self) -> None:
        context = self.pdk.context(b"POST / HTTP/1.1\r\nHost: a\r\n"
                                   b"Content-Type: application/x-www-form-urlencoded"
                                   b"\r\nContent-Length: 7\r\n\r\na=1&b=2")
        self.assertEqual(self.pdk.result(self, "local b = kong.request.get_body() return b.a, b.b", context),
                         [b"1", b"2"])

    def test_multipart_body(self) -> None:
        body = (b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
                b'--XyZ\r\nContent-Disposition: form-data; name="up"; filename="f.txt"\r\n'
                b'Content-Type: text/plain\r\n\r\nfile\r\ntext\r\n'
                b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n2\r\n--XyZ--\r\n')
        context = self.pdk.context(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: Multipart/Form-Data; "
                                   b"boundary=XyZ\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        self.assertEqual(self.pdk.result(self, """
            local b, err, mime = kong.request.get_body()
            return b.a[1], b.a[2], #b.a, b.up, err, mime
        """, context), [b"1", b"2", 2, b"file\r\ntext", None, b"multipart/form-data"])
        # ``mimetype`` forces the type; without a boundary lua-multipart reads no field
        self.assertEqual(self.pdk.result(self, """
            local b, err, mime = kong.request.get_body("multipart/form-data")
            return next(b), err, mime
        """, context), [None, None, b"multipart/form-data"])
        self.assertEqual(self.pdk.result(self, """
            local b = kong.request.get_body("multipart/form-data; boundary=XyZ", 5000)
            return b.up
        """, context), [b"file\r\ntext"])

    def test_a_body_past_the_client_body_buffer_is_not_read_as_kong_does(self) -> None:
        """Kong's default client_body_buffer_size is 8k: a larger body is in nginx's temp file."""
        def posted(content_type: bytes, body: bytes) -> RequestContext:
            return self.pdk.context(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: %s\r\n"
                                    b"Content-Length: %d\r\n\r\n" % (content_type, len(body)) + body)
        in_file = (b"request body did not fit into client body buffer, consider raising "
                   b"'client_body_buffer_size'")
        big_json = posted(b"application/json", b'{"a":"' + b"x" * 8192 + b'"}')
        self.assertEqual(self.pdk.result(self, """
            local raw, raw_err = kong.request.get_raw_body()
            local body, err, mime = kong.request.get_body()
            return raw, raw_err, body, err, mime, ngx.req.get_body_data(), ngx.var.request_body
        """, big_json), [None, in_file, None, in_file, b"application/json", None, None])
        self.assertEqual(self.pdk.result(self, """
            local body, err, mime = kong.request.get_body()
            local args, args_err = ngx.req.get_post_args()
            return body, err, mime, args, args_err
        """, posted(b"application/x-www-form-urlencoded", b"a=" + b"x" * 8192)),
            [None, b"request body in temp file not supported", b"application/x-www-form-urlencoded",
             None, b"request body in temp file not supported"])
        fits = b'{"a":"' + b"x" * 8180 + b'"}'  # 8188 bytes: in the buffer
        self.assertEqual(self.pdk.result(self, "return #kong.request.get_body().a, #ngx.req.get_body_data()",
                                         posted(b"application/json", fits)), [8180, len(fits)])
        # a body a plugin set is in memory, whatever its size
        self.assertEqual(self.pdk.result(self, """
            ngx.req.set_body_data(string.rep("y", 10000))
            return #kong.request.get_raw_body(), #ngx.req.get_body_data()
        """, big_json), [10000, 10000])

    def test_body_type_is_a_prefix_of_the_lowered_type(self) -> None:
        context = self.pdk.context(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: 7\r\n\r\n{\"a\":1}")
        self.assertEqual(self.pdk.result(self, """
            local b, err, mime = kong.request.get_body("Application/JSONx ; charset=utf-8")
            local _, err2, mime2 = kong.request.get_body("Text/Plain ; q=1")
            return b.a, err, mime, err2, mime2
        """, context), [1, None, b"application/json", b"unsupported content type 'Text/Plain ; q=1'",
                        b"text/plain "])
        self.assertIn("max_args must be <= 1000", self.pdk.error(
            self, 'kong.request.get_body("application/x-www-form-urlencoded", 5000)', context))

    def test_argument_errors(self) -> None:
        self.assertIn("header name must be a string",
                      self.pdk.error(self, "kong.request.get_header(1)", self.context))
        self.assertIn("max_headers must be <= 1000",
                      self.pdk.error(self, "kong.request.get_headers(5000)", self.context))


class KongResponseTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pdk = PDKHarness()
        self.context = self.pdk.context()

    def test_exit_with_table_body(self) -> None:
        self.assertEqual(
            self.pdk.result(self, 'return kong.response.exit(406, { message = "Invalid" })', self.context),
            ["stopped"])
        response = self.context.response
        self.assertEqual((response.status, response.exited, response.source), (406, True, "exit"))
        self.assertEqual(json.loads(b"".join(response.body)), {"message": "Invalid"})
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"application/json; charset=utf-8"])

    def test_exit_with_string_body_and_headers(self) -> None:
        self.pdk.result(self, 'kong.response.exit(403, "no", {["Content-Type"] = "text/plain", '
                              'X_Multi = {"a", "b"}, Empty = ""})', self.context)
        response = self.context.response
        self.assertEqual((response.status, response.body), (403, [b"no"]))
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"text/plain"])
        self.assertEqual(response.headers.getRawHeaders(b"x-multi"), [b"a", b"b"])
        self.assertEqual(response.headers.getRawHeaders(b"empty"), [b" "])

    def test_exit_without_body_sends_an_empty_body(self) -> None:
        self.pdk.result(self, "kong.response.exit(418)", self.context)
        self.assertEqual((self.context.response.status, b"".join(self.context.response.body)), (418, b""))
        self.assertTrue(self.context.response.body, "an empty body must not be replaced by an error page")

    def test_exit_validation(self) -> None:
        for code, message in [("kong.response.exit('x')", "code must be a number"),
                              ("kong.response.exit(99)", "code must be a number between 100 and 599"),
                              ("kong.response.exit(200, 1)", "body must be a nil, string or table"),
                              ("kong.response.exit(200, nil, 1)", "headers must be a nil or table"),
                              ("kong.response.exit(200, nil, {[1] = 'x'})", "invalid header name")]:
            self.assertIn(message, self.pdk.error(self, code, self.context))

    def test_exit_in_body_filter_is_refused(self) -> None:
        self.assertIn("function cannot be called in body_filter phase (only in: rewrite, access, response, "
                      "header_filter, error, admin_api)",
                      self.pdk.error(self, "kong.response.exit(200)", self.pdk.context(phase="body_filter")))

    def test_exit_in_header_filter_replaces_the_body(self) -> None:
        context = self.pdk.context(phase="header_filter")
        self.pdk.result(self, 'kong.response.exit(418, "teapot")', context)
        self.assertEqual((context.response.status, context.response.replacement_body), (418, b"teapot"))
        self.assertFalse(context.response.exited)

    def test_error(self) -> None:
        self.pdk.result(self, 'kong.response.error(403, "Go away")', self.context)
        self.assertEqual(json.loads(b"".join(self.context.response.body)),
                         {"message": "Go away", "request_id": self.context.request_id})
        context = self.pdk.context()
        self.pdk.result(self, "kong.response.error(404)", context)
        self.assertEqual((context.response.status, context.response.body), (404, []))

    def test_headers_and_status(self) -> None:
        context = self.pdk.context(phase="header_filter")
        context.response.status, context.response.source = 201, "service"
        result = self.pdk.result(self, """
            local r = kong.response
            r.set_header("X-A", 1)
            r.add_header("X-A", true)
            r.set_headers({["X-B"] = {"1", "2"}})
            r.clear_header("X-C")
            r.set_header("Transfer-Encoding", "chunked")
            local status, source = r.get_status(), r.get_source()
            r.set_status(299)
            return status, source, r.get_header("x_a"), r.get_headers()["x-b"][2]
        """, context)
        self.assertEqual(result, [201, b"service", b"1", b"2"])
        self.assertEqual(context.response.status, 299)
        self.assertEqual(context.response.headers.getRawHeaders(b"x-a"), [b"1", b"true"])
        self.assertFalse(context.response.headers.hasHeader(b"transfer-encoding"))

    def test_getters_refused_in_access(self) -> None:
        self.assertIn("function cannot be called in access phase",
                      self.pdk.error(self, "kong.response.get_status()", self.context))

    def test_raw_body_buffering(self) -> None:
        context = self.pdk.context(phase="body_filter")
        code = ("local body = kong.response.get_raw_body() "
                "if body then kong.response.set_raw_body(body:upper()) end")
        for chunk, eof in [(b"ab", False), (b"cd", False), (b"", True)]:
            context.body_chunk, context.body_eof = chunk, eof
            self.pdk.result(self, code, context)
            self.assertEqual(context.body_chunk, b"ABCD" if eof else b"")

    def test_set_raw_body_before_the_last_chunk(self) -> None:
        context = self.pdk.context(phase="body_filter")
        context.body_chunk, context.body_eof = b"first", False
        self.pdk.result(self, 'kong.response.set_raw_body("new")', context)
        self.assertEqual((context.body_chunk, context.response.replacement_body), (b"", b"new"))


class KongServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pdk = PDKHarness()
        self.context = self.pdk.context()

    def test_service_request_setters(self) -> None:
        self.pdk.result(self, """
            local r = kong.service.request
            r.set_header("X-A", "1") r.add_header("X-A", "2") r.set_headers({X_B = "b"})
            r.clear_header("host")
            r.set_path("/p") r.set_query({q = "a b"}) r.set_method("PUT") r.set_scheme("https")
            r.set_body({k = "v"}, "application/json")
        """, self.context)
        upstream = self.context.upstream
        assert upstream is not None
        self.assertEqual((upstream.path, upstream.query, upstream.method, upstream.scheme),
                         ("/p", "q=a%20b", "PUT", "https"))
        self.assertEqual(upstream.headers.getRawHeaders(b"x-a"), [b"1", b"2"])
        self.assertEqual(upstream.headers.getRawHeaders(b"x-b"), [b"b"])
        self.assertFalse(upstream.headers.hasHeader(b"host"))
        self.assertEqual(upstream.body, b'{"k":"v"}')
        self.assertEqual(upstream.headers.getRawHeaders(b"content-type"), [b"application/json"])
        self.pdk.result(self, 'kong.service.request.set_raw_query("a=1") '
                              'kong.service.request.set_raw_body("raw")', self.context)
        self.assertEqual((upstream.query, upstream.body), ("a=1", b"raw"))

    def test_service_request_validation(self) -> None:
        for code, message in [('kong.service.request.set_path("x")', "path must start with /"),
                              ('kong.service.request.set_method("get")', "invalid method: get"),
                              ('kong.service.request.set_scheme("ftp")', "invalid scheme: ftp"),
                              ("kong.service.request.set_query(1)", "args must be a table"),
                              ("kong.service.request.set_body({})", "content type was neither")]:
            self.assertIn(message, self.pdk.error(self, code, self.context))

    def test_service_response(self) -> None:
        context = self.pdk.context(phase="header_filter")
        context.upstream_response = UpstreamResponse(202, Headers({b"x-up": [b"u1", b"u2"]}))
        result = self.pdk.result(self, "local r = kong.service.response "
                                       "return r.get_status(), r.get_header('X-Up'), r.get_headers().x_up[2]",
                                 context)
        self.assertEqual(result, [202, b"u1", b"u2"])


class KongMiscTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pdk = PDKHarness({"plugins": "bundled", "pg_password": "******", "log_level": "notice",
                               "db_cache_ttl": None})
        self.context = self.pdk.context()

    def test_configuration(self) -> None:
        result = self.pdk.result(self, "return kong.configuration.plugins[1], "
                                       "kong.configuration.pg_password, "
                                       "kong.configuration.missing, kong.configuration.db_cache_ttl",
                                 self.context)
        self.assertEqual(result, [b"bundled", b"******", None, None])
        self.assertIn("cannot write to configuration",
                      self.pdk.error(self, 'kong.configuration.log_level = "debug"', self.context))

    def test_cache_get_twice(self) -> None:
        result = self.pdk.result(self, """
            local calls = 0
            local first = kong.cache:get("foo", nil, function() calls = calls + 1 return "val" end)
            local second = kong.cache:get("foo")
            local third = kong.cache:get("foo", nil, function() calls = calls + 1 return "other" end)
            return first, second, third, calls, tostring(kong.cache.cluster_events)
        """, self.context)
        self.assertEqual(result, [b"val", b"val", b"val", 1, b"nil"])

    def test_cache_get_returns_only_the_value(self) -> None:
        self.pdk.result(self, 'kong.cache:get("foo", nil, function() return "val" end) '
                              'ngx.say(kong.cache:get("foo")) ngx.exit(200)', self.context)
        self.assertEqual(self.context.response.body, [b"val\n"])

    def test_cache_drops_the_least_recently_used_beyond_its_share_of_memory(self) -> None:
        # the harness VM may use 1 MiB: the cache keeps to 256 KiB of keys and string values
        result = self.pdk.result(self, """
            local value = ("v"):rep(4096)
            for i = 1, 100 do
              kong.cache:get("k" .. i, nil, function() return value end)
              kong.cache:get("k1")
            end
            return kong.cache:probe("k1") ~= nil, kong.cache:probe("k2") ~= nil,
                   kong.cache:probe("k100") ~= nil
        """, self.context)
        self.assertEqual(result, [True, False, True])

    def test_cache_errors_ttl_and_invalidate(self) -> None:
        result = self.pdk.result(self, """
            local a, err_a = kong.cache:get("e1", nil, function() return nil, "boom" end)
            local b, err_b = kong.cache:get("e2", nil, function() error("bad", 0) end)
            local c = kong.cache:get("t", {ttl = 10}, function() return 1 end)
            return a, err_a, b, err_b, c, kong.cache:probe("t")
        """, self.context)
        self.assertEqual(result, [None, b"failed to get from node cache: boom", None,
                                  b"failed to get from node cache: callback threw an error: bad",
                                  1, 10, None, 1])
        self.pdk.clock.advance(11)
        self.assertEqual(self.pdk.result(self, 'return kong.cache:get("t")', self.context), [None])
        self.pdk.result(self, 'kong.cache:get("i", nil, function() return 5 end) kong.cache:invalidate("i")',
                        self.context)
        self.assertEqual(self.pdk.result(self, 'return kong.cache:get("i")', self.context), [None])

    def test_ctx_shared_and_plugin(self) -> None:
        self.pdk.result(self, "kong.ctx.shared.a = 1 kong.ctx.plugin.b = 2", self.context, key="one")
        self.assertEqual(self.pdk.result(self, "return kong.ctx.shared.a, kong.ctx.plugin.b",
                                         self.context, key="two"), [1, None])
        self.assertEqual(self.pdk.result(self, "return kong.ctx.plugin.b", self.context, key="one"), [2])
        self.assertEqual(self.pdk.result(self, "return kong.ctx.shared.a", self.pdk.context()), [None])

    def test_router(self) -> None:
        self.context.route = {"id": "r1", "paths": ["/a"], "hosts": None}
        self.context.service = {"id": "s1", "port": 80}
        result = self.pdk.result(self, "local route, service = kong.router.get_route(), "
                                       "kong.router.get_service() "
                                       "return route.id, route.paths[1], route.hosts == ngx.null, "
                                       "service.port",
                                 self.context)
        self.assertEqual(result, [b"r1", b"/a", True, 80])

    def test_node_version_client(self) -> None:
        result = self.pdk.result(self, "return kong.node.get_id(), kong.version, kong.version_num, "
                                       "kong.client.get_ip(), kong.client.get_port(), "
                                       "kong.client.get_consumer(), "
                                       "type(kong.node.get_hostname())", self.context)
        self.assertEqual(result, [b"node-1", b"3.9.0", 3009000, b"10.0.0.1", 54321, None, b"string"])

    def test_log(self) -> None:
        from twisted.logger import globalLogPublisher
        events: list[dict] = []
        events_observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(events_observer)
        self.addCleanup(globalLogPublisher.removeObserver, events_observer)
        self.pdk.result(self, 'kong.log.warn("a", 1) kong.log("n") kong.log.inspect({b = 1, a = {"x"}})',
                        self.context, plugin="post-function")
        logged = [(e["log_level"].name, e["text"], e["plugin"]) for e in events
                  if e.get("log_namespace") == "kongish.lua"]
        self.assertEqual(logged, [("warn", "a1", "post-function"), ("info", "n", "post-function"),
                                  ("info", '{\n  a = {\n    [1] = "x"\n  },\n  b = 1\n}', "post-function")])
