"""Access log lines in nginx's ``combined`` format, the format of Kong's access logs.

twisted.web's own formatter quotes the address and writes an empty body as
``-``; log tooling written for nginx and Kong expects neither.
"""
from __future__ import annotations

import re
from typing import Any

#: What nginx writes as ``\xHH`` in a logged value: quotes, backslashes and anything
#: that is not printable ASCII.
_UNSAFE = re.compile(rb'["\\\x00-\x1f\x7f-\xff]')


def combined(timestamp: str, request: Any) -> str:
    """One line for ``request``; ``timestamp`` is twisted.web's ``[day/Mon/year:H:M:S +0000]``."""
    address = getattr(request.getClientAddress(), "host", None) or "-"
    return '%s - - %s "%s %s %s" %d %d "%s" "%s"' % (
        address, timestamp, _escaped(request.method), _escaped(request.uri),
        _escaped(request.clientproto), request.code, request.sentLength or 0,
        _escaped(request.getHeader(b"referer") or b"-"), _escaped(request.getHeader(b"user-agent") or b"-"))


def _escaped(value: bytes) -> str:
    return _UNSAFE.sub(lambda match: b"\\x%02X" % match.group()[0], value).decode("ascii")
