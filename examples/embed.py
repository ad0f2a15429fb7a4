"""Mount kongish's proxy and Admin API inside your own twisted.web site.

Run: python examples/embed.py   then   curl localhost:8080/admin/status
The proxy answers under /gateway/..., the Admin API under /admin/...
"""
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import react
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from kongish import Settings, UpstreamClient, admin_resource, build_node, proxy_resource


async def main(reactor) -> None:
    node = await build_node(Settings.load(environ={}, overrides={"database": "off"}), reactor)
    root = Resource()
    root.putChild(b"", Data(b"my application\n", "text/plain"))
    root.putChild(b"gateway", proxy_resource(node, UpstreamClient(reactor)))
    root.putChild(b"admin", admin_resource(node))
    reactor.listenTCP(8080, Site(root), interface="127.0.0.1")
    await Deferred()  # serve until interrupted


if __name__ == "__main__":
    react(lambda reactor: ensureDeferred(main(reactor)))  # prints any start-up error and exits
