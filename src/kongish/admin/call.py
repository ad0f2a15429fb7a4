"""One Admin API call: what a handler needs from the request and the node."""
from __future__ import annotations

from typing import IO, TYPE_CHECKING, cast

import attrs
from twisted.web.server import Request

from kongish.admin.body import DecodedBody, decode_body, decode_query

if TYPE_CHECKING:
    from kongish.node import Node


@attrs.define(eq=False)
class AdminCall:
    request: Request
    node: Node
    params: dict[str, str]
    _decoded: DecodedBody | None = None

    @property
    def db(self):
        return self.node.database

    @property
    def plugins(self):
        return self.node.registry.lookup

    @property
    def query(self) -> dict[str, str]:
        _, _, query = self.request.uri.partition(b"?")
        return decode_query(query)

    def body(self, *, allow_yaml: bool = False) -> DecodedBody:
        """The decoded body (read once); raises BodyRejected with Kong's answer."""
        if self._decoded is None:
            # Request.gotLength gives every request its content before it is rendered.
            content = cast("IO[bytes]", self.request.content)
            # getRawHeaders hands back its stored list; decode_body only indexes it.
            content_types = cast("list[bytes] | None",
                                 self.request.requestHeaders.getRawHeaders(b"content-type"))
            content.seek(0)
            self._decoded = decode_body(
                content_types,
                content.read(), self.request.method.decode("ascii"),
                allow_yaml=allow_yaml, max_size=self.node.settings.admin_max_body_size,
                comma_escaped=self.node.registry.comma_escaped_fields)
        return self._decoded

    def header(self, name: str) -> str | None:
        value = self.request.getHeader(name.encode("ascii"))
        return value.decode("latin-1") if value is not None else None

