"""Kong-shaped error bodies (reference section 2.6)."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish import errors

UUID = "6f3f4ad9-b4e1-4a3a-8e2a-2d6a1f0b7c11"
LUA_KEYWORDS = {"and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto",
                "if", "in", "local", "nil", "not", "or", "repeat", "return", "then", "true",
                "until", "while"}
PROTOCOLS = "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"


class SchemaViolationTests(SynchronousTestCase):
    def test_single_error(self) -> None:
        error = errors.SchemaViolation({"name": "required field missing"})
        self.assertEqual(error.status, 400)
        self.assertEqual(error.body(), {
            "code": 2, "name": "schema violation",
            "message": "schema violation (name: required field missing)",
            "fields": {"name": "required field missing"}})

    def test_entity_errors_first(self) -> None:
        message = ("must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' "
                   "when 'protocols' is 'https'")
        body = errors.SchemaViolation({"@entity": [message], "a": "unknown field"}).body()
        self.assertEqual(body["message"], f"2 schema violations ({message}; a: unknown field)")

    def test_nested_and_array_errors(self) -> None:
        fields = {"service": {"protocol": PROTOCOLS}, "protocols": [PROTOCOLS]}
        body = errors.SchemaViolation(fields).body()
        self.assertEqual(body["message"], (
            f"2 schema violations (protocols.1: {PROTOCOLS}; service.protocol: {PROTOCOLS})"))
        self.assertEqual(body["fields"], fields)

    def test_holes_in_array_errors_are_skipped(self) -> None:
        body = errors.SchemaViolation({"paths": [None, "must not have empty segments"]}).body()
        self.assertEqual(body["message"], "schema violation (paths.2: must not have empty segments)")

    def test_third_level_is_pretty_printed(self) -> None:
        text = "error parsing pre-function: [string \"print(\"]:1: unexpected symbol near '<eof>'"
        body = errors.SchemaViolation({"config": {"access": [text]}}).body()
        quoted = text.replace('"', '\\"')
        self.assertEqual(body["message"], f'schema violation (config.access: {{\n  "{quoted}"\n}})')

    def test_sorted_fields(self) -> None:
        body = errors.SchemaViolation({"b": "x", "a": "y", "c": {"z": "1", "d": "2"}}).body()
        self.assertEqual(body["message"], "4 schema violations (a: y; b: x; c.d: 2; c.z: 1)")


class KeyRenderingTests(SynchronousTestCase):
    def test_unique_violation(self) -> None:
        keys = {"service": {"id": UUID}, "name": "basic-auth", "route": None, "consumer": None}
        error = errors.UniqueViolation(keys)
        self.assertEqual(error.status, 409)
        self.assertEqual(error.body(), {
            "code": 5, "name": "unique constraint violation",
            "message": ("UNIQUE violation detected on "
                        f"'{{consumer=null,name=\"basic-auth\",route=null,service={{id=\"{UUID}\"}}}}'"),
            "fields": keys})

    def test_foreign_key_violation(self) -> None:
        body = errors.ForeignKeyViolation({"id": UUID}, "services").body()
        self.assertEqual(body, {
            "code": 4, "name": "foreign key violation",
            "message": f"the foreign key '{{id=\"{UUID}\"}}' does not reference "
                       "an existing 'services' entity.",
            "fields": {"service": {"id": UUID}}})

    def test_foreign_key_violation_named_field(self) -> None:
        body = errors.ForeignKeyViolation({"id": UUID}, "certificates", field="client_certificate").body()
        self.assertEqual(body["fields"], {"client_certificate": {"id": UUID}})

    def test_referenced_by(self) -> None:
        self.assertEqual(errors.ReferencedBy("services", "routes").body(), {
            "code": 4, "name": "foreign key violation",
            "message": "an existing 'routes' entity references this 'services' entity",
            "fields": {"@referenced_by": "routes"}})

    def test_foreign_keys_unresolved(self) -> None:
        body = errors.ForeignKeysUnresolved("service", {"name": "x"}, "services").body()
        detail = "the foreign key cannot be resolved with '{name=\"x\"}' for an existing 'services' entity"
        self.assertEqual(body, {
            "code": 13, "name": "foreign keys unresolved",
            "message": f"foreign key unresolved (service.name: {detail})",
            "fields": {"service": {"name": detail}}})

    def test_primary_key_violation(self) -> None:
        body = errors.PrimaryKeyViolation(UUID).body()
        self.assertEqual(body["code"], 3)
        self.assertEqual(body["message"], f"primary key violation on key '{{id=\"{UUID}\"}}'")

    def test_non_identifier_keys_are_bracketed(self) -> None:
        self.assertEqual(errors.lua_pretty({"a-b": 1, "end": True, "ok": 1.5}, ""),
                         '{["a-b"]=1,["end"]=true,ok=1.5}')


class SimpleErrorTests(SynchronousTestCase):
    def test_operation_unsupported(self) -> None:
        error = errors.OperationUnsupported("create", "routes")
        self.assertEqual(error.status, 405)
        self.assertEqual(error.body(), {
            "code": 12, "name": "operation unsupported",
            "message": "cannot create 'routes' entities when not using a database"})

    def test_invalid_size(self) -> None:
        self.assertEqual(errors.InvalidSize("size must be a number").body(), {
            "code": 9, "name": "invalid size", "message": "size must be a number"})

    def test_invalid_offset(self) -> None:
        self.assertEqual(errors.InvalidOffset("x").body(), {
            "code": 7, "name": "invalid offset",
            "message": "'x' is not a valid offset: bad base64 encoding"})

    def test_invalid_options(self) -> None:
        self.assertEqual(errors.InvalidOptions("tags", "invalid filter syntax").body(), {
            "code": 11, "name": "invalid options",
            "message": "invalid option (tags: invalid filter syntax)",
            "options": {"tags": "invalid filter syntax"}})

    def test_invalid_declarative(self) -> None:
        body = errors.InvalidDeclarative({"services": [{"host": "required field missing"}]}).body()
        self.assertEqual(body["code"], 14)
        self.assertEqual(body["name"], "invalid declarative configuration")
        self.assertEqual(body["message"],
                         'declarative config is invalid: {services={{host="required field missing"}}}')
        custom = errors.InvalidDeclarative({}, "expected an object").body()
        self.assertEqual(custom["message"], "expected an object")

    def test_plain_errors(self) -> None:
        self.assertEqual((errors.NotFound().status, errors.NotFound().body()),
                         (404, {"message": "Not found"}))
        self.assertEqual((errors.MethodNotAllowed().status, errors.MethodNotAllowed().body()),
                         (405, {"message": "Method not allowed"}))
        self.assertEqual((errors.BadRequest("nope").status, errors.BadRequest("nope").body()),
                         (400, {"message": "nope"}))


error_trees = st.recursive(
    st.text(min_size=1),
    lambda children: st.one_of(st.lists(st.one_of(st.none(), children), max_size=4),
                               st.dictionaries(st.text(), children, max_size=4)),
    max_leaves=12)


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=150)
    @given(st.dictionaries(st.text(min_size=1), error_trees, min_size=1, max_size=5))
    def test_schema_violation_bodies_are_json(self, fields: dict) -> None:
        body = errors.SchemaViolation(fields).body()
        self.assertEqual(json.loads(json.dumps(body))["fields"], fields)
        for name, value in fields.items():
            if isinstance(value, str) and name != "@entity":
                self.assertIn(f"{name}: {value}", body["message"])

    @settings(max_examples=150)
    @given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
                           st.integers(-10**6, 10**6), min_size=1))
    def test_flat_tables_render_sorted_on_one_line(self, table: dict) -> None:
        rendered = errors.lua_pretty(table, "")
        keys = sorted(table)
        expected = ",".join(
            (f'["{k}"]' if k in LUA_KEYWORDS else k)
            + f"={table[k]}" for k in keys)
        self.assertEqual(rendered, "{" + expected + "}")
