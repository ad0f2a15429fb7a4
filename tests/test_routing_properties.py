"""Property: the indexed router picks what a brute-force scan of all routes picks.

The reference below reads Kong reference 4.2/4.3 literally: test every path
group of every route, compute the priority key from the route dict, keep the
highest.  It shares nothing with the router except path normalisation.
"""
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish.router import Router, normalize_path
from tests.test_routing_router import make_route, make_service

PATHS = ["/", "/a", "/ab", "/a/b", "/b", "/a/", "~/a", "~/a/(?P<x>b+)", "~/[ab]+$", "~/b"]
HOSTS = ["x.test", "y.test", "*.test", "x.*", "x.test:8000", "*.test:8443"]
HEADER_VALUES = ["1", "2", "~*^1", "~*x"]


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


routes = st.builds(
    make_route,
    paths=optional(st.lists(st.sampled_from(PATHS), min_size=1, max_size=3)),
    hosts=optional(st.lists(st.sampled_from(HOSTS), min_size=1, max_size=2)),
    methods=optional(st.lists(st.sampled_from(["GET", "POST"]), min_size=1, max_size=2)),
    headers=optional(
        st.dictionaries(
            st.sampled_from(["x-a", "X-B"]),
            st.lists(st.sampled_from(HEADER_VALUES), min_size=1, max_size=2),
            min_size=1,
        )
    ),
    snis=optional(st.just(["x.test"])),
    regex_priority=st.integers(-1, 2),
    created_at=st.integers(1, 3),
).filter(lambda r: any(r[f] for f in ("paths", "hosts", "methods", "headers", "snis")))

requests = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "POST", "PUT"]),
        "target": st.sampled_from(
            [b"/", b"/a", b"/ab", b"/a/b", b"/a/bb/c", b"/b", b"/abc", b"/c", b"/a/", b"/a/./b?q"]
        ),
        "host": st.sampled_from([None, "x.test", "y.test", "x.test:8000", "x.other", "a.x.test"]),
        "headers": st.dictionaries(
            st.sampled_from(["x-a", "x-b"]), st.lists(st.sampled_from(["1", "2", "X"]), min_size=1)
        ),
        "port": st.sampled_from([8000, 8443]),
        "scheme": st.sampled_from(["http", "https"]),
        "sni": st.sampled_from([None, "x.test", "y.test"]),
    }
)


def host_matches(pattern: str, host: str | None, port: int) -> bool:
    name, _, pattern_port = pattern.partition(":")
    if host is None or (pattern_port and int(pattern_port) != port):
        return False
    if name.startswith("*"):
        return host.endswith(name[1:])
    if name.endswith("*"):
        return host.startswith(name[:-1])
    return host == name


def header_matches(listed: list[str], values: list[str]) -> bool:
    for value in values:
        for wanted in listed:
            if wanted.startswith("~*"):
                if re.search(wanted[2:].lower(), value.lower()):
                    return True
            elif wanted.lower() == value.lower():
                return True
    return False


def path_groups(paths: list[str] | None) -> list[list[str] | None]:
    """Kong's split: one group per prefix length, one for the regexes."""
    if not paths:
        return [None]
    lengths = sorted({len(p) for p in paths if not p.startswith("~")})
    groups: list[list[str] | None] = [[p for p in paths if not p.startswith("~") and len(p) == n]
                                      for n in lengths]
    regexes = [p for p in paths if p.startswith("~")]
    return groups + ([regexes] if regexes else [])


def group_prefix(group: list[str], path: str) -> str | None:
    for route_path in group:
        if route_path.startswith("~"):
            found = re.match(route_path[1:], path)
            if found:
                return found.group(0)
        elif path.startswith(route_path):
            return route_path
    return None


def reference_match(route_list: list[dict[str, Any]], request: dict[str, Any]):
    """(route id, matched prefix) of the winning route group, by brute force."""
    path = normalize_path(request["target"].decode())
    host = request["host"].split(":")[0] if request["host"] else None
    best = None
    for order, route in enumerate(route_list):
        if route["methods"] and request["method"] not in route["methods"]:
            continue
        if route["hosts"] and not any(
            host_matches(h, host, request["port"]) for h in route["hosts"]
        ):
            continue
        if route["snis"] and request["scheme"] == "https" and request["sni"] not in route["snis"]:
            continue
        if route["headers"] and not all(
            header_matches(listed, request["headers"].get(name.lower(), []))
            for name, listed in route["headers"].items()
        ):
            continue
        for group in path_groups(route["paths"]):
            prefix = None if group is None else group_prefix(group, path)
            if group is not None and prefix is None:
                continue
            is_regex = bool(group) and group is not None and group[0].startswith("~")
            hosts = route["hosts"] or []
            key = (
                sum(1 for f in ("methods", "hosts", "headers", "paths", "snis") if route[f]),
                bool(hosts) and all("*" not in h for h in hosts),
                len(route["headers"] or {}),
                is_regex,
                route["regex_priority"] if is_regex else 0,
                len(group[0]) if group and not is_regex else 0,
                -route["created_at"],
                -order,
            )
            if best is None or key > best[0]:
                best = (key, route["id"], prefix)
    return None if best is None else best[1:]


class RouterAgreesWithBruteForceTests(SynchronousTestCase):
    @settings(max_examples=150, deadline=None)
    @given(st.lists(routes, max_size=8), st.lists(requests, min_size=1, max_size=5))
    def test_same_choice(self, route_list, request_list) -> None:
        router = Router.build(route_list, {"svc": make_service()})
        for request in request_list:
            found = router.match(**request)
            expected = reference_match(route_list, request)
            got = None
            if found is not None:
                prefix = found.stripped_prefix
                # stripped_prefix hides "/" and path-less routes; recover them.
                if prefix is None and found.route["paths"]:
                    prefix = "/"
                got = (found.route["id"], prefix)
            self.assertEqual(got, expected, request)
