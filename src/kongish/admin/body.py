"""Reading Admin API request bodies the way Kong does.

Kong accepts JSON, url-encoded and multipart bodies on POST, PUT and PATCH,
picks the parser by a case-sensitive prefix of the Content-Type, and answers
bodies it cannot read with fixed statuses and messages. :func:`decode_body`
reproduces those answers as :class:`BodyRejected`, so the Admin API can send
them as they are, and otherwise returns the arguments to validate.

The body comes from the network and is decoded on the reactor thread, so
every step is linear in its size. That is also why multipart bodies are split
here rather than by the ``email`` package, whose header parser is quadratic on
crafted parameters; part headers are read the way Kong's web framework
(lapis) reads them. Plugins' ``kong.request.get_body()`` reads multipart bodies
with a different parser in Kong (lua-multipart), with different results;
kongish ports that one in :mod:`kongish.lua.pdk.multipart`.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

import attrs

from kongish.admin.formkeys import key_path, merge, nest

#: Methods whose body Kong reads; it ignores the bodies of all others.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: Kong's limit on form arguments (pairs, or parts).
MAX_ARGUMENTS = 1000
#: How deeply one form name may nest; real Kong names use a handful of levels.
MAX_NAME_DEPTH = 100

_JSON = b"application/json"
_URLENCODED = b"application/x-www-form-urlencoded"
_MULTIPART = b"multipart/form-data"
_YAML = (b"application/yaml", b"text/yaml")
_FORM_PAIR = re.compile(rb"[^&]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Kong's multipart reader (lua-resty-upload) finds the boundary with this pattern.
_BOUNDARY = re.compile(rb';\s*boundary\s*=\s*(?:"([^"]+)"|([^\s;]+))')
_DISPOSITION_TYPE = re.compile(rb"[ \t]*[A-Za-z0-9._-]+")
_DISPOSITION_PARAMETER = re.compile(
    rb'[ \t]*;[ \t]*([A-Za-z0-9._-]+)[ \t]*=[ \t]*(?:([A-Za-z0-9._-]+)|"([^"]*)")')

#: A form value: a string, or the strings of a repeated name in order.
FormValue = str | list[str]
#: A form argument before key decoding: name and value.
FormArgument = tuple[str, FormValue]


@attrs.define
class BodyRejected(Exception):
    """The body cannot be read; carries Kong's exact answer."""

    status: int
    body: bytes


@attrs.frozen
class DecodedBody:
    """The arguments a body carries, and how schema validation must treat them."""

    #: Nested arguments: the JSON object as sent, or form/multipart pairs after key decoding.
    args: dict[str, Any]
    #: True for url-encoded and multipart bodies, whose strings get schema type inference.
    from_form: bool
    #: The text of a YAML body (``/config``); None otherwise.
    raw_text: str | None = None


def decode_body(
    content_types: list[bytes] | None,
    body: bytes,
    method: str,
    *,
    allow_yaml: bool = False,
    max_size: int = 10 * 1024 * 1024,
    comma_escaped: Collection[str] = frozenset(),
) -> DecodedBody:
    """Decode an Admin API request body, or raise :class:`BodyRejected`.

    ``content_types`` holds every Content-Type header value of the request;
    ``comma_escaped`` names the ``config`` fields whose form values read ``\\,`` as
    ``,`` (what the enabled plugins ask for: the serverless plugins' code fields).
    """
    if len(body) > max_size:
        raise _rejected(413, "Payload too large")
    if method not in BODY_METHODS:
        return DecodedBody({}, False)
    if content_types and len(content_types) > 1:
        raise BodyRejected(400, b"Multiple Content-Type headers not allowed")
    if not content_types:
        if body:
            raise BodyRejected(415, b"")
        return DecodedBody({}, False)
    content_type = content_types[0]
    if content_type.startswith(_JSON):
        return DecodedBody(_json_object(body), False)
    if content_type.startswith(_URLENCODED):
        return DecodedBody(_form_args(_urlencoded_arguments(body), comma_escaped), True)
    if content_type.startswith(_MULTIPART):
        return DecodedBody(_form_args(_multipart_arguments(content_type, body), comma_escaped), True)
    if allow_yaml and content_type.startswith(_YAML):
        return DecodedBody({}, False, _utf8(body))
    raise BodyRejected(415, b"")


def decode_query(query: bytes) -> dict[str, str]:
    """The arguments of a query string (list endpoints); the last of a repeated name wins."""
    arguments = {}
    for pair in _FORM_PAIR.findall(query):
        name, _, value = pair.partition(b"=")
        if name:
            arguments[_unquote(name).decode("utf-8", "replace")] = _unquote(value).decode("utf-8", "replace")
    return arguments


def _rejected(status: int, message: str) -> BodyRejected:
    return BodyRejected(status, json.dumps({"message": message}, separators=(",", ":")).encode())


