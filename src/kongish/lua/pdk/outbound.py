"""The Python half of ``resty.http``: one outbound HTTP call, awaited by a Lua coroutine.

The call rides the node's own upstream client (its keep-alive pools, its name cache),
so a function that calls a service costs one pooled request, not a new stack of
connections. It never blocks: the coroutine yields and other requests flow until the
answer or the error arrives. Errors come back as lua-resty-http's strings
(``"timeout"``, ``"connection refused"``), for ``nil, err``.

Every request (and every timer run) has an outbound budget: a number of calls and a
total time, so one function cannot turn a request into a long chain of calls.
"""
from __future__ import annotations

from typing import Any

import attrs
from twisted.internet import error as net_errors
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from kongish.http.agent import OutboundRequest
from kongish.http.client import UpstreamFailure
from kongish.http.headers import CasedHeaders
from kongish.http.interfaces import (
    BodyEnd,
    IBodyReceiver,
    IBodyStream,
    IUpstreamClient,
    IUpstreamResponse,
    UpstreamSettings,
)
from kongish.http.upstream_connection import UpstreamClosed, UpstreamTimeout
from kongish.lua.cost import OUTBOUND_SLOT, OutboundUse
from kongish.lua.current import CurrentRequest
from kongish.lua.pdk.codec import as_bytes
from kongish.lua.settings import OutboundLimits

#: lua-resty-http's User-Agent, sent when the code sets none.
USER_AGENT = b"lua-resty-http/0.17.2 (Lua) ngx_lua/10026"


@implementer(IBodyReceiver)
@attrs.define(eq=False)
class _Body:
    """Reads a response body whole, up to a limit."""

    limit: int
    done: Deferred[bytes] = attrs.field(init=False)
    chunks: list[bytes] = attrs.Factory(list)
    size: int = 0
    _stream: IBodyStream | None = None
    _cancelled: bool = False

    def __attrs_post_init__(self) -> None:
        self.done = Deferred(self._abort)  # a call cancelled mid-body stops reading it

    def _abort(self, _: Deferred[bytes]) -> None:
        self._cancelled = True
        if self._stream is not None:
            self._stream.abort()

    def body_started(self, stream: IBodyStream) -> None:
        self._stream = stream

    def body_data(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            if self._stream is not None:
                self._stream.abort()
            return
        self.chunks.append(data)

    def body_ended(self, end: BodyEnd) -> None:
        if self._cancelled:  # the call was cancelled (and fails as such): this is our abort
            return
        if self.size > self.limit:
            self.done.errback(_Refused("body too large"))
        elif end.complete:
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(_Refused("closed"))


class _Refused(Exception):
    """A call ended with lua-resty-http's error string."""


def error_string(error: BaseException | None, host: str) -> str:
    """What lua-resty-http answers for a failed call."""
    if isinstance(error, UpstreamFailure):
        error = error.__cause__ or error
    if isinstance(error, _Refused):
        return str(error)
    if isinstance(error, (UpstreamTimeout, net_errors.TimeoutError, CancelledError)):
        return "timeout"
    if isinstance(error, net_errors.ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, net_errors.DNSLookupError):
        return f"{host} could not be resolved (3: Host not found)"
    if isinstance(error, UpstreamClosed):
        return "closed"
    return str(error) or type(error).__name__


@attrs.define(eq=False)
class OutboundHttp:
    """The ``http_request`` primitive; ``client`` is None where nothing may call out."""

    lua: Any
    current: CurrentRequest
    reactor: IReactorTime
    client: IUpstreamClient | None
    limits: OutboundLimits = OutboundLimits()

    def exports(self) -> dict[bytes, Any]:
        return {b"http_request": self.request}

    def request(self, scheme: Any, host: Any, port: Any, method: Any, path: Any, query: Any,
                headers: Any, body: Any, connect: Any, send: Any, read: Any,
                ssl_verify: Any) -> Deferred[tuple[Any, ...]]:
        """One call; fires with (status, reason, {name, value, ...}, body) or (nil, err)."""
        current = self.current
        use = self._use()
        host_text = as_bytes(host).decode("utf-8", "replace")
        refusal = self._refusal(use)
        if refusal is not None:
            return succeed((None, refusal.encode()))
        assert use is not None and self.client is not None
        left = self.limits.seconds - use.seconds
        sent = CasedHeaders()
        has_agent = False
        for index in range(1, len(headers) + 1, 2):
            name, value = as_bytes(headers[index]), as_bytes(headers[index + 1])
            has_agent = has_agent or name.lower() == b"user-agent"
            sent.addRawHeader(name, value)
        if not has_agent:
            sent.addRawHeader(b"User-Agent", USER_AGENT)
        request = OutboundRequest(
            as_bytes(method).decode("ascii", "replace"), as_bytes(scheme).decode("ascii"), host_text,
            int(port), as_bytes(path).decode("utf-8", "surrogateescape"),
            None if query is None else as_bytes(query).decode("utf-8", "surrogateescape"), sent)
        settings = UpstreamSettings(connect_timeout=min(float(connect), left),
                                    write_timeout=min(float(send), left),
                                    read_timeout=min(float(read), left), tls_verify=bool(ssl_verify))
        use.calls += 1
        cost = current.cost
        if cost is not None:
            cost.outbound_calls += 1
        started = self.reactor.seconds()
        call = self.client.send(request, settings, b"" if body is None else as_bytes(body))
        call.addCallback(self._read, request.method == "HEAD")
        deadline = self.reactor.callLater(left, call.cancel)
        return call.addCallbacks(self._answer, self._failed, errbackArgs=(host_text, cost)).addBoth(
            self._ended, use, started, deadline)

    def _use(self) -> OutboundUse | None:
        """The running request's outbound budget (a timer run's has its own)."""
        context = self.current.context
        if context is None:
            return self.current.outbound
        use = context.slots.get(OUTBOUND_SLOT)
        if use is None:
            use = context.slots[OUTBOUND_SLOT] = OutboundUse()
        return use

    def _refusal(self, use: OutboundUse | None) -> str | None:
        if self.client is None:
            return "outbound calls are not available here"
        if use is None or use.refused is not None:
            return use.refused if use is not None else "outbound calls are not available here"
        if use.calls >= self.limits.calls:
            return f"outbound call budget exceeded ({self.limits.calls} calls)"
        if use.seconds >= self.limits.seconds:
            return f"outbound call budget exceeded ({self.limits.seconds:g}s)"
        return None

    def _read(self, response: IUpstreamResponse, head: bool) -> Deferred[tuple[IUpstreamResponse, bytes]]:
        if head or response.status in (204, 304):
            response.discard()
            return succeed((response, b""))
        body = _Body(self.limits.body_limit)
        response.deliver_body(body)
        return body.done.addCallback(lambda data: (response, data))

    def _answer(self, result: tuple[IUpstreamResponse, bytes]) -> tuple[Any, ...]:
        response, body = result
        flat: list[bytes] = []
        for name, values in response.headers.getAllRawHeaders():
            for value in values:
                flat += (name, value)
        return (response.status, response.reason, self.lua.table_from(flat), body)

    def _failed(self, failure: Failure, host: str, cost: Any) -> tuple[Any, ...]:
        message = error_string(failure.value, host)
        if message == "timeout" and cost is not None:
            cost.outbound_timeouts += 1
        return (None, message.encode())

    def _ended(self, result: tuple[Any, ...], use: OutboundUse, started: float,
               deadline: IDelayedCall) -> tuple[Any, ...]:
        use.seconds += self.reactor.seconds() - started
        if deadline.active():
            deadline.cancel()
        return result
