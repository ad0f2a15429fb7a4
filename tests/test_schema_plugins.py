"""Consumers and plugins, including the serverless plugins' config (reference 1.4, 1.5)."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from lupa import luajit21
from twisted.trial.unittest import SynchronousTestCase

from kongish.errors import SchemaViolation
from kongish.schema import CONSUMERS, PLUGINS, Array, Integer, Record, String, complete, schema_json
from kongish.testing import SchemaOnlyPlugin, serverless_schema_plugin

if TYPE_CHECKING:
    from kongish.plugins.interface import IPlugin

UUID = "6f3f4ad9-b4e1-4a3a-8e2a-2d6a1f0b7c11"
PHASE_LIST = ("'config.certificate', 'config.rewrite', 'config.access', "
              "'config.header_filter', 'config.body_filter', 'config.log'")
ALL_EMPTY = f"at least one of these fields must be non-empty: {PHASE_LIST}"
EXCLUSIVE = "these sets are mutually exclusive: ('config.functions'), ('config.access')"
EOF_ERROR = "error parsing pre-function: [string \"print(\"]:1: unexpected symbol near '<eof>'"


def lua_compile_check() -> Callable[[str], str | None]:
    """LuaJIT's ``loadstring``: the compiler message, or None when the source compiles."""
    loadstring = luajit21.LuaRuntime().eval("loadstring")

    def check(source: str) -> str | None:
        result = loadstring(source)
        return result[1] if isinstance(result, tuple) else None
    return check


PRE_FUNCTION = serverless_schema_plugin("pre-function", lua_compile_check())
RATE = SchemaOnlyPlugin("rate", Record(fields={
    "limit": Integer(default=10),
    "window": Record(required=True, fields={"seconds": Integer(default=60), "burst": Integer(default=0)}),
    "keys": Array(elements=String(), default=["ip"]),
}))
PLUGIN_TYPES = {plugin.name: plugin for plugin in (PRE_FUNCTION, RATE)}


def lookup(name: str) -> IPlugin | None:
    # A FakePlugin has just the parts of an IPlugin that validation uses.
    return cast("IPlugin | None", PLUGIN_TYPES.get(name))


def plugin(**data: Any) -> dict[str, Any]:
    return complete(PLUGINS, data, plugins=lookup)


class PluginTestCase(SynchronousTestCase):
    def violation(self, schema: Any, data: dict[str, Any], **options: Any) -> dict[str, Any]:
        error = self.assertRaises(SchemaViolation, complete, schema, data, plugins=lookup, **options)
        return error.body()


class ConsumerTests(PluginTestCase):
    def test_needs_username_or_custom_id(self) -> None:
        message = "at least one of these fields must be non-empty: 'custom_id', 'username'"
        self.assertEqual(self.violation(CONSUMERS, {})["fields"], {"@entity": [message]})
        self.assertEqual(self.violation(CONSUMERS, {"username": ""})["fields"],
                         {"username": "length must be at least 1", "@entity": [message]})

    def test_complete_consumer(self) -> None:
        self.assertEqual(complete(CONSUMERS, {"username": "bob"}, plugins=lookup), {
            "id": None, "created_at": None, "updated_at": None, "username": "bob",
            "custom_id": None, "tags": None})

    def test_update_wording(self) -> None:
        stored = complete(CONSUMERS, {"username": "bob"}, plugins=lookup)
        self.assertEqual(self.violation(CONSUMERS, {"username": None}, partial_base=stored)["fields"], {
            "@entity": ["when updating, at least one of these fields must be non-empty: "
                        "'custom_id', 'username'"]})


class PluginEntityTests(PluginTestCase):
    def test_name_is_required_and_must_be_enabled(self) -> None:
        self.assertEqual(self.violation(PLUGINS, {"config": {}})["fields"],
                         {"name": "required field missing"})
        self.assertEqual(self.violation(PLUGINS, {"name": "nope"})["fields"], {
            "name": "plugin 'nope' not enabled; add it to the 'plugins' configuration property"})

    def test_defaults_from_the_config_schema(self) -> None:
        self.assertEqual(plugin(name="rate", service={"id": UUID}), {
            "id": None, "name": "rate", "instance_name": None, "created_at": None, "updated_at": None,
            "route": None, "service": {"id": UUID}, "consumer": None,
            "config": {"limit": 10, "window": {"seconds": 60, "burst": 0}, "keys": ["ip"]},
            "protocols": ["grpc", "grpcs", "http", "https"], "enabled": True, "tags": None})

    def test_config_errors_are_nested(self) -> None:
        body = self.violation(PLUGINS, {"name": "rate", "config": {"limit": "x", "window": {"seconds": 1.5},
                                                                   "foo": 1}})
        self.assertEqual(body["fields"], {"config": {
            "limit": "expected an integer", "window": {"seconds": "expected an integer"},
            "foo": "unknown field"}})
        self.assertEqual(body["message"], (
            "3 schema violations (config.foo: unknown field; config.limit: expected an integer; "
            "config.window: {\n  seconds = \"expected an integer\"\n})"))

    def test_config_must_be_an_object(self) -> None:
        self.assertEqual(self.violation(PLUGINS, {"name": "rate", "config": "x"})["fields"],
                         {"config": "expected a record"})
        self.assertEqual(self.violation(PLUGINS, {"name": "rate", "config": None})["fields"],
                         {"config": "required field missing"})

    def test_instance_name_and_protocols(self) -> None:
        fields = self.violation(PLUGINS, {"name": "rate", "instance_name": "a/b",
                                          "protocols": ["ftp"]})["fields"]
        self.assertEqual(fields, {
            "instance_name": ("invalid value 'a/b': the only accepted ascii characters are "
                              "alphanumerics or ., -, _, and ~"),
            "protocols": ["expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"]})

    def test_foreign_keys(self) -> None:
        entity = plugin(name="rate", route={"id": UUID}, consumer={"id": UUID}, service=None)
        self.assertEqual((entity["route"], entity["consumer"], entity["service"]),
                         ({"id": UUID}, {"id": UUID}, None))
        self.assertEqual(self.violation(PLUGINS, {"name": "rate", "route": {"id": 1}})["fields"],
                         {"route": {"id": "expected a string"}})

    def test_patch_merges_config_key_by_key(self) -> None:
        stored = plugin(name="rate", config={"limit": 5, "keys": ["a", "b"], "window": {"burst": 3}})
        updated = complete(PLUGINS, {"config": {"keys": ["c"], "window": {"seconds": 1}}},
                           plugins=lookup, partial_base=stored)
        self.assertEqual(updated["config"], {"limit": 5, "keys": ["c"], "window": {"seconds": 1, "burst": 3}})
        self.assertEqual(updated["name"], "rate")

    def test_entity_and_schema_are_described(self) -> None:
        described = schema_json(PLUGINS)
        self.assertEqual([next(iter(field)) for field in described["fields"]], [
            "id", "name", "instance_name", "created_at", "updated_at", "route", "service", "consumer",
            "config", "protocols", "enabled", "tags"])
        self.assertEqual(described["fields"][5]["route"], {"type": "foreign", "reference": "routes"})
        rate = schema_json(RATE)
        self.assertEqual([next(iter(field)) for field in rate["fields"]], ["protocols", "config"])
        self.assertEqual(rate["fields"][1]["config"]["fields"][0],
                         {"limit": {"type": "integer", "default": 10}})