def _json_object(body: bytes) -> dict[str, Any]:
    """The JSON object a body holds; Kong reads nothing else as arguments."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise _rejected(400, "Cannot parse JSON body") from None
    if _has_lone_surrogate(value):
        # Kong's JSON decoder refuses "\ud800"-style escapes that do not form a pair.
        raise _rejected(400, "Cannot parse JSON body")
    if not isinstance(value, dict):
        # Kong answers scalars with a 500 and reads arrays as maps of
        # positions; a client error says what is wrong.
        raise _rejected(400, "JSON body must be an object")
    return value


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is out of range")
    return number


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any key or string in a decoded JSON value cannot be written as UTF-8."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _form_args(arguments: Iterator[FormArgument], comma_escaped: Collection[str]) -> dict[str, Any]:
    """Key-decode and merge form arguments."""
    tables = []
    for name, value in arguments:
        path = key_path(name)
        if len(path) > MAX_NAME_DEPTH:
            raise _rejected(400, "Argument name nests too deeply")
        if len(path) >= 2 and path[0] == "config" and path[1] in comma_escaped:
            value = _unescape_commas(value)
        tables.append(nest(path, value))
    return merge(tables)


def _unescape_commas(value: FormValue) -> FormValue:
    r"""Turn ``\,`` back into ``,`` in Lua code typed into a form.

    Kong 0.14 split such strings on commas and documented ``\,`` as the
    escape, so commands written for it carry ``\,`` in their Lua code. Kong
    3.x never splits; this step keeps those commands working, for typed values
    and uploaded files (``-F config.access=@f.lua``) alike.
    """
    if isinstance(value, list):
        return [item.replace("\\,", ",") for item in value]
    return value.replace("\\,", ",")


def _urlencoded_arguments(body: bytes) -> Iterator[FormArgument]:
    """Name/value pairs with standard form decoding; a repeated name gives a list."""
    values: dict[str, list[str]] = {}
    for count, match in enumerate(_FORM_PAIR.finditer(body), 1):
        if count > MAX_ARGUMENTS:
            raise _rejected(400, "Too many arguments")
        name, _, value = match.group().partition(b"=")
        if name:
            values.setdefault(_utf8(_unquote(name)), []).append(_utf8(_unquote(value)))
    for decoded, items in values.items():
        yield decoded, items[0] if len(items) == 1 else items


def _unquote(text: bytes) -> bytes:
    return unquote_to_bytes(text.replace(b"+", b" "))


def _multipart_arguments(content_type: bytes, body: bytes) -> Iterator[FormArgument]:
    """Named parts of a multipart body; for a repeated name the last part wins, as in Kong."""
    if not body:
        return
    values: dict[str, str] = {}
    for count, (header_block, content) in enumerate(_multipart_parts(_boundary(content_type), body), 1):
        if count > MAX_ARGUMENTS:
            raise _rejected(400, "Too many arguments")
        name = _part_name(header_block)
        if name is not None:
            values[name] = _utf8(content)
    yield from values.items()


def _boundary(content_type: bytes) -> bytes:
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise _rejected(400, "Cannot parse multipart body")
    return match.group(1) or match.group(2)


def _multipart_parts(boundary: bytes, body: bytes) -> Iterator[tuple[bytes, bytes]]:
    """``(header block, content)`` of each part (RFC 2046: CRLF line ends, a closing delimiter)."""
    for chunk in (b"\r\n" + body).split(b"\r\n--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            return
        # After the delimiter: optional padding, CRLF, header lines, an empty line, the content.
        chunk = chunk.lstrip(b" \t")
        header_block, separator, content = chunk.partition(b"\r\n\r\n")
        if not chunk.startswith(b"\r\n") or not separator:
            break
        yield header_block[2:], content
    raise _rejected(400, "Cannot parse multipart body")


def _part_name(header_block: bytes) -> str | None:
    """A part's field name, None when it has none."""
    name = None
    for line in header_block.split(b"\r\n"):
        field, _, value = line.partition(b":")
        if field.strip().lower() == b"content-disposition":
            name = _disposition_parameters(value).get(b"name")
    return None if name is None else _utf8(unquote_to_bytes(name))


def _disposition_parameters(value: bytes) -> dict[bytes, bytes]:
    """``form-data; name="x"; filename="f.lua"``, read the way lapis reads it.

    A quoted value runs to the next quote and names are percent-decoded
    afterwards, matching how browsers and curl escape quotes in names.
    Reading stops at the first malformed parameter.
    """
    parameters: dict[bytes, bytes] = {}
    disposition_type = _DISPOSITION_TYPE.match(value)
    position = disposition_type.end() if disposition_type else len(value)
    while (parameter := _DISPOSITION_PARAMETER.match(value, position)) is not None:
        parameters[parameter[1]] = parameter[2] or parameter[3]
        position = parameter.end()
    return parameters


def _utf8(data: bytes) -> str:
    """Argument text; bytes that are not UTF-8 are refused rather than altered."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _rejected(400, "Cannot parse body: invalid UTF-8") from None
