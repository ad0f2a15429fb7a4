"""pre-function and post-function end to end: Kong's own spec cases and kongish's extras."""
from __future__ import annotations

import json
import time
from typing import Any

import treq
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from tests.harness import POOL, deferred, start_gateway, start_upstream


class ServerlessTests(TestCase):
    async def _gateway(self, **settings):
        self.upstream = await start_upstream(self)
        gateway = await start_gateway(self, **settings)
        await gateway.call("POST", "/services", json={"name": "svc", "url": self.upstream.url})
        self.hosts = 0
        return gateway

    async def _route(self, gateway, *plugins: tuple[str, dict]) -> str:
        """A route with a host of its own and the given plugins on it; returns the host."""
        self.hosts += 1
        host = f"case{self.hosts}.test"
        status, route, _ = await gateway.call("POST", "/services/svc/routes", json={"hosts": [host]})
        self.assertEqual(status, 201, route)
        for name, config in plugins:
            status, body, _ = await gateway.call("POST", f"/routes/{route['id']}/plugins",
                                                 json={"name": name, "config": config})
            self.assertEqual(status, 201, body)
        return host

    @deferred
    async def test_kong_spec_short_circuits(self) -> None:
        gateway = await self._gateway()
        cases = [
            (["ngx.status = 503 ngx.exit(ngx.status)"], 503, None),
            (['ngx.status = 404 ngx.say("Not Found") ngx.exit(ngx.status)'], 404, b"Not Found\n"),
            (["ngx.status = 400", "ngx.exit(ngx.status)"], 400, None),
        ]
        for access, expected_status, expected_body in cases:
            host = await self._route(gateway, ("pre-function", {"access": access}))
            status, body, _ = await gateway.get("/status/200", headers={"Host": host})
            self.assertEqual(status, expected_status, access)
            if expected_body is not None:
                self.assertEqual(body, expected_body)
        self.assertEqual(self.upstream.resource.received, [])
        status, body, _ = await gateway.get("/", headers={"Host": "case3.test", "Accept": "application/json"})
        self.assertEqual(json.loads(body)["message"], "Bad request")

    @deferred
    async def test_kong_response_exit_with_table(self) -> None:
        gateway = await self._gateway()
        host = await self._route(gateway, ("pre-function", {
            "access": ['return kong.response.exit(406, { message = "Invalid" })']}))
        status, body, headers = await gateway.get("/", headers={"Host": host})
        self.assertEqual((status, json.loads(body)), (406, {"message": "Invalid"}))
        self.assertEqual(headers.getRawHeaders(b"content-type")[0].split(b";")[0], b"application/json")

    @deferred
    async def test_runtime_error_is_500_and_process_lives(self) -> None:
        gateway = await self._gateway()
        host = await self._route(gateway, ("pre-function", {
            "access": ['error("this should stop the request with a 500")']}))
        status, body, _ = await gateway.get("/", headers={"Host": host, "Accept": "application/json"})
        self.assertEqual(status, 500)
        self.assertEqual(json.loads(body)["message"], "An unexpected error occurred")
        self.assertNotIn(b"should stop", body)
        # Kong answers an access handler's error with kong.response.error: JSON by default
        status, body, headers = await gateway.get("/", headers={"Host": host})
        self.assertEqual((status, headers.getRawHeaders(b"content-type")),
                         (500, [b"application/json; charset=utf-8"]))
        self.flushLoggedErrors()
        self.assertEqual((await gateway.call("GET", "/status"))[0], 200)

    @deferred
    async def test_header_filter_error_is_500_without_filtering_again(self) -> None:
        gateway = await self._gateway()
        count_runs = ("ngx.ctx.runs = (ngx.ctx.runs or 0) + 1 "
                      "kong.response.set_header('X-Header-Filter-Runs', ngx.ctx.runs)")
        fail_once = "if not ngx.ctx.failed then ngx.ctx.failed = true error('header_filter broke') end"
        proxied = await self._route(
            gateway, ("pre-function", {"header_filter": [count_runs]}),
            ("post-function", {"header_filter": [fail_once]}))
        exited = await self._route(
            gateway, ("pre-function", {"access": ["ngx.say('from access') ngx.exit(200)"],
                                       "header_filter": [count_runs]}),
            ("post-function", {"header_filter": [fail_once]}))
        # the proxied request keeps Kong's proxied headers, the other Kong's own answer's
        for host, latency in ((proxied, b"x-kong-proxy-latency"), (exited, b"x-kong-response-latency")):
            status, body, headers = await gateway.get(
                "/status/200", headers={"Host": host, "Accept": "application/json"})
            self.assertEqual((status, json.loads(body)["message"]), (500, "An unexpected error occurred"))
            self.assertIsNone(headers.getRawHeaders(b"x-header-filter-runs"), host)
            self.assertEqual(headers.getRawHeaders(b"server"), [b"kong/3.9.0"])
            self.assertIsNotNone(headers.getRawHeaders(latency))
            self.assertEqual(len(self.flushLoggedErrors()), 1)

    @deferred
    async def test_upvalue_counter_is_unique_over_50_requests(self) -> None:
        gateway = await self._gateway()
        host = await self._route(gateway, ("pre-function", {"access": [
            "local count = 0 return function() count = count + 1 ngx.status = 200 "
            "ngx.say(ngx.worker.pid() * 1000 + count) ngx.exit(ngx.status) end"]}))
        bodies = [(await gateway.get("/", headers={"Host": host}))[1] for _ in range(50)]
        self.assertEqual(len(set(bodies)), 50)

    @deferred
    async def test_request_body_counter_in_both_forms(self) -> None:
        gateway = await self._gateway()
        code = ("ngx.req.read_body() count = tonumber(ngx.req.get_body_data()) + 1 "
                "ngx.say(count) ngx.exit(200)")
        for source in (code, f"return function() {code} end"):
            host = await self._route(gateway, ("pre-function", {"access": [source]}))
            count = b"0"
            for _ in range(10):
                status, count, _ = await gateway.request("POST", "/", data=count.strip(),
                                                         headers={"Host": host})
                self.assertEqual(status, 200)
            self.assertEqual(count, b"10\n")

    @deferred
    async def test_cache_and_configuration(self) -> None:
        gateway = await self._gateway(pg_password="hunter2")
        host = await self._route(gateway, ("pre-function", {"access": [
            'kong.cache:get("foo", nil, function() return "val" end) '
            'ngx.say(kong.cache:get("foo")) ngx.say(kong.configuration.plugins[1]) '
            'ngx.say(kong.configuration.pg_password) ngx.exit(200)']}))
        status, body, _ = await gateway.get("/", headers={"Host": host})
        self.assertEqual((status, body), (200, b"val\nbundled\n******\n"))

    @deferred
    async def test_caching_a_key_per_request_never_fills_the_vm(self) -> None:
        gateway = await self._gateway(lua_memory_limit="8m")
        host = await self._route(gateway, ("pre-function", {"access": [
            "local n = kong.request.get_query_arg('n') "
            "local value = kong.cache:get(n, nil, function() return ('x'):rep(100000) .. n end) "
            "ngx.say(#value - #n) ngx.exit(200)"]}))
        answers = {(await gateway.get(f"/?n={n}", headers={"Host": host}))[:2] for n in range(200)}
        self.assertEqual(answers, {(200, b"100000\n")})  # 20 MB of values went through an 8 MB VM
        small = await self._route(gateway, ("pre-function", {"access": [
            "for i = 1, 30000 do kong.cache:get('small' .. i, nil, function() return i end) end "
            "ngx.exit(204)"]}))
        # 30,000 small entries, about 10 MB
        self.assertEqual((await gateway.get("/", headers={"Host": small}))[0], 204)

    @deferred
    async def test_clearing_args_before_proxying(self) -> None:
        gateway = await self._gateway()
        host = await self._route(gateway, ("pre-function", {"access": ["ngx.var.args = nil"]}))
        status, body, _ = await gateway.get("/status/200?a=b", headers={"Host": host})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["uri"], "/status/200")

    @deferred
    async def test_phases_run_in_order_pre_before_post(self) -> None:
        gateway = await self._gateway()

        def config(tag: str) -> dict:
            record = "ngx.ctx.trail = (ngx.ctx.trail or '') .. '{0}:{1};'"
            return {
                "rewrite": [record.format(tag, "rewrite")],
                "access": [record.format(tag, "access")],
                "header_filter": [record.format(tag, "header_filter"),
                                  f"ngx.header['X-Trail-{tag}'] = ngx.ctx.trail"],
                "body_filter": [record.format(tag, "body_filter")],
                "log": [record.format(tag, "log"), f"kong.log.notice('{tag} trail ', ngx.ctx.trail)"],
            }
        host = await self._route(gateway, ("pre-function", config("pre")), ("post-function", config("post")))
        status, _, headers = await gateway.get("/", headers={"Host": host})
        self.assertEqual(status, 200)
        self.assertEqual(headers.getRawHeaders(b"x-trail-post")[0],
                         b"pre:access;post:access;pre:header_filter;post:header_filter;")

    @deferred
    async def test_response_phases_run_after_short_circuit(self) -> None:
        gateway = await self._gateway()
        host = await self._route(
            gateway,
            ("pre-function", {"access": ["kong.response.exit(200, 'short')"]}),
            ("post-function", {"header_filter": ["kong.response.set_header('X-Post', 'ran')"],
                               "body_filter": [
                                   "if ngx.arg[1] ~= '' then ngx.arg[1] = ngx.arg[1]:upper() end"]}))
        status, body, headers = await gateway.get("/", headers={"Host": host})
        self.assertEqual((status, body), (200, b"SHORT"))
        self.assertEqual(headers.getRawHeaders(b"x-post"), [b"ran"])
        self.assertEqual(self.upstream.resource.received, [])

    @deferred
    async def test_update_takes_effect_with_fresh_upvalues(self) -> None:
        gateway = await self._gateway()
        counter = ("local n = 0 return function() n = n + 1 ngx.say('{0}', n) ngx.exit(200) end")
        host = await self._route(gateway, ("pre-function", {"access": [counter.format("a")]}))
        for _ in range(3):
            _, body, _ = await gateway.get("/", headers={"Host": host})
        self.assertEqual(body, b"a3\n")
        plugin = (await gateway.call("GET", "/plugins"))[1]["data"][0]
        status, _, _ = await gateway.call("PATCH", f"/plugins/{plugin['id']}",
                                          json={"config": {"access": [counter.format("b")]}})
        self.assertEqual(status, 200)
        _, body, _ = await gateway.get("/", headers={"Host": host})
        self.assertEqual(body, b"b1\n")
        await gateway.call("DELETE", f"/plugins/{plugin['id']}")
        status, body, _ = await gateway.get("/status/201", headers={"Host": host})
        self.assertEqual(status, 201)

    @deferred
    async def test_syntax_error_is_a_schema_violation(self) -> None:
        gateway = await self._gateway()
        status, body, _ = await gateway.call("POST", "/plugins", json={
            "name": "pre-function", "config": {"access": ["print("]}})
        self.assertEqual(status, 400)
        self.assertEqual(body["name"], "schema violation")
        self.assertEqual(body["fields"]["config"]["access"][0],
                         "error parsing pre-function: [string \"print(\"]:1: unexpected symbol near '<eof>'")

    @deferred
    async def test_sleeping_requests_do_not_block_each_other(self) -> None:
        gateway = await self._gateway()
        host = await self._route(gateway, ("pre-function", {
            "access": ["ngx.sleep(0.5) ngx.say('slept') ngx.exit(200)"]}))
        started = time.monotonic()
        results = await gatherResults([
            # treq's header type (an invariant dict[bytes | str, ...]) turns down the dict[str, str] it takes
            treq.get((gateway.proxy + "/").encode(), headers={"Host": host},  # type: ignore[arg-type]
                     pool=POOL).addCallback(treq.content)
            for _ in range(20)])
        elapsed = time.monotonic() - started
        self.assertEqual(results, [b"slept\n"] * 20)
        self.assertLess(elapsed, 2.5)

    @deferred
    async def test_runaway_loop_is_500_and_others_keep_being_served(self) -> None:
        gateway = await self._gateway(lua_instruction_limit="5000000")
        runaway = await self._route(gateway, ("pre-function", {"access": ["while true do end"]}))
        healthy = await self._route(gateway, ("pre-function", {"access": ["ngx.say('ok') ngx.exit(200)"]}))
        looping = gateway.get("/", headers={"Host": runaway})
        status, body, _ = await gateway.get("/", headers={"Host": healthy})
        self.assertEqual((status, body), (200, b"ok\n"))
        self.assertEqual((await looping)[0], 500)
        self.flushLoggedErrors()

    @deferred
    async def test_memory_bomb_is_500_and_process_lives(self) -> None:
        gateway = await self._gateway(lua_memory_limit="64m")
        bomb = await self._route(gateway, ("pre-function", {"access": [
            "local t = {} while true do t[#t + 1] = ('x'):rep(1e6) .. #t end"]}))
        status, _, _ = await gateway.get("/", headers={"Host": bomb})
        self.assertEqual(status, 500)
        self.flushLoggedErrors()
        healthy = await self._route(gateway, ("pre-function", {"access": ["ngx.say('alive') ngx.exit(200)"]}))
        self.assertEqual((await gateway.get("/", headers={"Host": healthy}))[1], b"alive\n")

    @deferred
    async def test_sandbox_forbids_os_execute(self) -> None:
        gateway = await self._gateway()
        host = await self._route(gateway, ("pre-function", {"access": ["os.execute('true') ngx.exit(200)"]}))
        self.assertEqual((await gateway.get("/", headers={"Host": host}))[0], 500)
        self.flushLoggedErrors()

    @deferred
    async def test_untrusted_lua_off_refuses_at_request_time(self) -> None:
        gateway = await self._gateway(untrusted_lua="off")
        host = await self._route(gateway, ("pre-function", {"access": ["ngx.exit(200)"]}))
        self.assertEqual((await gateway.get("/", headers={"Host": host}))[0], 500)
        self.flushLoggedErrors()


