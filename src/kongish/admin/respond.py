"""Writing Admin API answers: Kong's JSON bodies and headers on a twisted.web request."""
from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.web.server import Request

from kongish import KONG_VERSION
from kongish.settings import Settings

JSON_TYPE = b"application/json; charset=utf-8"
SERVER_TOKEN = f"kong/{KONG_VERSION}".encode()


def encode_json(value: Any) -> bytes:
    """Compact JSON, as Kong's cjson writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@attrs.frozen
class AdminHeaders:
    """The ``Server`` and ``X-Kong-Admin-Latency`` headers, as kong.conf's ``headers`` enables them."""

    server: bool = True
    latency: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> AdminHeaders:
        enabled = settings.headers
        return cls(server="server" in enabled, latency="x-kong-admin-latency" in enabled)

    def apply(self, request: Request, latency_ms: int) -> None:
        """Set the headers every Admin API answer carries, CORS included."""
        origin = request.getHeader(b"origin")
        request.setHeader(b"access-control-allow-origin", origin or b"*")
        request.setHeader(b"access-control-allow-credentials", b"true")
        if self.server:
            request.setHeader(b"server", SERVER_TOKEN)
        else:
            request.responseHeaders.removeHeader(b"server")
        if self.latency:
            request.setHeader(b"x-kong-admin-latency", str(latency_ms).encode())


@attrs.frozen
class Document:
    """A body that is not JSON (``GET /metrics``' text), as a handler returns it."""

    content_type: bytes
    payload: bytes


def send(request: Request, status: int, body: Any = None, *, raw: bytes | None = None) -> None:
    """Finish ``request`` with ``status`` and a JSON ``body`` (or ``raw`` bytes, a ``Document``,
    or nothing)."""
    if request.finished or request._disconnected:
        return
    request.setResponseCode(status)
    content_type = JSON_TYPE
    if isinstance(body, Document):
        raw, content_type = body.payload, body.content_type
    payload = raw if raw is not None else (b"" if body is None else encode_json(body))
    if status in (204, 304):
        payload = b""
    elif payload or raw is not None:
        request.setHeader(b"content-type", content_type)
    request.setHeader(b"content-length", str(len(payload)).encode())
    if request.method != b"HEAD":
        request.write(payload)
    request.finish()
