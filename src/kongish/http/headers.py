"""Header containers and names at the wire level: the case each name was given is what
goes out, as nginx sends it, and lookups stay case-insensitive."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import AnyStr

from twisted.web.http import datetimeToString
from twisted.web.http_headers import Headers

#: Statuses whose responses never have a body, whatever their Content-Length says.
NO_BODY_STATUSES = frozenset({204, 304})

#: Never forwarded in either direction (RFC 9110 section 7.6.1 plus Kong's Proxy* names).
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"proxy-connection", b"proxy",
})
def canonical(name: bytes) -> bytes:
    """``name`` as ``Headers`` stores it, for ``GatewayHeaders.put``."""
    probe = Headers()
    probe.setRawHeaders(name, [b""])
    return next(probe.getAllRawHeaders())[0]


try:  # the key Headers keeps a name's values under, as Headers computes (and caches) it
    from twisted.web.http_headers import _nameEncoder
    _key: Callable[[str | bytes], bytes] = _nameEncoder.encode
except ImportError:  # a Twisted without it: the same key, the slow way
    _key = lru_cache(maxsize=4096)(lambda name: canonical(name.encode("iso-8859-1") if isinstance(name, str)
                                                          else name))


#: Line breaks as the byte values they are: ``13 in value`` is a plain scan, where
#: ``b"\r" in value`` first fails to read its operand as an integer (an exception made and
#: dropped, several times the cost of the scan).
_CR, _LF = ord("\r"), ord("\n")


def _sanitize(value: bytes) -> bytes:
    """A value's line breaks as single spaces, as ``Headers`` sanitizes what it is given."""
    return b" ".join(value.splitlines())


class CasedHeaders(Headers):
    """Headers that send each name spelled as it was given, as nginx does.

    Lookups stay case-insensitive: values are kept under the name as ``Headers``
    canonicalizes it, and the spelling a client, an upstream or a plugin gave
    is kept beside it, for ``getAllRawHeaders`` (what the wire writers read).
    ``setRawHeaders`` takes the spelling of its call; ``addRawHeader`` keeps the
    one the header already has. kongish's own names are set canonically spelled.
    """

    __slots__ = ("_given",)

    def __init__(self, rawHeaders: Mapping[AnyStr, Sequence[AnyStr]] | None = None) -> None:
        #: Canonical name -> the spelling given, for names not given canonically.
        self._given: dict[bytes, bytes] = {}
        super().__init__(rawHeaders)

    def _spell(self, key: bytes, name: str | bytes) -> None:
        given = name.encode("iso-8859-1") if isinstance(name, str) else name
        if given == key:
            self._given.pop(key, None)
        else:
            self._given[key] = given

    def setRawHeaders(self, name: str | bytes, values: Sequence[str | bytes]) -> None:
        super().setRawHeaders(name, values)
        self._spell(_key(name), name)

    def set_bytes(self, name: bytes, values: list[bytes]) -> None:
        """``setRawHeaders`` for a name and values that are ``bytes`` (a plugin's header
        edit): the same name check and the same sanitizing, in fewer steps; ``values``
        (sanitized in place) becomes the header's list."""
        key = _key(name)
        for index, value in enumerate(values):
            if _CR in value or _LF in value:
                values[index] = _sanitize(value)
        self._rawHeaders[key] = values
        if name != key:
            self._given[key] = name
        elif self._given:
            self._given.pop(key, None)

    def addRawHeader(self, name: str | bytes, value: str | bytes) -> None:
        key = _key(name)
        if key not in self._rawHeaders:
            self._spell(key, name)
        super().addRawHeader(name, value)

    def add_parsed(self, name: bytes, value: bytes) -> None:
        """``addRawHeader`` for a header llhttp parsed, unchecked: llhttp refuses a name that is
        not a token and a value with CR, LF or NUL, which is all ``Headers`` would check."""
        key = _key(name)
        values = self._rawHeaders.get(key)
        if values is not None:
            values.append(value)
            return
        self._rawHeaders[key] = [value]
        if name != key:
            self._given[key] = name

    def removeHeader(self, name: AnyStr) -> None:
        key = _key(name)
        self._rawHeaders.pop(key, None)
        self._given.pop(key, None)

    def getAllRawHeaders(self) -> Iterator[tuple[bytes, Sequence[bytes]]]:
        """Every header as (name as given, values)."""
        given = self._given
        if not given:
            return iter(self._rawHeaders.items())
        return ((given.get(key, key), values) for key, values in self._rawHeaders.items())

    def copy(self) -> CasedHeaders:
        copied = self.__class__()
        copied._rawHeaders = {key: list(values) for key, values in self._rawHeaders.items()}
        copied._given = dict(self._given)
        return copied


