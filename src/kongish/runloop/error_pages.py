"""Kong's error bodies for responses kongish itself produces.

Renderer A (router and plugin answers) picks the format from ``Accept`` only;
renderer B (errors of the upstream leg and the like) reads the request's
``Content-Type`` instead when it has no ``Accept``, and ``error_default_type``
when it has neither. Either way an unknown type gives JSON, as in Kong.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from html import escape

import attrs

from kongish.runloop.context import new_request_id

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

#: Kong's MIME_TYPES, looked up as written: a type it does not know gives JSON.
_KNOWN = {"text/html": "text/html", "application/json": "application/json",
          "text/plain": "text/plain", "application/xml": "application/xml",
          "application": "application/json", "text": "text/plain"}
_JSON = "application/json"
#: One Accept item as Kong's get_response_type reads it: a type, then parameters, q among them.
_TOKEN = r"[a-z0-9][a-z0-9\-!#$&^_+.]+"
_MEDIA_RANGE = re.compile(rf"""
    ((?:{_TOKEN}|\*) / (?:{_TOKEN}|\*))
    (?: \s*;\s* q = ( 1(?:\.0{{0,3}}|) | 0(?:\.\d{{0,3}}|) )
      | \s*;\s* {_TOKEN} (?:=[^;]*|) )*""", re.IGNORECASE | re.VERBOSE)


def default_message(status: int) -> str:
    return DEFAULT_MESSAGES.get(status, f"The upstream server responded with {status}")


def response_type(header: str | None) -> str:
    """The media type of Kong's answer to a request whose ``header`` is this (Kong's
    get_response_type): the highest ``q`` wins, a type Kong does not know is JSON."""
    chosen, best = _JSON, 0.0
    for item in (header or "").split(","):
        match = _MEDIA_RANGE.match(item.strip())
        if match is None:
            continue
        quality = 1.0 if match[2] is None else float(match[2])
        if quality > best:
            chosen, best = _mime_type(match[1]), quality
    return chosen


def _mime_type(media_range: str) -> str:
    """Kong's get_mime_type: ``type/*`` is its type's default, ``*/*`` JSON."""
    kind, _, subtype = media_range.partition("/")  # _MEDIA_RANGE saw to the slash
    if subtype == "*":
        return _JSON if kind == "*" else _KNOWN.get(kind, _JSON)
    return _KNOWN.get(media_range, _JSON)


def choose_type(accept: str | None, content_type: str | None = None,
                default_type: str | None = None) -> str:
    """Renderer A: pass only ``accept``. Renderer B: also the request's type and
    ``error_default_type``; as in Kong, the first of them the request has decides."""
    if default_type is None:
        return response_type(accept)
    return response_type(accept if accept is not None else
                         content_type if content_type is not None else default_type)


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


@attrs.frozen
class KongRefusals:
    """Kong's page for a request kongish's listener refuses before routing (400, 413, 414,
    505 ...): renderer B typed by Accept, then Content-Type, then ``error_default_type``."""

    default_type: str = "text/plain"

    def __call__(self, status: int, accept: str | None, content_type: str | None) -> tuple[str, bytes, str]:
        media = choose_type(accept, content_type, self.default_type)
        request_id = new_request_id()
        return media, render(media, default_message(status), request_id), request_id
