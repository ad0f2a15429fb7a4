"""Declarative configuration: parsing, flattening, generated ids, errors, export."""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from typing import TYPE_CHECKING, cast

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish.db.declarative import configuration_hash, export_yaml, flatten, parse_declarative
from kongish.errors import InvalidDeclarative
from kongish.schema import Integer, Record, String
from kongish.testing import SchemaOnlyPlugin, serverless_schema_plugin

if TYPE_CHECKING:
    from kongish.plugins.interface import IPlugin

NOW = 1700000000
EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "kong.yml")

#: Kong reference 7.1's example, without the upstreams kongish does not support.
KONG_EXAMPLE = """
_format_version: "3.0"
_transform: true
_comment: "free text"
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
  plugins:
  - name: post-function
    config: { log: ["kong.log.notice('done')"] }
routes:
- name: other
  service: plugin-testing
  hosts: ["example.test"]
consumers:
- username: bob
  plugins: [ { name: rate-limiting, config: { second: 5, policy: local } } ]
plugins:
- name: rate-limiting
  service: plugin-testing
  consumer: bob
  config: { minute: 10, policy: local }
"""


def _compile_check(source: str) -> str | None:
    return "unexpected symbol near '<eof>'" if source.endswith("(") else None


PLUGINS = {plugin.name: plugin for plugin in (
    serverless_schema_plugin("pre-function", _compile_check),
    serverless_schema_plugin("post-function", _compile_check),
    SchemaOnlyPlugin("rate-limiting", Record(fields={
        "second": Integer(), "minute": Integer(), "policy": String(default="local")})),
)}


def lookup(name: str) -> IPlugin | None:
    # A FakePlugin has just what entity validation asks of an IPlugin.
    return cast("IPlugin | None", PLUGINS.get(name))


def generated_id(entity_type: str, key: str) -> str:
    """The id Kong generates: UUIDv5 of ``key`` in the entity type's namespace (reference 7.1)."""
    namespace = uuid.uuid5(uuid.UUID("fd02801f-0957-4a15-a55a-c8d9606f30b5"), entity_type)
    return str(uuid.uuid5(namespace, key))


def load(text: str) -> dict[str, list[dict]]:
    return flatten(parse_declarative(text), plugins=lookup, now=NOW)


def by_name(entities: list[dict], field: str = "name") -> dict[str, dict]:
    return {entity[field]: entity for entity in entities}


class ParseTests(SynchronousTestCase):
    def assertParseError(self, text: str, message: str, filename: str | None = None) -> None:
        error = self.assertRaises(InvalidDeclarative, parse_declarative, text, filename=filename)
        self.assertEqual(error.fields, {"error": message})

    def test_yaml(self):
        self.assertEqual(parse_declarative('_format_version: "3.0"\nservices: []\n'),
                         {"_format_version": "3.0", "services": []})

    def test_json(self):
        text = json.dumps({"_format_version": "3.0", "services": [{"name": "a", "url": "http://a/"}]})
        self.assertEqual(parse_declarative(text, filename="kong.json"),
                         {"_format_version": "3.0", "services": [{"name": "a", "url": "http://a/"}]})

    def test_scalar_is_not_an_object(self):
        self.assertParseError("just text", "failed parsing declarative configuration: expected an object")
        self.assertParseError("[1, 2]", "failed parsing declarative configuration: expected an object")

    def test_broken_yaml_names_the_problem_and_place(self):
        error = self.assertRaises(InvalidDeclarative, parse_declarative, "a: [1, 2\nb: 3")
        self.assertTrue(error.fields["error"].startswith("failed parsing declarative configuration: 2:2: "),
                        error.fields)

    def test_json_file_is_not_read_as_yaml(self):
        error = self.assertRaises(InvalidDeclarative, parse_declarative, "_format_version: '3.0'",
                                  filename="kong.json")
        self.assertIn("failed parsing declarative configuration: Expecting value", error.fields["error"])
        self.assertEqual(parse_declarative("a: 1", filename="kong.yaml"), {"a": 1})

    def test_unknown_file_type(self):
        self.assertParseError("{}", "unknown file type: kong.toml. (Accepted types: json, yaml)",
                              filename="kong.toml")

    def test_dates_stay_text_and_keys_become_text(self):
        self.assertEqual(parse_declarative("a: 2024-01-02\n1: x\n~: y\n"),
                         {"a": "2024-01-02", "1": "x", "null": "y"})

    def test_self_referencing_alias_is_refused(self):
        self.assertParseError("a: &x [*x]",
                              "failed parsing declarative configuration: a YAML alias refers to itself")

    def test_binary_is_refused(self):
        self.assertParseError("a: !!binary aGk=",
                              "failed parsing declarative configuration: unsupported value of type bytes")

    def test_alias_bombs_are_refused(self):
        levels = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
        levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 8)]
        error = self.assertRaises(InvalidDeclarative, parse_declarative, "\n".join(levels))
        self.assertIn("more than", error.fields["error"])

    def test_deep_nesting_is_refused(self):
        error = self.assertRaises(InvalidDeclarative, parse_declarative, "[" * 5000 + "]" * 5000)
        self.assertTrue(error.fields["error"].startswith("failed parsing declarative configuration: "))

    @settings(max_examples=200, deadline=None)
    @given(st.text())
    def test_any_text_parses_or_fails_cleanly(self, text):
        try:
            document = parse_declarative(text)
        except InvalidDeclarative as error:
            assert error.fields is not None
            self.assertIsInstance(error.fields["error"], str)
        else:
            json.dumps(document)


