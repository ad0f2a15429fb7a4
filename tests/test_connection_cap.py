"""The per-process cap on client connections, and the descriptor limit raised at start."""
import resource

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.test.proto_helpers import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from kongish.admin.connections import AdminConnections
from kongish.http.connection_cap import ADMIN_SHARE, RESERVED_DESCRIPTORS, ConnectionCap
from kongish.http.descriptors import raise_descriptor_limit
from kongish.http.server import ProxyServerFactory
from kongish.runloop.error_pages import KongRefusals
from kongish.runloop.headers import SERVER_TOKEN

_PEER = IPv4Address("TCP", "127.0.0.1", 40000)


class CapTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.cap = ConnectionCap(8, self.clock.seconds)
        self.proxy = ProxyServerFactory(Resource(), KongRefusals(), SERVER_TOKEN, cap=self.cap,
                                        reactor=self.clock)
        self.admin = AdminConnections(Site(Resource(), reactor=self.clock), self.clock, self.cap)

    def _open(self, factory: ProxyServerFactory | AdminConnections) -> bool:
        protocol = factory.buildProtocol(_PEER)
        if protocol is None:
            return False
        protocol.makeConnection(StringTransport())
        return True

    def test_proxy_clients_stop_short_of_the_admin_share(self) -> None:
        self.assertEqual(self.cap.admin_share, 2)
        self.assertEqual([self._open(self.proxy) for _ in range(7)], [True] * 6 + [False])
        self.assertEqual([self._open(self.admin) for _ in range(3)], [True, True, False])
        self.assertEqual(self.cap.refused, 2)

    def test_a_closed_connection_frees_its_place(self) -> None:
        for _ in range(6):
            self._open(self.proxy)
        self.assertFalse(self._open(self.proxy))
        next(iter(self.proxy.connections.open)).connectionLost(None)
        self.assertTrue(self._open(self.proxy))

    def test_one_warning_per_second_however_many_are_refused(self) -> None:
        warnings: list[LogEvent] = []

        @implementer(ILogObserver)
        def observe(event: LogEvent) -> None:
            if "are not enough" in event.get("log_format", ""):
                warnings.append(event)
        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        for _ in range(6):
            self._open(self.proxy)
        for _ in range(5):
            self._open(self.proxy)
        self.clock.advance(1)
        self._open(self.proxy)
        self.assertEqual([event["refused"] for event in warnings], [1, 6])


class SizingTests(SynchronousTestCase):
    def test_half_of_what_the_descriptors_allow_for_clients(self) -> None:
        self.assertEqual(ConnectionCap.for_descriptors(16384, None, Clock().seconds).limit,
                         (16384 - RESERVED_DESCRIPTORS) // 2)
        self.assertEqual(ConnectionCap.for_descriptors(16384, 1000, Clock().seconds).limit, 500)
        # more worker_connections than descriptors: the descriptors decide
        self.assertEqual(ConnectionCap.for_descriptors(1024, 100000, Clock().seconds).limit,
                         (1024 - RESERVED_DESCRIPTORS) // 2)
        self.assertEqual(ConnectionCap.for_descriptors(1024, None, Clock().seconds).admin_share, ADMIN_SHARE)


class DescriptorLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        before = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, before)
        self.hard = before[1]

    def test_raised_to_what_is_asked_never_lowered(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, self.hard))
        self.assertEqual(raise_descriptor_limit(300), 300)
        self.assertEqual(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 300)
        self.assertEqual(raise_descriptor_limit(100), 300)

    def test_auto_is_the_hard_limit_bounded_as_kong_bounds_it(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, self.hard))
        expected = min(max(self.hard, 1024), 16384)
        if self.hard != resource.RLIM_INFINITY:
            expected = min(expected, self.hard)
        self.assertEqual(raise_descriptor_limit(None), expected)

    def test_above_the_hard_limit_stops_at_it(self) -> None:
        if self.hard == resource.RLIM_INFINITY:
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))
            self.hard = 4096
        self.assertEqual(raise_descriptor_limit(self.hard + 1), self.hard)
