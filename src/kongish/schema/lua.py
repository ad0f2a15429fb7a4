"""Lua (LuaJIT) value semantics that Kong's form-argument inference relies on."""
from __future__ import annotations

import math
import re

_SPACE = " \t\n\v\f\r"
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_HEX = re.compile(r"([+-]?)0[xX]((?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)\Z")
_BINARY = re.compile(r"([+-]?)0[bB]([01]+)\Z")
_SPECIAL = re.compile(r"([+-]?)(inf|infinity|nan)\Z", re.IGNORECASE)
#: Beyond this, a double no longer holds every integer; keep such values as floats.
_EXACT = 2 ** 53


def _number(value: float) -> int | float:
    """Integral values as ``int`` so they print like Lua's ``%.14g`` does (``80``, not ``80.0``)."""
    if math.isfinite(value) and value.is_integer() and abs(value) <= _EXACT:
        return int(value)
    return value


def tonumber(text: str) -> int | float | None:
    """LuaJIT's ``tonumber(text)``: decimal, hex (with ``p`` exponents), ``0b`` binary,
    ``inf``/``nan``, surrounding whitespace allowed; ``None`` when it is not a number."""
    text = text.strip(_SPACE)
    if _DECIMAL.match(text):
        return _number(float(text))
    if hexa := _HEX.match(text):
        sign = -1.0 if hexa.group(1) == "-" else 1.0
        try:
            return _number(sign * float.fromhex(hexa.group(2)))
        except OverflowError:
            return sign * math.inf
    if binary := _BINARY.match(text):
        value = int(binary.group(2), 2)
        magnitude = float(value) if value.bit_length() < 1024 else math.inf
        return _number(-magnitude if binary.group(1) == "-" else magnitude)
    if special := _SPECIAL.match(text):
        if special.group(2).lower() == "nan":
            return math.nan
        return -math.inf if special.group(1) == "-" else math.inf
    return None
