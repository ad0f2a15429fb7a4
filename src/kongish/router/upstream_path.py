"""The path sent upstream, built from the service path and the request path.

Follows Kong reference 4.5: ``v0`` is what Kong 3.x does; ``v1`` is the
deprecated 1.x behaviour, honoured when a route asks for it.
"""
from __future__ import annotations

import re

from kongish.router.normalize import wire_bytes

#: Bytes Kong forwards as they are; everything else is percent-encoded.
_UNESCAPED = re.compile(rb"[^!#$&'()*+,/:;=?@\[\]A-Za-z0-9\-_.~%]")


def escape_path(path: str) -> str:
    """Percent-encode what is unsafe in an HTTP request line, as Kong does.

    ``%`` is left alone, so escaping an escaped path changes nothing.
    """
    escaped = _UNESCAPED.sub(lambda m: b"%%%02X" % m.group(0)[0], wire_bytes(path))
    return escaped.decode("ascii")


def _sanitize_postfix(postfix: str) -> str:
    """Drop a leading dot segment, which could climb out of the service path."""
    if postfix in (".", ".."):
        return ""
    if postfix.startswith("./"):
        return postfix[2:]
    if postfix.startswith("../"):
        return postfix[3:]
    return postfix


def _v0(base: str, request_path: str, postfix: str, strip_path: bool) -> str:
    if base.endswith("/"):
        if not strip_path:
            return base + request_path[1:]
        if not postfix:
            if base == "/":
                return "/"
            return base if request_path.endswith("/") else base[:-1]
        if postfix.startswith("/"):
            return base[:-1] + postfix
        return base + postfix
    if not strip_path:
        return base if request_path == "/" else base + request_path
    if not postfix:
        if len(request_path) > 1 and request_path.endswith("/"):
            return base + "/"
        return base
    if postfix.startswith("/"):
        return base + postfix
    return base + "/" + postfix


def _v1(base: str, request_path: str, postfix: str, strip_path: bool) -> str:
    if not strip_path:
        return base + request_path[1:]
    if base.endswith("/") and postfix.startswith("/"):
        return base[:-1] + postfix
    return base + postfix


def build_upstream_path(
    service_path: str | None,
    request_path: str,
    matched_prefix: str | None,
    strip_path: bool,
    path_handling: str = "v0",
) -> str:
    """Join the service path and the normalised request path (not yet escaped).

    ``matched_prefix`` is the part of ``request_path`` a route path matched,
    or ``None`` when the route has no paths (then only the leading ``/`` is
    stripped).
    """
    base = service_path or "/"
    stripped = len(matched_prefix) if matched_prefix is not None else 1
    postfix = _sanitize_postfix(request_path[stripped:])
    join = _v1 if path_handling == "v1" else _v0
    return join(base, request_path, postfix, strip_path)
