"""The proxy's listening sockets: made once by the master, accepted on by every worker.

As nginx's master does, the master binds each ``proxy_listen`` address and hands
the socket to its workers, which inherit it at a file descriptor of their own;
the kernel gives each new connection to one worker waiting to accept. The
master itself never accepts on it, so a worker replaced or reloaded leaves the
socket listening: no connection is refused meanwhile.
"""
from __future__ import annotations

import socket
from typing import Any

import attrs
from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.internet.protocol import Factory
from twisted.protocols.haproxy import proxyEndpoint

#: Endpoint kinds a worker can accept on: TCP (Kong's ``host:port`` form) and UNIX sockets.
_HANDED_KINDS = ("tcp:", "tcp6:", "unix:", "haproxy:tcp:", "haproxy:tcp6:", "haproxy:unix:")
#: The first descriptor a worker inherits listening sockets at (0-2 are standard, 3 the channel).
FIRST_LISTENER_FD = 4


class NotHandable(ValueError):
    """A listener workers cannot share (TLS ones are made with a certificate in one process)."""


@attrs.frozen
class HandedListener:
    """One listening socket, as the master holds it and as a worker adopts it."""

    description: str
    #: The descriptor in the master, and the one the worker gets it at.
    master_fd: int
    worker_fd: int
    family: int
    proxy_protocol: bool

    def as_json(self) -> dict[str, Any]:
        return {"description": self.description, "fd": self.worker_fd, "family": self.family,
                "proxy_protocol": self.proxy_protocol}


def check_handable(description: str) -> None:
    if not description.startswith(_HANDED_KINDS):
        raise NotHandable(
            f"proxy_listen '{description}': worker processes share TCP and UNIX listeners only; "
            "set nginx_worker_processes = 1 to serve this one")


async def listen_for_workers(reactor: Any, description: str,
                             handed: list[HandedListener]) -> IListeningPort:
    """Bind ``description`` and add it to ``handed``; the master does not accept on it."""
    check_handable(description)
    port: Any = await serverFromString(reactor, description).listen(Factory())  # never accepts
    port.stopReading()
    handed.append(HandedListener(description, port.fileno(), FIRST_LISTENER_FD + len(handed),
                                 port.socket.family, description.startswith("haproxy:")))
    return port


def adopt(reactor: Any, listener: dict[str, Any], factory: IProtocolFactory) -> Deferred[IListeningPort]:
    """Accept, in a worker, on a socket its master handed over (``HandedListener.as_json``)."""
    family = socket.AddressFamily(listener["family"])
    endpoint: Any = AdoptedStreamServerEndpoint(reactor, listener["fd"], family)
    if listener["proxy_protocol"]:
        endpoint = proxyEndpoint(endpoint)
    return endpoint.listen(factory).addCallback(_one_at_a_time)


class _OneAcceptAtATime(tcp.Port):
    """A port that accepts one connection per readiness, so that workers woken together
    take turns instead of the first taking every connection waiting (Twisted accepts up
    to a hundred at once): a burst of keep-alive connections spreads across the workers."""

    @property
    def numberAccepts(self) -> int:
        return 1

    @numberAccepts.setter
    def numberAccepts(self, count: int) -> None:
        pass  # Twisted grows it after each full round of accepts


def _one_at_a_time(port: Any) -> Any:
    if type(port) is tcp.Port:
        port.__class__ = _OneAcceptAtATime
    return port