class DeclarativeTests(TestCase):
    @deferred
    async def test_post_config_does_not_run_code(self) -> None:
        gateway = await start_gateway(self, database="off")
        config: dict[str, Any] = {"_format_version": "3.0",
                                  "plugins": [{"name": "pre-function", "config": {
                                      "access": ["kong.response.exit(418)"],
                                      "rewrite": ["ngx.ctx.hit = true"]}}]}
        status, body, _ = await gateway.call("POST", "/config", json=config)
        self.assertEqual(status, 201, body)
        self.assertEqual(len(body["plugins"]), 1)
        # a global plugin's access phase runs only for routed requests; rewrite runs before routing
        self.assertEqual((await gateway.get("/anything"))[0], 404)
        config["plugins"][0]["config"]["rewrite"] = ["kong.response.exit(418)"]
        status, body, _ = await gateway.call("POST", "/config", json=config)
        self.assertEqual((await gateway.get("/anything"))[0], 418)
        status, body, _ = await gateway.call("POST", "/services", json={"url": "http://x.test"})
        self.assertEqual((status, body["code"]), (405, 12))

    @deferred
    async def test_example_kong_yml_loads(self) -> None:
        import os
        example = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "kong.yml")
        gateway = await start_gateway(self, database="off", declarative_config=example)
        status, body, _ = await gateway.get("/test?name=Kong")
        self.assertEqual((status, body.strip()), (200, b"Hello Kong!"))
