"""Writing Admin API answers: Kong's JSON bodies and headers on a twisted.web request."""
from __future__ import annotations

import json
from typing import Any

from twisted.web.server import Request

from kongish import KONG_VERSION

JSON_TYPE = b"application/json; charset=utf-8"


def encode_json(value: Any) -> bytes:
    """Compact JSON, as Kong's cjson writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def common_headers(request: Request) -> None:
    """Headers every Admin API answer carries (CORS and server token)."""
    origin = request.getHeader(b"origin")
    request.setHeader(b"access-control-allow-origin", origin or b"*")
    request.setHeader(b"access-control-allow-credentials", b"true")
    request.setHeader(b"server", f"kong/{KONG_VERSION}".encode())


def send(request: Request, status: int, body: Any = None, *, raw: bytes | None = None) -> None:
    """Finish ``request`` with ``status`` and a JSON ``body`` (or ``raw`` bytes, or nothing)."""
    if request.finished or request._disconnected:
        return
    request.setResponseCode(status)
    common_headers(request)
    payload = raw if raw is not None else (b"" if body is None else encode_json(body))
    if status == 204:
        payload = b""
    elif payload or raw is not None:
        request.setHeader(b"content-type", JSON_TYPE)
    request.setHeader(b"content-length", str(len(payload)).encode())
    if request.method != b"HEAD":
        request.write(payload)
    request.finish()
