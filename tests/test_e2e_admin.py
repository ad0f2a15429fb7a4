"""The Admin API through real sockets, checked against Kong 3.x's answers (reference sections 1-3, 7.3, 8)."""
from __future__ import annotations

import io
import json
import uuid
from typing import Any

import treq
import yaml
from twisted.trial.unittest import TestCase

from kongish import KONG_VERSION
from tests.harness import POOL, Gateway, deferred, start_gateway
from tests.test_e2e_seed import SEED_CODE

NOT_FOUND = {"message": "Not found"}
SERVICE_FIELDS = {"id", "created_at", "updated_at", "name", "retries", "protocol", "host", "port", "path",
                  "connect_timeout", "write_timeout", "read_timeout", "tags", "client_certificate",
                  "tls_verify", "tls_verify_depth", "ca_certificates", "enabled"}
ROUTE_FIELDS = {"id", "created_at", "updated_at", "name", "protocols", "methods", "hosts", "paths", "headers",
                "snis", "sources", "destinations", "https_redirect_status_code", "regex_priority",
                "strip_path", "preserve_host", "request_buffering", "response_buffering", "path_handling",
                "tags", "service"}
PLUGIN_FIELDS = {"id", "name", "instance_name", "created_at", "updated_at", "route", "service", "consumer",
                 "config", "protocols", "enabled", "tags"}
EMPTY_CODE: dict[str, list[str]] = {"certificate": [], "rewrite": [], "access": [], "header_filter": [],
                                    "body_filter": [], "log": []}


async def raw_call(gateway: Gateway, method: str, path: str, **kwargs: Any) -> tuple[int, bytes, Any]:
    """An Admin API call whose body is returned undecoded."""
    response = await treq.request(method, (gateway.admin + path).encode(), pool=POOL, **kwargs)
    return response.code, await response.content(), response.headers


async def seed(gateway: Gateway) -> tuple[dict, dict]:
    """The seed demo's service and route."""
    _, service, _ = await gateway.call("POST", "/services", data={"name": "plugin-testing",
                                                                  "url": "http://dead.end.com"})
    _, route, _ = await gateway.call("POST", "/services/plugin-testing/routes",
                                     data={"paths[]": "/test", "name": "test-route"})
    return service, route


