"""``twist kongish`` as a user runs it: a real process, real ports, restart keeps the configuration."""
from __future__ import annotations

import json
import os
import signal
import socket
import sys

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.harness import POOL, deferred
from tests.test_e2e_seed import SEED_CODE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Collect(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        self.ended.callback(reason.value.exitCode)


def spawn_twist(prefix: str, twist_options: tuple[str, ...] = (), kongish_options: tuple[str, ...] = (),
                env: dict[str, str] | None = None) -> _Collect:
    """``twist [twist_options] kongish [kongish_options]`` on this checkout, with ``env`` added.

    One process unless ``env`` asks for workers: these tests look at one process's limits,
    logs and counters (``tests/test_e2e_workers.py`` runs the workers)."""
    protocol = _Collect()
    environment = dict(os.environ, KONGISH_PREFIX=prefix,
                       **{"KONGISH_NGINX_WORKER_PROCESSES": "1", **(env or {})},
                       PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "src"), *sys.path]))
    reactor.spawnProcess(protocol, sys.executable, [
        sys.executable, "-m", "twisted", *twist_options, "kongish", *kongish_options], env=environment)
    return protocol


class _TwistProcess:
    """Start, wait for and stop a real ``twist kongish`` process."""

    def _spawn(self, prefix: str, proxy: int, admin: int, *twist_options: str) -> _Collect:
        return spawn_twist(prefix, twist_options, (
            "--proxy-listen", f"127.0.0.1:{proxy}", "--admin-listen", f"127.0.0.1:{admin}"))

    async def _ready(self, protocol: _Collect, admin: int) -> None:
        for _ in range(300):  # up to 30 s on a loaded machine; it returns as soon as kongish answers
            try:
                response = await treq.get(f"http://127.0.0.1:{admin}/status".encode(), pool=POOL)
                await response.content()
                if response.code == 200:
                    return
            except Exception:
                pass
            if protocol.ended.called:
                break
            await deferLater(reactor, 0.1)
        raise AssertionError(f"kongish did not start:\n{protocol.output.decode(errors='replace')}")

    async def _stop(self, protocol: _Collect) -> None:
        assert protocol.transport is not None
        protocol.transport.signalProcess(signal.SIGTERM)
        await protocol.ended


class TwistTests(_TwistProcess, TestCase):
    @deferred
    async def test_seed_demo_and_restart(self) -> None:
        prefix, proxy, admin = self.mktemp(), free_port(), free_port()
        process = self._spawn(prefix, proxy, admin)
        await self._ready(process, admin)
        base = f"http://127.0.0.1:{admin}"
        for path, data in [("/services/", {"name": "plugin-testing", "url": "http://dead.end.com"}),
                           ("/services/plugin-testing/routes", {"paths[]": "/test"}),
                           ("/services/plugin-testing/plugins",
                            {"name": "pre-function", "config.functions[]": SEED_CODE})]:
            response = await treq.post((base + path).encode(), data=data, pool=POOL)
            self.assertEqual(response.code, 201, await response.text())
        response = await treq.get(f"http://127.0.0.1:{proxy}/test?name=Kong".encode(), pool=POOL)
        self.assertEqual((response.code, await response.content()), (200, b"Hello Kong!\n"))
        await self._stop(process)

        process = self._spawn(prefix, proxy, admin)
        await self._ready(process, admin)
        response = await treq.get(f"http://127.0.0.1:{proxy}/test?name=again".encode(), pool=POOL)
        self.assertEqual((response.code, await response.content()), (200, b"Hello again!\n"))
        await self._stop(process)


FAILING_CODE = "local function deeper() error('boom from the function') end\ndeeper()"


