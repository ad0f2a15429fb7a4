"""A router built from the last build's compiled routes answers as one built afresh, and
compiles only the routes a write changed (a service's routes only when it is enabled or
disabled)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish.router import Router
from kongish.router.compiled import RouteChanges
from kongish.router.index import RouteIndex
from kongish.router.router import CompiledRoutes
from tests.test_routing_memo import SERVICES, route

PATHS = ["/a", "/b", "/a/b", r"~/r\d+$", "/"]
PROBES = [b"/a", b"/a/b/c", b"/b", b"/r12", b"/r", b"/zzz"]

#: One write to the route or service table: (kind, route number, path index).
KINDS = ["put", "put-headers", "put-host", "put-on-t", "delete", "disable", "enable", "service-path",
         "t-disable", "t-enable", "t-delete", "t-create"]
writes = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 5), st.integers(0, len(PATHS) - 1)),
                  max_size=25)
#: A second service, for routes moved off "s".
T = {"id": "t", "protocol": "https", "host": "t.test", "port": 8443, "path": "/t", "enabled": True}


def routed(router: Router, target: bytes) -> str | None:
    match = router.match("GET", target, None, {}, 8000)
    return match.route["id"] if match else None


def answers(router: Router) -> list[tuple[str, str, str, dict | None] | None]:
    found = [router.match("GET", probe, "kong.test", headers, 8000)
             for probe in PROBES for headers in ({}, {"x-v": ["1"]}, {})]
    return [(match.route["id"], match.upstream_path, match.upstream_host, match.service)
            if match else None for match in found]


def write(routes: dict[str, dict], services: dict[str, dict],
          operation: tuple[str, int, int]) -> RouteChanges:
    """Apply one write to the tables as the database does; the routes and services it touched."""
    kind, number, path = operation
    route_id = f"r{number}"
    if kind == "put":  # insert, or replace in place (a dict keeps its key's position)
        routes[route_id] = route(route_id, paths=[PATHS[path]], created_at=number)
    elif kind == "put-headers":
        routes[route_id] = route(route_id, paths=[PATHS[path]], headers={"x-v": ["1"]})
    elif kind == "put-host":  # indexed by host: no paths
        routes[route_id] = route(route_id, hosts=["kong.test", f"h{path}.test"])
    elif kind == "put-on-t":
        if "t" not in services:
            return RouteChanges({}, len(routes))
        routes[route_id] = route(route_id, paths=[PATHS[path]], service={"id": "t"})
    elif kind == "delete":
        routes.pop(route_id, None)
    elif kind == "t-delete":  # with its routes, in one batch
        touched: dict[str, dict | None] = {
            gone: None for gone in [key for key, value in routes.items() if value["service"] == {"id": "t"}]}
        for gone in touched:
            del routes[gone]
        services.pop("t", None)
        return RouteChanges(touched, len(routes), frozenset({"t"}))
    else:  # a service is replaced, as a write replaces an entity
        name = "t" if kind.startswith("t-") else "s"
        if name not in services and kind != "t-create":
            return RouteChanges({}, len(routes))
        if kind == "t-create":
            services["t"] = dict(T)
        elif kind == "service-path":
            services["s"] = {**services["s"], "path": ["/", "/base", None, "/b/", "/x"][path]}
        else:
            services[name] = {**services[name], "enabled": kind.endswith("enable")}
        return RouteChanges({}, len(routes), frozenset({name}))
    return RouteChanges({route_id: routes.get(route_id)}, len(routes))


def keys(index: RouteIndex) -> tuple[Any, ...]:
    return index.prefix_lengths, sorted(index.by_prefix), sorted(index.by_host), len(index.scanned)


class IncrementalBuildProperties(SynchronousTestCase):
    @given(writes)
    def test_same_answers_as_a_fresh_build(self, operations: list[tuple[str, int, int]]) -> None:
        routes: dict[str, dict] = {}
        services = dict(SERVICES)
        compiled, told = CompiledRoutes(), CompiledRoutes()
        for operation in operations:
            changes = write(routes, services, operation)
            incremental = Router.build(routes.values(), services, compiled)
            expected = answers(Router.build(routes.values(), services))
            self.assertEqual(answers(incremental), expected)
            self.assertEqual(answers(Router.build(routes.values(), services, told, changes)), expected)
            afresh = CompiledRoutes()
            afresh.index(routes.values(), services)
            self.assertEqual(told.services, afresh.services)

    @given(writes)
    def test_a_patched_index_is_the_index_built_afresh(self, operations: list[tuple[str, int, int]]) -> None:
        routes: dict[str, dict] = {}
        services = dict(SERVICES)
        compiled = CompiledRoutes()
        for operation in operations:
            changes = write(routes, services, operation)
            patched, _ = compiled.index(routes.values(), services, changes)
            self.assertEqual(keys(patched), keys(CompiledRoutes().index(routes.values(), services)[0]))


class IncrementalBuildTests(SynchronousTestCase):
    def test_one_write_compiles_one_route(self) -> None:
        routes = {f"r{i}": route(f"r{i}", paths=[f"/p{i}"]) for i in range(50)}
        compiled = CompiledRoutes()
        Router.build(routes.values(), SERVICES, compiled)
        self.assertEqual(compiled.compiled, 50)
        routes["r7"] = route("r7", paths=["/seven"])
        routes["r50"] = route("r50", paths=["/fifty"])
        router = Router.build(routes.values(), SERVICES, compiled)
        self.assertEqual(compiled.compiled, 52)
        self.assertEqual([routed(router, target) for target in (b"/seven", b"/p7", b"/fifty")],
                         ["r7", None, "r50"])

    def test_told_the_changes_a_build_reads_only_those_routes(self) -> None:
        routes = {f"r{i}": route(f"r{i}", paths=[f"/p{i}"]) for i in range(50)}
        compiled = CompiledRoutes()
        Router.build(routes.values(), SERVICES, compiled)
        routes["r7"] = route("r7", paths=["/seven"])
        del routes["r8"]
        changes = RouteChanges({"r7": routes["r7"], "r8": None}, len(routes))
        router = Router.build(Unread(), SERVICES, compiled, changes)
        self.assertEqual([routed(router, target) for target in (b"/seven", b"/p7", b"/p8", b"/p9")],
                         ["r7", None, None, "r9"])

    def test_told_a_service_write_a_build_reads_no_route_and_compiles_none(self) -> None:
        routes = {f"r{i}": route(f"r{i}", paths=[f"/p{i}"]) for i in range(50)}
        routes["t0"] = route("t0", paths=["/t0"], service={"id": "t"})
        services = {**SERVICES, "t": T}
        compiled = CompiledRoutes()
        first = Router.build(routes.values(), services, compiled)
        services["s"] = {**services["s"], "path": "/base", "port": 8080, "read_timeout": 5}
        router = Router.build(Unread(), services, compiled, RouteChanges({}, len(routes), frozenset({"s"})))
        self.assertEqual(compiled.compiled, 51)
        self.assertIs(router._index, first._index)
        match = router.match("GET", b"/p7/x", None, {}, 8000)
        assert match is not None
        self.assertEqual((match.upstream_path, match.upstream_host, match.service), (
            "/base/x", "upstream.test:8080", services["s"]))
        self.assertEqual(answers(router), answers(Router.build(routes.values(), services)))
        self.assertIs(first.match("GET", b"/p7", None, {}, 8000).service, SERVICES["s"])  # type: ignore[union-attr]

    def test_told_a_service_disabled_a_build_compiles_its_routes_alone(self) -> None:
        routes = {f"r{i}": route(f"r{i}", paths=[f"/p{i}"]) for i in range(50)}
        routes["t0"] = route("t0", paths=["/t0"], service={"id": "t"})
        services = {**SERVICES, "t": T}
        compiled = CompiledRoutes()
        Router.build(routes.values(), services, compiled)
        services["t"] = {**T, "enabled": False}
        router = Router.build(Unread(), services, compiled, RouteChanges({}, len(routes), frozenset({"t"})))
        self.assertEqual((compiled.compiled, routed(router, b"/t0"), routed(router, b"/p1")),
                         (52, None, "r1"))
        self.assertEqual(compiled.services, {"s": SERVICES["s"], "t": services["t"]})

    def test_a_write_that_changes_nothing_keeps_the_router(self) -> None:
        routes = {"r": route("r", paths=["/"])}
        compiled = CompiledRoutes()
        router = Router.build(routes.values(), SERVICES, compiled)
        services = {**SERVICES, "unnamed": T}
        again = Router.build(routes.values(), services, compiled, RouteChanges({}, 1, frozenset({"unnamed"})),
                             previous=router)
        self.assertIs(again, router)
        self.assertIsNot(Router.build(routes.values(), services, compiled), router)  # no previous given

    def test_changes_that_disagree_with_the_last_build_read_the_table(self) -> None:
        compiled = CompiledRoutes()
        Router.build([route("a", paths=["/a"])], SERVICES, compiled)
        routes = [route("a", paths=["/a"]), route("b", paths=["/b"])]  # "b" is not among the changes
        router = Router.build(routes, SERVICES, compiled, RouteChanges({}, len(routes)))
        self.assertEqual(routed(router, b"/b"), "b")

    def test_a_bad_regex_stays_out_until_it_changes(self) -> None:
        compiled = CompiledRoutes()
        routes = [route("bad", paths=["~/(unclosed"]), route("good", paths=["/g"])]
        router = Router.build(routes, SERVICES, compiled)
        self.assertIsNone(routed(router, b"/(unclosed"))
        router = Router.build(routes, SERVICES, compiled)
        self.assertEqual((compiled.compiled, routed(router, b"/g")), (2, "good"))


class Unread:
    """A route table that fails the test when it is read."""

    def __iter__(self) -> Iterator[dict]:
        raise AssertionError("the build read every route")
