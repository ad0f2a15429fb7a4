"""Absolute-form request targets (``GET http://host/path HTTP/1.1``), as nginx reads them."""
from __future__ import annotations

import re

_ABSOLUTE = re.compile(rb"^https?://([^/?#]+)(.*)$", re.IGNORECASE | re.DOTALL)


def origin_form(target: bytes) -> tuple[bytes, bytes] | None:
    """``(host, origin-form target)`` for an absolute-form target, else ``None``.

    nginx routes such a request by the target's path and takes its host from
    the target, ignoring the Host header (RFC 9112 section 3.2.2).
    """
    match = _ABSOLUTE.match(target)
    if match is None:
        return None
    host, rest = match.groups()
    return host, rest if rest.startswith(b"/") else b"/" + rest