class HashTests(SynchronousTestCase):
    def test_md5_of_the_text(self):
        text = '_format_version: "3.0"\n'
        self.assertEqual(configuration_hash(text), hashlib.md5(text.encode()).hexdigest())
        self.assertEqual(len(configuration_hash("")), 32)
        self.assertNotEqual(configuration_hash("a"), configuration_hash("b"))


class FlattenTests(SynchronousTestCase):
    def assertInvalid(self, document: dict, fields) -> None:
        error = self.assertRaises(InvalidDeclarative, flatten, document, plugins=lookup, now=NOW)
        self.assertEqual(error.fields, fields)

    def test_kong_example(self):
        entities = load(KONG_EXAMPLE)
        service_id = generated_id("services", "plugin-testing")
        test_route_id = generated_id("routes", "test-route")
        bob_id = generated_id("consumers", "bob")

        self.assertEqual([s["id"] for s in entities["services"]], [service_id])
        routes = by_name(entities["routes"])
        self.assertEqual(routes["test-route"]["id"], test_route_id)
        self.assertEqual(routes["test-route"]["service"], {"id": service_id})
        self.assertEqual(routes["other"]["service"], {"id": service_id})
        self.assertEqual(entities["consumers"][0]["id"], bob_id)

        plugins = {(p["name"], json.dumps(p.get("route")), json.dumps(p.get("service")),
                    json.dumps(p.get("consumer"))): p for p in entities["plugins"]}
        self.assertEqual(len(plugins), 4)
        pre = plugins[("pre-function", json.dumps({"id": test_route_id}), "null", "null")]
        self.assertEqual(pre["id"], generated_id("plugins", f"plugins:*:pre-function:{test_route_id}::"))
        post = plugins[("post-function", "null", json.dumps({"id": service_id}), "null")]
        self.assertEqual(post["id"], generated_id("plugins", f"plugins:*:post-function::{service_id}:"))
        on_bob = plugins[("rate-limiting", "null", "null", json.dumps({"id": bob_id}))]
        self.assertEqual(on_bob["id"], generated_id("plugins", f"plugins:*:rate-limiting:::{bob_id}"))
        # Top-level references enter Kong's key as written, not as ids.
        both = plugins[("rate-limiting", "null", json.dumps({"id": service_id}), json.dumps({"id": bob_id}))]
        self.assertEqual(both["id"], generated_id("plugins", "plugins:*:rate-limiting::plugin-testing:bob"))

    def test_entities_are_complete(self):
        entities = load(KONG_EXAMPLE)
        self.assertEqual(entities["services"][0], {
            "id": generated_id("services", "plugin-testing"), "created_at": NOW, "updated_at": NOW,
            "name": "plugin-testing", "retries": 5, "protocol": "http", "host": "dead.end.com", "port": 80,
            "path": None, "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
            "tags": None, "client_certificate": None, "tls_verify": None, "tls_verify_depth": None,
            "ca_certificates": None, "enabled": True})
        pre = next(p for p in entities["plugins"] if p["name"] == "pre-function")
        self.assertEqual(pre["config"], {"certificate": [], "rewrite": [],
                                         "access": ["ngx.say('hi') ngx.exit(200)"],
                                         "header_filter": [], "body_filter": [], "log": []})
        self.assertEqual((pre["consumer"], pre["service"], pre["enabled"]), (None, None, True))

    def test_schema_errors_follow_the_input_shape(self):
        self.assertInvalid(
            {"_format_version": "3.0", "services": [
                {"name": "ok", "host": "a"},
                {"name": "bad", "port": 70000, "routes": [
                    {"name": "r", "paths": ["/"], "_comment": 5},
                    {"name": "r2", "paths": ["test"]}]}]},
            {"services": [None, {
                "host": "required field missing", "port": "value should be between 0 and 65535",
                "routes": [{"_comment": "expected a string"},
                           {"paths": ["should start with: / (fixed path) or ~/ (regex path)"]}]}]},
        )

    def test_plugin_rules_apply(self):
        self.assertInvalid(
            {"_format_version": "3.0", "consumers": [{"username": "bob"}], "plugins": [
                {"name": "pre-function", "consumer": "bob", "config": {"access": ["x("]}},
                {"name": "no-such-plugin"}]},
            {"plugins": [
                {"consumer": "value must be null",
                 "config": {"access": ["error parsing pre-function: unexpected symbol near '<eof>'"]}},
                {"name": "plugin 'no-such-plugin' not enabled; "
                         "add it to the 'plugins' configuration property"}]},
        )

    def test_schema_errors_win_over_reference_errors(self):
        self.assertInvalid(
            {"_format_version": "3.0", "routes": [{"name": "r", "service": "missing"}]},
            {"routes": [{"@entity": ["must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' "
                                     "when 'protocols' is 'https'"]}]},
        )

    def test_ids_are_stable_across_loads(self):
        first, second = load(KONG_EXAMPLE), load(KONG_EXAMPLE)
        self.assertEqual({t: [e["id"] for e in es] for t, es in first.items()},
                         {t: [e["id"] for e in es] for t, es in second.items()})

    def test_entities_without_a_key_get_random_ids(self):
        text = '_format_version: "3.0"\nroutes: [{paths: ["/a"]}]\nconsumers: [{custom_id: c}]\n'
        first, second = load(text), load(text)
        self.assertNotEqual(first["routes"][0]["id"], second["routes"][0]["id"])
        self.assertNotEqual(first["consumers"][0]["id"], second["consumers"][0]["id"])
        uuid.UUID(first["routes"][0]["id"])

    def test_given_ids_are_kept_and_referenced(self):
        service_id = "8d0b4d6c-6d6a-4c1b-9b58-0c6d2ab0f5f1"
        entities = load(f"""
_format_version: "3.0"
services: [{{id: {service_id}, name: s, host: h}}]
routes:
- {{name: by-id, service: {service_id}, paths: [/a]}}
- {{name: by-record, service: {{id: {service_id}}}, paths: [/b]}}
- {{name: by-name, service: s, paths: [/c]}}
""")
        self.assertEqual(entities["services"][0]["id"], service_id)
        self.assertEqual([r["service"] for r in entities["routes"]], [{"id": service_id}] * 3)

    def test_timestamps_are_those_of_the_load(self):
        entities = load(KONG_EXAMPLE)
        for entity in (e for es in entities.values() for e in es):
            self.assertEqual((entity["created_at"], entity["updated_at"]), (NOW, NOW))

    def test_nested_plugins_of_a_consumer(self):
        entities = load('_format_version: "3.0"\n'
                        'consumers: [{username: u, plugins: [{name: rate-limiting}]}]')
        self.assertEqual(entities["plugins"][0]["consumer"], {"id": generated_id("consumers", "u")})

    def test_annotations_are_dropped(self):
        entities = load('_format_version: "3.0"\n_ignore: [1]\n'
                        'services: [{name: s, host: h, _comment: c, _ignore: [{any: thing}]}]')
        self.assertNotIn("_comment", entities["services"][0])
        self.assertNotIn("_ignore", entities["services"][0])

    def test_format_version(self):
        self.assertInvalid({}, {"_format_version": "required field missing"})
        self.assertInvalid({"_format_version": 3.0}, {"_format_version": "expected a string"})
        self.assertInvalid({"_format_version": "4.0"}, {"_format_version": "expected one of: 1.1, 2.1, 3.0"})

    def test_top_level_keys(self):
        self.assertInvalid(
            {"_format_version": "3.0", "_info": {}, "_transform": "yes", "_comment": 1, "_ignore": {}},
            {"_info": "unknown field", "_transform": "expected a boolean",
             "_comment": "expected a string", "_ignore": "expected an array"},
        )

    def test_unsupported_entity_types_are_named(self):
        self.assertInvalid(
            {"_format_version": "3.0", "upstreams": [{"name": "u"}],
             "consumers": [{"username": "c", "keyauth_credentials": [{"key": "k"}]}]},
            {"upstreams": "'upstreams' entities are not supported by kongish "
                          "(supported: services, routes, consumers, plugins)",
             "consumers": [{"keyauth_credentials": "'keyauth_credentials' entities are not supported by "
                                                   "kongish (supported: services, routes, consumers, "
                                                   "plugins)"}]},
        )

    def test_list_and_record_shapes(self):
        self.assertInvalid(
            {"_format_version": "3.0", "services": {"name": "s"},
             "routes": [{"name": "r", "paths": ["/"]}, "r2"]},
            {"services": "expected an array", "routes": [None, "expected a record"]},
        )

    def test_nested_entities_may_not_reference_others(self):
        self.assertInvalid(
            {"_format_version": "3.0", "consumers": [{"username": "c"}],
             "services": [{"name": "s", "host": "h",
                           "routes": [{"name": "r", "paths": ["/"], "service": "s"}],
                           "plugins": [{"name": "rate-limiting"},
                                       {"name": "rate-limiting", "consumer": "c"}]}]},
            {"services": [{"routes": [{"service": "value must be null"}],
                           "plugins": [None, {"consumer": "value must be null"}]}]},
        )

    def test_reference_must_be_text_or_record(self):
        self.assertInvalid({"_format_version": "3.0",
                            "routes": [{"name": "r", "service": 5, "paths": ["/"]}]},
                           {"routes": [{"service": "expected a string"}]})

    def test_invalid_references(self):
        self.assertInvalid(
            {"_format_version": "3.0", "plugins": [
                {"name": "rate-limiting", "instance_name": "named", "service": "svc1",
                 "consumer": "my-consumer"},
                {"name": "rate-limiting", "id": "0b1a6e47-6d3e-4a41-9a51-8b7d2c09bd5e",
                 "route": {"id": "e0a5b8f8-34b0-45a4-8d44-9d4b1b3d6b3c"}},
            ]},
            {"plugins": {
                "named": ["invalid reference 'service: svc1' (no such entry in 'services')",
                          "invalid reference 'consumer: my-consumer' (no such entry in 'consumers')"],
                "0b1a6e47-6d3e-4a41-9a51-8b7d2c09bd5e": [
                    "invalid reference 'route: {\"id\":\"e0a5b8f8-34b0-45a4-8d44-9d4b1b3d6b3c\"}' "
                    "(no such entry in 'routes')"],
            }},
        )

    def test_duplicate_endpoint_keys(self):
        self.assertInvalid(
            {"_format_version": "3.0", "services": [
                {"name": "x", "host": "a"}, {"name": "y", "host": "b"}, {"name": "x", "host": "c"}]},
            {"services": [None, None,
                          "uniqueness violation: 'services' entity with name set to 'x' already declared"]},
        )

    def test_duplicate_ids(self):
        same = "0b1a6e47-6d3e-4a41-9a51-8b7d2c09bd5e"
        self.assertInvalid(
            {"_format_version": "3.0",
             "consumers": [{"id": same, "username": "a"}, {"id": same, "username": "b"}]},
            {"consumers": [None, f"uniqueness violation: 'consumers' entity with primary key set to '{same}' "
                                 "already declared"]},
        )

    def test_the_same_plugin_twice_has_the_same_id(self):
        document = {"_format_version": "3.0", "services": [{"name": "s", "host": "h", "plugins": [
            {"name": "post-function", "config": {"log": ["a()"]}},
            {"name": "post-function", "config": {"log": ["b()"]}}]}]}
        plugin_id = generated_id("plugins", f"plugins:*:post-function::{generated_id('services', 's')}:")
        self.assertInvalid(document, {"services": [{"plugins": [
            None,
            f"uniqueness violation: 'plugins' entity with primary key set to '{plugin_id}' "
            "already declared"]}]})

    def test_an_entity_reported_whole_gets_no_nested_errors(self):
        # Kong files the nested duplicate route under 'routes'[2]; the top-level
        # route 2 then has nowhere to put its duplicate plugin's error.
        plugin = {"name": "post-function", "config": {"log": ["a()"]}}
        self.assertInvalid(
            {"_format_version": "3.0",
             "services": [{"name": "s", "host": "h", "routes": [
                 {"name": "r", "paths": ["/a"]}, {"name": "r", "paths": ["/b"]}]}],
             "routes": [{"name": "a", "paths": ["/c"]},
                        {"name": "b", "paths": ["/d"], "plugins": [plugin, plugin]}]},
            {"routes": [None, "uniqueness violation: 'routes' entity with name set to 'r' already declared"]},
        )

    def test_duplicate_custom_ids(self):
        self.assertInvalid(
            {"_format_version": "3.0", "consumers": [{"username": "a", "custom_id": "c"},
                                                     {"username": "b", "custom_id": "c"}]},
            {"consumers": {"b": "uniqueness violation: 'consumers' entity with custom_id set to 'c' "
                                 "already declared"}},
        )

    def test_old_formats_get_regex_paths_migrated(self):
        text = """
_format_version: "{version}"
services:
- name: s
  host: h
  routes: [{{name: nested, paths: ["/regex.+", "/prefix", "/a%2fb/%7Ex"]}}]
routes:
- {{name: top, paths: ["/v(1|2)/%2E%41", "/%61b//c/../d"]}}
"""
        for version in ("1.1", "2.1"):
            routes = by_name(load(text.format(version=version))["routes"])
            self.assertEqual(routes["nested"]["paths"], ["~/regex.+", "/prefix", "/a%2Fb/~x"])
            self.assertEqual(routes["top"]["paths"], ["~/v(1|2)/\\.A", "/ab/d"])
        route_list = load('_format_version: "3.0"\nroutes: [{paths: ["/v(1|2)/x"]}]')["routes"]
        self.assertEqual(route_list[0]["paths"], ["/v(1|2)/x"])

    def test_fields_named_like_entities_are_fields(self):
        entities = load('_format_version: "3.0"\nroutes: [{name: r, protocols: [tls], snis: [example.com]}]\n'
                        'services: [{name: s, url: "https://h", ca_certificates: []}]')
        self.assertEqual(entities["routes"][0]["snis"], ["example.com"])
        self.assertEqual(entities["services"][0]["ca_certificates"], [])

    def test_migration_keeps_undecodable_text(self):
        document = {"_format_version": "1.1", "routes": [{"name": "r", "paths": ["/\ud800.+"]}]}
        entities = flatten(document, plugins=lookup, now=NOW)
        self.assertEqual(entities["routes"][0]["paths"], ["~/\ud800.+"])

    @settings(max_examples=150, deadline=None)
    @given(st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
        | st.sampled_from(["3.0", "1.1", "s", "r", "c", "p", "plugin-testing"]),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(
            st.sampled_from(["_format_version", "services", "routes", "consumers", "plugins", "name",
                             "username", "id", "service", "route", "consumer", "paths", "host",
                             "upstreams", "_comment", "custom_id", "instance_name"]) | st.text(max_size=5),
            children, max_size=5),
        max_leaves=30,
    ))
    def test_any_document_flattens_or_fails_cleanly(self, document):
        try:
            entities = flatten(document, plugins=lookup, now=NOW)
        except InvalidDeclarative as error:
            json.dumps(error.fields)
        else:
            json.dumps(entities)


