"""``twist kongish`` as a user runs it: a real process, real ports, restart keeps the configuration."""
from __future__ import annotations

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


class TwistTests(TestCase):
    def _spawn(self, prefix: str, proxy: int, admin: int) -> _Collect:
        protocol = _Collect()
        env = dict(os.environ, KONGISH_PREFIX=prefix,
                   PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "src"), *sys.path]))
        reactor.spawnProcess(protocol, sys.executable, [
            sys.executable, "-m", "twisted", "kongish",
            "--proxy-listen", f"127.0.0.1:{proxy}", "--admin-listen", f"127.0.0.1:{admin}"], env=env)
        return protocol

    async def _ready(self, protocol: _Collect, admin: int) -> None:
        for _ in range(100):
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
        self.fail(f"kongish did not start:\n{protocol.output.decode(errors='replace')}")

    async def _stop(self, protocol: _Collect) -> None:
        assert protocol.transport is not None
        protocol.transport.signalProcess(signal.SIGTERM)
        await protocol.ended

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
