"""Kong-shaped Admin API errors.

Kong's DAO errors are ``{"code", "name", "message", "fields"}`` objects whose
``message`` embeds Lua-rendered tables (Penlight's ``pretty.write``). Clients
should read ``fields``, but the messages are reproduced too so that tests and
tools comparing whole bodies see what Kong writes.
"""
from __future__ import annotations

import math
import re
from typing import Any

#: Lua reserved words, which Penlight never writes as bare table keys.
_LUA_KEYWORDS = frozenset(
    "and break do else elseif end false for function goto if in local nil not or "
    "repeat return then true until while".split())
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_LONG_BRACKET = re.compile(r"([\[\]])(=*)\1")


def lua_quote(text: str) -> str:
    """Quote a string the way Penlight's ``stringx.quote_string`` does."""
    levels = [len(m.group(2)) for m in _LONG_BRACKET.finditer(text + "]")]
    if ("\n" in text or levels) and "\r" not in text:
        equals = "=" * ((max(levels) if levels else -1) + 1)
        if text.startswith("\n"):
            text = "\n" + text
        return f"[{equals}[{text}]{equals}]"
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\\n")
    return '"' + escaped.replace("\r", "\\r").replace("\0", "\\0") + '"'


def _lua_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if value != value:
            return "NaN"
        if math.isinf(value):
            return "Inf" if value > 0 else "-Inf"
        if value == int(value):
            return "%d" % value
        return "%.14g" % value
    if isinstance(value, str):
        return lua_quote(value)
    return lua_quote(str(value))


def lua_pretty(value: Any, space: str = "  ") -> str:
    """Render JSON-like data as Penlight's ``pretty.write`` renders the Lua table.

    Lists are Lua arrays in which ``None`` is a hole (Kong's per-element error
    tables); ``None`` as a map value is ``ngx.null``, written ``null`` as in
    Kong's unique-violation messages.
    """
    lines: list[str] = []
    pending = ""
    assign = "=" if space == "" else " = "

    def put(text: str) -> None:
        nonlocal pending
        pending += text

    def put_line(text: str) -> None:
        nonlocal pending
        lines.append(pending + text)
        pending = ""

    def eat_last_comma() -> None:
        if lines and lines[-1].endswith(","):
            lines[-1] = lines[-1][:-1]

    def key_text(key: Any) -> str:
        if isinstance(key, int):
            return f"[{key}]"
        if _IDENTIFIER.match(key) and key not in _LUA_KEYWORDS:
            return key
        quoted = lua_quote(key)
        return f"[ {quoted} ]" if quoted.startswith("[") else f"[{quoted}]"

    def write(item: Any, old_indent: str, indent: str) -> None:
        if not isinstance(item, (dict, list)):
            put_line(_lua_scalar(item) + ",")
            return
        new_indent = indent + space
        put_line("{")
        entries: list[tuple[Any, Any]]
        if isinstance(item, list):
            run = 0
            while run < len(item) and item[run] is not None:
                put(indent)
                write(item[run], indent, new_indent)
                run += 1
            entries = [(i + 1, v) for i, v in enumerate(item) if i >= run and v is not None]
        else:
            entries = sorted(item.items(), key=lambda kv: str(kv[0]))
        for key, val in entries:
            put(indent + key_text(key) + assign)
            write(val, indent, new_indent)
        eat_last_comma()
        put_line(old_indent + "},")

    if not isinstance(value, (dict, list)):
        return _lua_scalar(value)
    write(value, "", space)
    eat_last_comma()
    return ("\n" if space else "").join(lines)


def _error_entries(errors: dict[str, Any]) -> list[str]:
    """``field: message`` parts of Kong's summary, two levels deep like ``kong.db.errors``."""
    parts = list(errors.get("@entity", ()))
    for name in sorted((k for k in errors if k != "@entity"), key=str):
        value = errors[name]
        if isinstance(value, dict):
            subs = sorted(value.items(), key=lambda item: str(item[0]))
        elif isinstance(value, list):
            subs = [(str(i + 1), v) for i, v in enumerate(value) if v is not None]
        else:
            parts.append(f"{name}: {value}")
            continue
        for sub, message in subs:
            if isinstance(message, (dict, list)):
                message = lua_pretty(message)
            parts.append(f"{name}.{sub}: {message}")
    return parts


def _summary(parts: list[str], one: str, many: str) -> str:
    if len(parts) == 1:
        return f"{one} ({parts[0]})"
    return f"{len(parts)} {many} ({'; '.join(parts)})"


class KongError(Exception):
    """An error answered with a Kong-shaped JSON body."""

    status: int = 400

    def body(self) -> dict[str, Any]:
        raise NotImplementedError


