"""The pieces of the worker-process model, one at a time: settings, the control channel,
the busy board and the handed-over sockets (``tests/test_e2e_workers.py`` runs them whole)."""
from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.test.iosim import IOPump, connect, makeFakeClient, makeFakeServer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kongish.lua.settings import SINGLE_PROCESS, WorkerIdentity
from kongish.settings import ConfigError, Settings
from kongish.workers.busy import BusyBoard
from kongish.workers.control import ChannelClosed, ControlChannel, RemoteError
from kongish.workers.sockets import NotHandable, adopt, check_handable, listen_for_workers
from tests.harness import deferred


class SettingsTests(SynchronousTestCase):
    def test_auto_is_one_worker_per_core_this_process_may_use(self) -> None:
        settings = Settings.load(environ={})
        self.assertEqual(settings.worker_processes, len(os.sched_getaffinity(0)))
        self.assertEqual(settings.worker_consistency, "strict")
        self.assertEqual(settings.worker_rss_limit, 0)

    def test_a_count_consistency_and_rss_limit(self) -> None:
        settings = Settings.load(environ={"KONGISH_NGINX_WORKER_PROCESSES": "3",
                                          "KONGISH_WORKER_CONSISTENCY": "eventual",
                                          "KONGISH_WORKER_RSS_LIMIT": "512m"})
        self.assertEqual((settings.worker_processes, settings.worker_consistency, settings.worker_rss_limit),
                         (3, "eventual", 512 * 1024 * 1024))

    def test_bad_values_name_the_setting(self) -> None:
        for name, value in (("nginx_worker_processes", "0"), ("nginx_worker_processes", "many"),
                            ("worker_consistency", "sometimes"), ("worker_rss_limit", "lots")):
            with self.assertRaises(ConfigError) as raised:
                Settings.load(environ={}, overrides={name: value})
            self.assertIn(name, str(raised.exception))

    def test_a_worker_identity_is_within_its_count(self) -> None:
        self.assertEqual((SINGLE_PROCESS.id, SINGLE_PROCESS.count), (0, 1))
        self.assertEqual(WorkerIdentity(1, 2).id, 1)
        for place in ((2, 2), (-1, 2), (0, 0)):
            with self.assertRaises(ValueError):
                WorkerIdentity(*place)


def _channels(master_handlers: dict, worker_handlers: dict) -> tuple[ControlChannel, ControlChannel, IOPump]:
    """A master's and a worker's channel over an in-memory connection."""
    master, worker = ControlChannel(master_handlers), ControlChannel(worker_handlers)
    pump = connect(worker, makeFakeServer(worker), master, makeFakeClient(master))
    return master, worker, pump


class ControlChannelTests(SynchronousTestCase):
    def test_calls_both_ways_with_plain_and_async_handlers(self) -> None:
        waiting: Deferred[int] = Deferred()

        async def catch_up(version: int) -> int:
            return await waiting + version

        master, worker, pump = _channels({"hello": lambda: {"worker": [0, 2]}},
                                         {"catch_up": catch_up})
        hello = worker.call("hello")
        pump.flush()
        self.assertEqual(self.successResultOf(hello), {"worker": [0, 2]})
        caught_up = master.call("catch_up", version=7)
        pump.flush()
        self.assertNoResult(caught_up)
        waiting.callback(1)
        pump.flush()
        self.assertEqual(self.successResultOf(caught_up), 8)

    def test_a_failing_or_unknown_handler_answers_an_error(self) -> None:
        def broken() -> None:
            raise ValueError("no store")

        master, worker, pump = _channels({}, {"broken": broken})
        failed, unknown = master.call("broken"), master.call("nothing")
        pump.flush()
        self.assertIn("no store", str(self.failureResultOf(failed, RemoteError).value))
        self.assertIn("no such call: nothing", str(self.failureResultOf(unknown, RemoteError).value))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_calls_pending_when_the_channel_closes_fail(self) -> None:
        lost: list[bool] = []
        master = ControlChannel({}, on_lost=lambda: lost.append(True))
        worker = ControlChannel({"slow": lambda: Deferred()})
        pump = connect(worker, makeFakeServer(worker), master, makeFakeClient(master))
        pending = master.call("slow")
        pump.flush()
        master.close()
        pump.flush()
        self.failureResultOf(pending, ChannelClosed)
        self.assertEqual(lost, [True])
        self.failureResultOf(master.call("late"), ChannelClosed)

    def test_an_answer_nobody_waits_for_any_more_is_dropped(self) -> None:
        answer: Deferred[int] = Deferred()
        master, worker, pump = _channels({}, {"slow": lambda: answer})
        call = master.call("slow")
        pump.flush()
        call.cancel()  # a strict write stopped waiting
        self.failureResultOf(call)
        answer.callback(1)
        pump.flush()  # no AlreadyCalledError


class BusyBoardTests(SynchronousTestCase):
    def test_a_slot_says_what_runs_and_for_how_long_to_another_mapping(self) -> None:
        path = os.path.join(self.mktemp(), "workers.busy")
        master = BusyBoard.create(path, 4)
        worker = BusyBoard.open(path).slot(3)
        self.assertIsNone(master.running(3))
        worker.running("stuck", "pre-function", "access")
        text, seconds = master.running(3) or ("", -1.0)
        self.assertEqual(text, "route stuck, plugin pre-function, phase access")
        self.assertGreaterEqual(seconds, 0)
        self.assertLess(seconds, 60)
        self.assertIsNone(master.running(2))
        worker.idle()
        self.assertIsNone(master.running(3))
        worker.running("x" * 1000, "p", "log")  # cut to the slot, never into the next one
        self.assertTrue((master.running(3) or ("",))[0].startswith("route xxx"))
        master.clear(3)
        self.assertIsNone(master.running(3))


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


class _Client(Protocol):
    def __init__(self) -> None:
        self.echoed: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"ping")

    def dataReceived(self, data: bytes) -> None:
        self.echoed.callback(data)
        assert self.transport is not None
        self.transport.loseConnection()


class SocketTests(TestCase):
    def test_tls_listeners_are_not_handed_over(self) -> None:
        check_handable("tcp:8000:interface=127.0.0.1")
        check_handable("haproxy:tcp:8000")
        with self.assertRaises(NotHandable) as raised:
            check_handable("ssl:8443:privateKey=key.pem")
        self.assertIn("nginx_worker_processes = 1", str(raised.exception))

    @deferred
    async def test_a_handed_socket_is_accepted_on_where_adopted_one_at_a_time(self) -> None:
        handed: list = []
        master_port = await listen_for_workers(reactor, "tcp:0:interface=127.0.0.1", handed)
        self.addCleanup(master_port.stopListening)
        [listener] = handed
        self.assertEqual((listener.worker_fd, listener.family, listener.proxy_protocol),
                         (4, socket.AF_INET, False))
        # what a worker gets at fd 4; here a dup of the master's descriptor stands for it
        as_worker = dict(listener.as_json(), fd=os.dup(listener.master_fd))
        port: Any = await adopt(reactor, as_worker, Factory.forProtocol(_Echo))
        self.addCleanup(port.stopListening)
        port.numberAccepts = 100  # what Twisted sets after a full round of accepts
        self.assertEqual(port.numberAccepts, 1)
        address: Any = master_port.getHost()
        client = _Client()
        await connectProtocol(TCP4ClientEndpoint(reactor, address.host, address.port), client)
        self.assertEqual(await client.echoed, b"ping")
