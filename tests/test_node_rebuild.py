"""A node rebuilds from what each write changed: its router answers as one built afresh from
the tables, whether the changes are its own writes or a batch another writer made (read back
from the change feed); a write to one route looks at that route alone, and a write to a
service compiles none of its routes unless it enables or disables them."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from hypothesis import example, given, settings
from hypothesis import strategies as st

from kongish.db.dao import Database
from kongish.node import Node
from kongish.plugins.registry import PluginRegistry
from kongish.router import Router
from kongish.settings import Settings
from tests.test_dao import DatabaseCase

PATHS = ["/a", "/b", "/a/b", r"~/r\d+$", "/"]
PROBES = [(b"/a", None), (b"/a/b/c", None), (b"/b", "h1.test"), (b"/r12", None), (b"/zzz", "h0.test")]

#: The second service's id, so routes name it whatever its name is now.
T_ID = "7c1d6a52-8a3e-4f43-9b7f-0d3f8a1c2e55"
#: Writes to service "s", by variant: what its routes' upstream reads, and its protocol.
SERVICE_PATCHES: list[dict[str, Any]] = [
    {"path": "/base/"}, {"path": None}, {"protocol": "https", "port": 443},
    {"protocol": "http", "port": 8080}, {"read_timeout": 1234, "host": "other.test"}]

#: (kind, route number, variant); "sync" makes the follower read what was written since its last.
KINDS = ["put", "put-host", "put-headers", "put-on-t", "delete", "delete-and-store-again",
         "service-off", "service-on", "service-patch", "t-create", "t-off", "t-on", "t-rename",
         "t-delete", "empty-create", "empty-delete", "plugin", "sync"]
steps = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 2), st.integers(0, len(PATHS) - 1)),
                 max_size=25)


def answers(router: Router) -> list[tuple[str, str, str, dict[str, Any] | None] | None]:
    """Per probe: the route, the upstream path and Host, and the service as the router has it."""
    found = [router.match("GET", target, host, headers, 8000)
             for target, host in PROBES for headers in ({}, {"x-v": ["1"]})]
    return [(match.route["name"], match.upstream_path, match.upstream_host, match.service)
            if match else None for match in found]


def answers_for(router: Router, target: bytes) -> str | None:
    match = router.match("GET", target, None, {}, 8000)
    return match.route["name"] if match else None


def fresh(database: Database) -> Router:
    return Router.build(database.tables["routes"].values(), database.tables["services"])


class NodeRebuildTests(DatabaseCase):
    def node(self, database: Database) -> Node:
        registry = cast(PluginRegistry, SimpleNamespace(lookup=lambda name: None))
        return Node(Settings.load(environ={}), database, registry, database.clock)

    def write(self, database: Database, kind: str, number: int, variant: int) -> None:
        name = f"r{number}"
        body: dict[str, Any] = {"service": {"name": "s"}, "paths": [PATHS[variant]]}
        if kind == "put-host":
            body = {"service": {"name": "s"}, "hosts": ["h0.test", f"h{variant}.test"]}
        elif kind == "put-headers":
            body["headers"] = {"x-v": ["1"]}
        existing = database.find("routes", name)
        if kind in ("put", "put-host", "put-headers"):
            self.done(database.upsert("routes", name, body))
        elif kind == "delete" and existing is not None:
            self.done(database.delete("routes", name))
        elif kind == "delete-and-store-again" and existing is not None:  # the same id, now last
            self.done(database.delete("routes", name))
            self.done(database.upsert("routes", existing["id"], {**body, "name": name}))
        elif kind == "put-on-t" and T_ID in database.tables["services"]:
            self.done(database.upsert("routes", name, {**body, "service": {"id": T_ID}}))
        elif kind in ("service-off", "service-on"):
            self.done(database.update("services", "s", {"enabled": kind == "service-on"}))
        elif kind == "service-patch":
            self.done(database.update("services", "s", SERVICE_PATCHES[variant]))
        elif kind == "t-create" and T_ID not in database.tables["services"]:
            self.done(database.insert("services", {"id": T_ID, "name": "t", "host": "t.test", "port": 81}))
            self.done(database.insert("plugins", {  # deleting the service deletes it with it
                "name": "pre-function", "service": {"id": T_ID}, "config": {"access": ["x=1"]}}))
        elif kind in ("t-off", "t-on", "t-rename") and T_ID in database.tables["services"]:
            service = database.tables["services"][T_ID]
            change = {"name": "t2" if service["name"] == "t" else "t"} if kind == "t-rename" else {
                "enabled": kind == "t-on"}
            self.done(database.update("services", T_ID, change))
        elif kind == "t-delete" and T_ID in database.tables["services"]:  # its routes first
            for route in [route for route in database.tables["routes"].values()
                          if route["service"] == {"id": T_ID}]:
                self.done(database.delete("routes", route["id"]))
            self.done(database.delete("services", T_ID))
        elif kind == "empty-create" and database.find("services", "e") is None:
            self.done(database.insert("services", {"name": "e", "host": "e.test"}))
        elif kind == "empty-delete":
            self.done(database.delete("services", "e"))
        elif kind == "plugin" and existing is not None:
            self.done(database.upsert("plugins", f"p{number}", {
                "name": "pre-function", "route": {"id": existing["id"]}, "config": {"access": ["x=1"]}}))

    @settings(derandomize=True, max_examples=300)
    @given(steps)
    # two routes tie but for their place, and one batch moves the first one last
    @example([("put", 0, 0), ("put", 1, 0), ("sync", 0, 0), ("delete-and-store-again", 0, 0)])
    # a service's routes left out and back, its upstream and protocol changed, in one batch each
    @example([("put", 0, 0), ("put-host", 1, 1), ("sync", 0, 0), ("service-off", 0, 0),
              ("service-patch", 0, 2), ("sync", 0, 0), ("service-on", 0, 0), ("service-patch", 0, 0),
              ("service-patch", 0, 4), ("sync", 0, 0)])
    # routes moved to another service, which is renamed, disabled, then deleted with them (and
    # its plugin) in one batch
    @example([("put", 0, 0), ("t-create", 0, 0), ("put-on-t", 1, 2), ("put-on-t", 0, 0), ("sync", 0, 0),
              ("t-rename", 0, 0), ("t-off", 0, 0), ("sync", 0, 0), ("t-on", 0, 0), ("t-delete", 0, 0),
              ("put-on-t", 2, 0), ("sync", 0, 0)])
    # a service no route names comes and goes
    @example([("put", 0, 0), ("empty-create", 0, 0), ("sync", 0, 0), ("empty-delete", 0, 0),
              ("service-patch", 0, 1), ("sync", 0, 0)])
    def test_same_answers_as_a_fresh_build(self, operations: list[tuple[str, int, int]]) -> None:
        path = self.mktemp() + ".db"
        writer = self.open(path)
        self.done(writer.insert("services", {"name": "s", "host": "upstream.test"}))
        follower = self.open(path)
        writing, following = self.node(writer), self.node(follower)
        for kind, number, variant in operations:
            if kind == "sync":
                self.done(follower.catch_up())
                self.assertSameRouter(following.router, follower)
            else:
                self.write(writer, kind, number, variant)
            self.assertSameRouter(writing.router, writer)
        self.done(follower.catch_up())
        self.assertSameRouter(following.router, follower)

    def assertSameRouter(self, router: Router, database: Database) -> None:
        """The same answers as a router built afresh, with the same services (those its routes
        name, as the tables hold them)."""
        built = fresh(database)
        self.assertEqual(answers(router), answers(built))
        self.assertEqual(router._services, built._services)

    def test_a_route_write_compiles_that_route_alone(self) -> None:
        database = self.open()
        self.done(database.insert("services", {"name": "s", "host": "upstream.test"}))
        for number in range(20):
            self.done(database.insert("routes", {"name": f"r{number}", "paths": [f"/p{number}"],
                                                 "service": {"name": "s"}}))
        node = self.node(database)
        compiled = node.compiled_routes.compiled
        self.done(database.update("routes", "r3", {"paths": ["/three"]}))
        self.done(database.insert("routes", {"name": "new", "paths": ["/new"], "service": {"name": "s"}}))
        self.done(database.delete("routes", "r4"))
        self.assertEqual(node.compiled_routes.compiled, compiled + 2)
        targets = (b"/three", b"/p3", b"/new", b"/p4")
        self.assertEqual([answers_for(node.router, target) for target in targets], ["r3", None, "new", None])

    def test_a_write_elsewhere_keeps_the_router(self) -> None:
        database = self.open()
        self.done(database.insert("services", {"name": "s", "host": "upstream.test"}))
        self.done(database.insert("routes", {"name": "r", "paths": ["/"], "service": {"name": "s"}}))
        node = self.node(database)
        router, plugin_map = node.router, node.plugin_map
        self.done(database.insert("consumers", {"username": "u"}))
        self.assertIs(node.router, router)
        self.assertIs(node.plugin_map, plugin_map)
        self.done(database.insert("plugins", {"name": "pre-function", "config": {"access": ["x=1"]}}))
        self.assertIs(node.router, router)


    def routes_on_one_service(self, count: int) -> tuple[Database, Node]:
        database = self.open()
        self.done(database.insert("services", {"name": "s", "host": "upstream.test"}))
        self.done(database.insert("services", {"name": "other", "host": "other.test"}))
        for number in range(count):
            self.done(database.insert("routes", {"name": f"r{number}", "paths": [f"/p{number}"],
                                                 "service": {"name": "s"}}))
        self.done(database.insert("routes", {"name": "o", "paths": ["/o"], "service": {"name": "other"}}))
        return database, self.node(database)

    def test_a_service_write_compiles_no_route(self) -> None:
        database, node = self.routes_on_one_service(20)
        compiled, index = node.compiled_routes.compiled, node.router._index
        service_id = _id(database, "services", "s")
        for change in ({"read_timeout": 5}, {"protocol": "https", "port": 8443}, {"path": "/base"},
                       {"name": "renamed"}, {"enabled": True}):
            self.done(database.update("services", service_id, change))
        self.assertEqual(node.compiled_routes.compiled, compiled)
        self.assertIs(node.router._index, index)
        match = node.router.match("GET", b"/p3/x", "kong.test", {}, 8000)
        assert match is not None and match.service is not None
        self.assertEqual((match.service["name"], match.service["read_timeout"], match.service["protocol"]),
                         ("renamed", 5, "https"))
        self.assertEqual((match.upstream_host, match.upstream_path), ("upstream.test:8443", "/base/x"))
        self.assertEqual(answers(node.router), answers(fresh(database)))

    def test_a_service_protocol_changes_the_upstream_host_it_leaves_out(self) -> None:
        database, node = self.routes_on_one_service(3)
        self.done(database.update("services", "s", {"protocol": "https", "port": 443}))
        match = node.router.match("GET", b"/p1", "kong.test", {}, 8000)
        assert match is not None and match.service is not None
        self.assertEqual((match.upstream_host, match.service["protocol"]), ("upstream.test", "https"))
        self.done(database.update("services", "s", {"protocol": "http"}))
        match = node.router.match("GET", b"/p1", "kong.test", {}, 8000)
        assert match is not None
        self.assertEqual(match.upstream_host, "upstream.test:443")

    def test_disabling_a_service_compiles_its_routes_alone(self) -> None:
        for count in (20, 100):  # the index patched, then (too many entries) built afresh
            database, node = self.routes_on_one_service(count)
            compiled = node.compiled_routes.compiled
            self.done(database.update("services", "s", {"enabled": False}))
            self.assertEqual([answers_for(node.router, target) for target in (b"/p3", b"/o")], [None, "o"])
            self.assertSameRouter(node.router, database)
            self.done(database.update("services", "s", {"enabled": True}))
            self.assertEqual([answers_for(node.router, target) for target in (b"/p3", b"/o")], ["r3", "o"])
            self.assertEqual(node.compiled_routes.compiled, compiled + 2 * count)
            self.assertSameRouter(node.router, database)

    def test_a_service_no_route_names_keeps_the_router(self) -> None:
        database, node = self.routes_on_one_service(5)
        router, compiled = node.router, node.compiled_routes.compiled
        self.done(database.insert("services", {"name": "empty", "host": "e.test"}))
        self.done(database.update("services", "empty", {"read_timeout": 5}))
        self.done(database.delete("services", "empty"))
        self.assertIs(node.router, router)
        self.assertEqual(node.compiled_routes.compiled, compiled)
        # a route named it later finds it as it is then
        self.done(database.insert("services", {"name": "later", "host": "later.test"}))
        self.done(database.insert("routes", {"name": "l", "paths": ["/l"], "service": {"name": "later"}}))
        match = node.router.match("GET", b"/l", "kong.test", {}, 8000)
        assert match is not None and match.service is not None
        self.assertEqual((match.service["name"], match.upstream_host), ("later", "later.test"))

    def test_a_service_deleted_with_its_routes_in_one_batch(self) -> None:
        path = self.mktemp() + ".db"
        writer = self.open(path)
        self.done(writer.insert("services", {"name": "s", "host": "upstream.test"}))
        self.done(writer.insert("services", {"name": "t", "host": "t.test"}))
        for name, service in (("a", "s"), ("b", "t"), ("c", "t")):
            self.done(writer.insert("routes", {"name": name, "paths": ["/"] if name == "a" else [f"/{name}"],
                                               "service": {"name": service}}))
        self.done(writer.insert("plugins", {"name": "pre-function", "service": {"name": "t"},
                                            "config": {"access": ["x=1"]}}))
        follower = self.open(path)
        following = self.node(follower)
        self.assertEqual(answers_for(following.router, b"/b"), "b")
        for name in ("b", "c"):
            self.done(writer.delete("routes", name))
        self.done(writer.delete("services", "t"))  # and its plugin with it
        compiled = following.compiled_routes.compiled
        self.done(follower.catch_up())
        self.assertEqual(following.compiled_routes.compiled, compiled)
        self.assertEqual([answers_for(following.router, target) for target in (b"/b", b"/c")], ["a", "a"])
        self.assertEqual(answers(following.router), answers(fresh(follower)))
        self.assertEqual(sorted(service["name"] for service in following.router._services.values()), ["s"])


def _id(database: Database, entity_type: str, name: str) -> str:
    found = database.find(entity_type, name)
    assert found is not None
    return found["id"]
