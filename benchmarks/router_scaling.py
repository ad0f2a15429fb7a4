"""How routing cost grows with the number of routes.

Builds routers with 10 to 10000 prefix-path routes (plus a tenth as many
host-only routes and a fixed handful of regex routes), then times
``Router.match`` for requests that hit a prefix route, hit a host route, and
match nothing.  Matching is indexed, so the 10000/10 ratio should stay near 1.

Run: PYTHONPATH=src python benchmarks/router_scaling.py
"""
from __future__ import annotations

import random
import time

from kongish.router import Router

SIZES = (10, 100, 1000, 10000)
CALLS = 20000
REGEX_ROUTES = 5


def build_router(size: int) -> Router:
    service = {"id": "svc", "protocol": "http", "host": "upstream.test", "port": 80, "path": None}
    routes = [
        {"id": f"p{i}", "created_at": i, "paths": [f"/service-{i}/v1"], "service": {"id": "svc"}}
        for i in range(size)
    ]
    routes += [
        {"id": f"h{i}", "created_at": i, "hosts": [f"host-{i}.test"], "service": {"id": "svc"}}
        for i in range(max(1, size // 10))
    ]
    routes += [
        {"id": f"r{i}", "created_at": i, "paths": [rf"~/regex-{i}/(\d+)$"], "service": {"id": "svc"}}
        for i in range(REGEX_ROUTES)
    ]
    return Router.build(routes, {"svc": service})


def per_call(router: Router, requests: list[tuple[bytes, str]]) -> float:
    """Mean seconds per ``match`` call over ``CALLS`` calls cycling through ``requests``.

    The router remembers decisions per (method, path, host, ...), so every call
    gets a path of its own: this measures the index, not the remembered answers.
    """
    match = router.match
    count = len(requests)
    targets = [(requests[i % count][0].replace(b"?", f"/{i}?".encode(), 1)
                if b"?" in requests[i % count][0] else requests[i % count][0] + f"/{i}".encode(),
                requests[i % count][1]) for i in range(CALLS)]
    start = time.perf_counter()
    for target, host in targets:
        match("GET", target, host, {}, 8000)
    return (time.perf_counter() - start) / CALLS


def remembered_per_call(router: Router, request: tuple[bytes, str]) -> float:
    """Mean seconds per ``match`` call when the same request repeats (a remembered decision)."""
    target, host = request
    router.match("GET", target, host, {}, 8000)
    start = time.perf_counter()
    for _ in range(CALLS):
        router.match("GET", target, host, {}, 8000)
    return (time.perf_counter() - start) / CALLS


def main() -> None:
    rng = random.Random(7)
    results: dict[int, dict[str, float]] = {}
    for size in SIZES:
        router = build_router(size)
        hosts = max(1, size // 10)
        cases = {
            "prefix hit": [
                (f"/service-{rng.randrange(size)}/v1/items?x=1".encode(), "kongish.test")
                for _ in range(500)
            ],
            "host hit": [(b"/anything", f"host-{rng.randrange(hosts)}.test") for _ in range(500)],
            "no match": [
                (f"/missing-{rng.randrange(10**6)}/x".encode(), "nowhere.test") for _ in range(500)
            ],
        }
        assert router.match("GET", cases["prefix hit"][0][0], "kongish.test", {}, 8000)
        assert router.match("GET", b"/nothing", "nowhere.test", {}, 8000) is None
        results[size] = {name: per_call(router, reqs) for name, reqs in cases.items()}
        results[size]["repeated hit"] = remembered_per_call(router, cases["prefix hit"][0])

    names = list(results[SIZES[0]])
    print(f"{'routes':>8} " + " ".join(f"{name:>14}" for name in names))
    for size in SIZES:
        print(f"{size:>8} " + " ".join(f"{results[size][n] * 1e6:>11.2f} us" for n in names))
    ratios = " ".join(f"{results[SIZES[-1]][n] / results[SIZES[0]][n]:>14.2f}" for n in names)
    print(f"{'ratio':>8} {ratios}   ({SIZES[-1]} routes / {SIZES[0]} routes)")


if __name__ == "__main__":
    main()
