"""A real PostgreSQL server for the tests: the one ``.ci/run`` started, or one of our own.

``.ci/run`` starts a server and says where in ``KONGISH_TEST_PG_HOST`` and
``KONGISH_TEST_PG_PORT`` (user ``kong``, no password). Without those, the first test
that asks starts one from the installed PostgreSQL binaries (Debian's
``postgresql`` package) in a temporary directory on a free loopback port, and stops
it when the test run ends. Each test gets a database of its own.
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from typing import Any

import psycopg

_server: dict[str, str] | None = None


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is needed for these tests: apt-get install postgresql")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OwnServer:
    """A server in a temporary directory on a free loopback port, which a test may stop and
    start again. PostgreSQL refuses to run as root, so root runs it as ``postgres``."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="kongish-pg-")
        self.user: Any = None
        if os.geteuid() == 0:
            self.user = "postgres"
            owner = pwd.getpwnam(self.user)
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
        self.data, self.port = os.path.join(self.directory, "data"), _free_port()
        subprocess.run([_binary("initdb"), "-D", self.data, "-U", "kong", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, user=self.user)
        self.start()
        atexit.register(self.stop)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run([_binary("pg_ctl"), "-D", self.data, "-l", os.path.join(self.directory, "log"), "-w",
                        "-o", options, "start"], check=True, capture_output=True, user=self.user)

    def stop(self) -> None:
        subprocess.run([_binary("pg_ctl"), "-D", self.data, "-m", "fast", "stop"],
                       capture_output=True, user=self.user)

    @property
    def where(self) -> dict[str, str]:
        return {"host": "127.0.0.1", "port": str(self.port)}


def _start() -> dict[str, str]:
    return OwnServer().where


def server() -> dict[str, str]:
    """Where the tests' server listens: ``{"host", "port"}``."""
    global _server
    if _server is None:
        host, port = os.environ.get("KONGISH_TEST_PG_HOST"), os.environ.get("KONGISH_TEST_PG_PORT")
        _server = {"host": host or "127.0.0.1", "port": port} if port else _start()
    return _server


def fresh_database(where: dict[str, str] | None = None) -> dict[str, str]:
    """A new, empty database on the tests' server (or ``where``), as kongish settings (``pg_*``)."""
    where = where or server()
    name = f"kongish_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=where["host"], port=where["port"], user="kong", dbname="postgres",
                         autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return {"database": "postgres", "pg_host": where["host"], "pg_port": where["port"], "pg_user": "kong",
            "pg_database": name}
