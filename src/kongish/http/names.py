"""Upstream host names, resolved through the reactor's resolver and kept as Kong's DNS
client keeps them (its ``dns_*`` settings).

A name is resolved when a connection to it is first needed, and then at most once
per ``valid_ttl``: never per request. An answer past its time is still used for
``stale_ttl`` more while a fresh one is fetched, as Kong serves stale records. A
name that does not resolve is remembered as such for ``not_found_ttl``, a resolver
error for ``error_ttl``. Lookups of one name at once share one resolution. Each
connection takes the next address of the answer, as Kong's balancer takes turns.

The system resolver (getaddrinfo) tells no record TTLs, so ``dns_valid_ttl = NONE``
(Kong's default: the record's TTL) keeps an answer ``DEFAULT_VALID_TTL`` seconds.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IResolutionReceiver
from zope.interface import implementer

#: Seconds an answer is kept when ``dns_valid_ttl`` is NONE (the system resolver gives no TTL).
DEFAULT_VALID_TTL = 30.0
#: Names kept at most; past this many, the cache starts afresh.
CACHE_SIZE = 10_000


@attrs.frozen
class DnsSettings:
    """Kong's ``dns_valid_ttl`` (None: NONE), ``dns_stale_ttl``, ``dns_not_found_ttl`` and
    ``dns_error_ttl``, in seconds."""

    valid_ttl: float | None = None
    stale_ttl: float = 3600.0
    not_found_ttl: float = 30.0
    error_ttl: float = 1.0


@attrs.define(eq=False)
class _Answer:
    """One name's addresses (empty: not found, or the resolver failed), and until when."""

    addresses: tuple[str, ...]
    fresh_until: float
    usable_until: float
    turns: Iterator[str] | None = None

    def next_address(self) -> str:
        if self.turns is None:
            self.turns = itertools.cycle(self.addresses)
        return next(self.turns)


@implementer(IResolutionReceiver)
@attrs.define(eq=False)
class _Collected:
    """What one resolution found, in the resolver's order."""

    addresses: list[str] = attrs.Factory(list)
    done: Deferred[list[str]] = attrs.Factory(Deferred)

    def resolutionBegan(self, resolution: Any) -> None:
        """Nothing to keep of it."""

    def addressResolved(self, address: Any) -> None:
        if isinstance(address, (IPv4Address, IPv6Address)) and address.host not in self.addresses:
            self.addresses.append(address.host)

    def resolutionComplete(self) -> None:
        self.done.callback(self.addresses)


@attrs.define(eq=False)
class NameCache:
    """Addresses of upstream names, resolved by ``reactor.nameResolver`` and kept."""

    reactor: Any
    settings: DnsSettings = DnsSettings()
    _answers: dict[str, _Answer] = attrs.Factory(dict)
    _pending: dict[str, Deferred[_Answer]] = attrs.Factory(dict)
    #: Resolutions started, for tests and the curious.
    resolutions: int = 0

    def address(self, name: str) -> Deferred[str]:
        """An address to connect to for ``name``, taking turns among its addresses; fails with
        ``DNSLookupError`` for a name that does not resolve."""
        now = self.reactor.seconds()
        answer = self._answers.get(name)
        if answer is not None and now < answer.usable_until:
            if now >= answer.fresh_until:
                self._resolve(name)  # stale: used while a fresh answer is fetched
            return self._take(name, answer)
        return self._resolve(name).addCallback(lambda fresh: self._take(name, fresh))

    def _take(self, name: str, answer: _Answer) -> Deferred[str]:
        if not answer.addresses:
            return fail(DNSLookupError(f"name resolution failed for {name}"))
        return succeed(answer.next_address())

    def _resolve(self, name: str) -> Deferred[_Answer]:
        pending = self._pending.get(name)
        if pending is None:
            self.resolutions += 1
            collected = _Collected()
            try:
                self.reactor.nameResolver.resolveHostName(collected, name, 0)
            except Exception:  # a resolver that fails at once fails this resolution
                collected.done.errback()
            pending = self._pending[name] = Deferred()
            collected.done.addCallbacks(self._found, self._failed, callbackArgs=(name,),
                                        errbackArgs=(name,)).chainDeferred(pending)
        waiting: Deferred[_Answer] = Deferred()

        def answered(answer: _Answer) -> _Answer:
            waiting.callback(answer)
            return answer
        pending.addCallback(answered)  # _found and _failed always answer
        return waiting

    def _found(self, addresses: list[str], name: str) -> _Answer:
        settings = self.settings
        if addresses:
            valid = settings.valid_ttl if settings.valid_ttl is not None else DEFAULT_VALID_TTL
            return self._keep(name, tuple(addresses), valid, settings.stale_ttl)
        return self._keep(name, (), settings.not_found_ttl, 0)

    def _failed(self, failure: Any, name: str) -> _Answer:
        return self._keep(name, (), self.settings.error_ttl, 0)

    def _keep(self, name: str, addresses: tuple[str, ...], valid: float, stale: float) -> _Answer:
        self._pending.pop(name, None)
        now = self.reactor.seconds()
        previous = self._answers.get(name)
        if not addresses and previous is not None and previous.addresses and now < previous.usable_until:
            return previous  # a failed refresh leaves the stale answer in use
        if len(self._answers) >= CACHE_SIZE:
            self._answers.clear()
        answer = self._answers[name] = _Answer(addresses, now + valid, now + valid + stale)
        return answer
