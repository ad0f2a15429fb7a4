"""Kong's error bodies for responses kongish itself produces.

Renderer A (router and plugin answers) picks the format from ``Accept`` only and
defaults to JSON; renderer B (errors of the upstream leg and the like) also looks
at the request's ``Content-Type`` and then at ``error_default_type``.
"""
from __future__ import annotations

from collections.abc import Mapping
import json
from html import escape

#: Kong's default messages for statuses it ends a request with.
DEFAULT_MESSAGES: Mapping[int, str] = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 408: "Request timeout", 411: "Length required",
    412: "Precondition failed", 413: "Payload too large", 414: "URI too long",
    417: "Expectation failed", 494: "Request header or cookie too large",
    500: "An unexpected error occurred",
    502: "An invalid response was received from the upstream server",
    503: "The upstream server is currently unavailable",
    504: "The upstream server is timing out",
}

_TYPES = {
    "application/json": "application/json",
    "text/html": "text/html",
    "text/plain": "text/plain",
    "application/xml": "application/xml",
    "text/*": "text/plain",
    "application/*": "application/json",
    "*/*": "application/json",
}


def default_message(status: int) -> str:
    return DEFAULT_MESSAGES.get(status, f"The upstream server responded with {status}")


def _by_accept(accept: str | None) -> str | None:
    """The known type with the highest ``q`` in an Accept header, or None."""
    best: tuple[float, str] | None = None
    for item in (accept or "").split(","):
        media, *params = [part.strip() for part in item.split(";")]
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        chosen = _TYPES.get(media.lower())
        if chosen is not None and quality > 0 and (best is None or quality > best[0]):
            best = (quality, chosen)
    return best[1] if best else None


def choose_type(accept: str | None, content_type: str | None = None,
                default_type: str | None = None) -> str:
    """Renderer A: pass only ``accept``. Renderer B: also the request type and the default."""
    if default_type is None:
        return _by_accept(accept) or "application/json"
    by_content = _TYPES.get((content_type or "").split(";")[0].strip().lower())
    return _by_accept(accept) or by_content or _TYPES.get(default_type, "text/plain")


def render(media_type: str, message: str, request_id: str) -> bytes:
    """Kong 3.5+ templates, byte for byte."""
    if media_type == "application/json":
        text = f'{{\n  "message":"{_json_escape(message)}",\n  "request_id":"{request_id}"\n}}'
    elif media_type == "text/html":
        text = ("<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n"
                "    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n"
                f"    <p>{escape(message)}.</p>\n    <p>request_id: {request_id}</p>\n"
                "  </body>\n</html>\n")
    elif media_type == "application/xml":
        text = ('<?xml version="1.0" encoding="UTF-8"?>\n<error>\n'
                f"  <message>{escape(message)}</message>\n  <requestid>{request_id}</requestid>\n</error>\n")
    else:
        text = f"{message}\nrequest_id: {request_id}\n"
    return text.encode("utf-8")


def _json_escape(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]
