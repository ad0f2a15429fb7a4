"""The local services the examples call, on 127.0.0.1:9000: an introspection endpoint
(the token ``good`` is active, for user ``alice``), a webhook that prints what it gets,
and an upstream that says which user the gateway sent.

    python examples/local_services.py
"""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.web.resource import Resource
from twisted.web.server import Request, Site


class Services(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        body = request.content.read() if request.content is not None else b""
        if request.path == b"/introspect":
            if body == b"token=good":
                return b"alice"
            request.setResponseCode(401)
            return b"inactive"
        if request.path == b"/hook":
            print("webhook:", body.decode("utf-8", "replace"), flush=True)
            request.setResponseCode(204)
            return b""
        return b"upstream saw user " + (request.getHeader(b"x-user") or b"none")


def main(reactor: Any) -> Deferred[None]:
    reactor.listenTCP(9000, Site(Services()), interface="127.0.0.1")
    return Deferred()  # serve until interrupted


if __name__ == "__main__":
    react(main)
