"""Tests for kongish.router.Router: matching rules (Kong reference 4.2) and priority (4.3)."""
import itertools
from typing import Any, cast

from twisted.logger import ILogObserver, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from kongish.router import Match, Router

_ids = itertools.count()


def make_service(**fields: Any) -> dict[str, Any]:
    """A service in Admin API shape, with id ``svc`` unless given."""
    service = {
        "id": "svc", "name": None, "protocol": "http", "host": "upstream.test",
        "port": 80, "path": None, "enabled": True,
    }
    service.update(fields)
    return service


def make_route(**fields: Any) -> dict[str, Any]:
    """A route in Admin API shape attached to service ``svc``, with a fresh id."""
    route = {
        "id": f"route-{next(_ids)}", "created_at": 1700000000, "name": None,
        "protocols": ["http", "https"], "methods": None, "hosts": None, "paths": None,
        "headers": None, "snis": None, "sources": None, "destinations": None,
        "strip_path": True, "preserve_host": False, "regex_priority": 0,
        "path_handling": "v0", "service": {"id": "svc"},
    }
    route.update(fields)
    return route


def match(
    routes: list[dict[str, Any]],
    target: bytes = b"/",
    *,
    method: str = "GET",
    host: str | None = "kongish.test",
    headers: dict[str, list[str]] | None = None,
    port: int = 8000,
    scheme: str = "http",
    sni: str | None = None,
    services: dict[str, dict[str, Any]] | None = None,
) -> Match | None:
    router = Router.build(routes, services or {"svc": make_service()})
    return router.match(method, target, host, headers or {}, port, scheme, sni)


class RouterTestCase(SynchronousTestCase):
    def assertRoute(self, found: Match | None, route: dict[str, Any]) -> Match:
        self.assertIsNotNone(found)
        assert found is not None
        self.assertEqual(found.route["id"], route["id"])
        return found

    def logged(self) -> list[dict[str, Any]]:
        """The events logged from now until the end of the test."""
        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return events


class PathMatchingTests(RouterTestCase):
    def test_prefix_is_plain_string_test(self) -> None:
        route = make_route(paths=["/test"])
        for target in (b"/test", b"/test/x", b"/testing"):
            self.assertRoute(match([route], target), route)
        self.assertIsNone(match([route], b"/tes"))
        self.assertIsNone(match([route], b"/x/test"))

    def test_any_of_the_paths(self) -> None:
        route = make_route(paths=["/a", "/b"])
        self.assertRoute(match([route], b"/b/c"), route)

    def test_matching_uses_normalised_path(self) -> None:
        route = make_route(paths=["/test"])
        self.assertRoute(match([route], b"/x/../%74est//y"), route)

    def test_paths_are_case_sensitive(self) -> None:
        self.assertIsNone(match([make_route(paths=["/test"])], b"/TEST"))

    def test_regex_anchored_at_start_only(self) -> None:
        route = make_route(paths=[r"~/users/\d+"])
        self.assertRoute(match([route], b"/users/12/extra"), route)
        self.assertIsNone(match([route], b"/v1/users/12"))

    def test_regex_with_dollar_is_full_match(self) -> None:
        route = make_route(paths=[r"~/users/\d+$"])
        self.assertIsNone(match([route], b"/users/12/extra"))

    def test_query_does_not_take_part(self) -> None:
        route = make_route(paths=["~/a$"])
        self.assertRoute(match([route], b"/a?b=/c"), route)

    def test_non_origin_form_target_matches_nothing(self) -> None:
        self.assertIsNone(match([make_route(paths=["/"])], b"*"))


