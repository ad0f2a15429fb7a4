"""How long a write on one kongish node takes to be served by another on the same PostgreSQL.

Starts a PostgreSQL server of its own (``tests/postgres.py``: the machine's PostgreSQL
binaries, a temporary directory, a free loopback port), bootstraps a database with
``kongish migrations``, and starts two ``twist kongish`` nodes on it (one process
each). Then, 200 times: a PATCH on node A changes what a route answers, and node B is
polled (on one kept-alive connection, as fast as it answers) until it serves the
change; the time from A's answer to B's first changed answer is one sample. Prints
p50 and p99; the target is p99 <= 500 ms (Kong's default polling takes up to about 10 s).

Usage (from the repository root): PYTHONPATH=.:src python benchmarks/cluster_propagation.py
    [--writes 200]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

from benchmarks.seed_vs_bare import wait_for
from benchmarks.workers import gateway
from tests import postgres


def call(port: int, method: str, path: str, fields: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = urllib.parse.urlencode(fields) if fields else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    connection.request(method, path, body, headers)
    response = connection.getresponse()
    answer = response.status, response.read()
    connection.close()
    return answer


def answering(text: str) -> str:
    return f"ngx.say({text!r}) return ngx.exit(200)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    server = postgres.OwnServer()
    settings = postgres.fresh_database(server.where)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.path.join(repo, "src")]),
               KONGISH_NGINX_WORKER_PROCESSES="1",
               **{f"KONGISH_{name.upper()}": value for name, value in settings.items()})
    subprocess.run([sys.executable, "-m", "kongish.cli", "migrations", "bootstrap"], env=env, check=True,
                   capture_output=True)
    samples: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as work, gateway(work, "a", env) as (_, a_admin), \
                gateway(work, "b", env) as (b_proxy, _):
            for path, fields in [("/services", {"name": "s", "url": "http://127.0.0.1:1"}),
                                 ("/services/s/routes", {"name": "r", "paths[]": "/r"}),
                                 ("/routes/r/plugins",
                                  {"name": "pre-function", "config.access[]": answering("v0")})]:
                status, body = call(a_admin, "POST", path, fields)
                assert status == 201, body
            plugin = json.loads(call(a_admin, "GET", "/routes/r/plugins")[1])["data"][0]["id"]
            wait_for(f"http://127.0.0.1:{b_proxy}/r")
            poller = http.client.HTTPConnection("127.0.0.1", b_proxy, timeout=10)
            for version in range(1, args.writes + 1):
                expected = f"v{version}\n".encode()
                status, body = call(a_admin, "PATCH", f"/plugins/{plugin}",
                                    {"config.access[]": answering(f"v{version}")})
                assert status == 200, body
                answered = time.perf_counter()
                while True:
                    poller.request("GET", "/r")
                    if poller.getresponse().read() == expected:
                        break
                    if time.perf_counter() - answered > 30:
                        raise SystemExit(f"write {version} not served by node B within 30 s")
                samples.append(time.perf_counter() - answered)
    finally:
        server.stop()
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"write on A -> served by B, {len(samples)} writes: "
          f"p50 {statistics.median(ordered) * 1000:.1f} ms   p99 {p99 * 1000:.1f} ms   "
          f"max {ordered[-1] * 1000:.1f} ms   (target p99 <= 500 ms)")


if __name__ == "__main__":
    main()
