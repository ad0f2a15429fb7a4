"""Requests/s and p99 of kongish proxying, against nginx's proxy_pass, measured in one run.

Every target proxies to the same upstream (an nginx answering 200 "ok"), except the
seed demo, which answers from Lua:

  nginx proxy_pass          nginx with an upstream block kept alive (Kong's data plane)
  twisted ReverseProxyResource
  twisted+httptools bare relay
                            the least a Twisted proxy can do (forward, relay, nothing
                            else): the ceiling of any proxy on Twisted's reactor
  kongish proxy             a route to the upstream, no plugin
  kongish proxy + lua       the same with a pre-function (access) and a post-function
                            (header_filter)
  kongish seed              the seed demo's pre-function answering with ngx.exit

Each server under test runs on core 0 (``taskset``), wrk and the upstream on core 1;
nothing writes an access log. Rounds alternate between the targets so drift hits all
alike. Prints the medians and the ratios the fast data plane issue sets targets for.

Needs nginx and wrk (``apt-get install nginx wrk``).
Usage (from the repository root): PYTHONPATH=. python benchmarks/proxy_vs_nginx.py
    [--duration 5] [--rounds 3] [--connections 50]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request

from benchmarks.seed_vs_bare import SEED_CODE, free_port, run_wrk, wait_for

#: One nginx worker, in the foreground, no access log; ``{name}`` names its pid and log files.
NGINX_MAIN = """
worker_processes 1;
daemon off;
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
"""

UPSTREAM_NGINX = NGINX_MAIN + """
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "ok"; }}
    }}
}}
"""

PROXY_NGINX = NGINX_MAIN + """
    upstream service {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://service;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

REVERSE_PROXY = """
import sys
from twisted.internet import reactor
from twisted.web.proxy import ReverseProxyResource
from twisted.web.server import Site

site = Site(ReverseProxyResource("127.0.0.1", int(sys.argv[2]), b""))
site.log = lambda request: None
reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1", backlog=4096)
reactor.run()
"""

#: The least a proxy on Twisted can do: parse with httptools, forward the head as it came,
#: relay the answer on kept-alive upstream connections; no routing, no header edits, no
#: timeouts. What any Twisted proxy's requests/s stays under on this machine.
BARE_RELAY = """
import sys
from collections import deque
import httptools
from twisted.internet import reactor
from twisted.internet.protocol import ClientCreator, Factory, Protocol

idle = deque()

class Upstream(Protocol):
    def connectionMade(self):
        self.parser, self.client, self.chunks = httptools.HttpResponseParser(self), None, []
    def dataReceived(self, data):
        self.chunks.append(data)
        self.parser.feed_data(data)
    def on_message_complete(self):
        client, self.client = self.client, None
        answer, self.chunks = b"".join(self.chunks), []
        idle.append(self)
        client.transport.write(answer)

class Client(Protocol):
    def connectionMade(self):
        self.parser, self.head = httptools.HttpRequestParser(self), []
    def dataReceived(self, data):
        self.parser.feed_data(data)
    def on_url(self, url):
        self.url = url
    def on_header(self, name, value):
        self.head.append(b"%s: %s\\r\\n" % (name, value))
    def on_message_complete(self):
        head = b"GET %s HTTP/1.1\\r\\n%s\\r\\n" % (self.url, b"".join(self.head))
        self.head = []
        if idle:
            self.forward(idle.popleft(), head)
        else:
            ClientCreator(reactor, Upstream).connectTCP("127.0.0.1", int(sys.argv[2])).addCallback(
                self.forward, head)
    def forward(self, upstream, head):
        upstream.client = self
        upstream.transport.write(head)

factory = Factory.forProtocol(Client)
reactor.listenTCP(int(sys.argv[1]), factory, interface="127.0.0.1", backlog=4096)
reactor.run()
"""

PRE_ACCESS = "kong.service.request.set_header('X-Pre', 'access')"
POST_HEADER_FILTER = "kong.response.set_header('X-Post', 'header_filter')"


def declarative(upstream: int) -> str:
    url = f"http://127.0.0.1:{upstream}"
    return json.dumps({"_format_version": "3.0", "services": [
        {"name": "plain", "url": url, "routes": [{"name": "plain", "paths": ["/plain"]}]},
        {"name": "lua", "url": url, "routes": [{"name": "lua", "paths": ["/lua"]}], "plugins": [
            {"name": "pre-function", "config": {"access": [PRE_ACCESS]}},
            {"name": "post-function", "config": {"header_filter": [POST_HEADER_FILTER]}}]},
        {"name": "seed", "url": "http://dead.end.com", "routes": [{"name": "seed", "paths": ["/test"]}],
         "plugins": [{"name": "pre-function", "config": {"access": [SEED_CODE]}}]},
    ]})


def pinned(core: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *command]


def alternating_rounds(targets: dict[str, str], duration: int, rounds: int,
                       connections: int) -> dict[str, tuple[float, float]]:
    """wrk on core 1 against each target in turn, ``rounds`` times, after a warm-up; prints
    and returns each target's median (req/s, p99 ms), so drift hits all targets alike."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
    for url in targets.values():
        run_wrk(url, 2, connections, pinned(1, []))  # warm-up
    for _ in range(rounds):
        for name, url in targets.items():
            runs[name].append(run_wrk(url, duration, connections, pinned(1, [])))
    medians = {name: (statistics.median(rate for rate, _ in results),
                      statistics.median(p99 for _, p99 in results)) for name, results in runs.items()}
    for name, (rate, p99) in medians.items():
        print(f"{name:32s} {rate:10.1f} req/s   p99 {p99:7.2f} ms   (median of {rounds})")
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each target")
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    for tool in (nginx, "wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed: apt-get install nginx wrk")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.path.join(repo, "src")]))
    upstream, anchor, reverse, bare, proxy, admin = (free_port() for _ in range(6))
    servers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as work:
        for name, template, core, port in (("upstream", UPSTREAM_NGINX, 1, upstream),
                                           ("proxy", PROXY_NGINX, 0, anchor)):
            conf = os.path.join(work, f"{name}.conf")
            with open(conf, "w") as file:
                file.write(template.format(dir=work, name=name, port=port, upstream=upstream))
            servers.append(subprocess.Popen(pinned(core, [nginx, "-c", conf, "-p", work]),
                                            stderr=subprocess.DEVNULL))
        for script, port in ((REVERSE_PROXY, reverse), (BARE_RELAY, bare)):
            servers.append(subprocess.Popen(pinned(0, [sys.executable, "-c", script, str(port),
                                                       str(upstream)]), env=env,
                                            stderr=subprocess.DEVNULL))  # their errors as wrk stops
        servers.append(subprocess.Popen(
            pinned(0, [sys.executable, "-m", "twisted", "--log-level", "warn", "kongish",
                       "--proxy-listen", f"127.0.0.1:{proxy} backlog=4096",
                       "--admin-listen", f"127.0.0.1:{admin}"]),
            env=dict(env, KONGISH_PREFIX=work, KONGISH_PROXY_ACCESS_LOG="off", KONGISH_DATABASE="off",
                     KONGISH_DECLARATIVE_CONFIG_STRING=declarative(upstream))))
        try:
            targets = {"nginx proxy_pass": f"http://127.0.0.1:{anchor}/",
                       "twisted ReverseProxyResource": f"http://127.0.0.1:{reverse}/",
                       "twisted+httptools bare relay": f"http://127.0.0.1:{bare}/",
                       "kongish proxy": f"http://127.0.0.1:{proxy}/plain",
                       "kongish proxy + lua": f"http://127.0.0.1:{proxy}/lua",
                       "kongish seed": f"http://127.0.0.1:{proxy}/test?name=Kong"}
            for url in targets.values():
                wait_for(url)
            with urllib.request.urlopen(targets["kongish proxy + lua"]) as response:
                assert response.read() == b"ok" and response.headers["X-Post"] == "header_filter"
            medians = alternating_rounds(targets, args.duration, args.rounds, args.connections)
        finally:
            for server in servers:
                server.terminate()
                server.wait()
    ratios = {
        "kongish proxy / nginx proxy_pass (target >= 0.30)":
            medians["kongish proxy"][0] / medians["nginx proxy_pass"][0],
        "kongish proxy / ReverseProxyResource (target >= 5)":
            medians["kongish proxy"][0] / medians["twisted ReverseProxyResource"][0],
        "kongish proxy + lua / kongish proxy (target >= 0.8)":
            medians["kongish proxy + lua"][0] / medians["kongish proxy"][0],
        "kongish proxy p99 / nginx p99 (target <= 3)":
            medians["kongish proxy"][1] / medians["nginx proxy_pass"][1],
        "bare relay / nginx proxy_pass (a Twisted proxy's ceiling)":
            medians["twisted+httptools bare relay"][0] / medians["nginx proxy_pass"][0],
        "kongish proxy / bare relay":
            medians["kongish proxy"][0] / medians["twisted+httptools bare relay"][0],
    }
    for name, value in ratios.items():
        print(f"{name:60s} {value:6.3f}")
    print(json.dumps({"medians": medians, "ratios": {name.split(" (")[0]: round(value, 3)
                                                     for name, value in ratios.items()}}))


if __name__ == "__main__":
    main()
