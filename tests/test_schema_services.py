"""Service entities: fields, the ``url`` shorthand and the protocol rules (reference 1.2)."""
from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from kongish.errors import SchemaViolation
from kongish.schema import SERVICES, complete

UUID = "6f3f4ad9-b4e1-4a3a-8e2a-2d6a1f0b7c11"


def no_plugins(name: str) -> None:
    return None


def service(**data: Any) -> dict[str, Any]:
    return complete(SERVICES, data, plugins=no_plugins)


class ServiceTestCase(SynchronousTestCase):
    def fields_of(self, data: dict[str, Any], **options: Any) -> dict[str, Any]:
        """The ``fields`` of the schema violation that completing ``data`` raises."""
        error = self.assertRaises(SchemaViolation, complete, SERVICES, data, plugins=no_plugins, **options)
        return error.body()["fields"]


class DefaultsTests(ServiceTestCase):
    def test_example_from_the_reference(self) -> None:
        self.assertEqual(service(name="plugin-testing", url="http://dead.end.com"), {
            "id": None, "created_at": None, "updated_at": None, "name": "plugin-testing",
            "retries": 5, "protocol": "http", "host": "dead.end.com", "port": 80, "path": None,
            "connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000, "tags": None,
            "client_certificate": None, "tls_verify": None, "tls_verify_depth": None,
            "ca_certificates": None, "enabled": True})

    def test_given_id_and_timestamps_are_kept(self) -> None:
        entity = service(host="h", id=UUID, created_at=1700000000, updated_at=1700000001)
        self.assertEqual((entity["id"], entity["created_at"], entity["updated_at"]),
                         (UUID, 1700000000, 1700000001))

    def test_integral_floats_become_integers(self) -> None:
        entity = service(host="h", port=8080.0)
        self.assertEqual(entity["port"], 8080)
        self.assertIsInstance(entity["port"], int)

    def test_host_is_required(self) -> None:
        self.assertEqual(self.fields_of({}), {"host": "required field missing"})


class URLShorthandTests(ServiceTestCase):
    def parts(self, url: str) -> tuple[Any, ...]:
        entity = service(url=url)
        return entity["protocol"], entity["host"], entity["port"], entity["path"]

    def test_examples_from_kong(self) -> None:
        self.assertEqual(self.parts("http://example.test:443"), ("http", "example.test", 443, None))
        self.assertEqual(self.parts("https://example2.test:80/"), ("https", "example2.test", 80, "/"))

    def test_missing_path_is_null_and_slash_is_kept(self) -> None:
        self.assertEqual(self.parts("http://x.test")[3], None)
        self.assertEqual(self.parts("http://x.test/")[3], "/")

    def test_default_ports(self) -> None:
        self.assertEqual(self.parts("https://h"), ("https", "h", 443, None))
        self.assertEqual(self.parts("grpcs://h"), ("grpcs", "h", 80, None))

    def test_protocol_from_port_without_scheme(self) -> None:
        self.assertEqual(self.parts("//h:443/a"), ("https", "h", 443, "/a"))
        self.assertEqual(self.parts("//h:8000"), ("http", "h", 8000, None))

    def test_query_and_fragment_are_dropped(self) -> None:
        self.assertEqual(self.parts("http://h/a?b=c#d"), ("http", "h", 80, "/a"))

    def test_shorthand_wins_over_fields(self) -> None:
        entity = service(url="https://a.test/p", host="b.test", protocol="http", port=1, path="/q")
        self.assertEqual((entity["protocol"], entity["host"], entity["port"], entity["path"]),
                         ("https", "a.test", 443, "/p"))

    def test_empty_and_blank_urls_are_refused(self) -> None:
        self.assertEqual(self.fields_of({"url": ""}), {"url": "length must be at least 1"})
        self.assertEqual(self.fields_of({"url": " "}),
                         {"host": "required field missing", "path": "should start with: /"})

    def test_non_string_url(self) -> None:
        self.assertEqual(self.fields_of({"url": 5}), {"url": "expected a string"})

    def test_bad_port_in_url(self) -> None:
        self.assertEqual(self.fields_of({"url": "http://h:x/"}), {"port": "expected an integer"})

    def test_url_is_never_returned(self) -> None:
        self.assertNotIn("url", service(url="http://h"))


