"""Upstream names resolved through the reactor's resolver and kept as Kong's DNS client
keeps them: once per TTL, stale while refreshing, failures remembered."""
from __future__ import annotations

import io
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionRefusedError, DNSLookupError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from kongish.http.client import UpstreamClient, UpstreamFailure
from kongish.http.interfaces import UpstreamSettings
from kongish.http.names import DEFAULT_VALID_TTL, DnsSettings, NameCache
from kongish.runloop.context import UpstreamRequest


class Resolver:
    """A resolver whose answers the test gives, when it likes."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        self.waiting: list[tuple[Any, str]] = []
        self.hold = False

    def resolveHostName(self, receiver: Any, name: str, port: int = 0, *args: Any) -> Any:
        self.asked.append(name)
        if self.hold:
            self.waiting.append((receiver, name))
        else:
            self.answer(receiver, name)
        return receiver

    def answer(self, receiver: Any, name: str) -> None:
        receiver.resolutionBegan(None)
        for address in self.answers.get(name, []):
            receiver.addressResolved(IPv6Address("TCP", address, 0) if ":" in address
                                     else IPv4Address("TCP", address, 0))
        receiver.resolutionComplete()

    def release(self) -> None:
        waiting, self.waiting = self.waiting, []
        for receiver, name in waiting:
            self.answer(receiver, name)


class Reactor(Clock):
    def __init__(self, resolver: Resolver) -> None:
        super().__init__()
        self.nameResolver = resolver


class NameCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.resolver = Resolver({"svc.test": ["10.0.0.1", "10.0.0.2", "fd00::3"]})
        self.reactor = Reactor(self.resolver)
        self.names = NameCache(self.reactor, DnsSettings(valid_ttl=None, stale_ttl=100, not_found_ttl=30,
                                                         error_ttl=1))

    def address(self, name: str = "svc.test") -> str:
        return self.successResultOf(self.names.address(name))

    def test_resolved_once_per_ttl_taking_turns(self) -> None:
        self.assertEqual([self.address() for _ in range(4)], ["10.0.0.1", "10.0.0.2", "fd00::3", "10.0.0.1"])
        self.assertEqual(self.resolver.asked, ["svc.test"])
        self.reactor.advance(DEFAULT_VALID_TTL - 0.5)
        self.address()
        self.assertEqual(len(self.resolver.asked), 1)

    def test_stale_answers_serve_while_a_fresh_one_comes(self) -> None:
        self.address()
        self.reactor.advance(DEFAULT_VALID_TTL)
        self.resolver.hold = True
        self.resolver.answers["svc.test"] = ["10.0.0.9"]
        self.assertIn(self.address(), ("10.0.0.1", "10.0.0.2", "fd00::3"))  # stale, at once
        self.address()
        self.assertEqual(len(self.resolver.asked), 2, "one refresh for both")
        self.resolver.release()
        self.assertEqual(self.address(), "10.0.0.9")

    def test_past_the_stale_time_a_lookup_waits(self) -> None:
        self.address()
        self.reactor.advance(DEFAULT_VALID_TTL + 100)
        self.resolver.hold = True
        first, second = self.names.address("svc.test"), self.names.address("svc.test")
        self.assertNoResult(first)
        self.resolver.release()
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)),
                         ("10.0.0.1", "10.0.0.2"))
        self.assertEqual(len(self.resolver.asked), 2)

    def test_a_missing_name_is_remembered(self) -> None:
        self.failureResultOf(self.names.address("gone.test"), DNSLookupError)
        self.failureResultOf(self.names.address("gone.test"), DNSLookupError)
        self.assertEqual(self.resolver.asked, ["gone.test"])
        self.reactor.advance(30)
        self.resolver.answers["gone.test"] = ["10.0.0.7"]
        self.assertEqual(self.address("gone.test"), "10.0.0.7")

    def test_a_failed_refresh_keeps_the_stale_answer(self) -> None:
        self.address()
        self.reactor.advance(DEFAULT_VALID_TTL)
        del self.resolver.answers["svc.test"]
        self.address()  # stale, and the refresh finds nothing
        self.assertIn(self.address(), ("10.0.0.1", "10.0.0.2", "fd00::3"))


class ClientNameTests(SynchronousTestCase):
    def test_a_name_is_not_resolved_per_request_and_retries_take_the_next_address(self) -> None:
        reactor = MemoryReactorClock()
        resolver = Resolver({"svc.test": ["10.0.0.1", "10.0.0.2"]})
        reactor.nameResolver = resolver  # type: ignore[assignment]
        client = UpstreamClient(reactor)
        upstream = UpstreamRequest("GET", "/", None, host="svc.test", port=8080)
        settings = UpstreamSettings(connect_timeout=5, write_timeout=5, read_timeout=5, retries=1)
        result = client.send(upstream, settings, io.BytesIO())
        _, _, factory, _, _ = reactor.tcpClients[0]
        factory.clientConnectionFailed(reactor.connectors[0], Failure(ConnectionRefusedError()))
        _, _, factory, _, _ = reactor.tcpClients[1]
        factory.clientConnectionFailed(reactor.connectors[1], Failure(ConnectionRefusedError()))
        self.assertEqual(self.failureResultOf(result, UpstreamFailure).value.status, 502)
        self.assertEqual([host for host, *_ in reactor.tcpClients], ["10.0.0.1", "10.0.0.2"])
        self.assertEqual(resolver.asked, ["svc.test"])

    def test_a_name_that_does_not_resolve_is_a_503(self) -> None:
        reactor = MemoryReactorClock()
        reactor.nameResolver = Resolver({})  # type: ignore[assignment]
        result = UpstreamClient(reactor).send(UpstreamRequest("GET", "/", None, host="gone.test", port=80),
                                              UpstreamSettings(5, 5, 5, retries=3), b"")
        failure = self.failureResultOf(result, UpstreamFailure)
        self.assertEqual((failure.value.status, failure.value.message), (503, "name resolution failed"))
        self.assertEqual(reactor.tcpClients, [])
