"""Calling the upstream service: Kong's timeouts, retries and failure classes.

Requests go through ``twisted.web.client.Agent`` on a persistent pool. treq's
``HTTPClient`` is not used here on purpose: it always adds a cookie jar
(cookies of one client would leak into another's requests) and gzip decoding
(the client would get a decoded body), and a proxy must pass both through.
"""
from __future__ import annotations

from io import BytesIO
from typing import Any, BinaryIO

import attrs
from twisted.internet import error as net_errors
from twisted.internet.defer import CancelledError
from twisted.web.client import (
    Agent, FileBodyProducer, HTTPConnectionPool, ResponseFailed, ResponseNeverReceived)
from twisted.web.iweb import IResponse

from kongish.proxy.context import UpstreamRequest

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_TIMEOUTS = (net_errors.TimeoutError, CancelledError, net_errors.ConnectingCancelledError)
_NOT_SENT = (net_errors.ConnectError, *_TIMEOUTS)


class UpstreamFailure(Exception):
    """The upstream could not answer; ``status`` and ``message`` are Kong's answer."""

    def __init__(self, status: int, message: str, renderer: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        #: "A" for kongish-built answers (Accept only), "B" for upstream-leg errors.
        self.renderer = renderer


def classify(failure_value: BaseException) -> UpstreamFailure:
    """Kong's status for a failed upstream attempt."""
    if isinstance(failure_value, net_errors.DNSLookupError):
        return UpstreamFailure(503, "name resolution failed", "A")
    if isinstance(failure_value, _TIMEOUTS) or (
            isinstance(failure_value, (ResponseFailed, ResponseNeverReceived))
            and any(r.check(*_TIMEOUTS) for r in failure_value.reasons)):
        return UpstreamFailure(504, "The upstream server is timing out", "B")
    return UpstreamFailure(502, "An invalid response was received from the upstream server", "B")


@attrs.define(eq=False)
class UpstreamClient:
    """Sends upstream requests over one persistent connection pool."""

    reactor: Any
    pool: HTTPConnectionPool = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.pool is None:
            self.pool = HTTPConnectionPool(self.reactor, persistent=True)
            self.pool.maxPersistentPerHost = 64

    async def send(self, upstream: UpstreamRequest, service: dict[str, Any],
                   client_body: BinaryIO) -> IResponse:
        """Try up to ``retries + 1`` times; raise UpstreamFailure when every try failed."""
        attempts = 1 + int(service.get("retries") or 0)
        last: BaseException | None = None
        for _ in range(attempts):
            try:
                return await self._attempt(upstream, service, client_body)
            except net_errors.DNSLookupError as failure:
                raise classify(failure) from None
            except Exception as failure:  # each attempt's failure decides whether to retry
                last = failure
                if not (isinstance(failure, _NOT_SENT) or upstream.method in _IDEMPOTENT):
                    break
        raise classify(last) from None

    async def _attempt(self, upstream: UpstreamRequest, service: dict[str, Any],
                       client_body: BinaryIO) -> IResponse:
        agent = Agent(self.reactor, connectTimeout=service["connect_timeout"] / 1000, pool=self.pool)
        url = f"{upstream.scheme}://{_url_host(upstream.host)}:{upstream.port}{upstream.path}"
        if upstream.query is not None:
            url += "?" + upstream.query
        if upstream.body is not None:
            producer = FileBodyProducer(BytesIO(upstream.body))
        else:
            client_body.seek(0)
            producer = FileBodyProducer(client_body) if _has_content(client_body) else None
        pending = agent.request(upstream.method.encode("ascii"), url.encode("utf-8", "surrogateescape"),
                                upstream.headers, producer)
        # The timeout bounds the wait for the response head; on a pooled
        # connection that is the read timeout, and connecting has its own bound.
        timer = self.reactor.callLater(service["read_timeout"] / 1000, pending.cancel)
        try:
            return await pending
        finally:
            if timer.active():
                timer.cancel()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _has_content(body: BinaryIO) -> bool:
    position = body.tell()
    has = bool(body.read(1))
    body.seek(position)
    return has