class RegexCaptureTests(RouterTestCase):
    def test_named_and_unnamed(self) -> None:
        route = make_route(paths=[r"~/users/(?<id>\d+)/(\w+)"])
        found = self.assertRoute(match([route], b"/users/42/posts/9"), route)
        self.assertEqual(
            found.uri_captures,
            {"unnamed": ["/users/42/posts", "42", "posts"], "named": {"id": "42"}},
        )

    def test_python_named_group_syntax_also_accepted(self) -> None:
        route = make_route(paths=[r"~/u/(?P<id>\d+)"])
        found = self.assertRoute(match([route], b"/u/7"), route)
        self.assertEqual(found.uri_captures["named"], {"id": "7"})

    def test_kongs_documented_named_groups(self) -> None:
        route = make_route(paths=[r"~/version/(?<version>\d+)/users/(?<user>\S+)"])
        found = self.assertRoute(match([route], b"/version/2/users/ada"), route)
        self.assertEqual(found.uri_captures["named"], {"version": "2", "user": "ada"})

    def test_possessive_quantifier(self) -> None:
        # "a++" keeps every "a", so "a++a" can never match: no backtracking into it.
        route = make_route(paths=[r"~/x/a++$"])
        self.assertRoute(match([route], b"/x/aaa"), route)
        self.assertIsNone(match([make_route(paths=[r"~/x/a++a"])], b"/x/aaa"))

    def test_atomic_group(self) -> None:
        route = make_route(paths=[r"~/x/(?>\d+)/y"])
        self.assertRoute(match([route], b"/x/12/y"), route)
        self.assertIsNone(match([make_route(paths=[r"~/x/(?>\d+)2"])], b"/x/12"))

    def test_pcre_constructs_pythons_re_lacks(self) -> None:
        for path, target, named in [
                (r"~/(?<w>[a-z]+)/(?&w)$", b"/ab/cd", {"w": "ab"}),  # subroutine call by name
                (r"~/(\d)(?1)$", b"/12", {}),  # subroutine call by number
                (r"~/(?'id'\d+)$", b"/7", {"id": "7"}),  # quoted group name
                (r"~/(?<c>[a-z])\k<c>$", b"/xx", {"c": "x"}),  # \k<name> back reference
                (r"~/\Qa.b\E$", b"/a.b", {}),  # quoted literal text
        ]:
            route = make_route(paths=[path])
            found = self.assertRoute(match([route], target), route)
            self.assertEqual(found.uri_captures.get("named", {}), named, path)
        self.assertIsNone(match([make_route(paths=[r"~/\Qa.b\E$"])], b"/axb"))

    def test_no_groups_no_captures(self) -> None:
        route = make_route(paths=[r"~/u/\d+"])
        self.assertEqual(self.assertRoute(match([route], b"/u/7"), route).uri_captures, {})

    def test_captures_not_shared_between_matches(self) -> None:
        router = Router.build([make_route(hosts=["h.test"])], {"svc": make_service()})
        first = router.match("GET", b"/", "h.test", {}, 8000)
        assert first is not None
        first.uri_captures["named"] = {"x": "1"}
        second = router.match("GET", b"/", "h.test", {}, 8000)
        self.assertEqual(second and second.uri_captures, {})

    def test_prefix_paths_have_no_captures(self) -> None:
        route = make_route(paths=["/u"])
        self.assertEqual(self.assertRoute(match([route], b"/u/7"), route).uri_captures, {})

    def test_regex_match_is_the_stripped_prefix(self) -> None:
        route = make_route(paths=[r"~/u/\d+"])
        found = self.assertRoute(match([route], b"/u/77/rest"), route)
        self.assertEqual(found.upstream_path, "/rest")
        self.assertEqual(found.stripped_prefix, "/u/77")


