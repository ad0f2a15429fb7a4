"""Resident memory of one kongish process holding idle connections on both sides.

Starts nginx as the upstream and ``twist kongish`` with a route to it, fills the
upstream keep-alive pool with ``--upstream`` connections (that many requests at
once, by wrk), then opens ``--clients`` client connections that each make one
request and stay open, idle, kept alive. Prints the process's RSS at each step.

Needs nginx and wrk (``apt-get install nginx wrk``).
Usage (from the repository root): PYTHONPATH=. python benchmarks/idle_rss.py
    [--clients 1000] [--upstream 100]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile

from benchmarks.proxy_vs_nginx import UPSTREAM_NGINX
from benchmarks.seed_vs_bare import free_port, run_wrk, wait_for


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for process {pid}")


def idle_client(port: int) -> socket.socket:
    """A connection that made one request, read its answer and stays open."""
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(b"GET /idle HTTP/1.1\r\nHost: kongish\r\n\r\n")
    answer = b""
    while not answer.endswith(b"ok"):
        answer += client.recv(65536)
    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--upstream", type=int, default=100)
    args = parser.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if shutil.which(nginx) is None or shutil.which("wrk") is None:
        raise SystemExit("nginx and wrk are needed: apt-get install nginx wrk")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.path.join(repo, "src")]))
    upstream, proxy, admin = free_port(), free_port(), free_port()
    clients: list[socket.socket] = []
    with tempfile.TemporaryDirectory() as work:
        conf = os.path.join(work, "upstream.conf")
        with open(conf, "w") as file:
            file.write(UPSTREAM_NGINX.format(dir=work, name="upstream", port=upstream))
        servers = [subprocess.Popen([nginx, "-c", conf, "-p", work], stderr=subprocess.DEVNULL)]
        config = json.dumps({"_format_version": "3.0", "services": [
            {"name": "idle", "url": f"http://127.0.0.1:{upstream}", "routes": [{"paths": ["/idle"]}]}]})
        gateway = subprocess.Popen(
            [sys.executable, "-m", "twisted", "--log-level", "warn", "kongish",
             "--proxy-listen", f"127.0.0.1:{proxy} backlog=4096", "--admin-listen", f"127.0.0.1:{admin}"],
            env=dict(env, KONGISH_PREFIX=work, KONGISH_DATABASE="off", KONGISH_PROXY_ACCESS_LOG="off",
                     KONGISH_NGINX_WORKER_PROCESSES="1",  # one process holds every connection
                     KONGISH_DECLARATIVE_CONFIG_STRING=config))
        servers.append(gateway)
        try:
            wait_for(f"http://127.0.0.1:{proxy}/idle")
            figures = {"started_kib": rss_kib(gateway.pid)}
            run_wrk(f"http://127.0.0.1:{proxy}/idle", 2, args.upstream)
            figures[f"with_{args.upstream}_pooled_upstream_kib"] = rss_kib(gateway.pid)
            clients = [idle_client(proxy) for _ in range(args.clients)]
            figures[f"and_{args.clients}_idle_clients_kib"] = rss_kib(gateway.pid)
        finally:
            for client in clients:
                client.close()
            for server in servers:
                server.terminate()
                server.wait()
    for name, kib in figures.items():
        print(f"{name:40s} {kib / 1024:8.1f} MiB")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