class TransportTests(TestCase):
    """Section 2.1: statuses and headers that do not depend on entities."""

    @deferred
    async def test_unknown_paths_and_methods(self) -> None:
        gateway = await start_gateway(self)
        for path in ("/nothing", "/services/x/nothing", "/targets", "/services/a/routes/b/c"):
            self.assertEqual((await gateway.call("GET", path))[:2], (404, NOT_FOUND), path)
        for method, path in (("DELETE", "/services"), ("PATCH", "/routes"), ("POST", "/services/x"),
                             ("PUT", "/status"), ("POST", "/plugins/enabled")):
            self.assertEqual((await gateway.call(method, path))[:2],
                             (405, {"message": "Method not allowed"}), (method, path))

    @deferred
    async def test_headers_on_every_answer(self) -> None:
        gateway = await start_gateway(self)
        for method, path in (("GET", "/services"), ("GET", "/nothing"), ("DELETE", "/services"),
                             ("OPTIONS", "/services"), ("POST", "/services")):
            _, _, headers = await gateway.call(method, path, headers={"Origin": "http://gui.test"})
            self.assertEqual(headers.getRawHeaders("server"), [f"kong/{KONG_VERSION}"])
            self.assertTrue(headers.getRawHeaders("x-kong-admin-latency")[0].isdigit())
            self.assertEqual(headers.getRawHeaders("access-control-allow-origin"), ["http://gui.test"])
            self.assertEqual(headers.getRawHeaders("access-control-allow-credentials"), ["true"])
        _, _, headers = await gateway.call("GET", "/")
        self.assertEqual(headers.getRawHeaders("access-control-allow-origin"), ["*"])
        self.assertEqual(headers.getRawHeaders("content-type"), ["application/json; charset=utf-8"])

    @deferred
    async def test_headers_setting_turns_tokens_off(self) -> None:
        gateway = await start_gateway(self, headers="off")
        _, _, headers = await gateway.call("GET", "/services")
        self.assertFalse(headers.hasHeader("x-kong-admin-latency"))
        self.assertFalse(headers.hasHeader("server"))

    @deferred
    async def test_options_lists_sorted_methods(self) -> None:
        gateway = await start_gateway(self)
        expected = {"/services": "GET, HEAD, OPTIONS, POST",
                    "/services/x": "DELETE, GET, HEAD, OPTIONS, PATCH, PUT",
                    "/config": "GET, HEAD, OPTIONS, POST",
                    "/schemas/plugins/validate": "OPTIONS, POST"}
        for path, methods in expected.items():
            status, body, headers = await raw_call(gateway, "OPTIONS", path)
            self.assertEqual((status, body), (204, b""))
            self.assertEqual(headers.getRawHeaders("allow"), [methods])
            self.assertEqual(headers.getRawHeaders("access-control-allow-methods"), [methods])
            self.assertEqual(headers.getRawHeaders("access-control-allow-headers"), ["Content-Type"])
        _, _, headers = await raw_call(gateway, "OPTIONS", "/routes",
                                       headers={"Access-Control-Request-Headers": "X-Custom"})
        self.assertEqual(headers.getRawHeaders("access-control-allow-headers"), ["X-Custom"])

    @deferred
    async def test_trailing_slash_head_and_escaped_keys(self) -> None:
        gateway = await start_gateway(self)
        await gateway.call("POST", "/services/", data={"name": "a.b~c", "host": "x.test"})
        for path in ("/services", "/services/", "/services/a.b~c/", "/services/a.b%7Ec"):
            self.assertEqual((await gateway.call("GET", path))[0], 200, path)
        status, body, headers = await raw_call(gateway, "HEAD", "/services/a.b~c")
        self.assertEqual((status, body), (200, b""))
        self.assertNotEqual(headers.getRawHeaders("content-length"), ["0"])

    @deferred
    async def test_bodies_kong_refuses(self) -> None:
        gateway = await start_gateway(self)
        for content_type in ("text/plain", "Application/json", "application/xml"):
            status, body, _ = await raw_call(gateway, "POST", "/services", data=b"x",
                                             headers={"Content-Type": content_type})
            self.assertEqual((status, body), (415, b""), content_type)
        for text in (b"{x", b"", b"[1,", b'{"a":NaN}'):
            status, body, _ = await gateway.call("POST", "/services", data=text,
                                                 headers={"Content-Type": "application/json"})
            self.assertEqual((status, body), (400, {"message": "Cannot parse JSON body"}), text)
        status, body, _ = await raw_call(gateway, "POST", "/services", data=b"{}",
                                         headers={"Content-Type": ["application/json", "text/plain"]})
        self.assertEqual((status, body), (400, b"Multiple Content-Type headers not allowed"))
        status, body, _ = await gateway.call("POST", "/services", data=b"x=" + b"a" * (11 * 1024 * 1024),
                                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual((status, body), (413, {"message": "Payload too large"}))
        status, body, _ = await gateway.call("POST", "/services",
                                             data="&".join(f"a{i}=1" for i in range(1001)).encode(),
                                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual((status, body), (400, {"message": "Too many arguments"}))

    @deferred
    async def test_bodies_of_get_and_delete_are_ignored(self) -> None:
        gateway = await start_gateway(self)
        for method in ("GET", "DELETE"):
            status, _, _ = await gateway.call(method, "/services/x" if method == "DELETE" else "/services",
                                              data=b"{x", headers={"Content-Type": "application/json"})
            self.assertIn(status, (200, 204))


class ServiceTests(TestCase):
    @deferred
    async def test_create_read_patch_put_delete(self) -> None:
        gateway = await start_gateway(self)
        status, service, _ = await gateway.call("POST", "/services",
                                                data={"name": "plugin-testing", "url": "http://dead.end.com"})
        self.assertEqual(status, 201)
        self.assertEqual(set(service), SERVICE_FIELDS)
        self.assertEqual({k: service[k] for k in ("protocol", "host", "port", "path", "retries", "enabled",
                                                  "tags", "connect_timeout")},
                         {"protocol": "http", "host": "dead.end.com", "port": 80, "path": None, "retries": 5,
                          "enabled": True, "tags": None, "connect_timeout": 60000})
        self.assertEqual(uuid.UUID(service["id"]).version, 4)
        for key in (service["id"], "plugin-testing"):
            self.assertEqual((await gateway.call("GET", f"/services/{key}"))[:2], (200, service))
        status, patched, _ = await gateway.call("PATCH", "/services/plugin-testing", json={"retries": 2})
        self.assertEqual((status, patched["retries"], patched["host"]), (200, 2, "dead.end.com"))
        status, put, _ = await gateway.call("PUT", "/services/plugin-testing", json={"host": "other.test"})
        self.assertEqual((status, put["id"], put["name"], put["retries"], put["host"]),
                         (200, service["id"], "plugin-testing", 5, "other.test"))
        self.assertEqual((await gateway.call("DELETE", "/services/plugin-testing"))[:2], (204, None))
        self.assertEqual((await gateway.call("GET", f"/services/{service['id']}"))[:2], (404, NOT_FOUND))
        for key in ("plugin-testing", service["id"]):
            self.assertEqual((await gateway.call("DELETE", f"/services/{key}"))[0], 204)

    @deferred
    async def test_put_creates_with_200(self) -> None:
        gateway = await start_gateway(self)
        status, by_name, _ = await gateway.call("PUT", "/services/made", data={"host": "a.test"})
        self.assertEqual((status, by_name["name"]), (200, "made"))
        given = str(uuid.uuid4())
        status, by_id, _ = await gateway.call("PUT", f"/services/{given}",
                                              json={"host": "b.test", "name": "x"})
        self.assertEqual((status, by_id["id"], by_id["name"]), (200, given, "x"))
        status, own_id, _ = await gateway.call("POST", "/services", json={"id": str(uuid.UUID(int=7)),
                                                                          "host": "c.test"})
        self.assertEqual((status, own_id["id"]), (201, str(uuid.UUID(int=7))))

    @deferred
    async def test_missing_entities_are_404(self) -> None:
        gateway = await start_gateway(self)
        for path in ("/services/nope", f"/services/{uuid.uuid4()}", "/services/not-a-uuid-0000",
                     "/routes/nope/service", "/services/nope/routes", "/plugins/nope/route"):
            self.assertEqual((await gateway.call("GET", path))[:2], (404, NOT_FOUND), path)
        self.assertEqual((await gateway.call("PATCH", "/services/nope", json={"retries": 1}))[:2],
                         (404, NOT_FOUND))

    @deferred
    async def test_validation_errors_are_kong_shaped(self) -> None:
        gateway = await start_gateway(self)
        status, body, _ = await gateway.call("POST", "/services", json={"host": "a.test", "port": "80"})
        self.assertEqual((status, body), (400, {
            "code": 2, "name": "schema violation", "message": "schema violation (port: expected an integer)",
            "fields": {"port": "expected an integer"}}))
        status, body, _ = await gateway.call("POST", "/services", data={"host": "a.test", "port": "80"})
        self.assertEqual((status, body["port"]), (201, 80))
        status, body, _ = await gateway.call("POST", "/services",
                                             json={"host": "a.test", "id": "bad", "foo": 1})
        self.assertEqual((status, body["fields"]),
                         (400, {"id": "expected a valid UUID", "foo": "unknown field"}))
        status, body, _ = await gateway.call("POST", "/services", data={"url": "grpc://h.test/p"})
        self.assertEqual(body["fields"], {"@entity": ["failed conditional validation given value of field "
                                                      "'protocol'"], "path": "value must be null"})
        status, body, _ = await gateway.call("PATCH", f"/services/{uuid.uuid4()}x", json={})
        self.assertEqual((status, body), (404, NOT_FOUND))

    @deferred
    async def test_unique_name(self) -> None:
        gateway = await start_gateway(self)
        await gateway.call("POST", "/services", data={"name": "s", "host": "a.test"})
        status, body, _ = await gateway.call("POST", "/services", data={"name": "s", "host": "b.test"})
        self.assertEqual((status, body), (409, {
            "code": 5, "name": "unique constraint violation",
            "message": "UNIQUE violation detected on '{name=\"s\"}'", "fields": {"name": "s"}}))
        await gateway.call("POST", "/services", data={"name": "t", "host": "b.test"})
        self.assertEqual((await gateway.call("PATCH", "/services/t", json={"name": "s"}))[0], 409)

    @deferred
    async def test_delete_with_routes_and_cascade_of_plugins(self) -> None:
        gateway = await start_gateway(self)
        service, route = await seed(gateway)
        await gateway.call("POST", "/services/plugin-testing/plugins",
                           data={"name": "pre-function", "config.access": SEED_CODE})
        status, body, _ = await gateway.call("DELETE", "/services/plugin-testing")
        self.assertEqual((status, body), (400, {
            "code": 4, "name": "foreign key violation",
            "message": "an existing 'routes' entity references this 'services' entity",
            "fields": {"@referenced_by": "routes"}}))
        self.assertEqual((await gateway.call("DELETE", f"/routes/{route['id']}"))[0], 204)
        self.assertEqual((await gateway.call("DELETE", "/services/plugin-testing"))[0], 204)
        self.assertEqual((await gateway.call("GET", "/plugins"))[1], {"data": [], "next": None})


class RouteTests(TestCase):
    @deferred
    async def test_nested_routes(self) -> None:
        gateway = await start_gateway(self)
        service, route = await seed(gateway)
        self.assertEqual(set(route), ROUTE_FIELDS)
        self.assertEqual((route["service"], route["paths"], route["protocols"]),
                         ({"id": service["id"]}, ["/test"], ["http", "https"]))
        await gateway.call("POST", "/services", data={"name": "other", "host": "o.test"})
        _, foreign, _ = await gateway.call("POST", "/services/other/routes",
                                           data={"paths": "/o", "name": "o"})
        self.assertEqual((await gateway.call("GET", "/services/plugin-testing/routes/test-route"))[:2],
                         (200, route))
        for method in ("GET", "PATCH", "DELETE"):
            self.assertEqual((await gateway.call(method, "/services/plugin-testing/routes/o", json={}))[:2],
                             (404, NOT_FOUND), method)
            self.assertEqual((await gateway.call(method, "/services/nope/routes/test-route", json={}))[:2],
                             (404, NOT_FOUND), method)
        self.assertEqual((await gateway.call("DELETE", "/services/plugin-testing/routes/missing"))[0], 404)
        status, listed, _ = await gateway.call("GET", "/services/other/routes")
        self.assertEqual((status, listed), (200, {"data": [foreign], "next": None}))
        status, moved, _ = await gateway.call("PUT", "/services/plugin-testing/routes/o",
                                              json={"paths": ["/p"]})
        self.assertEqual((status, moved["id"], moved["service"]), (200, foreign["id"], {"id": service["id"]}))
        self.assertEqual((await gateway.call("DELETE", "/services/plugin-testing/routes/o"))[:2], (204, None))

    @deferred
    async def test_route_messages(self) -> None:
        gateway = await start_gateway(self)
        status, body, _ = await gateway.call("POST", "/routes", json={})
        self.assertEqual((status, body["message"]), (400, "schema violation (must set one of 'methods', "
                         "'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https')"))
        status, body, _ = await gateway.call("POST", "/routes",
                                             data={"paths[]": "/x", "service.name": "nope"})
        self.assertEqual((status, body), (400, {
            "code": 13, "name": "foreign keys unresolved",
            "message": "foreign key unresolved (service.name: the foreign key cannot be resolved with "
                       "'{name=\"nope\"}' for an existing 'services' entity)",
            "fields": {"service": {"name": "the foreign key cannot be resolved with '{name=\"nope\"}' "
                                           "for an existing 'services' entity"}}}))
        missing = str(uuid.uuid4())
        status, body, _ = await gateway.call("POST", "/routes",
                                             json={"paths": ["/x"], "service": {"id": missing}})
        self.assertEqual((status, body), (400, {
            "code": 4, "name": "foreign key violation",
            "message": f"the foreign key '{{id=\"{missing}\"}}' does not reference "
                       "an existing 'services' entity.",
            "fields": {"service": {"id": missing}}}))
        status, body, _ = await gateway.call("POST", "/routes",
                                             json={"paths": ["/x"], "service": {"id": "x"}})
        self.assertEqual((status, body["fields"]), (400, {"service": {"id": "expected a valid UUID"}}))
        await gateway.call("POST", "/services", data={"name": "s", "host": "a.test"})
        status, body, _ = await gateway.call("POST", "/routes", data={"paths[]": "/x", "service.name": "s"})
        self.assertEqual(status, 201)

    @deferred
    async def test_route_service_endpoint(self) -> None:
        gateway = await start_gateway(self)
        service, route = await seed(gateway)
        self.assertEqual((await gateway.call("GET", "/routes/test-route/service"))[:2], (200, service))
        status, patched, _ = await gateway.call("PATCH", "/routes/test-route/service", data={"retries": "3"})
        self.assertEqual((status, patched["id"], patched["retries"]), (200, service["id"], 3))
        status, put, _ = await gateway.call("PUT", f"/routes/{route['id']}/service",
                                            data={"host": "new.test"})
        self.assertEqual((status, put["id"], put["host"], put["retries"]),
                         (200, service["id"], "new.test", 5))
        self.assertEqual((await gateway.call("DELETE", "/routes/test-route/service"))[:2],
                         (405, {"message": "Method not allowed"}))
        _, lonely, _ = await gateway.call("POST", "/routes", data={"paths[]": "/l", "name": "lonely"})
        for method in ("GET", "PATCH", "DELETE"):
            self.assertEqual((await gateway.call(method, "/routes/lonely/service", json={}))[:2],
                             (404, NOT_FOUND), method)
        status, created, _ = await gateway.call("PUT", "/routes/lonely/service", data={"host": "made.test"})
        self.assertEqual((status, created["host"]), (200, "made.test"))
        self.assertEqual((await gateway.call("GET", "/routes/lonely"))[1]["service"], {"id": created["id"]})


class PluginTests(TestCase):
    @deferred
    async def test_seed_form_bodies(self) -> None:
        gateway = await start_gateway(self)
        await seed(gateway)
        seed_access = {**EMPTY_CODE, "access": [SEED_CODE]}
        forms = [
            ({"name": "pre-function", "config.functions[]": SEED_CODE},
             {**EMPTY_CODE, "functions": [SEED_CODE]}),
            ({"name": "pre-function", "config.access[]": SEED_CODE}, seed_access),
            ({"name": "pre-function", "config.access": SEED_CODE}, seed_access),
            ([("name", "pre-function"), ("config.access[1]", SEED_CODE), ("config.access[2]", "b=2")],
             {**EMPTY_CODE, "access": [SEED_CODE, "b=2"]}),
            ([("name", "pre-function"), ("config.access", SEED_CODE), ("config.access", "b=2")],
             {**EMPTY_CODE, "access": [SEED_CODE, "b=2"]}),
            ({"name": "pre-function", "config.access": "local t = {1\\, 2} " + SEED_CODE},
             {**EMPTY_CODE, "access": ["local t = {1, 2} " + SEED_CODE]}),
        ]
        for form, config in forms:
            status, plugin, _ = await gateway.call("POST", "/services/plugin-testing/plugins", data=form)
            self.assertEqual(status, 201, plugin)
            self.assertEqual(set(plugin), PLUGIN_FIELDS)
            self.assertEqual(plugin["config"], config)
            self.assertEqual(plugin["protocols"], ["grpc", "grpcs", "http", "https"])
            self.assertEqual((await gateway.get("/test?name=Kong"))[:2], (200, b"Hello Kong!\n"))
            self.assertEqual((await gateway.call("DELETE", f"/plugins/{plugin['id']}"))[0], 204)

    @deferred
    async def test_multipart_file_is_used_as_written_but_for_the_comma_escape(self) -> None:
        gateway = await start_gateway(self)
        await seed(gateway)
        code = "local a\\, b = 'x'\\, \"y\"\nngx.say(a .. b)\nngx.exit(200)\n"
        path = self.mktemp()
        with open(path, "w") as source:
            source.write(code)
        with open(path, "rb") as upload:
            status, plugin, _ = await gateway.call(
                "POST", "/routes/test-route/plugins", data={"name": "pre-function"},
                files={"config.access": ("f.lua", "application/octet-stream", upload)})
        self.assertEqual((status, plugin["config"]["access"]), (201, [code.replace("\\,", ",")]))
        self.assertEqual((await gateway.get("/test"))[:2], (200, b"xy\n"))

    @deferred
    async def test_patch_keeps_the_plugin_schema_and_merges_config(self) -> None:
        gateway = await start_gateway(self)
        await seed(gateway)
        _, plugin, _ = await gateway.call("POST", "/routes/test-route/plugins",
                                          data={"name": "pre-function", "config.access": "a=1"})
        status, patched, _ = await gateway.call("PATCH", f"/plugins/{plugin['id']}",
                                                data={"config.log": "b=2"})
        self.assertEqual((status, patched["config"]),
                         (200, {**EMPTY_CODE, "access": ["a=1"], "log": ["b=2"]}))
        status, patched, _ = await gateway.call("PATCH", f"/routes/test-route/plugins/{plugin['id']}",
                                                json={"config": {"rewrite": ["c=3"]}, "enabled": False})
        self.assertEqual((status, patched["config"]["rewrite"], patched["config"]["access"],
                          patched["enabled"]),
                         (200, ["c=3"], ["a=1"], False))
        status, body, _ = await gateway.call("PATCH", f"/plugins/{plugin['id']}", data={"config.access": "x"})
        self.assertEqual((status, list(body["fields"])), (400, ["config"]))
        status, put, _ = await gateway.call("PUT", f"/plugins/{plugin['id']}",
                                            json={"name": "post-function", "config": {"log": ["d=4"]}})
        self.assertEqual((status, put["name"], put["route"], put["config"]["access"]), (200, "post-function",
                                                                                          None, []))
        self.assertEqual((await gateway.call("GET", f"/plugins/{plugin['id']}/route"))[:2], (404, NOT_FOUND))

    @deferred
    async def test_scopes_uniqueness_and_nested_plugins(self) -> None:
        gateway = await start_gateway(self)
        service, route = await seed(gateway)
        form = {"name": "pre-function", "config.access": "a=1"}
        _, plugin, _ = await gateway.call("POST", "/services/plugin-testing/plugins", data=form)
        self.assertEqual(plugin["service"], {"id": service["id"]})
        status, body, _ = await gateway.call("POST", "/plugins", data={**form, "service.id": service["id"]})
        self.assertEqual((status, body), (409, {
            "code": 5, "name": "unique constraint violation",
            "message": "UNIQUE violation detected on '{consumer=null,name=\"pre-function\",route=null,"
                       f"service={{id=\"{service['id']}\"}}}}'",
            "fields": {"consumer": None, "name": "pre-function", "route": None,
                       "service": {"id": service["id"]}}}))
        self.assertEqual((await gateway.call("GET", "/services/plugin-testing/plugins"))[1],
                         {"data": [plugin], "next": None})
        self.assertEqual((await gateway.call("GET", "/routes/test-route/plugins"))[1],
                         {"data": [], "next": None})
        self.assertEqual((await gateway.call("GET", f"/routes/test-route/plugins/{plugin['id']}"))[:2],
                         (404, NOT_FOUND))
        self.assertEqual((await gateway.call("GET", f"/plugins/{plugin['id']}/service"))[:2], (200, service))
        _, consumer, _ = await gateway.call("POST", "/consumers", data={"username": "bob"})
        status, body, _ = await gateway.call("POST", "/consumers/bob/plugins", data=form)
        self.assertEqual((status, body["fields"]), (400, {"consumer": "value must be null"}))
        status, body, _ = await gateway.call("POST", "/routes/test-route/plugins",
                                             data={**form, "protocols": "grpc"})
        self.assertEqual((status, body["fields"]),
                         (400, {"protocols": "must match the associated route's protocols"}))
        status, body, _ = await gateway.call("POST", "/plugins", data={"name": "nope"})
        self.assertEqual(body["fields"], {"name": "plugin 'nope' not enabled; add it to the 'plugins' "
                                                  "configuration property"})
        self.assertEqual((await gateway.call("DELETE", f"/routes/test-route/plugins/{plugin['id']}"))[0], 404)
        self.assertEqual(
            (await gateway.call("DELETE", f"/services/plugin-testing/plugins/{plugin['id']}"))[0], 204)


class ConsumerTests(TestCase):
    @deferred
    async def test_consumers(self) -> None:
        gateway = await start_gateway(self)
        status, body, _ = await gateway.call("POST", "/consumers", json={})
        self.assertEqual((status, body["fields"]), (400, {"@entity": [
            "at least one of these fields must be non-empty: 'custom_id', 'username'"]}))
        _, carol, _ = await gateway.call("POST", "/consumers", data={"custom_id": "c-1"})
        _, dave, _ = await gateway.call("POST", "/consumers", data={"username": "dave"})
        self.assertEqual((await gateway.call("GET", "/consumers?custom_id=c-1"))[1],
                         {"data": [carol], "next": None})
        self.assertEqual((await gateway.call("GET", "/consumers?custom_id=zz&size=x"))[1],
                         {"data": [], "next": None})
        self.assertEqual((await gateway.call("GET", "/consumers/dave"))[1], dave)
        self.assertEqual((await gateway.call("POST", "/consumers", data={"custom_id": "c-1"}))[0], 409)


class PaginationTests(TestCase):
    @deferred
    async def test_pages_and_next_links(self) -> None:
        gateway = await start_gateway(self)
        self.assertEqual((await raw_call(gateway, "GET", "/services"))[1], b'{"data":[],"next":null}')
        await gateway.call("POST", "/services", data={"name": "parent", "host": "p.test"})
        for index in range(5):
            await gateway.call("POST", "/services",
                               json={"name": f"s{index}", "host": "a.test", "tags": ["t"]})
            await gateway.call("POST", "/services/parent/routes", json={"paths": [f"/{index}"]})
        seen = []
        status, page, _ = await gateway.call("GET", "/services?size=2&tags=t")
        while True:
            self.assertEqual(status, 200)
            seen += [s["name"] for s in page["data"]]
            if page["next"] is None:
                self.assertNotIn("offset", page)
                break
            self.assertEqual(page["next"], f"/services?offset={page['offset']}&tags=t&size=2")
            status, page, _ = await gateway.call("GET", page["next"])
        self.assertEqual(sorted(seen), [f"s{index}" for index in range(5)])
        status, page, _ = await gateway.call("GET", "/services/parent/routes?size=3")
        self.assertEqual(page["next"], f"/services/parent/routes?offset={page['offset']}")
        status, rest, _ = await gateway.call("GET", page["next"])
        self.assertEqual((len(page["data"]), len(rest["data"]), rest["next"]), (3, 2, None))

    @deferred
    async def test_bad_size_offset_and_tags(self) -> None:
        gateway = await start_gateway(self)
        cases = {
            "size=x": (9, "invalid size", "size must be a number"),
            "size=0": (9, "invalid size", "size must be an integer between 1 and 1000"),
            "size=1001": (9, "invalid size", "size must be an integer between 1 and 1000"),
            "size=1.5": (9, "invalid size", "size must be an integer between 1 and 1000"),
            "offset=x": (7, "invalid offset", "'x' is not a valid offset: bad base64 encoding"),
        }
        for query, (code, name, message) in cases.items():
            self.assertEqual((await gateway.call("GET", f"/services?{query}"))[:2],
                             (400, {"code": code, "name": name, "message": message}), query)
        self.assertEqual((await gateway.call("GET", "/services?size=1000&nonsense=1"))[0], 200)
        tags = {"a,b/c": "invalid filter syntax", "": "cannot be null",
                "a,b,c,d,e,f": "cannot query more than 5 tags",
                "a,,b": "invalid filter syntax"}
        for query, message in tags.items():
            self.assertEqual((await gateway.call("GET", f"/routes?tags={query}"))[:2], (400, {
                "code": 11, "name": "invalid options", "message": f"invalid option (tags: {message})",
                "options": {"tags": message}}), query)

    @deferred
    async def test_tag_filters(self) -> None:
        gateway = await start_gateway(self)
        for name, tags in (("ab", ["a", "b"]), ("a", ["a"]), ("c", ["c"])):
            await gateway.call("POST", "/consumers", json={"username": name, "tags": tags})
        for query, expected in (("a,b", ["ab"]), ("a", ["a", "ab"]), ("b/c", ["ab", "c"]), ("d", [])):
            _, page, _ = await gateway.call("GET", f"/consumers?tags={query}")
            self.assertEqual(sorted(c["username"] for c in page["data"]), expected, query)


class InformationTests(TestCase):
    @deferred
    async def test_root_status_endpoints_and_schemas(self) -> None:
        gateway = await start_gateway(self)
        await seed(gateway)
        await gateway.call("POST", "/plugins", data={"name": "post-function", "config.log": "a=1"})
        status, root, _ = await gateway.call("GET", "/")
        self.assertEqual((status, root["tagline"], root["version"], root["edition"]),
                         (200, "Welcome to kong", KONG_VERSION, "community"))
        self.assertEqual(root["plugins"]["enabled_in_cluster"], ["post-function"])
        self.assertEqual(set(root["plugins"]["available_on_server"]), {"pre-function", "post-function"})
        status, body, _ = await gateway.call("GET", "/status")
        self.assertEqual((status, body["database"], set(body)), (200, {"reachable": True},
                                                                 {"database", "memory", "server"}))
        self.assertRegex(body["memory"]["workers_lua_vms"][0]["http_allocated_gc"], r"^\d+\.\d\d MiB$")
        _, body, _ = await gateway.call("GET", "/status?unit=k&scale=3")
        self.assertRegex(body["memory"]["workers_lua_vms"][0]["http_allocated_gc"], r"^\d+\.\d{3} KiB$")
        _, body, _ = await gateway.call("GET", "/status?unit=B")
        self.assertRegex(body["memory"]["workers_lua_vms"][0]["http_allocated_gc"], r"^\d+$")
        self.assertEqual((await gateway.call("GET", "/status?unit=t"))[:2],
                         (400, {"message": "invalid unit 't' (expected 'k/K', 'm/M', or 'g/G')"}))
        self.assertEqual((await gateway.call("GET", "/status?scale=-1"))[:2],
                         (400, {"message": "scale must be equal or greater than 0"}))
        _, endpoints, _ = await gateway.call("GET", "/endpoints")
        for template in ("/services/{services}/routes/{routes}", "/routes/{routes}/service",
                         "/plugins/{plugins}/consumer", "/schemas/plugins/{name}", "/plugins/enabled"):
            self.assertIn(template, endpoints["data"])
        self.assertEqual(endpoints["data"][:4], ["/", "/clustering/nodes", "/config", "/consumers"])
        self.assertLess(endpoints["data"].index("/services/{services}/routes"),
                        endpoints["data"].index("/status"))
        self.assertEqual(sorted((await gateway.call("GET", "/plugins/enabled"))[1]["enabled_plugins"]),
                         ["post-function", "pre-function"])
        status, schema, _ = await gateway.call("GET", "/schemas/services")
        self.assertEqual((status, {list(f)[0] for f in schema["fields"]}), (200, SERVICE_FIELDS))
        self.assertEqual((await gateway.call("GET", "/schemas/nope"))[:2],
                         (404, {"message": "No entity named 'nope'"}))
        status, schema, _ = await gateway.call("GET", "/schemas/plugins/pre-function")
        self.assertEqual((status, [list(f)[0] for f in schema["fields"]]),
                         (200, ["consumer", "protocols", "config"]))
        self.assertEqual((await gateway.call("GET", "/schemas/plugins/x"))[:2],
                         (404, {"message": "No plugin named 'x'"}))

    @deferred
    async def test_schema_validation_endpoints(self) -> None:
        gateway = await start_gateway(self)
        ok = {"message": "schema validation successful"}
        self.assertEqual((await gateway.call("POST", "/schemas/services/validate",
                                             data={"host": "a.test"}))[:2],
                         (200, ok))
        status, body, _ = await gateway.call("POST", "/schemas/routes/validate", json={})
        self.assertEqual((status, body["code"]), (400, 2))
        self.assertEqual((await gateway.call("POST", "/schemas/plugins/validate",
                                             data={"name": "pre-function", "config.access": "a=1"}))[:2],
                         (200, ok))
        self.assertEqual((await gateway.call("POST", "/schemas/nope/validate", json={}))[:2],
                         (404, {"message": "No entity named 'nope'"}))
        self.assertEqual((await gateway.call("GET", "/services"))[1], {"data": [], "next": None})

    @deferred
    async def test_config_needs_a_dbless_node(self) -> None:
        gateway = await start_gateway(self)
        message = {"message": "this endpoint is only available when Kong is configured to not use a database"}
        for method in ("GET", "POST"):
            self.assertEqual((await gateway.call(method, "/config", json={}))[:2], (400, message))


KONG_YML = """\
_format_version: "3.0"
services:
- name: plugin-testing
  url: http://dead.end.com
  routes:
  - name: test-route
    paths: ["/test"]
    plugins:
    - name: pre-function
      config:
        access: ["ngx.say('hi') ngx.exit(200)"]
"""


class DBlessTests(TestCase):
    async def dbless(self) -> Gateway:
        return await start_gateway(self, database="off")

    @deferred
    async def test_writes_answer_405_with_the_verb(self) -> None:
        gateway = await self.dbless()
        await gateway.call("POST", "/config", data=KONG_YML.encode(), headers={"Content-Type": "text/yaml"})
        service_id = (await gateway.call("GET", "/services/plugin-testing"))[1]["id"]
        cases = [("POST", "/services", {"host": "a.test"}, "create", "services"),
                 ("POST", "/services/plugin-testing/routes", {"paths": ["/x"]}, "create", "routes"),
                 ("PATCH", "/services/plugin-testing", {"retries": 1}, "update", "services"),
                 ("PUT", f"/routes/{uuid.uuid4()}", {"paths": ["/"]}, "create or update", "routes"),
                 ("DELETE", f"/services/{service_id}", None, "remove", "services")]
        for method, path, body, verb, entity in cases:
            self.assertEqual((await gateway.call(method, path, json=body))[:2], (405, {
                "code": 12, "name": "operation unsupported",
                "message": f"cannot {verb} '{entity}' entities when not using a database"}), (method, path))
        self.assertEqual((await gateway.call("DELETE", "/services/missing"))[0], 204)
        self.assertEqual((await gateway.call("POST", "/services", json={"port": "x"}))[1]["code"], 2)
        self.assertEqual((await gateway.call("DELETE", "/routes"))[:2],
                         (405, {"message": "Method not allowed"}))

    @deferred
    async def test_post_config_in_every_form(self) -> None:
        gateway = await self.dbless()
        as_json = yaml.safe_load(KONG_YML)
        forms = [
            {"json": as_json},
            {"json": {"config": json.dumps(as_json)}},
            {"json": {"config": KONG_YML}},
            {"data": KONG_YML.encode(), "headers": {"Content-Type": "application/yaml"}},
            {"data": KONG_YML.encode(), "headers": {"Content-Type": "text/yaml"}},
            {"data": {"config": KONG_YML}},
            {"data": {},
             "files": {"config": ("kong.yml", "application/x-yaml", io.BytesIO(KONG_YML.encode()))}},
        ]
        for index, form in enumerate(forms):
            await gateway.call("POST", "/config", json={"_format_version": "3.0"})
            self.assertEqual((await gateway.get("/test"))[0], 404)
            status, body, _ = await gateway.call("POST", "/config", **form)
            self.assertEqual(status, 201, (index, body))
            self.assertEqual(sorted(body), ["consumers", "plugins", "routes", "services"])
            (service,) = body["services"].values()
            self.assertEqual(set(service), SERVICE_FIELDS)
            self.assertEqual((await gateway.get("/test"))[:2], (200, b"hi\n"), index)

    @deferred
    async def test_check_hash_status_and_export(self) -> None:
        gateway = await self.dbless()
        _, status_body, _ = await gateway.call("GET", "/status")
        self.assertEqual((status_body["configuration_hash"], "database" in status_body), ("0" * 32, False))
        headers = {"Content-Type": "text/yaml"}
        self.assertEqual((await gateway.call("POST", "/config?check_hash=1", data=KONG_YML.encode(),
                                             headers=headers))[0], 201)
        _, status_body, _ = await gateway.call("GET", "/status")
        self.assertRegex(status_body["configuration_hash"], r"^[0-9a-f]{32}$")
        self.assertNotEqual(status_body["configuration_hash"], "0" * 32)
        self.assertEqual((await raw_call(gateway, "POST", "/config?check_hash=1", data=KONG_YML.encode(),
                                         headers=headers))[:2], (304, b""))
        self.assertEqual((await gateway.call("POST", "/config", data=KONG_YML.encode(),
                                             headers=headers))[0], 201)
        status, exported, _ = await gateway.call("GET", "/config")
        document = yaml.safe_load(exported["config"])
        self.assertEqual((status, document["_format_version"]), (200, "3.0"))
        self.assertEqual([s["name"] for s in document["services"]], ["plugin-testing"])
        self.assertEqual(document["routes"][0]["service"], document["services"][0]["id"])

    @deferred
    async def test_config_errors(self) -> None:
        gateway = await self.dbless()
        self.assertEqual((await gateway.call("POST", "/config", json={}))[:2],
                         (400, {"message": "expected a declarative configuration"}))
        status, body, _ = await gateway.call("POST", "/config", json={"_format_version": "3.0",
                                                                      "services": [{"port": 99999}]})
        self.assertEqual((status, body["code"], body["name"]), (400, 14, "invalid declarative configuration"))
        self.assertEqual(body["fields"], {"services": [{"host": "required field missing",
                                                       "port": "value should be between 0 and 65535"}]})
        status, body, _ = await gateway.call("POST", "/config", json={"config": "[1, 2"})
        self.assertEqual((status, body["code"]), (400, 14))
        self.assertTrue(body["fields"]["error"].startswith("failed parsing declarative configuration"))
        self.assertEqual((await gateway.call("GET", "/services"))[1], {"data": [], "next": None})
