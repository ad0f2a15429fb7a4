"""Mount kongish's proxy and Admin API inside your own twisted.web site.

Run: python examples/embed.py   then   curl localhost:8080/admin/status
The proxy answers under /gateway/..., the Admin API under /admin/...
"""
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from kongish.app import admin_resource, build_node, proxy_resource
from kongish.config import Settings
from kongish.proxy.upstream import UpstreamClient


async def main() -> None:
    node = await build_node(Settings.load(environ={}, overrides={"database": "off"}), reactor)
    root = Resource()
    root.putChild(b"", Data(b"my application\n", "text/plain"))
    root.putChild(b"gateway", proxy_resource(node, UpstreamClient(reactor)))
    root.putChild(b"admin", admin_resource(node))
    reactor.listenTCP(8080, Site(root), interface="127.0.0.1")


if __name__ == "__main__":
    ensureDeferred(main()).addErrback(lambda failure: (failure.printTraceback(), reactor.stop()))
    reactor.run()
