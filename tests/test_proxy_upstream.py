"""UpstreamClient against a MemoryReactorClock: when a refused connection is reported, and to whom."""
from __future__ import annotations

import io

from twisted.internet.defer import ensureDeferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from kongish.http.client import UpstreamClient, UpstreamFailure, settings_for
from kongish.http.interfaces import UpstreamSettings
from kongish.runloop.context import UpstreamRequest


def service(retries: int) -> UpstreamSettings:
    return settings_for(
        {"connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000, "retries": retries})


class RefusedConnectionTests(SynchronousTestCase):
    def refuse_each_try(self, reactor: MemoryReactorClock, tries: int) -> None:
        """Refuse every connection attempt as it is made, without ever advancing the clock."""
        for index in range(tries):
            self.assertEqual(len(reactor.tcpClients), index + 1, f"try {index + 1} was not started")
            host, port, factory, _, _ = reactor.tcpClients[index]
            factory.clientConnectionFailed(reactor.connectors[index], Failure(ConnectionRefusedError()))

    def test_refused_ip_literal_fails_without_waiting(self) -> None:
        """Every try to an IP literal ends as soon as its connection is refused, the next one starts at
        once, and the 502 comes without the clock moving (HostnameEndpoint waited 0.3 s per try)."""
        reactor = MemoryReactorClock()
        client = UpstreamClient(reactor)
        upstream = UpstreamRequest("GET", "/", None, host="127.0.0.1", port=9)
        result = ensureDeferred(client.send(upstream, service(retries=5), io.BytesIO()))
        self.refuse_each_try(reactor, 6)
        failure = self.failureResultOf(result, UpstreamFailure)
        self.assertEqual(failure.value.status, 502)
        self.assertEqual([(host, port) for host, port, *_ in reactor.tcpClients], [("127.0.0.1", 9)] * 6)
        self.assertEqual(reactor.seconds(), 0)
        self.assertEqual([call for call in reactor.getDelayedCalls() if call.active()], [])

    def test_refused_ipv6_literal_fails_without_waiting(self) -> None:
        reactor = MemoryReactorClock()
        client = UpstreamClient(reactor)
        upstream = UpstreamRequest("GET", "/", None, host="::1", port=9)
        result = ensureDeferred(client.send(upstream, service(retries=1), io.BytesIO()))
        self.refuse_each_try(reactor, 2)
        self.assertEqual(self.failureResultOf(result, UpstreamFailure).value.status, 502)
        self.assertEqual([host for host, *_ in reactor.tcpClients], ["::1", "::1"])

    def test_host_name_still_resolves(self) -> None:
        """A host name goes through the reactor's resolver (MemoryReactor's answers 127.0.0.1)."""
        reactor = MemoryReactorClock()
        client = UpstreamClient(reactor)
        upstream = UpstreamRequest("GET", "/", None, host="upstream.example", port=8000)
        result = ensureDeferred(client.send(upstream, service(retries=0), io.BytesIO()))
        self.assertEqual([(host, port) for host, port, *_ in reactor.tcpClients], [("127.0.0.1", 8000)])
        host, port, factory, _, _ = reactor.tcpClients[0]
        factory.clientConnectionFailed(reactor.connectors[0], Failure(ConnectionRefusedError()))
        reactor.advance(1)
        self.assertEqual(self.failureResultOf(result, UpstreamFailure).value.status, 502)
