"""The dry run of serverless functions on the Admin API, through the Admin resource in memory.

The node is a DB-less one on a ``MemoryReactorClock`` (``ProxyHarness``), so the proxy
serves the live plugins beside it and ``ngx.sleep`` runs on the test's clock.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from kongish.admin.request import admin_request
from kongish.http.memory import MemoryConnection, read_response
from kongish.http.stub import StubRequest, StubResponse
from kongish.lua.cost import CPU_TIME_LIMIT, INSTRUCTION_LIMIT, RUNTIME_ERROR
from kongish.lua.engine import LuaError, LuaLimitError
from kongish.lua.pdk import SHARED_DICT_REFUSED
from kongish.runloop.dry_run import DRY_RUN_TIMEOUT, OUTBOUND_REFUSED, TIMERS_REFUSED
from kongish.service import admin_resource
from kongish.testing import ProxyHarness
from tests.test_e2e_seed import SEED_CODE

SEED_PLUGIN = "7f1d2a7e-0000-4000-8000-000000000001"
COUNTER_PLUGIN = "7f1d2a7e-0000-4000-8000-000000000002"
COUNTER_CODE = ("local count = 0\n"
                "return function() count = count + 1 ngx.say('count ', count) ngx.exit(200) end")
CONFIG = {"_format_version": "3.0", "services": [
    {"name": "plugin-testing", "url": "http://dead.end.com", "routes": [{"name": "test", "paths": ["/test"]}],
     "plugins": [{"id": SEED_PLUGIN, "name": "pre-function", "config": {"access": [SEED_CODE]}}]},
    {"name": "hits", "url": "http://dead.end.com", "routes": [{"name": "hits", "paths": ["/hits"]}],
     "plugins": [{"name": "pre-function", "config": {"access": [
         "local d = ngx.shared.limits if ngx.var.arg_set then d:set('hits', tonumber(ngx.var.arg_set)) end "
         "ngx.say('hits ', d:get('hits')) ngx.exit(200)"]}}]},
    {"name": "counted", "url": "http://dead.end.com", "routes": [
        {"name": "count", "paths": ["/count"], "plugins": [
            {"id": COUNTER_PLUGIN, "name": "pre-function", "config": {"access": [COUNTER_CODE]}}]}]},
]}


def _never_called(request: StubRequest) -> StubResponse:
    raise AssertionError(f"the live upstream was called: {request}")


class DryRunTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = ProxyHarness.start(CONFIG, _never_called, settings={
            "untrusted_lua_sandbox_requires": "resty.http", "lua_instruction_limit": "100000",
            "nginx_http_lua_shared_dict": "limits 1m"})
        self.site = Site(admin_resource(self.harness.node), requestFactory=admin_request,
                         reactor=self.harness.reactor)

    def tearDown(self) -> None:
        self.harness.close()

    def send(self, path: str, body: bytes, content_type: bytes) -> MemoryConnection:
        connection = MemoryConnection.open(self.site)
        connection.send(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: admin\r\nContent-Type: "
                        + content_type + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        return connection

    def answer(self, connection: MemoryConnection) -> tuple[int, Any]:
        response = read_response(connection.transport.value())
        assert response is not None, connection.transport.value()
        connection.close()
        return response.status, json.loads(response.body)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        return self.answer(self.send(path, json.dumps(body).encode(), b"application/json"))

    def code(self, *access: str, **phases: list[str]) -> tuple[int, Any]:
        """A dry run of a pre-function with ``access`` (and other phases') code, on the default request."""
        return self.post("/schemas/plugins/pre-function/dry-run",
                         {"config": {"access": list(access), **phases}})

    def test_the_seed_demo_of_a_stored_plugin(self) -> None:
        pending = len(self.harness.reactor.getDelayedCalls())
        status, body = self.post(f"/plugins/{SEED_PLUGIN}/dry-run", {"request": {"query": {"name": "Kong"}}})
        self.assertEqual(len(self.harness.reactor.getDelayedCalls()), pending)  # nothing left behind
        self.assertEqual(status, 200, body)
        response = body["response"]
        self.assertEqual((response["status"], response["body"]), (200, "Hello Kong!\n"))
        self.assertEqual(response["headers"]["Content-Type"], "text/plain; charset=utf-8")
        self.assertIsNone(body["upstream_request"])
        [cost] = body["functions"]
        self.assertEqual((cost["plugin"], cost["plugin_id"], cost["phase"], cost["index"], cost["error"]),
                         ("pre-function", SEED_PLUGIN, "access", 1, None))
        self.assertGreaterEqual(cost["instructions"], 0)  # counted in steps of 1000
        self.assertGreaterEqual(cost["cpu_seconds"], 0)
        self.assertFalse(body["timed_out"])

    def test_the_seed_demo_from_a_config(self) -> None:
        status, body = self.post("/schemas/plugins/pre-function/dry-run", {
            "config": {"access": [SEED_CODE]}, "request": {"path": "/test", "query": "name=Kong"}})
        self.assertEqual(status, 200, body)
        self.assertEqual((body["response"]["status"], body["response"]["body"]), (200, "Hello Kong!\n"))

    def test_form_encoded(self) -> None:
        form = urlencode({"config.access[]": SEED_CODE, "request.path": "/test", "request.query.name": "Kong",
                          "allow_outbound": "false"}).encode()
        status, body = self.answer(self.send("/schemas/plugins/post-function/dry-run", form,
                                             b"application/x-www-form-urlencoded"))
        self.assertEqual(status, 200, body)
        self.assertEqual(body["response"]["body"], "Hello Kong!\n")
        self.assertEqual(body["functions"][0]["plugin"], "post-function")

    def test_a_runtime_error_is_the_clients_500(self) -> None:
        status, body = self.code("local x = nil\nerror('boom: ' .. tostring(x))")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["response"]["status"], 500)
        self.assertEqual(json.loads(body["response"]["body"])["message"], "An unexpected error occurred")
        [cost] = body["functions"]
        self.assertEqual(cost["error"]["kind"], RUNTIME_ERROR)
        self.assertIn("boom: nil", cost["error"]["message"])
        self.assertIsNone(body["upstream_request"])
        self.assertEqual(len(self.flushLoggedErrors(LuaError)), 1)  # the Admin node's error log has it

    def test_a_runaway_function_ends_at_its_limit(self) -> None:
        status, body = self.code("while true do end")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["response"]["status"], 500)
        [cost] = body["functions"]
        self.assertIn(cost["error"]["kind"], (INSTRUCTION_LIMIT, CPU_TIME_LIMIT))
        self.assertIn("exceeded", cost["error"]["message"])
        self.assertEqual(len(self.flushLoggedErrors(LuaLimitError)), 1)

    def test_every_phase_and_what_goes_up_and_down(self) -> None:
        status, body = self.post("/schemas/plugins/pre-function/dry-run", {
            "config": {
                "rewrite": ["kong.service.request.set_header('X-Rewrite', 'r')"],
                "access": ["kong.service.request.set_header('X-Access', kong.request.get_header('x-client'))",
                           "kong.service.request.set_path('/elsewhere')"],
                "header_filter": [
                    "kong.response.set_header('X-Filtered', kong.service.response.get_status())"],
                "body_filter": ["if ngx.arg[1] then ngx.arg[1] = ngx.arg[1]:upper() end"],
                "log": ["kong.log.notice('logged ', kong.response.get_status())"]},
            "request": {"method": "POST", "path": "/a b", "query": {"q": ["1", "2"]},
                        "headers": {"X-Client": "c1"}, "body": {"k": "v"}},
            "upstream_response": {"status": 201, "headers": {"X-Up": ["1", "2"]}, "body": "hello"}})
        self.assertEqual(status, 200, body)
        sent = body["upstream_request"]
        self.assertEqual((sent["method"], sent["host"], sent["path"], sent["query"], sent["body"]),
                         ("POST", "dry-run.invalid", "/elsewhere", "q=1&q=2", '{"k":"v"}'))
        self.assertEqual((sent["headers"]["X-Rewrite"], sent["headers"]["X-Access"]), ("r", "c1"))
        self.assertEqual(sent["headers"]["Content-Type"], "application/json")
        response = body["response"]
        self.assertEqual((response["status"], response["body"]), (201, "HELLO"))
        self.assertEqual((response["headers"]["X-Filtered"], response["headers"]["X-Up"]),
                         ("201", ["1", "2"]))
        phases = [(cost["phase"], cost["index"]) for cost in body["functions"]]
        self.assertEqual(phases, [("rewrite", 1), ("access", 1), ("access", 2), ("header_filter", 1),
                                  ("body_filter", 1), ("body_filter", 1), ("log", 1)])
        self.assertEqual(body["log"],
                         [{"level": "notice", "plugin": "pre-function", "message": "logged 201"}])

    def test_log_lines_with_their_levels(self) -> None:
        status, body = self.code("ngx.log(ngx.ERR, 'bad ', 1) kong.log.warn('careful') print('printed')")
        self.assertEqual(status, 200, body)
        self.assertEqual([(line["level"], line["message"]) for line in body["log"]],
                         [("error", "bad 1"), ("warn", "careful"), ("notice", "printed")])

    def test_outbound_calls_and_timers_are_refused(self) -> None:
        status, body = self.code(
            "local res, err = require('resty.http').new():request_uri('http://dead.end.com/')\n"
            "local ok, terr = ngx.timer.at(0, function() end)\n"
            "ngx.say(tostring(res), '|', err, '|', tostring(ok), '|', terr) ngx.exit(200)")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["response"]["body"], f"nil|{OUTBOUND_REFUSED}|nil|{TIMERS_REFUSED}\n")
        self.assertEqual(self.harness.node.lua_engine.timers.pending, set())

    def test_the_live_plugin_keeps_its_upvalues(self) -> None:
        self.assertIn(b"count 1\n", self.harness.get(b"/count"))
        for _ in range(2):
            status, body = self.post(f"/plugins/{COUNTER_PLUGIN}/dry-run", {})
            self.assertEqual(status, 200, body)
            self.assertEqual(body["response"]["body"], "count 1\n")  # compiled afresh each time
        self.assertIn(b"count 2\n", self.harness.get(b"/count"))
        self.assertEqual(self.harness.upstream.requests, [])

    def test_the_live_shared_dicts_are_read_but_never_written(self) -> None:
        self.assertIn(b"hits 7\n", self.harness.get(b"/hits?set=7"))
        status, body = self.code(
            "local d = ngx.shared.limits "
            "ngx.say(d:get('hits'), ' ', select(2, d:set('hits', 1000)), ' ', select(2, d:incr('hits', 1)))"
            " d:flush_all() ngx.say(d:get('hits')) ngx.exit(200)")
        self.assertEqual(status, 200, body)
        refused = SHARED_DICT_REFUSED
        self.assertEqual(body["response"]["body"], f"7 {refused} {refused}\n7\n")
        self.assertIn(b"hits 7\n", self.harness.get(b"/hits"))  # live traffic sees its own value

    def test_the_plugins_route_is_the_default_target(self) -> None:
        status, body = self.post(f"/plugins/{COUNTER_PLUGIN}/dry-run", {"request": {"path": "/other"}})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["response"]["status"], 404)  # the route does not match: Kong's answer
        self.assertEqual(body["functions"], [])

    def test_a_sleeping_function_times_out(self) -> None:
        connection = self.send("/schemas/plugins/pre-function/dry-run",
                               json.dumps({"config": {"access": ["ngx.sleep(1000) ngx.exit(200)"]}}).encode(),
                               b"application/json")
        self.assertEqual(connection.transport.value(), b"")
        self.harness.reactor.advance(DRY_RUN_TIMEOUT)
        status, body = self.answer(connection)
        self.assertEqual(status, 200, body)
        self.assertTrue(body["timed_out"])
        self.assertIsNone(body["response"])
        (cut,) = body["functions"]  # the function that hung is the one shown, cut off
        self.assertEqual((cut["phase"], cut["cancelled"], cut["error"]), ("access", True, None))
        self.assertGreaterEqual(cut["wall_seconds"], DRY_RUN_TIMEOUT)

    def test_schema_violations(self) -> None:
        status, body = self.code("this is not lua")
        self.assertEqual((status, body["name"]), (400, "schema violation"))
        self.assertIn("access", body["fields"]["config"])
        status, body = self.post("/schemas/plugins/pre-function/dry-run", {
            "config": {"access": ["ngx.exit(200)"]}, "requests": {},
            "request": {"method": "G T", "headers": {"X": "a\r\nb"}},
            "upstream_response": {"status": 99}, "allow_outbound": "yes"})
        self.assertEqual(status, 400)
        self.assertEqual(body["fields"], {
            "requests": "unknown field", "allow_outbound": "expected a boolean",
            "request": {"method": "expected an HTTP method", "headers": "invalid value of header 'X'"},
            "upstream_response": {"status": "expected an integer between 200 and 599"}})
        self.assertEqual(self.post(f"/plugins/{SEED_PLUGIN}/dry-run", {"config": {}})[0], 400)

    def test_unknown_plugins(self) -> None:
        self.assertEqual(self.post("/plugins/7f1d2a7e-0000-4000-8000-00000000ffff/dry-run", {}),
                         (404, {"message": "Not found"}))
        self.assertEqual(self.post("/schemas/plugins/nope/dry-run", {}),
                         (404, {"message": "No plugin named 'nope'"}))