class HostMatchingTests(RouterTestCase):
    def test_plain_host(self) -> None:
        route = make_route(hosts=["api.test"])
        self.assertRoute(match([route], host="api.test"), route)
        self.assertIsNone(match([route], host="other.test"))
        self.assertIsNone(match([route], host=None))

    def test_port_in_host_header_ignored(self) -> None:
        route = make_route(hosts=["api.test"])
        self.assertRoute(match([route], host="api.test:9999"), route)

    def test_hosts_are_case_sensitive(self) -> None:
        self.assertIsNone(match([make_route(hosts=["api.test"])], host="API.test"))

    def test_left_wildcard_any_depth(self) -> None:
        route = make_route(hosts=["*.example.com"])
        self.assertRoute(match([route], host="a.example.com"), route)
        self.assertRoute(match([route], host="a.b.example.com:8000"), route)
        self.assertIsNone(match([route], host="example.com"))
        self.assertIsNone(match([route], host="a.example.org"))

    def test_right_wildcard(self) -> None:
        route = make_route(hosts=["example.*"])
        self.assertRoute(match([route], host="example.org"), route)
        self.assertRoute(match([route], host="example.co.uk"), route)
        self.assertIsNone(match([route], host="www.example.org"))

    def test_route_host_port_is_the_listening_port(self) -> None:
        route = make_route(hosts=["api.test:8443"])
        self.assertRoute(match([route], host="api.test", port=8443), route)
        self.assertIsNone(match([route], host="api.test:8443", port=8000))

    def test_wildcard_with_port(self) -> None:
        route = make_route(hosts=["*.api.test:8443"])
        self.assertRoute(match([route], host="a.api.test", port=8443), route)
        self.assertIsNone(match([route], host="a.api.test", port=8000))

    def test_any_of_the_hosts(self) -> None:
        route = make_route(hosts=["a.test", "*.b.test"])
        self.assertRoute(match([route], host="x.b.test"), route)


class MethodHeaderSniTests(RouterTestCase):
    def test_methods_exact(self) -> None:
        route = make_route(methods=["GET", "POST"])
        self.assertRoute(match([route], method="POST"), route)
        self.assertIsNone(match([route], method="PUT"))
        self.assertIsNone(match([route], method="post"))

    def test_header_values_ignore_case(self) -> None:
        route = make_route(headers={"X-Version": ["V1", "v2"]})
        self.assertRoute(match([route], headers={"x-version": ["v1"]}), route)
        self.assertRoute(match([route], headers={"x-version": ["other", "V2"]}), route)
        self.assertIsNone(match([route], headers={"x-version": ["v3"]}))
        self.assertIsNone(match([route], headers={}))

    def test_every_header_name_must_match(self) -> None:
        route = make_route(headers={"x-a": ["1"], "x-b": ["2"]})
        self.assertRoute(match([route], headers={"x-a": ["1"], "x-b": ["2"]}), route)
        self.assertIsNone(match([route], headers={"x-a": ["1"]}))

    def test_header_regex_case_insensitive_search(self) -> None:
        route = make_route(headers={"user-agent": ["~*Curl/[0-9]+"]})
        self.assertRoute(match([route], headers={"user-agent": ["my CURL/8.1"]}), route)
        self.assertIsNone(match([route], headers={"user-agent": ["wget/1"]}))

    def test_header_regex_among_plain_values(self) -> None:
        route = make_route(headers={"x-env": ["prod", "~*^dev-\\d$"]})
        self.assertRoute(match([route], headers={"x-env": ["DEV-3"]}), route)
        self.assertRoute(match([route], headers={"x-env": ["prod"]}), route)

    def test_sni_checked_on_tls_only(self) -> None:
        route = make_route(snis=["api.test."], protocols=["https"])
        self.assertRoute(match([route], scheme="https", sni="api.test"), route)
        self.assertRoute(match([route], scheme="https", sni="api.test."), route)
        self.assertIsNone(match([route], scheme="https", sni="other.test"))
        self.assertIsNone(match([route], scheme="https", sni=None))
        self.assertRoute(match([route], scheme="http"), route)

    def test_protocols_not_a_criterion(self) -> None:
        route = make_route(paths=["/"], protocols=["https"])
        self.assertRoute(match([route], scheme="http"), route)

    def test_all_attributes_must_match(self) -> None:
        route = make_route(paths=["/a"], methods=["GET"], hosts=["h.test"])
        self.assertRoute(match([route], b"/a", host="h.test"), route)
        self.assertIsNone(match([route], b"/a", host="h.test", method="POST"))
        self.assertIsNone(match([route], b"/b", host="h.test"))


