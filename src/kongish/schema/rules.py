"""Value rules: Kong's per-field validators (``one_of``, ``between``, ``match_*``, ...).

Kong runs a field's validators in one fixed order whatever order the schema
lists them in, and reports only the first failure; ``Rule.rank`` is that order
so kongish reports the same message Kong would.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import attrs

Check = Callable[[Any], "str | None"]

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z", re.IGNORECASE)


@attrs.frozen
class Rule:
    """One validator: ``check(value)`` returns an error message or ``None``.

    ``name`` and ``arg`` describe the rule in ``GET /schemas`` output; rules
    whose ``arg`` is ``None`` (Lua functions in Kong) are left out there.
    """

    rank: int
    name: str
    check: Check
    arg: Any = None


def lua_len(value: Any) -> int:
    """Lua's ``#``: strings count bytes, tables count items."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    return len(value)


def _listing(options: Iterable[Any]) -> str:
    return ", ".join(str(option) for option in options)


def not_equal(wanted: Any) -> Rule:
    def check(value: Any) -> str | None:
        return f"value must not be {str(value).lower()}" if value is wanted else None
    return Rule(1, "ne", check, wanted)


def not_one_of(*options: Any) -> Rule:
    def check(value: Any) -> str | None:
        return f"must not be one of: {_listing(options)}" if value in options else None
    return Rule(2, "not_one_of", check, list(options))


def one_of(*options: Any) -> Rule:
    def check(value: Any) -> str | None:
        return None if value in options else f"expected one of: {_listing(options)}"
    return Rule(3, "one_of", check, list(options))


def timestamp() -> Rule:
    return Rule(5, "timestamp", lambda value: None if value > 0 else "expected a valid timestamp", True)


def uuid() -> Rule:
    return Rule(6, "uuid", lambda value: None if is_kong_uuid(value) else "expected a valid UUID", True)


def is_kong_uuid(text: str) -> bool:
    """Kong's ``utils.is_valid_uuid``: the 8-4-4-4-12 hexadecimal form, any case."""
    return _UUID.match(text) is not None


def between(low: int, high: int) -> Rule:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"value should be between {low} and {high}"
    return Rule(8, "between", check, [low, high])


def len_eq(size: int) -> Rule:
    return Rule(9, "len_eq", lambda value: None if lua_len(value) == size else f"length must be {size}", size)


def len_min(size: int) -> Rule:
    def check(value: Any) -> str | None:
        return None if lua_len(value) >= size else f"length must be at least {size}"
    return Rule(10, "len_min", check, size)


def starts_with(prefix: str) -> Rule:
    def check(value: str) -> str | None:
        return None if value.startswith(prefix) else f"should start with: {prefix}"
    return Rule(12, "starts_with", check, prefix)


def match_none(*forbidden: tuple[str, str]) -> Rule:
    """Fail with the paired message when any regular expression matches."""
    compiled = [(re.compile(pattern), message) for pattern, message in forbidden]

    def check(value: str) -> str | None:
        return next((message for pattern, message in compiled if pattern.search(value)), None)
    return Rule(14, "match_none", check, [{"pattern": p, "err": m} for p, m in forbidden])


def match(pattern: str) -> Rule:
    compiled = re.compile(pattern)
    return Rule(15, "match", lambda value: None if compiled.search(value) else f"invalid value: {value}",
                pattern)


def match_all(*required: tuple[str, str]) -> Rule:
    """Fail with the paired message of the first regular expression that does not match."""
    compiled = [(re.compile(pattern), message) for pattern, message in required]

    def check(value: str) -> str | None:
        return next((message for pattern, message in compiled if not pattern.search(value)), None)
    return Rule(16, "match_all", check, [{"pattern": p, "err": m} for p, m in required])


def match_any(patterns: Iterable[str], message: str) -> Rule:
    compiled = [re.compile(pattern) for pattern in patterns]

    def check(value: str) -> str | None:
        return None if any(pattern.search(value) for pattern in compiled) else message
    return Rule(17, "match_any", check, {"patterns": [p.pattern for p in compiled], "err": message})


def contains(wanted: Any) -> Rule:
    def check(value: list[Any]) -> str | None:
        return None if wanted in value else f"expected to contain: {wanted}"
    return Rule(18, "contains", check, wanted)


def custom(check: Check) -> Rule:
    """A validator written in Python (Kong's ``custom_validator``)."""
    return Rule(19, "custom_validator", check)


def mutually_exclusive_subsets(*subsets: tuple[str, ...]) -> Rule:
    """Elements of a set may come from one subset only (route protocol groups)."""
    def check(value: list[Any]) -> str | None:
        groups: list[tuple[str, ...]] = []
        for element in value:
            group = next((subset for subset in subsets if element in subset), None)
            if group is not None and group not in groups:
                groups.append(group)
        if len(groups) <= 1:
            return None
        listed = ", ".join("(" + ", ".join(f"'{e}'" for e in group) + ")" for group in groups)
        return f"these sets are mutually exclusive: {listed}"
    return Rule(20, "mutually_exclusive_subsets", check, [list(s) for s in subsets])
