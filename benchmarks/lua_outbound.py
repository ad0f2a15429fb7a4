"""Requests/s of a pre-function calling a service with resty.http, against proxying to it.

Both targets reach the same service (an nginx answering 200 "ok") through one kongish
process: ``proxy`` is a route to it with no plugin (one upstream leg); ``outbound`` is a
route whose pre-function calls it with ``resty.http`` and answers its body with
``ngx.exit`` (one outbound leg, which rides the same keep-alive pools, plus the Lua run).
kongish runs on core 0 (``taskset``), wrk and the service on core 1; no access log.
Rounds alternate between the targets. The issue's target: outbound / proxy >= 0.45.

Needs nginx and wrk (``apt-get install nginx wrk``).
Usage (from the repository root): PYTHONPATH=. python benchmarks/lua_outbound.py
    [--duration 5] [--rounds 3] [--connections 50]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

from benchmarks.proxy_vs_nginx import UPSTREAM_NGINX, alternating_rounds, pinned
from benchmarks.seed_vs_bare import free_port, wait_for

CALL_OUT = """
local res, err = require("resty.http").new():request_uri("http://127.0.0.1:%d/")
if not res then return kong.response.exit(502, err) end
ngx.print(res.body)
return ngx.exit(res.status)
"""


def declarative(upstream: int) -> str:
    return json.dumps({"_format_version": "3.0", "services": [
        {"name": "plain", "url": f"http://127.0.0.1:{upstream}",
         "routes": [{"name": "plain", "paths": ["/plain"]}]},
        {"name": "outbound", "url": "http://dead.end.com",
         "routes": [{"name": "outbound", "paths": ["/out"]}],
         "plugins": [{"name": "pre-function", "config": {"access": [CALL_OUT % upstream]}}]},
    ]})


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
    upstream, proxy, admin = (free_port() for _ in range(3))
    servers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as work:
        conf = os.path.join(work, "upstream.conf")
        with open(conf, "w") as file:
            file.write(UPSTREAM_NGINX.format(dir=work, name="upstream", port=upstream))
        servers.append(subprocess.Popen(pinned(1, [nginx, "-c", conf, "-p", work]),
                                        stderr=subprocess.DEVNULL))
        servers.append(subprocess.Popen(
            pinned(0, [sys.executable, "-m", "twisted", "--log-level", "warn", "kongish",
                       "--proxy-listen", f"127.0.0.1:{proxy} backlog=4096",
                       "--admin-listen", f"127.0.0.1:{admin}"]),
            env=dict(env, KONGISH_PREFIX=work, KONGISH_PROXY_ACCESS_LOG="off", KONGISH_DATABASE="off",
                     KONGISH_NGINX_WORKER_PROCESSES="1",
                     KONGISH_UNTRUSTED_LUA_SANDBOX_REQUIRES="resty.http",
                     KONGISH_DECLARATIVE_CONFIG_STRING=declarative(upstream))))
        try:
            targets = {"kongish proxy": f"http://127.0.0.1:{proxy}/plain",
                       "kongish outbound (resty.http)": f"http://127.0.0.1:{proxy}/out"}
            for url in targets.values():
                wait_for(url)
                with urllib.request.urlopen(url) as response:
                    assert response.read() == b"ok", url
            medians = alternating_rounds(targets, args.duration, args.rounds, args.connections)
        finally:
            for server in servers:
                server.terminate()
                server.wait()
    ratio = medians["kongish outbound (resty.http)"][0] / medians["kongish proxy"][0]
    print(f"outbound / proxy (target >= 0.45)  {ratio:6.3f}")
    print(json.dumps({"medians": medians, "ratio": round(ratio, 3)}))


if __name__ == "__main__":
    main()
