"""CPU instructions per proxied request, counted by valgrind: a figure that does not drift.

Wall-clock rates on a shared machine drift by tens of percent within minutes, more than
most changes to the proxy path are worth. Instructions do not: this script runs the
whole node (kongish's HTTP server, routing, plugins, the real upstream client) in
memory, on a ``MemoryReactorClock``, one kept-alive client connection and pooled
upstream connections answered from memory, with ``benchmarks/proxy_vs_nginx.py``'s
routes, under valgrind (``cachegrind``, no cache simulation). Each route runs twice,
with 0 and with ``--requests`` requests; the difference over the count is the cost of
one request, startup excluded:

  plain   the route to the upstream, no plugin
  lua     the same with a pre-function (access) and a post-function (header_filter)
  seed    the seed demo's pre-function answering with ngx.exit

Prints instructions per request and plain/lua (what proxy_vs_nginx.py's "with Lua /
without" ratio is, in time, on an idle machine: Lua's instructions run somewhat slower).
Needs valgrind (``apt-get install valgrind``). Each process hashes with ``PYTHONHASHSEED=0``:
with random seeds, dict layouts differ from run to run, and so do counts, by up to 5,000.
Usage (from the repository root): PYTHONPATH=.:src python benchmarks/proxy_instructions.py
    [--requests 1000]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

ROUTES = {"plain": b"/plain", "lua": b"/lua", "seed": b"/test?name=Kong"}

#: What the upstream answers every request with, as nginx would.
ANSWER = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 04 Dec 2026 02:00:00 GMT\r\n"
          b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")


def serve(path: bytes, requests: int) -> None:
    """``requests`` GETs of ``path`` through a node in memory, after two to warm it."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from benchmarks.proxy_vs_nginx import declarative
    from kongish.http.client import UpstreamClient
    from kongish.http.memory import MemoryConnection
    from kongish.http.server import ProxyServerFactory
    from kongish.runloop.error_pages import KongRefusals
    from kongish.runloop.headers import SERVER_TOKEN
    from kongish.service import build_node, proxy_resource
    from kongish.settings import Settings

    reactor = MemoryReactorClock()
    with tempfile.TemporaryDirectory() as prefix:
        values = {"database": "off", "declarative_config_string": declarative(9), "prefix": prefix}
        built: list[Any] = []
        ensureDeferred(build_node(Settings.load(environ={}, overrides=values), reactor)).addBoth(built.append)
        node = built[0]
        factory = ProxyServerFactory(proxy_resource(node, UpstreamClient(reactor)),
                                     KongRefusals(node.settings.error_default_type), SERVER_TOKEN,
                                     reactor=reactor)
        client = MemoryConnection.open(factory)
        request = b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\n\r\n"
        upstreams: list[tuple[Any, StringTransport]] = []

        def one() -> None:
            client.transport.clear()
            client.protocol.dataReceived(request)
            while len(upstreams) < len(reactor.tcpClients):  # a new pooled connection
                host, port, connector, *_ = reactor.tcpClients[len(upstreams)]
                address = IPv4Address("TCP", host, port)
                protocol, transport = connector.buildProtocol(address), StringTransport(peerAddress=address)
                assert protocol is not None, "the upstream client builds a protocol per connection"
                protocol.makeConnection(transport)
                upstreams.append((protocol, transport))
            if upstreams and path in (ROUTES["plain"], ROUTES["lua"]):
                protocol, transport = upstreams[-1]
                transport.clear()
                protocol.dataReceived(ANSWER)
            if not client.transport.value().startswith(b"HTTP/1.1 200 "):
                raise SystemExit(f"{path!r} answered {client.transport.value()[:200]!r}")

        for _ in range(2 + requests):
            one()


def instructions(path: bytes, requests: int) -> int:
    """Instructions valgrind counted for a whole process serving ``requests`` requests."""
    result = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, __file__, "--serve", path.decode(), "--requests", str(requests)],
        capture_output=True, text=True, check=True,
        env=dict(os.environ, PYTHONHASHSEED="0"))  # dicts laid out alike in every run
    found = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind:\n{result.stderr}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the process valgrind counts
    options = parser.parse_args()
    if options.serve is not None:
        serve(options.serve.encode(), options.requests)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    per_request = {}
    for name, path in ROUTES.items():
        per_request[name] = (instructions(path, options.requests) - instructions(path, 0)) / options.requests
        print(f"{name:6s} {per_request[name]:10,.0f} instructions per request", flush=True)
    print(f"plain / lua {per_request['plain'] / per_request['lua']:.3f}")


if __name__ == "__main__":
    main()
