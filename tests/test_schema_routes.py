"""Route entities: protocol groups, matching attributes and the subschema rules (reference 1.3)."""
from __future__ import annotations

from typing import Any

import regex
from twisted.trial.unittest import SynchronousTestCase

from kongish.errors import SchemaViolation
from kongish.schema import ROUTES, complete

UUID = "6f3f4ad9-b4e1-4a3a-8e2a-2d6a1f0b7c11"
PROTOCOL_ERROR = "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"
HTTPS_RULE = "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"


def no_plugins(name: str) -> None:
    return None


def route(**data: Any) -> dict[str, Any]:
    return complete(ROUTES, data, plugins=no_plugins)


class RouteTestCase(SynchronousTestCase):
    def violation(self, data: dict[str, Any], **options: Any) -> dict[str, Any]:
        error = self.assertRaises(SchemaViolation, complete, ROUTES, data, plugins=no_plugins, **options)
        return error.body()

    def fields_of(self, data: dict[str, Any], **options: Any) -> dict[str, Any]:
        return self.violation(data, **options)["fields"]


class DefaultsTests(RouteTestCase):
    def test_example_from_the_reference(self) -> None:
        self.assertEqual(route(paths=["/test"], service={"id": UUID}), {
            "id": None, "created_at": None, "updated_at": None, "name": None,
            "protocols": ["http", "https"], "methods": None, "hosts": None, "paths": ["/test"],
            "headers": None, "snis": None, "sources": None, "destinations": None,
            "https_redirect_status_code": 426, "regex_priority": 0, "strip_path": True,
            "preserve_host": False, "request_buffering": True, "response_buffering": True,
            "path_handling": "v0", "tags": None, "service": {"id": UUID}})

    def test_grpc_routes_do_not_strip_the_path(self) -> None:
        self.assertIs(route(protocols=["grpc"], paths=["/a"])["strip_path"], False)

    def test_sets_drop_duplicates(self) -> None:
        entity = route(methods=["GET", "POST", "GET"], protocols=["http", "http"])
        self.assertEqual((entity["methods"], entity["protocols"]), (["GET", "POST"], ["http"]))

    def test_empty_object_is_an_empty_array(self) -> None:
        self.assertEqual(route(paths=["/"], hosts={})["hosts"], [])


class AtLeastOneTests(RouteTestCase):
    def test_empty_route_gets_the_https_message(self) -> None:
        self.assertEqual(self.violation({}), {
            "code": 2, "name": "schema violation", "message": f"schema violation ({HTTPS_RULE})",
            "fields": {"@entity": [HTTPS_RULE]}})

    def test_http_variant(self) -> None:
        self.assertEqual(self.fields_of({"protocols": ["http"]}), {"@entity": [
            "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"]})

    def test_grpc_variants(self) -> None:
        self.assertEqual(self.fields_of({"protocols": ["grpcs"]}), {"@entity": [
            "must set one of 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'grpcs'"]})
        self.assertEqual(self.fields_of({"protocols": ["grpc"]}), {"@entity": [
            "must set one of 'hosts', 'headers', 'paths' when 'protocols' is 'grpc'"]})

    def test_stream_variants(self) -> None:
        self.assertEqual(self.fields_of({"protocols": ["tcp"]}), {"@entity": [
            "must set one of 'sources', 'destinations', 'snis' when 'protocols' is 'tcp', 'tls' or 'udp'"]})
        self.assertEqual(self.fields_of({"protocols": ["tls_passthrough"]}), {"@entity": [
            "must set snis when 'protocols' is 'tls_passthrough'"]})

    def test_any_attribute_satisfies_it(self) -> None:
        for attribute in ({"methods": ["GET"]}, {"hosts": ["h"]}, {"headers": {"x": ["y"]}},
                          {"paths": ["/"]}, {"snis": ["h"]}):
            self.assertEqual(route(**attribute)["protocols"], ["http", "https"])


