"""Requests/s and p99 of kongish serving the seed demo, against a bare twisted.web baseline.

Both servers run in this same run as single processes on loopback, loaded in
alternating rounds by wrk (Debian package ``wrk``) with the same settings:

  (a) a bare twisted.web Resource answering "Hello Kong!";
  (b) kongish (``twist kongish``) with the seed demo's pre-function on /test.

Neither writes an access log (the baseline has none; kongish runs with
``proxy_access_log = off``), so both do the same I/O per request.

Prints the median figures, the ratio b/a of each round and their median
(target: at least 0.85). Alternating rounds keep drift on a shared machine
from favouring either server.
Usage: python benchmarks/seed_vs_bare.py [--duration 5] [--rounds 5] [--connections 16]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence

SEED_CODE = ("local qs=ngx.req.get_uri_args()if qs and qs.name then ngx.say('Hello '..qs.name..'!')"
             "else ngx.say('Hello Serverless Functions!')end;ngx.exit(200)")

BARE_SERVER = """
import sys
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

class Hello(Resource):
    isLeaf = True
    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"Hello Kong!\\n"

site = Site(Hello())
site.log = lambda request: None
reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
reactor.run()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not start")


def post(url: str, fields: dict[str, str]) -> None:
    data = urllib.parse.urlencode(fields).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as response:
        assert response.status == 201, response.status


def run_wrk(url: str, duration: int, connections: int, prefix: Sequence[str] = ()) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) from one wrk run; ``prefix`` goes before the
    command (``taskset -c 1``)."""
    output = subprocess.run(
        [*prefix, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url],
        check=True, capture_output=True, text=True).stdout
    rate_match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99_match = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    assert rate_match and p99_match, output
    rate = float(rate_match.group(1))
    value, unit = p99_match.groups()
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    if "Non-2xx" in output or "Socket errors" in output:
        raise SystemExit(f"errors during the run:\n{output}")
    return rate, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating runs of each server")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.path.join(repo, "src")]))
    bare_port, proxy, admin = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as prefix:
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(bare_port)], env=env)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "twisted", "--log-level", "warn", "kongish",
             "--proxy-listen", f"127.0.0.1:{proxy}", "--admin-listen", f"127.0.0.1:{admin}"],
            env=dict(env, KONGISH_PREFIX=prefix, KONGISH_PROXY_ACCESS_LOG="off"))
        try:
            wait_for(f"http://127.0.0.1:{bare_port}/")
            wait_for(f"http://127.0.0.1:{admin}/status")
            base = f"http://127.0.0.1:{admin}"
            post(base + "/services", {"name": "plugin-testing", "url": "http://dead.end.com"})
            post(base + "/services/plugin-testing/routes", {"paths[]": "/test"})
            post(base + "/services/plugin-testing/plugins",
                 {"name": "pre-function", "config.access[]": SEED_CODE})
            urls = {"bare twisted.web": f"http://127.0.0.1:{bare_port}/test?name=Kong",
                    "kongish seed demo": f"http://127.0.0.1:{proxy}/test?name=Kong"}
            with urllib.request.urlopen(urls["kongish seed demo"]) as response:
                assert response.read() == b"Hello Kong!\n"
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in urls}
            for url in urls.values():
                run_wrk(url, 2, args.connections)  # warm-up
            # Alternating rounds: drift on a shared machine hits both servers alike.
            for _ in range(args.rounds):
                for name, url in urls.items():
                    runs[name].append(run_wrk(url, args.duration, args.connections))
        finally:
            for server in (bare, gateway):
                server.terminate()
                server.wait()

    ratios = [k[0] / b[0] for b, k in zip(runs["bare twisted.web"], runs["kongish seed demo"], strict=True)]
    for name, results in runs.items():
        rates = [rate for rate, _ in results]
        print(f"{name:20s} {statistics.median(rates):10.1f} req/s (median of {len(rates)})   "
              f"p99 {statistics.median(p99 for _, p99 in results):7.2f} ms")
    ratio = statistics.median(ratios)
    print("ratios per round: " + " ".join(f"{r:.3f}" for r in ratios))
    print(f"ratio b/a (requests/s, median): {ratio:.3f}   (target >= 0.85)")
    print(json.dumps({"ratio": round(ratio, 3), "ratios": [round(r, 3) for r in ratios],
                      **{name: {"rps": [rate for rate, _ in results], "p99_ms": [p99 for _, p99 in results]}
                         for name, results in runs.items()}}))


if __name__ == "__main__":
    main()