class ServerlessTests(PluginTestCase):
    def test_example_from_the_reference(self) -> None:
        self.assertEqual(plugin(name="pre-function", service={"id": UUID},
                                config={"access": ["return 1"]})["config"], {
            "certificate": [], "rewrite": [], "access": ["return 1"], "header_filter": [],
            "body_filter": [], "log": []})

    def test_all_empty(self) -> None:
        self.assertEqual(self.violation(PLUGINS, {"name": "pre-function"}), {
            "code": 2, "name": "schema violation", "message": f"schema violation ({ALL_EMPTY})",
            "fields": {"@entity": [ALL_EMPTY]}})

    def test_compile_errors_per_element(self) -> None:
        body = self.violation(PLUGINS, {"name": "pre-function",
                                        "config": {"access": ["return 1", "print("]}})
        self.assertEqual(body["fields"], {"config": {"access": [None, EOF_ERROR]}})
        quoted = EOF_ERROR.replace('"', '\\"')
        self.assertEqual(body["message"], f'schema violation (config.access: {{\n  [2] = "{quoted}"\n}})')

    def test_valid_sources_from_kong(self) -> None:
        sources = ['("hello world!"):find("world")', 'error("should never happen")',
                   "local x = 1 return function() x = x + 1 end", 'return "hello-world"']
        self.assertEqual(plugin(name="pre-function", config={"rewrite": sources})["config"]["rewrite"],
                         sources)

    def test_null_and_non_string_elements(self) -> None:
        body = self.violation(PLUGINS, {"name": "pre-function", "config": {"log": [None, 1]}})
        self.assertEqual(body["fields"], {"config": {"log": ["required field missing", "expected a string"]}})

    def test_legacy_functions(self) -> None:
        entity = plugin(name="pre-function", config={"functions": ["return 1"]})
        self.assertEqual(entity["config"]["functions"], ["return 1"])
        self.assertEqual(self.violation(PLUGINS, {"name": "pre-function", "config": {
            "functions": ["return 1"], "access": ["return 2"]}})["fields"], {"@entity": [EXCLUSIVE]})
        self.assertNotIn("functions", plugin(name="pre-function", config={"log": ["x = 1"]})["config"])

    def test_consumer_must_be_null(self) -> None:
        body = self.violation(PLUGINS, {"name": "pre-function", "consumer": {"id": UUID},
                                        "config": {"access": ["return 1"]}})
        self.assertEqual(body["fields"], {"consumer": "value must be null"})

    def test_patch_replaces_one_phase(self) -> None:
        stored = plugin(name="pre-function", config={"access": ["a = 1"], "log": ["b = 2"]})
        updated = complete(PLUGINS, {"config": {"access": ["c = 3"]}}, plugins=lookup, partial_base=stored)
        self.assertEqual((updated["config"]["access"], updated["config"]["log"]), (["c = 3"], ["b = 2"]))
        self.assertEqual(self.violation(PLUGINS, {"config": {"access": [], "log": []}}, partial_base=stored)
                         ["fields"], {"@entity": [f"when updating, {ALL_EMPTY}"]})

    def test_schema_lists_the_checks(self) -> None:
        described = schema_json(PRE_FUNCTION)
        self.assertEqual(described["entity_checks"], [
            {"mutually_exclusive_sets": {"set1": ["config.functions"], "set2": ["config.access"]}},
            {"at_least_one_of": [f"config.{phase}" for phase in (
                "certificate", "rewrite", "access", "header_filter", "body_filter", "log")]}])
        self.assertEqual([next(iter(field)) for field in described["fields"]],
                         ["consumer", "protocols", "config"])
        self.assertEqual(described["fields"][0]["consumer"],
                         {"type": "foreign", "reference": "consumers", "eq": None})
        self.assertEqual(described["fields"][1]["protocols"]["default"], ["grpc", "grpcs", "http", "https"])
        config_fields = [next(iter(field)) for field in described["fields"][2]["config"]["fields"]]
        self.assertEqual(config_fields, ["functions", "certificate", "rewrite", "access",
                                         "header_filter", "body_filter", "log"])
