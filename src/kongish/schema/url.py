"""URL splitting as LuaSocket's ``socket.url.parse`` does it, for the service
``url`` shorthand: Kong's results (a missing path is null, ``grpcs://h`` gets
port 80, and so on) follow from this parser's quirks."""
from __future__ import annotations

import re

import attrs


@attrs.frozen
class ParsedURL:
    scheme: str | None = None
    host: str | None = None
    port: str | None = None
    path: str | None = None


def parse_url(url: str) -> ParsedURL | None:
    """Split ``url``; ``None`` for the empty string. Query and fragment are dropped."""
    if url == "":
        return None
    scheme = None
    if match := re.match(r"([A-Za-z0-9][A-Za-z0-9+\-.]*):", url):
        scheme, url = match.group(1), url[match.end():]
    authority = None
    if match := re.match(r"//([^/]*)", url):
        authority, url = match.group(1), url[match.end():]
    for separator in "#?;":
        url = url.partition(separator)[0]
    path = url or None
    if authority is None:
        return ParsedURL(scheme=scheme, path=path)
    authority = re.sub(r"^[^@]*@", "", authority)
    port = None
    if match := re.search(r":([^:\]]*)\Z", authority):
        port, authority = match.group(1), authority[:match.start()]
    host = None
    if authority:
        bracketed = re.fullmatch(r"\[(.+)\]", authority, re.DOTALL)
        host = bracketed.group(1) if bracketed else authority
    return ParsedURL(scheme=scheme, host=host, port=port, path=path)