class ExportTests(SynchronousTestCase):
    def test_export_reads_back_to_the_same_entities(self):
        entities = load(KONG_EXAMPLE)
        text = export_yaml(entities)
        document = yaml.safe_load(text)
        self.assertEqual(document["_format_version"], "3.0")
        self.assertEqual(list(document),
                         ["_format_version", "_transform", "services", "routes", "consumers", "plugins"])
        self.assertEqual(document["routes"][0]["service"], generated_id("services", "plugin-testing"))
        self.assertEqual(flatten(parse_declarative(text), plugins=lookup, now=NOW), entities)

    def test_empty_export(self):
        self.assertEqual(yaml.safe_load(export_yaml({"services": []})),
                         {"_format_version": "3.0", "_transform": False})


class ExampleFileTests(SynchronousTestCase):
    def test_example_loads(self):
        with open(EXAMPLE, encoding="utf-8") as file:
            text = file.read()
        entities = flatten(parse_declarative(text, filename="kong.yml"), plugins=lookup, now=NOW)
        service = entities["services"][0]
        self.assertEqual(service["name"], "plugin-testing")
        self.assertEqual(entities["routes"][0]["paths"], ["/test"])
        self.assertEqual(sorted(p["name"] for p in entities["plugins"]), ["post-function", "pre-function"])
