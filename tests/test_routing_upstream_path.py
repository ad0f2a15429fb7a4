"""Tests for the upstream path (Kong reference 4.5): the worked examples, escaping, queries."""
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish.router import Router
from kongish.router.upstream_path import build_upstream_path, escape_path
from tests.test_routing_router import make_route, make_service

#: service.path, route path, request, v0 strip, v0 no strip, v1 strip, v1 no strip.
WORKED_EXAMPLES = [
    ("/s", "/fv0", "/fv0req", "/s/req", "/s/fv0req", "/sreq", "/sfv0req"),
    ("/s", "/fv0", "/fv0/req", "/s/req", "/s/fv0/req", "/s/req", "/sfv0/req"),
    ("/s", "/fv0/", "/fv0/req", "/s/req", "/s/fv0/req", "/sreq", "/sfv0/req"),
    ("/s/", "/fv0", "/fv0req", "/s/req", "/s/fv0req", "/s/req", "/s/fv0req"),
    ("/s/", "/fv0", "/fv0/req", "/s/req", "/s/fv0/req", "/s/req", "/s/fv0/req"),
    ("/s", "/fv0", "/fv0", "/s", "/s/fv0", "/s", "/sfv0"),
    ("/s", "/fv0", "/fv0/", "/s/", "/s/fv0/", "/s/", "/sfv0/"),
    ("/s/", "/fv0", "/fv0", "/s", "/s/fv0", "/s/", "/s/fv0"),
    (None, "/test", "/test", "/", "/test", "/", "/test"),
    (None, "/test", "/test/a", "/a", "/test/a", "/a", "/test/a"),
    (None, "/test", "/testing", "/ing", "/testing", "/ing", "/testing"),
]

#: Column of WORKED_EXAMPLES for each (path_handling, strip_path).
COLUMNS = {("v0", True): 3, ("v0", False): 4, ("v1", True): 5, ("v1", False): 6}

#: Characters Kong forwards without escaping.
ALLOWED = set("!#$&'()*+,/:;=?@[]-_.~%") | set(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
)


def proxied_path(service_path, route_path, request, handling, strip_path) -> str:
    """The upstream path the router computes for one worked example."""
    router = Router.build(
        [make_route(paths=[route_path], strip_path=strip_path, path_handling=handling)],
        {"svc": make_service(path=service_path)},
    )
    match = router.match("GET", request.encode(), "kongish.test", {}, 8000)
    assert match is not None
    return match.upstream_path


class WorkedExamplesTests(SynchronousTestCase):
    """Every row of the table, through the router, in all four columns."""

    def assertColumn(self, handling: str, strip_path: bool) -> None:
        column = COLUMNS[handling, strip_path]
        for row in WORKED_EXAMPLES:
            service_path, route_path, request = row[:3]
            self.assertEqual(
                proxied_path(service_path, route_path, request, handling, strip_path),
                row[column],
                f"row {row[:3]}",
            )

    def test_v0_strip(self) -> None:
        self.assertColumn("v0", True)

    def test_v0_no_strip(self) -> None:
        self.assertColumn("v0", False)

    def test_v1_strip(self) -> None:
        self.assertColumn("v1", True)

    def test_v1_no_strip(self) -> None:
        self.assertColumn("v1", False)

    def test_path_handling_defaults_to_v0(self) -> None:
        self.assertEqual(proxied_path("/s", "/fv0", "/fv0req", None, True), "/s/req")


class BuildUpstreamPathTests(SynchronousTestCase):
    def test_no_path_match_strips_only_the_leading_slash(self) -> None:
        self.assertEqual(build_upstream_path("/s", "/a/b", None, True), "/s/a/b")
        self.assertEqual(build_upstream_path("/s", "/", None, True), "/s")

    def test_leading_dot_segment_of_the_rest_dropped(self) -> None:
        # Request path "/fv0.." is already normalised; its rest must not climb up.
        self.assertEqual(build_upstream_path("/s", "/fv0..", "/fv0", True), "/s")
        self.assertEqual(build_upstream_path("/s", "/fv0../x", "/fv0", True), "/s/x")
        self.assertEqual(build_upstream_path("/s", "/fv0./x", "/fv0", True), "/s/x")

    def test_v0_base_with_slash_and_request_with_slash(self) -> None:
        self.assertEqual(build_upstream_path("/s/", "/fv0/", "/fv0/", True), "/s/")

    def test_v0_no_strip_root_request(self) -> None:
        self.assertEqual(build_upstream_path("/s", "/", "/", False), "/s")
        self.assertEqual(build_upstream_path("/s/", "/", "/", False), "/s/")


class EscapeTests(SynchronousTestCase):
    def test_allowed_characters_kept(self) -> None:
        text = "/!#$&'()*+,/:;=?@[]-_.~%41azAZ09"
        self.assertEqual(escape_path(text), text)

    def test_others_escaped_with_upper_case_hex(self) -> None:
        self.assertEqual(escape_path('/a b"<>\\^`{|}'), "/a%20b%22%3C%3E%5C%5E%60%7B%7C%7D")

    def test_utf8_escaped_bytewise(self) -> None:
        self.assertEqual(escape_path("/café"), "/caf%C3%A9")

    @settings(max_examples=200)
    @given(st.text())
    def test_escaping_twice_changes_nothing(self, text: str) -> None:
        once = escape_path(text)
        self.assertEqual(escape_path(once), once)

    def test_router_escapes_decoded_characters(self) -> None:
        self.assertEqual(proxied_path(None, "/a", "/a/%20%C3%A9%ff", "v0", False), "/a/%20%C3%A9%FF")

    @settings(max_examples=200)
    @given(
        st.one_of(st.none(), st.sampled_from(["/", "/s", "/s/", "/a b/"])),
        st.sampled_from(["/", "/t", "/t/", "~/t[^/]*", "~/(?<x>.)"]),
        st.text(min_size=0, max_size=12),
        st.sampled_from(["v0", "v1"]),
        st.booleans(),
    )
    def test_upstream_path_rooted_and_safe(self, base, route_path, tail, handling, strip) -> None:
        routes = [
            make_route(paths=[route_path], strip_path=strip, path_handling=handling),
            make_route(paths=["/"], strip_path=strip, path_handling=handling),
        ]
        router = Router.build(routes, {"svc": make_service(path=base)})
        match = router.match("GET", ("/t" + tail).encode(), "kongish.test", {}, 8000)
        assert match is not None  # the "/" route matches every rooted path
        self.assertTrue(match.upstream_path.startswith("/"), match.upstream_path)
        self.assertLessEqual(set(match.upstream_path), ALLOWED, match.upstream_path)