class ProtocolTests(RouteTestCase):
    def test_bad_protocol_and_bad_foreign_name(self) -> None:
        body = self.violation({"methods": ["GET"], "protocols": ["foo", "http"],
                               "service": {"name": "\\o/"}})
        name_error = ("invalid value '\\o/': the only accepted ascii characters are "
                      "alphanumerics or ., -, _, and ~")
        self.assertEqual(body["fields"], {"protocols": [PROTOCOL_ERROR], "service": {"name": name_error}})
        self.assertEqual(body["message"],
                         f"2 schema violations (protocols.1: {PROTOCOL_ERROR}; service.name: {name_error})")

    def test_bad_foreign_protocol(self) -> None:
        body = self.violation({"paths": ["/"], "service": {"protocol": "foo"}})
        self.assertEqual(body["fields"], {"service": {"protocol": PROTOCOL_ERROR}})

    def test_groups_cannot_mix(self) -> None:
        self.assertEqual(self.fields_of({"protocols": ["http", "tcp"], "paths": ["/"]}), {
            "protocols": "these sets are mutually exclusive: ('http', 'https'), ('tcp', 'tls', 'udp')"})

    def test_protocols_are_required(self) -> None:
        self.assertEqual(self.fields_of({"protocols": None, "paths": ["/"]}),
                         {"protocols": "required field missing"})

    def test_unknown_protocols_only(self) -> None:
        self.assertEqual(self.fields_of({"protocols": ["foo"]}), {"protocols": "unknown type: foo"})

    def test_redirect_status(self) -> None:
        self.assertEqual(self.fields_of({"paths": ["/"], "https_redirect_status_code": 200}), {
            "https_redirect_status_code": "expected one of: 426, 301, 302, 307, 308"})