class ErrorLogTests(_TwistProcess, TestCase):
    """A Lua error's message and stack reach the log, in JSON lines and in text."""

    async def _failing_request(self, *twist_options: str) -> str:
        prefix, proxy, admin = self.mktemp(), free_port(), free_port()
        process = self._spawn(prefix, proxy, admin, *twist_options)
        await self._ready(process, admin)
        base = f"http://127.0.0.1:{admin}"
        for path, data in [("/services/", {"name": "failing", "url": "http://127.0.0.1:1"}),
                           ("/services/failing/routes", {"paths[]": "/fail"}),
                           ("/services/failing/plugins",
                            {"name": "pre-function", "config.access[]": FAILING_CODE})]:
            response = await treq.post((base + path).encode(), data=data, pool=POOL)
            self.assertEqual(response.code, 201, await response.text())
        response = await treq.get(f"http://127.0.0.1:{proxy}/fail".encode(), pool=POOL)
        self.assertEqual(response.code, 500)
        await response.content()
        await self._stop(process)
        return process.output.decode(errors="replace")

    @deferred
    async def test_json_lines_keep_the_lua_error(self) -> None:
        output = await self._failing_request()  # output is a pipe: twist writes JSON lines
        events = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        errors = [event["error"] for event in events
                  if "unexpected error in phase" in event.get("log_format", "")]
        self.assertEqual(len(errors), 1, output)
        self.assertIn("boom from the function", errors[0])
        self.assertIn("stack traceback:", errors[0])
        self.assertIn("in function 'deeper'", errors[0])

    @deferred
    async def test_text_log_keeps_the_lua_error(self) -> None:
        output = await self._failing_request("--log-format=text")
        line = next((line for line in output.splitlines()
                     if "unexpected error in phase access" in line), None)
        self.assertIsNotNone(line, output)
        self.assertIn("boom from the function", line)
        self.assertIn("stack traceback:", output)
        self.assertIn("in function 'deeper'", output)


class LogLevelTests(TestCase):
    """``log_level`` sets twist's level unless ``--log-level`` was given."""

    def _twist(self, *arguments: str):
        from twisted.application.twist._options import TwistOptions

        from twisted.plugins.kongish_plugin import serviceMaker

        conf = self.mktemp()
        with open(conf, "w") as file:
            file.write(f"log_level = error\nprefix = {self.mktemp()}\n")
        options = TwistOptions()
        options.parseOptions([*arguments, "kongish", "--config", conf])
        serviceMaker.makeService(options.subOptions)
        return options["logLevel"]

    def test_configured_level_applies(self) -> None:
        from twisted.logger import LogLevel

        self.assertEqual(self._twist(), LogLevel.error)

    def test_command_line_level_wins(self) -> None:
        from twisted.logger import LogLevel

        self.assertEqual(self._twist("--log-level", "debug"), LogLevel.debug)


class StartFailureTests(TestCase):
    """A start that cannot succeed ends the process non-zero, with the reason in its output."""

    async def _run_until_exit(self, **env: str) -> tuple[int, str]:
        protocol = spawn_twist(self.mktemp(), env=env)
        try:
            code = await protocol.ended.addTimeout(60, reactor)
        except Exception:
            assert protocol.transport is not None
            protocol.transport.signalProcess(signal.SIGKILL)
            raise
        return code, protocol.output.decode(errors="replace")

    @deferred
    async def test_unknown_plugin(self) -> None:
        code, output = await self._run_until_exit(
            KONGISH_PLUGINS="bundled,rate-limiting", KONGISH_PROXY_LISTEN=f"127.0.0.1:{free_port()}",
            KONGISH_ADMIN_LISTEN=f"127.0.0.1:{free_port()}")
        self.assertEqual(code, 1, output)
        self.assertIn("kongish could not start: plugin 'rate-limiting' is enabled but not installed", output)

    @deferred
    async def test_address_in_use(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            code, output = await self._run_until_exit(
                KONGISH_PROXY_LISTEN=f"127.0.0.1:{port}", KONGISH_ADMIN_LISTEN=f"127.0.0.1:{free_port()}")
        self.assertEqual(code, 1, output)
        self.assertIn("kongish could not start:", output)
        self.assertIn("Address already in use", output)