class PriorityTests(RouterTestCase):
    def test_1_more_attributes_win(self) -> None:
        paths_only = make_route(paths=["/a/very/long/prefix"])
        two = make_route(paths=["/a"], methods=["GET"])
        self.assertRoute(match([paths_only, two], b"/a/very/long/prefix"), two)

    def test_2_plain_hosts_beat_wildcards(self) -> None:
        wildcard = make_route(hosts=["*.test"], paths=["/a/long"], created_at=1)
        plain = make_route(hosts=["x.test"], paths=["/a"], created_at=2)
        self.assertRoute(match([wildcard, plain], b"/a/long", host="x.test"), plain)

    def test_3_more_header_names_win(self) -> None:
        one = make_route(headers={"x-a": ["1"]}, paths=["/a/long"])
        two = make_route(headers={"x-a": ["1"], "x-b": ["2"]}, paths=["/a"])
        headers = {"x-a": ["1"], "x-b": ["2"]}
        self.assertRoute(match([one, two], b"/a/long", headers=headers), two)

    def test_4_regex_beats_any_prefix(self) -> None:
        prefix = make_route(paths=["/a/very/long/prefix"])
        regex = make_route(paths=["~/a"])
        self.assertRoute(match([prefix, regex], b"/a/very/long/prefix"), regex)

    def test_5_regex_priority(self) -> None:
        low = make_route(paths=["~/a/b"], regex_priority=1)
        high = make_route(paths=["~/a"], regex_priority=5)
        negative = make_route(paths=["~/a/b/c"], regex_priority=-3)
        self.assertRoute(match([low, negative, high], b"/a/b/c"), high)
        self.assertRoute(match([low, negative], b"/a/b/c"), low)

    def test_5_regex_priority_ignored_for_prefix_paths(self) -> None:
        boosted = make_route(paths=["/a"], regex_priority=100)
        longer = make_route(paths=["/a/b"])
        self.assertRoute(match([boosted, longer], b"/a/b"), longer)

    def test_6_longest_prefix(self) -> None:
        short = make_route(paths=["/a"])
        long = make_route(paths=["/a/b"])
        self.assertRoute(match([short, long], b"/a/b/c"), long)
        self.assertRoute(match([long, short], b"/a/b/c"), long)
        self.assertRoute(match([short, long], b"/a/c"), short)

    def test_paths_split_by_length(self) -> None:
        split = make_route(paths=["/a", "/abc/def"])
        middle = make_route(paths=["/abc"])
        self.assertRoute(match([split, middle], b"/abc/def"), split)
        self.assertRoute(match([split, middle], b"/abc/x"), middle)

    def test_split_route_strips_the_group_that_won(self) -> None:
        route = make_route(paths=["/a", "/a/b"])
        found = self.assertRoute(match([route], b"/a/b/c"), route)
        self.assertEqual((found.stripped_prefix, found.upstream_path), ("/a/b", "/c"))

    def test_regex_group_of_a_route_beats_its_prefixes(self) -> None:
        route = make_route(paths=["/u/long/prefix", r"~/u/(\w+)"])
        found = self.assertRoute(match([route], b"/u/long/prefix"), route)
        self.assertEqual(found.stripped_prefix, "/u/long")

    def test_older_created_at_breaks_ties(self) -> None:
        newer = make_route(paths=["/a"], created_at=200)
        older = make_route(paths=["/a"], created_at=100)
        self.assertRoute(match([newer, older], b"/a"), older)

    def test_configuration_order_breaks_exact_ties(self) -> None:
        first = make_route(paths=["/a"])
        second = make_route(paths=["/a"])
        self.assertRoute(match([first, second], b"/a"), first)
        self.assertRoute(match([second, first], b"/a"), second)


