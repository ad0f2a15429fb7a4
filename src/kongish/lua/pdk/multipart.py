"""``multipart/form-data`` bodies as ``kong.request.get_body()`` reads them.

Kong reads multipart request bodies with two different parsers, and they
disagree, so kongish has two as well. The Admin API goes through its web
framework (lapis over lua-resty-upload: :mod:`kongish.admin.body`), which
refuses malformed bodies and keeps only the last part of a repeated name.
``kong.request.get_body()`` goes through lua-multipart (Kong/lua-multipart
0.5.x, ``MultipartData.new(body, content_type):get_all_with_arrays()``), which
never fails: it reads the body line by line, gives the parts of a repeated
name as an array in body order, and gives a file part's content as its value
like any other part's. This module is a line-for-line port of that reader,
including what it makes of malformed bodies, so plugins see what Kong's see.

Like the Admin parser it is linear in the size of the body: every line is
looked at once.
"""
from __future__ import annotations

import re

#: A field's value: the content of its only part, or of each of its parts in order.
MultipartValue = bytes | list[bytes]

# Lua's %s and %S (space, \t, \n, \v, \f, \r).
_SPACE = b" \t\n\v\f\r"
_BOUNDARY = re.compile(rb";[ \t\n\v\f\r]*boundary=([^ \t\n\v\f\r]+)")
_LINE_END = re.compile(rb"[\r\n]")
_HEADER = re.compile(rb"[^ \t\n\v\f\r]:[ \t\n\v\f\r]*[^ \t\n\v\f\r]")
_NAME = re.compile(rb"[ \t\n\v\f\r]*[Nn][Aa][Mm][Ee]=")
_NAME_VALUE = re.compile(rb"[ \t\n\v\f\r]*([^=]*)")
_SEGMENT = re.compile(rb"[^;]+")


def boundary(content_type: bytes) -> bytes | None:
    """lua-multipart's boundary: ``;boundary=`` up to white space, one pair of quotes off."""
    match = _BOUNDARY.search(content_type)
    if match is None:
        return None
    value = match.group(1)
    if len(value) >= 2 and value[:1] == value[-1:] and value[:1] in (b'"', b"'"):
        value = value[1:-1]
    elif value in (b'"', b"'"):
        # Lua's sub(b, 2, -2) of a one-character string is "".
        value = b""
    return value or None


def parse(body: bytes, content_type: bytes) -> dict[bytes, MultipartValue]:
    """``get_all_with_arrays()``: each part name to its value, or to its values when repeated."""
    indexes = _decode(body, boundary(content_type))
    return {name: values[0] if len(values) == 1 else values for name, values in indexes.items()}


def _part_name(line: bytes) -> bytes | None:
    """The ``name=`` of a Content-Disposition line; the last one wins, its first and last bytes go."""
    name = None
    for segment in _SEGMENT.findall(line):
        if _HEADER.search(segment):
            continue
        start = _NAME.match(segment)
        if start is not None:
            value = _NAME_VALUE.match(segment, start.end()).group(1).rstrip(_SPACE)  # type: ignore[union-attr]
            name = value[1:-1]
    return name


def _decode(body: bytes, boundary: bytes | None) -> dict[bytes, list[bytes]]:
    """Each part name to the contents of its parts, in body order (lua-multipart's ``decode``)."""
    indexes: dict[bytes, list[bytes]] = {}
    if boundary is None:
        return indexes
    delimiter_end = len(boundary) + 2
    name: bytes | None = None
    value: list[bytes] = []
    in_value = False
    position = 0
    done = False
    while not done:
        found = _LINE_END.search(body, position)
        if found is not None:
            end = found.start()
            line = body[position:end]
            position = end + 1
        else:
            end = -1
            line = body[position:]
            done = True
        if line == b"":
            if found is not None and in_value:
                value.append(body[end:end + 1])
        elif line[:2] == b"--" and line[2:delimiter_end] == boundary:
            in_value = False
            if name is not None:
                # lua-multipart drops the line end before the delimiter: "\n" and
                # then a "\r" before it. For "\r\r" it clears the first "\r" only,
                # which leaves a hole in its Lua table: LuaJIT's table.concat then
                # either stops at the hole or raises, depending on the table's
                # allocation. Stopping there is taken here.
                if value and value[-1] == b"\n":
                    value.pop()
                    if value and value[-1] == b"\r":
                        value.pop()
                elif len(value) >= 2 and value[-2] == b"\r":
                    del value[-2:]
                indexes.setdefault(name, []).append(b"".join(value))
                value = []
                name = None
        elif not in_value and (line[:19].lower() == b"content-disposition" or _HEADER.search(line)):
            if line[:19].lower() == b"content-disposition":
                named = _part_name(line)
                name = name if named is None else named
            if found is not None and body[end:end + 4] == b"\r\n\r\n":
                in_value = True
                position = end + 4
        else:
            in_value = True
            value.append(line)
            if found is not None:
                value.append(body[end:end + 1])
    if name is not None:
        # An unterminated last part replaces every earlier part of its name.
        indexes[name] = [b"".join(value)]
    return indexes