class AttributeTests(RouteTestCase):
    def test_methods(self) -> None:
        self.assertEqual(self.fields_of({"methods": ["GET", "get"]}),
                         {"methods": [None, "invalid value: get"]})

    def test_hosts(self) -> None:
        self.assertEqual(route(hosts=["*.example.com", "example.*", "h:8080"])["hosts"],
                         ["*.example.com", "example.*", "h:8080"])
        self.assertEqual(self.fields_of({"hosts": ["*.a.*"]}),
                         {"hosts": ["invalid wildcard: must have at most one wildcard"]})
        self.assertEqual(self.fields_of({"hosts": ["a.*.b"]}),
                         {"hosts": ["invalid wildcard: must be placed at leftmost or rightmost label"]})
        self.assertEqual(self.fields_of({"hosts": ["bad host"]}), {"hosts": ["invalid hostname: bad host"]})

    def test_path_prefix_rules(self) -> None:
        self.assertEqual(self.fields_of({"paths": ["foo"]}),
                         {"paths": ["should start with: / (fixed path) or ~/ (regex path)"]})
        self.assertEqual(self.fields_of({"paths": ["/a//b"]}), {"paths": ["must not have empty segments"]})
        self.assertEqual(self.fields_of({"paths": ["/a%zz"]}),
                         {"paths": ["invalid url-encoded value: '%zz'"]})
        self.assertEqual(route(paths=["/a b", "/ok"])["paths"], ["/a b", "/ok"])

    def test_non_normalized_paths(self) -> None:
        self.assertEqual(self.fields_of({"paths": ["/a/../b"]}),
                         {"paths": ["non-normalized path, consider use '/b' instead"]})
        self.assertEqual(self.fields_of({"paths": ["/ok", "/%7Euser"]}),
                         {"paths": [None, "non-normalized path, consider use '/~user' instead"]})

    def test_regex_paths(self) -> None:
        self.assertEqual(route(paths=["~/items/(?P<id>\\d+)$"])["paths"], ["~/items/(?P<id>\\d+)$"])
        # Kong's documented PCRE syntax, and PCRE-only constructs Python's re refuses.
        for path in ["~/version/(?<version>\\d+)/users/(?<user>\\S+)", "~/(?'id'\\d+)", "~/(\\d)(?1)",
                     "~/a\\h\\Qb.c\\E"]:
            self.assertEqual(route(paths=[path])["paths"], [path])
        try:
            regex.compile("/(")
        except regex.error as error:
            expected = f"invalid regex: '/(' (PCRE returned: {error})"
        self.assertEqual(self.fields_of({"paths": ["~/("]}), {"paths": [expected]})

    def test_headers(self) -> None:
        self.assertEqual(self.fields_of({"headers": {"Host": ["x"]}}), {
            "headers": "cannot contain 'host' header, which must be specified in the 'hosts' attribute"})
        self.assertEqual(self.fields_of({"headers": {"x a": ["v"]}}), {
            "headers": "bad header name 'x a', allowed characters are A-Z, a-z, 0-9, '_', and '-'"})
        self.assertEqual(self.fields_of({"headers": {"x-a": "v"}}), {"headers": "expected an array"})
        self.assertEqual(route(headers={"x-version": ["v1", "~*V2"]})["headers"],
                         {"x-version": ["v1", "~*V2"]})

    def test_snis_need_a_tls_protocol(self) -> None:
        self.assertEqual(self.fields_of({"protocols": ["http"], "paths": ["/"], "snis": ["h.test"]}), {
            "snis": "length must be 0",
            "@entity": ["'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' "
                        "or 'tls_passthrough'"]})
        self.assertEqual(route(protocols=["https"], snis=["*.h.test"])["snis"], ["*.h.test"])

    def test_sni_values(self) -> None:
        self.assertEqual(self.fields_of({"snis": ["1.2.3.4"]}), {"snis": ["must not be an IP"]})
        self.assertEqual(self.fields_of({"snis": ["h:1"]}), {"snis": ["must not have a port"]})
        self.assertEqual(self.fields_of({"snis": ["a.*.b"]}),
                         {"snis": ["wildcard must be leftmost or rightmost character"]})

    def test_http_routes_have_no_sources(self) -> None:
        self.assertEqual(self.fields_of({"paths": ["/"], "sources": [{"ip": "10.0.0.1"}]}),
                         {"sources": "cannot set 'sources' when 'protocols' is 'http' or 'https'"})

    def test_stream_routes(self) -> None:
        entity = route(protocols=["tcp"], sources=[{"ip": "10.0.0.0/8"}], destinations=[{"port": 80}])
        self.assertEqual(entity["sources"], [{"ip": "10.0.0.0/8", "port": None}])
        self.assertEqual(self.fields_of({"protocols": ["tcp"], "sources": [{}]}), {"sources": [
            {"@entity": ["at least one of these fields must be non-empty: 'ip', 'port'"]}]})
        self.assertEqual(self.fields_of({"protocols": ["tls"], "snis": ["h"], "paths": ["/"]}), {
            "paths": "cannot set 'paths' when 'protocols' is 'tcp', 'tls', 'tls_passthrough' or 'udp'"})

    def test_grpc_strip_path_and_methods(self) -> None:
        self.assertEqual(self.fields_of({"protocols": ["grpc"], "paths": ["/"], "strip_path": True,
                                         "methods": ["GET"]}), {
            "strip_path": "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'",
            "methods": "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"})

    def test_service_reference(self) -> None:
        self.assertEqual(self.fields_of({"paths": ["/"], "service": {"id": "x"}}),
                         {"service": {"id": "expected a valid UUID"}})
        self.assertEqual(self.fields_of({"paths": ["/"], "service": "x"}),
                         {"service": {"id": "missing primary key"}})
        self.assertEqual(route(paths=["/"], service=None)["service"], None)


class PartialUpdateTests(RouteTestCase):
    def test_arrays_are_replaced(self) -> None:
        stored = route(paths=["/a", "/b"], hosts=["h"])
        updated = complete(ROUTES, {"paths": ["/c"]}, plugins=no_plugins, partial_base=stored)
        self.assertEqual((updated["paths"], updated["hosts"]), (["/c"], ["h"]))

    def test_clearing_the_last_attribute_is_refused(self) -> None:
        stored = route(paths=["/a"])
        self.assertEqual(self.fields_of({"paths": None}, partial_base=stored), {"@entity": [HTTPS_RULE]})
