"""The router's remembered decisions never change its answers."""
from twisted.trial.unittest import SynchronousTestCase

from kongish.router import Router
from kongish.router import router as router_module


def route(route_id: str, **fields) -> dict:
    base = {"id": route_id, "created_at": 1, "protocols": ["http", "https"], "methods": None,
            "hosts": None, "paths": None, "headers": None, "snis": None, "strip_path": True,
            "preserve_host": False, "regex_priority": 0, "path_handling": "v0",
            "service": {"id": "s"}}
    return {**base, **fields}


SERVICES = {"s": {"id": "s", "protocol": "http", "host": "upstream.test", "port": 80,
                  "path": None, "enabled": True}}


def match(router: Router, target: bytes, headers=None, host="kong.test"):
    return router.match("GET", target, host, headers or {}, 8000)


class RememberedDecisionTests(SynchronousTestCase):
    def test_query_is_taken_from_each_request(self) -> None:
        router = Router.build([route("r", paths=["/a"])], SERVICES)
        self.assertEqual(match(router, b"/a/x?one=1").upstream_query, "one=1")
        self.assertEqual(match(router, b"/a/x?two=2").upstream_query, "two=2")
        self.assertIsNone(match(router, b"/a/x").upstream_query)
        self.assertEqual(match(router, b"/a/x").upstream_path, "/x")

    def test_captures_are_copies(self) -> None:
        router = Router.build([route("r", paths=[r"~/items/(?<item>\d+)"])], SERVICES)
        first = match(router, b"/items/42")
        first.uri_captures["named"]["item"] = "changed"
        self.assertEqual(match(router, b"/items/42").uri_captures["named"]["item"], "42")

    def test_misses_are_remembered_as_misses(self) -> None:
        router = Router.build([route("r", paths=["/a"])], SERVICES)
        self.assertIsNone(match(router, b"/b"))
        self.assertIsNone(match(router, b"/b"))
        self.assertEqual(match(router, b"/a").route["id"], "r")

    def test_header_routes_are_never_answered_from_memory(self) -> None:
        router = Router.build([route("h", paths=["/a"], headers={"x-v": ["1"]}),
                               route("p", paths=["/a"])], SERVICES)
        self.assertEqual(match(router, b"/a", {"x-v": ["1"]}).route["id"], "h")
        self.assertEqual(match(router, b"/a", {"x-v": ["2"]}).route["id"], "p")
        self.assertEqual(match(router, b"/a", {"x-v": ["1"]}).route["id"], "h")

    def test_hosts_are_part_of_the_decision(self) -> None:
        router = Router.build([route("h", hosts=["one.test"]), route("p", paths=["/"])], SERVICES)
        self.assertEqual(match(router, b"/", host="one.test").route["id"], "h")
        self.assertEqual(match(router, b"/", host="two.test").route["id"], "p")

    def test_memory_is_bounded(self) -> None:
        self.patch(router_module, "DECISION_CACHE_SIZE", 10)
        router = Router.build([route("r", paths=["/"])], SERVICES)
        for number in range(25):
            self.assertEqual(match(router, f"/{number}".encode()).upstream_path, f"/{number}")
        self.assertLessEqual(len(router._decisions), 10)
