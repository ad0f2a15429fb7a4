"""Admin API write latency with many routes, and how long proxy requests wait behind it.

Seeds a SQLite store with ``--routes`` routes (default 10,000) on one service, starts
``twist kongish`` on it, then makes ``--writes`` Admin API writes (each creates a route,
which rebuilds the router) one after the other, while a prober sends a proxy request
every 2 ms to a pre-function route that answers without an upstream. Prints the write
latency (p50, p99, max) and the proxy latency during the writes (p99, max), against the
proxy latency measured the same way with no writes. Targets: write p99 <= 20 ms, no
proxy request waiting more than 10 ms behind a rebuild.

Usage (from the repository root): PYTHONPATH=. python benchmarks/admin_writes.py
    [--routes 10000] [--writes 200]
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


def post(url: str, fields: dict[str, str]) -> float:
    """Milliseconds the write took, answered 201."""
    data = urllib.parse.urlencode(fields).encode()
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as response:
        assert response.status == 201, response.status
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.path.join(repo, "src")]))
    proxy, admin = free_port(), free_port()
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
            writes: list[float] = []

            def write_all() -> None:
                for index in range(args.writes):
                    writes.append(post(base + "/services/many/routes",
                                       {"name": f"new{index}", "paths[]": f"/new{index}"}))
            busy = probed(target, None, write_all)
        finally:
            gateway.terminate()
            gateway.wait()
    figures = {
        "routes": args.routes,
        "write_ms": {"p50": statistics.median(writes), "p99": p99(writes), "max": max(writes)},
        "proxy_ms_quiet": {"p99": p99(quiet), "max": max(quiet), "requests": len(quiet)},
        "proxy_ms_during_writes": {"p99": p99(busy), "max": max(busy), "requests": len(busy)},
    }
    print(f"Admin write with {args.routes} routes: p50 {figures['write_ms']['p50']:.1f} ms, "
          f"p99 {figures['write_ms']['p99']:.1f} ms (target <= 20), max {figures['write_ms']['max']:.1f} ms")
    print(f"proxy request, quiet: p99 {figures['proxy_ms_quiet']['p99']:.1f} ms, "
          f"max {figures['proxy_ms_quiet']['max']:.1f} ms")
    during = figures["proxy_ms_during_writes"]
    print(f"proxy request during writes: p99 {during['p99']:.1f} ms, max {during['max']:.1f} ms "
          f"(waits behind a rebuild: max - quiet p99 = "
          f"{during['max'] - figures['proxy_ms_quiet']['p99']:.1f} ms, target <= 10)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
