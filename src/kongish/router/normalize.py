"""Request path normalisation, the way Kong does it before routing.

Kong works on raw bytes.  kongish keeps request text as ``str`` decoded from
the wire with UTF-8 and ``surrogateescape``: valid UTF-8 becomes ordinary text
(so it compares equal to route paths from JSON) while any other byte survives
as a lone surrogate and is restored exactly by :func:`wire_bytes`.
"""
from __future__ import annotations

import re

#: Characters whose percent-escapes Kong keeps (RFC 3986 reserved, plus ``%``).
RESERVED = frozenset(b"!*'();:@&=+$,/?%#[]")

_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")


def wire_text(raw: bytes) -> str:
    """Decode bytes from the wire without losing any of them."""
    return raw.decode("utf-8", "surrogateescape")


def wire_bytes(text: str) -> bytes:
    """Inverse of :func:`wire_text`."""
    return text.encode("utf-8", "surrogateescape")


def _decode_unreserved(match: re.Match[bytes]) -> bytes:
    byte = int(match.group(1), 16)
    if byte in RESERVED:
        return match.group(0).upper()
    return bytes((byte,))


def _remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 dot removal with merged slashes, step for step as kong.tools.uri."""
    output: list[bytes] = []
    while path:
        if path in (b"/.", b"/.."):
            if path == b"/.." and output:
                output.pop()
            path = b"/"
        elif path in (b".", b".."):
            path = b""
        elif path.startswith(b"../"):
            path = path[3:]
        elif path.startswith(b"./"):
            path = path[2:]
        elif path.startswith(b"/./"):
            path = path[2:]
        elif path.startswith(b"/../"):
            path = path[3:]
            if output:
                output.pop()
        elif path.startswith(b"//"):
            path = path[1:]
        else:
            end = path.find(b"/", 1)
            if end == -1:
                end = len(path)
            output.append(path[:end])
            path = path[end:]
    return b"".join(output)


def normalize_path(raw: str) -> str:
    """Normalise a request path (Kong reference 4.1) for matching and upstream use.

    Anything from the first ``?`` on is dropped first, so a whole request
    target may be passed.  Escapes of unreserved characters are decoded,
    reserved ones are kept with upper-case hex, dot segments are removed and
    runs of slashes merged.
    """
    path = wire_bytes(raw).partition(b"?")[0]
    if path in (b"", b"/"):
        return wire_text(path)
    path = _ESCAPE.sub(_decode_unreserved, path)
    if b"." in path or b"//" in path:
        path = _remove_dot_segments(path)
    return wire_text(path)