class GatewayHeaders(CasedHeaders):
    """Headers that also take values kongish formats itself, unchecked.

    ``setRawHeaders`` checks the name and sanitizes every value: right for what
    clients, upstreams and plugins send, wasted on kongish's own digits, tokens
    and request ids, which are most headers of a short-circuit response.
    """

    __slots__ = ()

    def put(self, name: bytes, value: bytes) -> None:
        """Set ``name`` (as ``canonical`` gives it, and so spelled) to ``value``, which kongish
        made or took from Headers that sanitized it already: never to anything else."""
        self._rawHeaders[name] = [value]
        if self._given:
            self._given.pop(name, None)

    def respell(self, name: bytes) -> None:
        """Send ``name`` (as ``canonical`` gives it) so spelled, whoever set it and how."""
        if self._given:
            self._given.pop(name, None)

    def own(self, name: bytes) -> list[bytes] | None:
        """The values under ``name`` (as ``canonical`` gives it), without re-encoding the name."""
        return self._rawHeaders.get(name) or None


SERVER, VIA, CONTENT_TYPE, CONTENT_LENGTH = map(
    canonical, (b"server", b"via", b"content-type", b"content-length"))
HOST, CONNECTION, TE, LOCATION = map(canonical, (b"host", b"connection", b"te", b"location"))
(X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PATH,
 X_FORWARDED_PREFIX, X_REAL_IP) = map(canonical, (
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
    b"x-forwarded-path", b"x-forwarded-prefix", b"x-real-ip"))
RESPONSE_LATENCY, UPSTREAM_LATENCY, PROXY_LATENCY, UPSTREAM_STATUS, REQUEST_ID = map(canonical, (
    b"x-kong-response-latency", b"x-kong-upstream-latency", b"x-kong-proxy-latency",
    b"x-kong-upstream-status", b"x-kong-request-id"))


def header_tokens(headers: Headers, name: bytes) -> frozenset[bytes]:
    """The comma-separated tokens of all ``name`` headers, lower-cased."""
    tokens: set[bytes] = set()
    for value in headers.getRawHeaders(name, []):
        tokens.update(token.strip().lower() for token in value.split(b","))
    return frozenset(tokens)


def copy_end_to_end(source: Headers, skip: frozenset[bytes] = frozenset()) -> GatewayHeaders:
    """The headers of ``source`` minus hop-by-hop ones and those in ``skip``."""
    dropped = HOP_BY_HOP | header_tokens(source, b"connection") | skip
    copied = GatewayHeaders()
    if isinstance(source, CasedHeaders):  # checked and sanitized once already: copied as they are
        raw, given = copied._rawHeaders, copied._given
        spelled = source._given
        for key, kept in source._rawHeaders.items():
            if key.lower() not in dropped:
                raw[key] = list(kept)
                if key in spelled:
                    given[key] = spelled[key]
        return copied
    for name, values in source.getAllRawHeaders():
        if name.lower() not in dropped:
            copied.setRawHeaders(name, values)
    return copied


def host_without_port(host: bytes) -> bytes:
    """A Host header's host part (an IPv6 literal keeps its brackets)."""
    return host.rsplit(b":", 1)[0] if not host.endswith(b"]") else host


def http_date() -> bytes:
    """The Date header's value now; computed once a second, as nginx does."""
    return _date_of(int(time.time()))


@lru_cache(maxsize=2)
def _date_of(second: int) -> bytes:
    return datetimeToString(second)
