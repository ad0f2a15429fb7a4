"""Byte codecs behind ``ngx.md5``, ``ngx.encode_base64`` and friends.

Lua strings are byte strings; lupa hands them to Python as ``bytes`` (or as
``str`` when the runtime decodes UTF-8), so every function here accepts both
and returns ``bytes``, which lupa always pushes back as a plain Lua string.
"""
from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import zlib

from lupa.luajit21 import lua_type


def as_bytes(value: bytes | str) -> bytes:
    """The bytes of a Lua string, whichever way lupa converted it.

    Anything else is refused before Python touches it: reading an attribute
    of a Lua table would run the table's Lua metamethods from Python.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise TypeError(f"string expected, got {lua_type(value) or type(value).__name__}")


def md5_hex(data: bytes | str) -> bytes:
    return hashlib.md5(as_bytes(data)).hexdigest().encode()


def md5_bin(data: bytes | str) -> bytes:
    return hashlib.md5(as_bytes(data)).digest()


def sha1_bin(data: bytes | str) -> bytes:
    return hashlib.sha1(as_bytes(data)).digest()


def hmac_sha1(key: bytes | str, data: bytes | str) -> bytes:
    return hmac.new(as_bytes(key), as_bytes(data), hashlib.sha1).digest()


def crc32(data: bytes | str) -> int:
    return zlib.crc32(as_bytes(data))


def encode_base64(data: bytes | str, no_padding: bool = False) -> bytes:
    encoded = base64.b64encode(as_bytes(data))
    return encoded.rstrip(b"=") if no_padding else encoded


def decode_base64(data: bytes | str) -> bytes | None:
    """Standard alphabet, padding optional; ``None`` (Lua ``nil``) for bad input, as nginx does."""
    text = as_bytes(data)
    if len(text) % 4 == 1:
        return None
    text += b"=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return None


def parse_http_time(text: bytes | str) -> int | None:
    """``ngx.parse_http_time``: seconds since the epoch, or ``None`` when unparsable."""
    try:
        parsed = email.utils.parsedate_tz(as_bytes(text).decode("latin-1"))
    except (TypeError, ValueError):
        return None
    return None if parsed is None else int(email.utils.mktime_tz(parsed))
