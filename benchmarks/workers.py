"""Requests/s with one and two worker processes, and how fast a change reaches every worker.

Throughput: two gateways run side by side, one with ``nginx_worker_processes = 1`` and
one with 2 (DB-less, the same configuration), and rounds alternate between them:

  seed      the seed demo's pre-function answering with ngx.exit (no upstream leg)
  proxy     a route to an upstream (an nginx answering 200 "ok"), no plugin

Nothing is pinned: the workers, wrk and the upstream share this machine's cores, as
they would on a real two-core host; the CPU wrk itself used is printed beside each
figure (a core's worth is 1.00), since what wrk takes the workers cannot have.

Propagation: a gateway on SQLite with two workers takes 100 Admin writes, each
changing what a route answers; with ``worker_consistency = eventual`` the time from
the write's answer until both workers serve it (polling the configuration version
each worker reports on GET /status: the figure includes up to one poll's time), and
with ``strict`` the write's own latency (it answers once both workers serve it),
against the same writes on a single process.

Needs nginx and wrk (``apt-get install nginx wrk``).
Usage (from the repository root): PYTHONPATH=. python benchmarks/workers.py
    [--duration 5] [--rounds 3] [--connections 50] [--writes 100]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from benchmarks.proxy_vs_nginx import UPSTREAM_NGINX
from benchmarks.seed_vs_bare import SEED_CODE, free_port, run_wrk, wait_for


def declarative(upstream: int) -> str:
    return json.dumps({"_format_version": "3.0", "services": [
        {"name": "plain", "url": f"http://127.0.0.1:{upstream}",
         "routes": [{"name": "plain", "paths": ["/plain"]}]},
        {"name": "seed", "url": "http://dead.end.com", "routes": [{"name": "seed", "paths": ["/test"]}],
         "plugins": [{"name": "pre-function", "config": {"access": [SEED_CODE]}}]},
    ]})


@contextmanager
def gateway(work: str, name: str, env: dict[str, str], **settings: str) -> Iterator[tuple[int, int]]:
    """A ``twist kongish`` with ``settings``; yields its proxy and admin ports."""
    proxy, admin = free_port(), free_port()
    prefix = os.path.join(work, name)
    process = subprocess.Popen(
        [sys.executable, "-m", "twisted", "--log-level", "warn", "kongish",
         "--proxy-listen", f"127.0.0.1:{proxy} backlog=4096", "--admin-listen", f"127.0.0.1:{admin}"],
        env=dict(env, KONGISH_PREFIX=prefix, KONGISH_PROXY_ACCESS_LOG="off", KONGISH_ADMIN_ACCESS_LOG="off",
                 **{f"KONGISH_{key.upper()}": value for key, value in settings.items()}))
    try:
        wait_for(f"http://127.0.0.1:{admin}/status")
        yield proxy, admin
    finally:
        process.terminate()
        process.wait()


def wrk_with_its_cpu(url: str, duration: int, connections: int) -> tuple[float, float]:
    """(requests per second, the cores' worth of CPU wrk used meanwhile)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rate, _ = run_wrk(url, duration, connections)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rate, used / duration


def admin_call(admin: int, method: str, path: str, fields: dict[str, str]) -> float:
    """Seconds the Admin API took to answer one form request."""
    connection = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
    started = time.perf_counter()
    connection.request(method, path, urllib.parse.urlencode(fields),
                       {"Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    body = response.read()
    took = time.perf_counter() - started
    connection.close()
    if response.status >= 300:
        raise SystemExit(f"{method} {path}: {response.status} {body!r}")
    return took


def served_versions(admin: int) -> list[int]:
    """The configuration version each worker serves, as GET /status reports them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/status") as response:
        return [worker["configuration_version"] for worker in json.load(response)["workers"]]


def answering(text: str) -> str:
    return f"ngx.say({text!r}) return ngx.exit(200)"


def writes(admin: int, count: int, poll: bool) -> tuple[list[float], list[float]]:
    """Write latencies and, when ``poll``, times until both workers served each write."""
    admin_call(admin, "POST", "/services", {"name": "s", "url": "http://127.0.0.1:1"})
    admin_call(admin, "POST", "/services/s/routes", {"name": "r", "paths[]": "/r"})
    admin_call(admin, "POST", "/routes/r/plugins",
               {"name": "pre-function", "config.access[]": answering("v0")})
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/routes/r/plugins") as response:
        plugin = json.load(response)["data"][0]["id"]
    latencies, served = [], []
    while poll and not _both_serve_the_same(served_versions(admin)):  # started, and at the setup
        time.sleep(0.01)
    for version in range(1, count + 1):
        before = max(served_versions(admin)) if poll else 0
        latencies.append(admin_call(admin, "PATCH", f"/plugins/{plugin}",
                                    {"config.access[]": answering(f"v{version}")}))
        if not poll:
            continue
        answered = time.perf_counter()
        while min(served_versions(admin)) <= before:  # one change per write: version ``before + 1``
            if time.perf_counter() - answered > 10:
                raise SystemExit(f"write {version} not served by both workers within 10 s")
        served.append(time.perf_counter() - answered)
    return latencies, served


def _both_serve_the_same(versions: list[int]) -> bool:
    return len(versions) == 2 and versions[0] == versions[1]


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:6.1f} ms   p99 {p99 * 1000:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each target")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--writes", type=int, default=100)
    args = parser.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    for tool in (nginx, "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed: apt-get install nginx wrk")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.path.join(repo, "src")]))
    upstream = free_port()
    with tempfile.TemporaryDirectory() as work:
        conf = os.path.join(work, "upstream.conf")
        with open(conf, "w") as file:
            file.write(UPSTREAM_NGINX.format(dir=work, name="upstream", port=upstream, upstream=upstream))
        nginx_process = subprocess.Popen([nginx, "-c", conf, "-p", work], stderr=subprocess.DEVNULL)
        try:
            config = declarative(upstream)
            with gateway(work, "one", env, database="off", declarative_config_string=config,
                         nginx_worker_processes="1") as (one, _), \
                    gateway(work, "two", env, database="off", declarative_config_string=config,
                            nginx_worker_processes="2") as (two, _):
                targets = {f"{path_name}, {workers} worker{'s' if workers > 1 else ''}":
                           f"http://127.0.0.1:{port}{path}"
                           for path_name, path in (("seed", "/test?name=Kong"), ("proxy", "/plain"))
                           for workers, port in ((1, one), (2, two))}
                for url in targets.values():
                    wait_for(url)
                    run_wrk(url, 2, args.connections)  # warm-up
                runs: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
                for _ in range(args.rounds):
                    for name, url in targets.items():
                        runs[name].append(wrk_with_its_cpu(url, args.duration, args.connections))
            with gateway(work, "eventual", env, nginx_worker_processes="2",
                         worker_consistency="eventual") as (proxy, admin):
                eventual_writes, eventual_served = writes(admin, args.writes, poll=True)
            with gateway(work, "strict", env, nginx_worker_processes="2") as (proxy, admin):
                strict_writes, _ = writes(admin, args.writes, poll=False)
            with gateway(work, "single", env, nginx_worker_processes="1") as (proxy, admin):
                single_writes, _ = writes(admin, args.writes, poll=False)
        finally:
            nginx_process.terminate()
            nginx_process.wait()
    medians = {name: (statistics.median(rate for rate, _ in results),
                      statistics.median(cpu for _, cpu in results)) for name, results in runs.items()}
    for name, (rate, cpu) in medians.items():
        print(f"{name:24s} {rate:10.1f} req/s   wrk used {cpu:4.2f} cores   (median of {args.rounds})")
    for kind in ("seed", "proxy"):
        ratio = medians[f"{kind}, 2 workers"][0] / medians[f"{kind}, 1 worker"][0]
        target = " (target >= 1.6)" if kind == "seed" else ""
        print(f"{kind}: 2 workers / 1 worker{target:16s} {ratio:6.3f}")
    print(f"eventual: write answered -> served by both workers   {percentiles(eventual_served)}")
    print(f"eventual: write latency                              {percentiles(eventual_writes)}")
    print(f"strict:   write latency (both workers serve it)      {percentiles(strict_writes)}")
    print(f"single process: write latency                        {percentiles(single_writes)}")


if __name__ == "__main__":
    main()
