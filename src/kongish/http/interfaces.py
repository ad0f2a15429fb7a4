"""The wire-level seams: the client request the proxy serves (``IProxiedRequest``) and the
upstream call (sending one request to an upstream and streaming its response back).

Everything here is said in kongish's terms, not in a client library's: a body
ends with a ``BodyEnd`` (complete, truncated, aborted), never with Twisted's
``ResponseDone``/``PotentialDataLoss``; a HEAD response's entity length is
``content_length``, never a header left behind. An implementation keeps its
library's quirks to itself.

Flow control: the receiver of a body calls ``IBodyStream.pause()`` while it
cannot take more (a slow client, a body_filter that waits) and ``resume()``
after; between the two no ``body_data`` arrives, and an implementation on a
socket stops reading from it, so the upstream is held back by TCP.
"""
from __future__ import annotations

from typing import Any, BinaryIO

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from zope.interface import Attribute, Interface


@attrs.frozen
class UpstreamSettings:
    """How to call one service: its per-phase timeouts (seconds), tries and TLS check.

    ``connect_timeout`` bounds connecting, ``write_timeout`` each wait for the
    upstream to take more of the request, ``read_timeout`` the wait for the
    response head. ``retries`` more tries follow a failed one (connection
    errors and timeouts), except for a non-idempotent request that already
    reached an upstream. ``tls_verify``: check an https upstream's certificate;
    ``tls_verify_depth``: at most that many intermediate certificates between it and a
    trusted root, as OpenSSL and nginx count (None: OpenSSL's limit).
    """

    connect_timeout: float
    write_timeout: float
    read_timeout: float
    retries: int = 0
    tls_verify: bool = False
    tls_verify_depth: int | None = None


@attrs.frozen
class BodyEnd:
    """How a response body ended.

    ``complete``: all of it arrived as its framing announced (a body without a
    length ends when the upstream closes the connection, and that is complete
    too). Otherwise ``truncated`` tells that the body stopped short of its
    announced length (the connection closed early), ``aborted`` that the
    receiver called ``IBodyStream.abort()``; ``reason`` says what happened,
    for the log.
    """

    complete: bool
    truncated: bool = False
    aborted: bool = False
    reason: str = ""


#: The end of a body that arrived whole.
COMPLETE = BodyEnd(True)


class IUpstreamRequest(Interface):
    """What is sent upstream (``kongish.runloop.context.UpstreamRequest`` provides it)."""

    method = Attribute("The method, a str (``GET``).")
    scheme = Attribute('``"http"`` or ``"https"``.')
    host = Attribute("The host to connect to: a name, an IPv4 or an IPv6 literal (no brackets).")
    port = Attribute("The port to connect to, an int.")
    path = Attribute("The path to send, a str not yet percent-escaped.")
    query = Attribute("The raw query string without ``?``, or ``None`` for none at all.")
    headers = Attribute("The request's ``Headers``; their names are written as they are spelled. "
                        "A Content-Length among them is replaced by the body's own.")


class IBodyStream(Interface):
    """The sending side of one response body, as its receiver controls it."""

    def pause() -> None:
        """Deliver no more ``body_data`` until ``resume()`` (``body_ended`` may still come, once
        nothing is held back)."""

    def resume() -> None:
        """Deliver again after ``pause()``."""

    def abort() -> None:
        """Stop the body and close its connection (it will not be reused).

        ``body_ended`` follows, now or later, with ``BodyEnd(complete=False, aborted=True)``
        unless the body had ended already.
        """


class IBodyReceiver(Interface):
    """What an upstream response body is delivered to."""

    def body_started(stream: IBodyStream) -> None:
        """First call: ``stream`` pauses, resumes or aborts the body."""

    def body_data(data: bytes) -> None:
        """Some more of the body (never empty)."""

    def body_ended(end: BodyEnd) -> None:
        """Last call, exactly once."""


class IUpstreamResponse(Interface):
    """An upstream's response head, with its body still to come."""

    status = Attribute("The status code, an int.")
    reason = Attribute("The reason phrase as the upstream sent it, bytes.")
    headers = Attribute(
        "The end-to-end headers as a ``Headers`` whose names are spelled as the upstream spelled "
        "them, in the upstream's order. The framing headers the client consumed (Content-Length, "
        "Transfer-Encoding, Connection and the hop-by-hop headers it lists, Keep-Alive) are not "
        "among them.")
    content_length = Attribute(
        "The length the upstream declared (its Content-Length), an int, or ``None`` when it "
        "declared none or the body's framing is otherwise (chunked, up to the connection's close). "
        "For a response to HEAD this is the length of the entity a GET would get; no body follows.")

    def deliver_body(receiver: IBodyReceiver) -> None:
        """Stream the body to ``receiver`` (once; a bodiless response ends at once, complete)."""

    def discard() -> None:
        """The body will not be read: close its connection instead of delivering it."""


class IUpstreamClient(Interface):
    """Sends requests to upstream services and owns the connections it keeps open to them."""

    def send(request: IUpstreamRequest, settings: UpstreamSettings,
             body: bytes | BinaryIO) -> Deferred[IUpstreamResponse]:
        """Send ``request`` with ``body`` (bytes, or a file read from its start on each try and
        left open); fire with the response once its head has arrived.

        The Deferred fails with ``kongish.http.client.UpstreamFailure`` (Kong's status,
        message and renderer for the last try's failure: 503 for a name that did not resolve,
        504 for a timeout, 502 for a refused or broken connection or an invalid response) when
        every try failed. Cancelling it (the client went away) ends the try in progress and
        fails it with ``CancelledError``.
        """

    def close() -> Deferred[None]:
        """Close the connections kept open for reuse; fires once they are closed."""


class IProxiedRequest(Interface):
    """What the proxy flow and the Lua PDK use of a client request (twisted.web's names)."""

    method = Attribute("Request method, bytes.")
    uri = Attribute("Request target as received, bytes.")
    path = Attribute("The target without its query, bytes.")
    clientproto = Attribute("b'HTTP/1.1' or b'HTTP/1.0'.")
    prepath = Attribute("Path segments above the mount point (empty at a site's root).")
    requestHeaders = Attribute("Request headers, a twisted.web Headers.")
    responseHeaders = Attribute("Response headers, a Headers; may be replaced before the first write.")
    content = Attribute("The request body, a readable binary file positioned at its start.")
    channel = Attribute("The connection; its ``transport`` tells whether TLS is in use.")
    code = Attribute("Response status.")
    startedWriting = Attribute("Whether the response head was sent.")
    finished = Attribute("Whether finish() was called.")
    _disconnected = Attribute("Whether the client connection was lost.")

    def getHeader(name: bytes) -> bytes | None:
        """The last value of a request header."""

    def getHost() -> IAddress:
        """The local address the request arrived on."""

    def getClientAddress() -> IAddress:
        """The client's address."""

    def isSecure() -> bool:
        """Whether the request came over TLS."""

    def getRequestHostname() -> bytes:
        """The Host header without its port, else the local host."""

    def setResponseCode(code: int, message: bytes | None = None) -> None:
        """Set the response status and reason phrase."""

    def write(data: bytes) -> None:
        """Send body data; the first call sends the head."""

    def finish() -> None:
        """End the response."""

    def notifyFinish() -> Deferred[None]:
        """Fires when the response ended, fails when the connection was lost first."""

    def loseConnection() -> None:
        """Close the client connection (after what was written)."""

    def registerProducer(producer: Any, streaming: bool) -> None:
        """Let the client connection pause ``producer`` when it cannot take more."""

    def unregisterProducer() -> None:
        """Undo registerProducer."""
