"""Properties of completion and inference over arbitrary JSON-like input."""
from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish.errors import SchemaViolation
from kongish.schema import ENTITIES, PLUGINS, EntitySchema, complete, infer, schema_json
from tests.test_schema_plugins import PLUGIN_TYPES, lookup

UUID = "6f3f4ad9-b4e1-4a3a-8e2a-2d6a1f0b7c11"
#: Values that reach deep into validation, mixed with arbitrary ones.
INTERESTING = st.sampled_from([
    UUID, {"id": UUID}, "http", "https", "grpc", "tcp", "tls", "/", "/a", "~/(", "h", "*.h", "GET",
    ["http"], ["grpc"], ["tcp"], ["/a"], ["GET"], ["h"], {"x": ["y"]}, [{"ip": "10.0.0.1"}],
    "pre-function", "rate", {"access": ["return 1"]}, {"limit": 1}, "http://h/p", 80, 0, -1, 1.5,
    True, False, None, "", [], {},
])
JSON = st.recursive(
    # NaN is no JSON value a client can send, and never equals itself: idempotence cannot hold for it
    st.one_of(INTERESTING, st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(max_size=6), children, max_size=3)),
    max_leaves=8)


#: A valid minimal input per entity, which examples then change a few fields of.
MINIMAL: dict[str, dict[str, Any]] = {"services": {"host": "h"}, "routes": {"paths": ["/"]},
                                      "consumers": {"username": "u"}, "plugins": {"name": "rate"}}


#: Valid values per field, so that examples also reach the success path.
VALID: dict[str, dict[str, list[Any]]] = {
    "services": {"name": ["svc", "ü"], "port": [8080, 0.0], "protocol": ["https", "grpc"],
                 "path": ["/p", None],
                 "tags": [["a", "a"], []], "url": ["http://x/y", "https://x:1"], "retries": [0],
                 "tls_verify": [None, True], "id": [UUID], "enabled": [False]},
    "routes": {"protocols": [["https"], ["http", "https"], ["grpc"]], "hosts": [["h", "*.h"]],
               "methods": [["GET", "GET"]], "headers": [{"x": ["y"]}], "strip_path": [False],
               "paths": [["/a", "~/b$"]], "service": [{"id": UUID}, None], "snis": [None]},
    "consumers": {"custom_id": ["c"], "username": [None, "v"], "tags": [["t"]]},
    "plugins": {"name": ["rate", "pre-function"], "config": [{"access": ["return 1"]}, {}],
                "protocols": [["http"], {}], "enabled": [True], "instance_name": ["i"],
                "route": [{"id": UUID}], "consumer": [None]},
}


def entity_input(schema: EntitySchema) -> st.SearchStrategy[dict[str, Any]]:
    """Either arbitrary dicts, or a valid entity with some fields set to plausible or odd values."""
    known = st.sampled_from([*schema.record.fields, "url"])
    arbitrary = st.dictionaries(st.one_of(known, st.text(max_size=6)), st.one_of(INTERESTING, JSON),
                                max_size=8)
    changed = st.dictionaries(known, st.one_of(INTERESTING, JSON), max_size=2).map(
        lambda changes: {**MINIMAL[schema.name], **changes})
    valid = st.fixed_dictionaries({}, optional={
        name: st.sampled_from(values) for name, values in VALID[schema.name].items()}).map(
        lambda changes: {**MINIMAL[schema.name], **changes})
    return st.one_of(arbitrary, changed, valid)


def config_fields(entity: dict[str, Any]) -> set[str]:
    plugin = PLUGIN_TYPES[entity["name"]]
    return {name for name, field in plugin.config_schema.fields.items() if not field.legacy}


class CompletionProperties(SynchronousTestCase):
    def check(self, schema: EntitySchema, data: dict[str, Any], base: dict[str, Any] | None = None) -> None:
        try:
            entity = complete(schema, data, plugins=lookup, partial_base=base)
        except SchemaViolation as error:
            self.assertEqual(error.body()["code"], 2)
            return
        self.assertTrue(set(schema.record.fields) <= set(entity) <= set(schema.record.fields))
        if schema is PLUGINS:
            self.assertLessEqual(config_fields(entity), set(entity["config"]))
        again = complete(schema, entity, plugins=lookup)
        self.assertEqual(again, entity)

    def test_services(self) -> None:
        self.run_property(ENTITIES["services"])

    def test_routes(self) -> None:
        self.run_property(ENTITIES["routes"])

    def test_consumers(self) -> None:
        self.run_property(ENTITIES["consumers"])

    def test_plugins(self) -> None:
        self.run_property(ENTITIES["plugins"])

    def run_property(self, schema: EntitySchema) -> None:
        @settings(max_examples=150, deadline=None)
        @given(entity_input(schema))
        def prop(data: dict[str, Any]) -> None:
            self.check(schema, data)
        prop()

    @settings(max_examples=100, deadline=None)
    @given(entity_input(PLUGINS))
    def test_patches_of_a_stored_plugin(self, data: dict[str, Any]) -> None:
        stored = complete(PLUGINS, {"name": "rate", "config": {"limit": 3}}, plugins=lookup)
        self.check(PLUGINS, data, stored)

    @settings(max_examples=100, deadline=None)
    @given(st.one_of(JSON, st.lists(JSON)))
    def test_non_objects_are_schema_violations(self, data: Any) -> None:
        if not isinstance(data, dict):
            self.assertRaises(SchemaViolation, complete, ENTITIES["services"], data, plugins=lookup)


def form_value() -> st.SearchStrategy[Any]:
    """What key decoding produces: strings, lists of them and nested objects."""
    return st.recursive(st.one_of(st.text(max_size=6), st.sampled_from(["", "1", "0x1", "true", "false",
                                                                        "rate", "pre-function", "http"])),
                        lambda children: st.one_of(st.lists(children, max_size=3),
                                                   st.dictionaries(st.text(max_size=6), children,
                                                                   max_size=3)),
                        max_leaves=6)


class InferenceProperties(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(sorted(ENTITIES)), st.data())
    def test_never_raises_and_is_idempotent(self, entity_type: str, data: st.DataObject) -> None:
        schema = ENTITIES[entity_type]
        keys = st.one_of(st.sampled_from(list(schema.record.fields)), st.text(max_size=6))
        args = data.draw(st.one_of(st.dictionaries(keys, st.one_of(form_value(), JSON), max_size=6), JSON))
        once = infer(schema, args, plugins=lookup)
        self.assertEqual(infer(schema, once, plugins=lookup), once)


class DescriptionTests(SynchronousTestCase):
    def test_every_entity_schema_is_json_with_all_fields(self) -> None:
        for schema in ENTITIES.values():
            described = json.loads(json.dumps(schema_json(schema)))
            self.assertEqual([next(iter(field)) for field in described["fields"]], list(schema.record.fields))
        self.assertIn("entity_checks", schema_json(ENTITIES["services"]))
        self.assertNotIn("entity_checks", schema_json(ENTITIES["plugins"]))