class DAOError(KongError):
    """Kong's ``{"code", "name", "message"[, "fields"]}`` errors from ``kong.db.errors``."""

    code: int
    error_name: str

    def __init__(self, message: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "name": self.error_name, "message": self.message}
        if self.fields is not None:
            body["fields"] = self.fields
        return body


class SchemaViolation(DAOError):
    """Validation failed; ``fields`` mirrors the input with a message per bad value."""

    code, error_name = 2, "schema violation"

    def __init__(self, fields: dict[str, Any]) -> None:
        parts = _error_entries(fields)
        super().__init__(_summary(parts, "schema violation", "schema violations"), fields)


class PrimaryKeyViolation(DAOError):
    code, error_name = 3, "primary key violation"

    def __init__(self, entity_id: str) -> None:
        key = {"id": entity_id}
        super().__init__(f"primary key violation on key '{lua_pretty(key, '')}'", key)


class ForeignKeyViolation(DAOError):
    """The referenced parent does not exist.

    ``field`` is the foreign key's field name; it defaults to the parent
    entity name in the singular (``services`` -> ``service``).
    """

    code, error_name = 4, "foreign key violation"

    def __init__(self, key: dict[str, Any], entity: str, field: str | None = None) -> None:
        message = (f"the foreign key '{lua_pretty(key, '')}' does not reference "
                   f"an existing '{entity}' entity.")
        super().__init__(message, {field or entity.removesuffix("s"): key})


class ReferencedBy(DAOError):
    """Deleting a parent that children still point at (services with routes)."""

    code, error_name = 4, "foreign key violation"

    def __init__(self, entity: str, referencing: str) -> None:
        message = f"an existing '{referencing}' entity references this '{entity}' entity"
        super().__init__(message, {"@referenced_by": referencing})


class UniqueViolation(DAOError):
    code, error_name, status = 5, "unique constraint violation", 409

    def __init__(self, keys: dict[str, Any]) -> None:
        super().__init__(f"UNIQUE violation detected on '{lua_pretty(keys, '')}'", keys)


class DatabaseUnavailable(DAOError):
    """The store cannot be reached (PostgreSQL down): the proxy serves what it has, writes wait."""

    code, error_name, status = 8, "database error", 503

    def __init__(self, reason: str) -> None:
        super().__init__(f"the database is unreachable: {reason}")


class InvalidOffset(DAOError):
    code, error_name = 7, "invalid offset"

    def __init__(self, offset: str, reason: str = "bad base64 encoding") -> None:
        super().__init__(f"'{offset}' is not a valid offset: {reason}")


class InvalidSize(DAOError):
    code, error_name = 9, "invalid size"


class InvalidOptions(DAOError):
    """Bad query options (``tags``); Kong names the detail object ``options``."""

    code, error_name = 11, "invalid options"

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"invalid option ({option}: {message})", {option: message})

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["options"] = body.pop("fields")
        return body


class OperationUnsupported(DAOError):
    """Writes on a DB-less node; ``verb`` is create, update, ``create or update`` or remove."""

    code, error_name, status = 12, "operation unsupported", 405

    def __init__(self, verb: str, entity: str) -> None:
        super().__init__(f"cannot {verb} '{entity}' entities when not using a database")


class ForeignKeysUnresolved(DAOError):
    """A ``{"name": ...}`` style reference names no existing parent."""

    code, error_name = 13, "foreign keys unresolved"

    def __init__(self, field: str, key: dict[str, Any], entity: str) -> None:
        details = {
            name: (f"the foreign key cannot be resolved with "
                   f"'{lua_pretty({name: value}, '')}' for an existing '{entity}' entity")
            for name, value in key.items()
        }
        parts = [f"{field}.{name}: {details[name]}" for name in sorted(details)]
        message = _summary(parts, "foreign key unresolved", "foreign keys unresolved")
        super().__init__(message, {field: details})


class InvalidDeclarative(DAOError):
    code, error_name = 14, "invalid declarative configuration"

    def __init__(self, fields: dict[str, Any], message: str | None = None,
                 flattened: list[dict[str, Any]] | None = None) -> None:
        super().__init__(
            message or f"declarative config is invalid: {lua_pretty(fields, '')}", fields)
        #: One entry per bad entity, when the client asked for ``flatten_errors``.
        self.flattened = flattened

    def body(self) -> dict[str, Any]:
        body = super().body()
        if self.flattened is not None:
            body["flattened_errors"] = self.flattened
        return body


class _PlainError(KongError):
    """Errors Kong answers with a bare ``{"message": ...}``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"message": self.message}


class NotFound(_PlainError):
    status = 404

    def __init__(self) -> None:
        super().__init__("Not found")


class MethodNotAllowed(_PlainError):
    status = 405

    def __init__(self) -> None:
        super().__init__("Method not allowed")


class BadRequest(_PlainError):
    status = 400
