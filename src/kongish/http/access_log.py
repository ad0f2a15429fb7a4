"""Access log lines as Kong writes them: nginx's ``combined`` format, and on the proxy
``kong_log_format``, which adds the request id.

twisted.web's own formatter quotes the address and writes an empty body as
``-``; log tooling written for nginx and Kong expects neither.
"""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from kongish.http.peer import socket_peer

#: What nginx writes as ``\xHH`` in a logged value: quotes, backslashes and anything
#: that is not printable ASCII.
_UNSAFE = re.compile(rb'["\\\x00-\x1f\x7f-\xff]')


def record(request: Any, *, request_id: str | None = None, remote_addr: str | None = None,
           outbound: tuple[int, float] | None = None) -> None:
    """Keep on ``request`` what its line needs beyond twisted.web's fields: the request id,
    the client a trusted proxy reported, and the outbound calls its functions made before
    the response ended (how many, seconds in all). ``Site.log`` and ``HTTPFactory.log`` hand
    the formatters the request object alone, so that is where these travel."""
    if request_id is not None:
        request.request_id = request_id
    if remote_addr is not None:
        request.remote_addr = remote_addr
    if outbound is not None:
        request.outbound = outbound


def combined(timestamp: str, request: Any) -> str:
    """One line for ``request``; ``timestamp`` is twisted.web's ``[day/Mon/year:H:M:S +0000]``.

    The address is nginx's ``$remote_addr``: the client a trusted proxy reported, if the
    proxy flow recorded one, else the socket's other end (never a PROXY line's claim).
    """
    address = getattr(request, "remote_addr", None) or socket_peer(request) or "-"
    return '%s - %s %s "%s %s %s" %d %d "%s" "%s"' % (
        address, _remote_user(request.getHeader(b"authorization")), timestamp,
        _escaped(request.method), _escaped(request.uri),
        _escaped(request.clientproto), request.code, request.sentLength or 0,
        _escaped(request.getHeader(b"referer") or b"-"), _escaped(request.getHeader(b"user-agent") or b"-"))


def kong(timestamp: str, request: Any) -> str:
    """Kong's proxy format: ``combined`` and ``kong_request_id: "<id>"``; then, for a request
    whose functions called out, ``kongish_outbound: "<calls> <milliseconds>ms"``."""
    line = '%s kong_request_id: "%s"' % (combined(timestamp, request),
                                         getattr(request, "request_id", None) or "")
    outbound = getattr(request, "outbound", None)
    if outbound is None:
        return line
    calls, seconds = outbound
    return '%s kongish_outbound: "%d %dms"' % (line, calls, round(seconds * 1000))


def _remote_user(authorization: bytes | None) -> str:
    """nginx's ``$remote_user``: the user name of Basic credentials, else ``-``.

    As nginx decodes them: padding optional, and no colon means no user.
    """
    scheme, _, credentials = (authorization or b"").strip().partition(b" ")
    if scheme.lower() != b"basic":
        return "-"
    encoded = credentials.strip().partition(b"=")[0]
    try:
        decoded = base64.b64decode(encoded + b"=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        return "-"
    user, colon, _ = decoded.partition(b":")
    return _escaped(user) if colon and user else "-"


def _escaped(value: bytes) -> str:
    return _UNSAFE.sub(lambda match: b"\\x%02X" % match.group()[0], value).decode("ascii")
