"""Writes that go to the socket at once when nothing is queued before them.

Twisted's TCP transport queues every write and sends it on the reactor's next
pass, registering the socket for writability and unregistering it after: two
``epoll_ctl`` calls and one more reactor event for each response and each
upstream request, most of which fit in the socket's buffer at once. Here such a
write is sent straight away; what the socket does not take, and every write on a
transport that queues already (or is TLS, or closing), goes through the transport,
which keeps order, backpressure and error handling as Twisted does them.
"""
from __future__ import annotations

from typing import Any

from twisted.internet.tcp import Connection


def send_now(transport: Any, data: bytes) -> None:
    """Write ``data`` on ``transport``, straight to its socket when that keeps the order."""
    if (isinstance(transport, Connection) and not transport.TLS and transport.connected
            and not transport.disconnecting and not transport._writeDisconnected
            and not transport._tempDataBuffer and transport.offset == len(transport.dataBuffer)):
        try:
            sent = transport.socket.send(data)
        except OSError:  # full (EAGAIN) or failed: the transport's own write deals with it
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
