"""``POST /config?flatten_errors=1`` adds Kong's ``flattened_errors``: one entry per bad entity."""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase, TestCase

from kongish.db.declarative_errors import flatten_errors
from tests.harness import deferred, start_gateway

SERVICE_ID = "4e3cb785-a8d0-5866-aa05-117f7c64f24d"
DOCUMENT = {"_format_version": "3.0", "services": [
    {"name": "fine", "url": "http://a.test"},
    {"name": "bad", "id": SERVICE_ID, "host": "b.test", "port": 70000, "tags": ["t1"],
     "routes": [{"name": "r1", "protocols": ["nope"], "paths": ["/x"]}, {"name": "r2", "paths": ["/y"]}],
     "plugins": [{"name": "pre-function", "config": {"access": 5}}]}]}
EXPECTED = [
    {"entity_name": "r1", "entity_type": "route", "errors": [
        {"type": "field", "field": "protocols", "message": "unknown type: nope"}],
     "entity": {"name": "r1", "protocols": ["nope"], "paths": ["/x"], "service": {"id": SERVICE_ID}}},
    {"entity_name": "pre-function", "entity_type": "plugin", "errors": [
        {"type": "field", "field": "config.access", "message": "expected an array"}],
     "entity": {"name": "pre-function", "config": {"access": 5}, "service": {"id": SERVICE_ID}}},
    {"entity_name": "bad", "entity_id": SERVICE_ID, "entity_tags": ["t1"], "entity_type": "service",
     "errors": [{"type": "field", "field": "port", "message": "value should be between 0 and 65535"}],
     "entity": {"name": "bad", "id": SERVICE_ID, "host": "b.test", "port": 70000, "tags": ["t1"]}},
]


class FlattenErrorsTests(SynchronousTestCase):
    def test_entity_errors_field_lists_and_leftovers(self) -> None:
        document = {"consumers": [{"username": "a"}, {"username": "a", "id": "not-a-uuid"}], "x": "y"}
        fields = {"consumers": [None, {"@entity": ["one", "two"], "tags": [None, "bad tag"]}],
                  "_format_version": "missing", "upstreams": [{"name": "unknown"}]}
        flattened, left = flatten_errors(document, fields)
        self.assertEqual(flattened, [{
            "entity_type": "consumer", "entity": {"username": "a", "id": "not-a-uuid"},
            "errors": [{"type": "entity", "message": "one"},
                       {"type": "entity", "message": "two"},
                       {"type": "field", "field": "tags.2", "message": "bad tag"}]}])
        self.assertEqual(left, {"_format_version": "missing", "upstreams": [{"name": "unknown"}]})
        self.assertEqual(document["consumers"][1], {"username": "a", "id": "not-a-uuid"})  # not changed


class PostConfigFlattenTests(TestCase):
    @deferred
    async def test_flattened_only_when_asked(self) -> None:
        gateway = await start_gateway(self, database="off")
        status, plain, _ = await gateway.call("POST", "/config", json=DOCUMENT)
        self.assertEqual((status, "flattened_errors" in plain), (400, False))
        self.assertEqual(plain["fields"]["services"][1]["port"], "value should be between 0 and 65535")
        for flag in ("1", "true", "on", "yes"):
            status, body, _ = await gateway.call("POST", f"/config?flatten_errors={flag}", json=DOCUMENT)
            self.assertEqual((status, body["code"], body["name"]),
                             (400, 14, "invalid declarative configuration"))
            self.assertEqual((body["fields"], body["message"]), ({}, "declarative config is invalid: {}"))
            self.assertEqual(body["flattened_errors"], EXPECTED)
        status, body, _ = await gateway.call("POST", "/config", json={**DOCUMENT, "flatten_errors": True})
        self.assertEqual((status, body["flattened_errors"]), (400, EXPECTED))
        status, body, _ = await gateway.call("POST", "/config?flatten_errors=0", json=DOCUMENT)
        self.assertEqual((status, "flattened_errors" in body), (400, False))