class FieldRuleTests(ServiceTestCase):
    def test_name_charset(self) -> None:
        self.assertEqual(self.fields_of({"host": "h", "name": "a b"}), {
            "name": "invalid value 'a b': the only accepted ascii characters are alphanumerics "
                    "or ., -, _, and ~"})
        self.assertEqual(service(host="h", name="sérvice.-_~1")["name"], "sérvice.-_~1")

    def test_tags(self) -> None:
        self.assertEqual(self.fields_of({"host": "h", "tags": ["ok", "a,b"]}), {
            "tags": [None, "invalid tag 'a,b': expected printable ascii (except `,` and `/`) "
                           "or valid utf-8 sequences"]})
        self.assertEqual(service(host="h", tags=["a", "b", "a"])["tags"], ["a", "b"])

    def test_host_rules(self) -> None:
        self.assertEqual(self.fields_of({"host": "h:80"}), {"host": "must not have a port"})
        self.assertEqual(self.fields_of({"host": "a b"}), {"host": "invalid value: a b"})
        self.assertEqual(self.fields_of({"host": "300.1.1.1"}), {"host": "invalid value: 300.1.1.1"})
        self.assertEqual(service(host="::1")["host"], "::1")

    def test_path_rules(self) -> None:
        self.assertEqual(self.fields_of({"host": "h", "path": "a"}), {"path": "should start with: /"})
        self.assertEqual(self.fields_of({"host": "h", "path": "/a//b"}),
                         {"path": "must not have empty segments"})
        self.assertEqual(self.fields_of({"host": "h", "path": "/a b"}), {
            "path": "invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)"})
        self.assertEqual(self.fields_of({"host": "h", "path": "/a%zz"}),
                         {"path": "invalid url-encoded value: '%zz'"})

    def test_number_ranges(self) -> None:
        self.assertEqual(self.fields_of({"host": "h", "port": 65536}),
                         {"port": "value should be between 0 and 65535"})
        self.assertEqual(self.fields_of({"host": "h", "connect_timeout": 0}),
                         {"connect_timeout": "value should be between 1 and 2147483646"})
        self.assertEqual(self.fields_of({"host": "h", "retries": 32768}),
                         {"retries": "value should be between 0 and 32767"})

    def test_json_types_are_not_coerced(self) -> None:
        self.assertEqual(self.fields_of({"host": "h", "port": "80"}), {"port": "expected an integer"})
        self.assertEqual(self.fields_of({"host": "h", "port": True}), {"port": "expected an integer"})
        self.assertEqual(self.fields_of({"host": "h", "enabled": "true"}), {"enabled": "expected a boolean"})
        self.assertEqual(self.fields_of({"host": 1}), {"host": "expected a string"})

    def test_protocol(self) -> None:
        self.assertEqual(self.fields_of({"host": "h", "protocol": "ftp"}), {
            "protocol": "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"})

    def test_unknown_field(self) -> None:
        error = self.assertRaises(SchemaViolation, complete, SERVICES, {"host": "h", "foo": 1},
                                  plugins=no_plugins)
        self.assertEqual(error.body()["message"], "schema violation (foo: unknown field)")

    def test_uuid_fields(self) -> None:
        self.assertEqual(self.fields_of({"host": "h", "id": "nope"}), {"id": "expected a valid UUID"})
        self.assertEqual(self.fields_of({"url": "https://h", "ca_certificates": [UUID, "x"]}),
                         {"ca_certificates": [None, "expected a valid UUID"]})

    def test_client_certificate_reference(self) -> None:
        entity = service(url="https://h", client_certificate={"id": UUID, "extra": 1})
        self.assertEqual(entity["client_certificate"], {"id": UUID})
        self.assertEqual(self.fields_of({"url": "https://h", "client_certificate": {}}),
                         {"client_certificate": {"id": "missing primary key"}})


class ProtocolRuleTests(ServiceTestCase):
    def test_stream_and_grpc_services_have_no_path(self) -> None:
        for protocol in ("tcp", "tls", "udp", "grpc", "grpcs"):
            error = self.assertRaises(SchemaViolation, complete, SERVICES,
                                      {"host": "h", "protocol": protocol, "path": "/a"},
                                      plugins=no_plugins)
            self.assertEqual(error.body()["fields"], {
                "path": "value must be null",
                "@entity": ["failed conditional validation given value of field 'protocol'"]})
            self.assertEqual(error.body()["message"], (
                "2 schema violations (failed conditional validation given value of field 'protocol'; "
                "path: value must be null)"))

    def test_tls_settings_need_https_or_tls(self) -> None:
        fields = self.fields_of({"host": "h", "tls_verify": True, "tls_verify_depth": 2})
        self.assertEqual(fields["tls_verify"], "value must be null")
        self.assertEqual(fields["tls_verify_depth"], "value must be null")
        self.assertEqual(len(fields["@entity"]), 2)
        entity = service(url="https://h", tls_verify=True, tls_verify_depth=2)
        self.assertEqual((entity["tls_verify"], entity["tls_verify_depth"]), (True, 2))


class PartialUpdateTests(ServiceTestCase):
    def test_patch_changes_only_given_fields(self) -> None:
        stored = service(name="s", url="http://a.test/p", id=UUID, created_at=1, updated_at=1)
        updated = complete(SERVICES, {"port": 8080}, plugins=no_plugins, partial_base=stored)
        self.assertEqual(updated, {**stored, "port": 8080})

    def test_patch_with_url(self) -> None:
        stored = service(url="http://a.test/p")
        updated = complete(SERVICES, {"url": "https://b.test"}, plugins=no_plugins, partial_base=stored)
        self.assertEqual((updated["protocol"], updated["host"], updated["port"], updated["path"]),
                         ("https", "b.test", 443, None))

    def test_patch_validates_the_merged_entity(self) -> None:
        stored = service(url="http://a.test/p")
        self.assertEqual(self.fields_of({"protocol": "tcp"}, partial_base=stored), {
            "path": "value must be null",
            "@entity": ["failed conditional validation given value of field 'protocol'"]})
