"""Admin API write latency with many routes, and how long proxy requests wait behind it.

Seeds a SQLite store with ``--routes`` routes (default 10,000) on one service, starts
``twist kongish`` on it, then makes ``--writes`` Admin API writes of each kind one after the
other: route writes (each creates a route), service writes (each PATCHes the
``read_timeout`` of the service holding all the routes) and deletes (each of a service
without routes, which a delete must find among all of them), while a prober sends a proxy
request every 2 ms to a pre-function route that answers without an upstream. Prints, per
kind, the write latency (p50, p99, max) and the proxy latency during the writes (p99,
max), against the proxy latency measured the same way with no writes. Targets: write p99
<= 20 ms, no proxy request waiting more than 10 ms behind a rebuild.

Usage (from the repository root): PYTHONPATH=.:src python benchmarks/admin_writes.py
    [--routes 10000] [--writes 200] [--proxy-port N --admin-port N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

from twisted.internet.task import react

from benchmarks.seed_vs_bare import free_port, wait_for
from kongish.db.backends import open_storage
from kongish.db.dao import Database
from kongish.settings import Settings


async def _seed(reactor: Any, prefix: str, routes: int) -> None:
    """The store, written directly: a service and ``routes`` routes, one plugin route."""
    settings = Settings.load(environ={}, overrides={"prefix": prefix})
    storage = await open_storage(settings, reactor)
    database = Database(storage, lambda name: None, reactor)
    await database.load()
    await database.insert("services", {"name": "many", "url": "http://127.0.0.1:9"})
    for index in range(routes):
        await database.insert("routes", {"name": f"r{index}", "paths": [f"/r{index}"],
                                         "service": {"name": "many"}})
    assert storage is not None
    await storage.close()


def seed(prefix: str, routes: int) -> None:
    try:
        react(lambda reactor: _seed(reactor, prefix, routes))
    except SystemExit as done:  # react ends the process's reactor with SystemExit(0)
        if done.code:
            raise


def post(url: str, fields: dict[str, str], method: str = "POST", status: int = 201) -> float:
    """Milliseconds the write took, answered ``status``."""
    data = urllib.parse.urlencode(fields).encode()
    started = time.perf_counter()
    request = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == status, response.status
    return (time.perf_counter() - started) * 1000


def probe(url: str, stop: threading.Event, latencies: list[float]) -> None:
    """A proxy request every 2 ms, each on a fresh connection, until ``stop``."""
    while not stop.is_set():
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.002)


def probed(url: str, seconds: float | None, work: Any = None) -> list[float]:
    latencies: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=probe, args=(url, stop, latencies))
    prober.start()
    if work is not None:
        work()
    else:
        time.sleep(seconds or 1)
    stop.set()
    prober.join()
    return latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def latencies(values: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(values), "p99": p99(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--writes", type=int, default=200, help="writes of each kind")
    parser.add_argument("--proxy-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--admin-port", type=int, default=0, help="default: a free port")
    args = parser.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.path.join(repo, "src")]))
    proxy, admin = args.proxy_port or free_port(), args.admin_port or free_port()
    with tempfile.TemporaryDirectory() as prefix:
        started = time.perf_counter()
        seed(prefix, args.routes)
        print(f"seeded {args.routes} routes in {time.perf_counter() - started:.1f} s")
        gateway = subprocess.Popen(
            [sys.executable, "-m", "twisted", "--log-level", "warn", "kongish",
             "--proxy-listen", f"127.0.0.1:{proxy}", "--admin-listen", f"127.0.0.1:{admin}"],
            env=dict(env, KONGISH_PREFIX=prefix, KONGISH_PROXY_ACCESS_LOG="off",
                     KONGISH_ADMIN_ACCESS_LOG="off"))
        try:
            wait_for(f"http://127.0.0.1:{admin}/status", seconds=120)
            base = f"http://127.0.0.1:{admin}"
            post(base + "/services/many/routes", {"name": "probe", "paths[]": "/probe"})
            post(base + "/routes/probe/plugins", {"name": "pre-function", "config.access[]": "ngx.exit(204)"})
            target = f"http://127.0.0.1:{proxy}/probe"
            wait_for(target)
            quiet = probed(target, 3)
            route_writes: list[float] = []
            service_writes: list[float] = []
            service_deletes: list[float] = []

            def write_routes() -> None:
                for index in range(args.writes):
                    route_writes.append(post(base + "/services/many/routes",
                                             {"name": f"new{index}", "paths[]": f"/new{index}"}))

            def write_service() -> None:  # the service of every route: what its routes' upstream reads
                for index in range(args.writes):
                    service_writes.append(post(base + "/services/many", {"read_timeout": str(60_000 + index)},
                                               method="PATCH", status=200))
            def delete_services() -> None:  # services with no route, among many routes
                for index in range(args.writes):
                    service_deletes.append(post(base + f"/services/gone{index}", {}, method="DELETE",
                                                status=204))
            busy_routes = probed(target, None, write_routes)
            busy_service = probed(target, None, write_service)
            for index in range(args.writes):
                post(base + "/services", {"name": f"gone{index}", "url": "http://127.0.0.1:9"})
            busy_deletes = probed(target, None, delete_services)
        finally:
            gateway.terminate()
            gateway.wait()
    figures: dict[str, Any] = {
        "routes": args.routes,
        "proxy_ms_quiet": {"p99": p99(quiet), "max": max(quiet), "requests": len(quiet)},
    }
    print(f"proxy request, quiet: p99 {figures['proxy_ms_quiet']['p99']:.1f} ms, "
          f"max {figures['proxy_ms_quiet']['max']:.1f} ms")
    for kind, writes, busy, what in (
            ("route", route_writes, busy_routes, "POST /services/many/routes"),
            ("service", service_writes, busy_service, "PATCH /services/many read_timeout"),
            ("delete", service_deletes, busy_deletes, "DELETE /services/{name} of a service without routes")):
        write, during = latencies(writes), {"p99": p99(busy), "max": max(busy), "requests": len(busy)}
        figures[f"{kind}_write_ms"], figures[f"proxy_ms_during_{kind}_writes"] = write, during
        print(f"{kind} write ({what}) with {args.routes} routes: p50 {write['p50']:.1f} ms, "
              f"p99 {write['p99']:.1f} ms (target <= 20), max {write['max']:.1f} ms")
        print(f"  proxy request during {kind} writes: p99 {during['p99']:.1f} ms, max {during['max']:.1f} ms "
              f"(waits behind a rebuild: max - quiet p99 = "
              f"{during['max'] - figures['proxy_ms_quiet']['p99']:.1f} ms, target <= 10)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