class ServiceSelectionTests(RouterTestCase):
    def test_routes_of_disabled_services_left_out(self) -> None:
        route = make_route(paths=["/"])
        services = {"svc": make_service(enabled=False)}
        self.assertIsNone(match([route], services=services))

    def test_route_without_service_is_routed(self) -> None:
        route = make_route(paths=["/"], service=None)
        found = self.assertRoute(match([route], b"/x"), route)
        self.assertIsNone(found.service)

    def test_stream_routes_left_out(self) -> None:
        self.assertIsNone(match([make_route(paths=["/"], protocols=["tcp"])]))

    def test_bad_regex_route_left_out_others_kept(self) -> None:
        events = self.logged()
        bad = make_route(paths=["~/(unclosed"])
        good = make_route(paths=["/"])
        self.assertRoute(match([bad, good], b"/(unclosed"), good)
        self.assertEqual([e.get("route_id") for e in events if "route_id" in e], [bad["id"]])


    def test_a_regex_that_backtracks_too_long_counts_as_not_matching(self) -> None:
        events = self.logged()
        slow = make_route(paths=[r"~/(a|aa)+$"], regex_priority=1)
        slow_header = make_route(paths=["/"], headers={"x-a": ["~*^(a|aa)+$"]})
        fallback = make_route(paths=["/"])
        target = b"/" + b"a" * 40 + b"b"
        self.assertRoute(match([slow, fallback], target), fallback)
        self.assertRoute(match([slow_header, fallback], target, headers={"x-a": ["a" * 40 + "b"]}), fallback)
        self.assertEqual(sum("gave up" in e.get("log_format", "") for e in events), 2)


class UpstreamTests(RouterTestCase):
    def test_query_passed_raw(self) -> None:
        found = match([make_route(paths=["/a"])], b"/a/b?x=%20y&z&x=1+2")
        self.assertEqual(found and found.upstream_query, "x=%20y&z&x=1+2")

    def test_no_query(self) -> None:
        found = match([make_route(paths=["/a"])], b"/a/b")
        self.assertIsNone(found and found.upstream_query)

    def test_empty_query(self) -> None:
        found = match([make_route(paths=["/a"])], b"/a/b?")
        self.assertEqual(found and found.upstream_query, "")

    def test_stripped_prefix(self) -> None:
        found = match([make_route(paths=["/api"])], b"/api/x")
        self.assertEqual(found and found.stripped_prefix, "/api")

    def test_slash_prefix_not_reported(self) -> None:
        found = match([make_route(paths=["/"])], b"/api/x")
        self.assertIsNone(found and found.stripped_prefix)

    def test_no_prefix_without_strip_path(self) -> None:
        found = match([make_route(paths=["/api"], strip_path=False)], b"/api/x")
        self.assertEqual(found and found.upstream_path, "/api/x")
        self.assertIsNone(found and found.stripped_prefix)

    def test_service_host_with_default_port_omitted(self) -> None:
        for protocol, port in (("http", 80), ("https", 443), ("grpc", 80), ("grpcs", 443)):
            service = make_service(protocol=protocol, port=port)
            found = match([make_route(paths=["/"])], services={"svc": service})
            self.assertEqual(found and found.upstream_host, "upstream.test")

    def test_service_host_with_other_port(self) -> None:
        service = make_service(protocol="https", port=80)
        found = match([make_route(paths=["/"])], services={"svc": service})
        self.assertEqual(found and found.upstream_host, "upstream.test:80")

    def test_preserve_host_keeps_client_host_as_sent(self) -> None:
        found = match([make_route(paths=["/"], preserve_host=True)], host="Client.test:8000")
        self.assertEqual(found and found.upstream_host, "Client.test:8000")

    def test_preserve_host_without_client_host_uses_service(self) -> None:
        found = match([make_route(paths=["/"], preserve_host=True)], host=None)
        self.assertEqual(found and found.upstream_host, "upstream.test")

    def test_test_route_to_testing_gives_ing(self) -> None:
        found = match([make_route(paths=["/test"])], b"/testing")
        self.assertEqual(found and found.upstream_path, "/ing")
