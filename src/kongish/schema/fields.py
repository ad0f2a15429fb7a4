"""Field types of kongish's schema DSL, mirroring ``kong.db.schema``.

A field knows how to

* ``fill`` a value while an entity is completed (defaults, de-duplicated sets,
  nested records), like Kong's ``process_auto_fields`` on insert;
* ``validate`` it, returning ``None`` or Kong's error: a message, a list of
  per-element messages (``None`` for good elements) or a dict for records;
* ``infer`` it from form-encoded text (Kong's ``arguments.infer``);
* ``output`` it as the Admin API returns it.

Values are JSON-ready Python: ``None`` is Kong's ``null``; ``MISSING`` marks an
absent key, which Kong keeps distinct from ``null``.
"""
from __future__ import annotations

import copy
import enum
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import attrs

from kongish.schema.lua import tonumber
from kongish.schema.paths import is_nonempty
from kongish.schema.rules import Rule, len_min, uuid


class EntityCheck(Protocol):
    """A check over a whole record (``kongish.schema.checks`` has Kong's)."""

    def run(self, data: dict[str, Any], errors: dict[str, Any], *, updating: bool) -> None:
        """Add this check's errors for ``data`` to ``errors``."""

    def describe(self) -> dict[str, Any]:
        """The check as ``GET /schemas`` lists it."""


REQUIRED = "required field missing"


class _Missing(enum.Enum):
    MISSING = "MISSING"


#: An absent key (as opposed to ``None``, an explicit ``null``).
MISSING = _Missing.MISSING


def _element(field: Field) -> Field:
    """Kong treats array elements, map keys and map values as required."""
    return attrs.evolve(field, required=True)


@attrs.frozen(eq=False)
class Field:
    """A value of any type; the base of every field type.

    ``err`` replaces the message of any failing rule (Kong's ``err``).
    ``null_only`` is Kong's ``eq = null``: any non-null value is refused.
    ``legacy`` fields are accepted but only returned when non-empty; kongish
    uses that for settings Kong has dropped but older clients still send.
    """

    type_name: ClassVar[str] = "any"

    required: bool = False
    default: Any = MISSING
    rules: tuple[Rule, ...] = ()
    err: str | None = None
    null_only: bool = False
    legacy: bool = False

    def fill(self, value: Any) -> Any:
        if value is not MISSING:
            return value if value is None else self.normalize(value)
        if self.default is not MISSING:
            return copy.deepcopy(self.default)
        return MISSING if self.required else None

    def normalize(self, value: Any) -> Any:
        """Reshape a present, non-null value before validation."""
        return value

    def validate(self, value: Any) -> Any:
        """``None`` when valid, else Kong's error for this value."""
        if value is None or value is MISSING:
            return REQUIRED if self.required else None
        if self.null_only:
            return self.err or "value must be null"
        error = self.check_type(value)
        if error is not None:
            return error
        for rule in sorted(self.all_rules(), key=lambda rule: rule.rank):
            message = rule.check(value)
            if message is not None:
                return self.err or message
        return None

    def check_type(self, value: Any) -> Any:
        return None

    def all_rules(self) -> tuple[Rule, ...]:
        return self.rules

    def infer(self, value: Any) -> Any:
        """Kong's form-value inference: ``""`` is null, then per-type conversion."""
        if value is None or value is False:
            return value
        if value == "":
            return None
        return self.infer_present(value)

    def infer_present(self, value: Any) -> Any:
        return value

    def output(self, value: Any) -> Any:
        """The value as the Admin API returns it."""
        return None if value is None else self.output_present(value)

    def output_present(self, value: Any) -> Any:
        return value

    def describe(self) -> dict[str, Any]:
        """This field as ``GET /schemas`` shows it."""
        described: dict[str, Any] = {"type": self.type_name}
        if self.required:
            described["required"] = True
        if self.default is not MISSING:
            described["default"] = self.default
        if self.null_only:
            described["eq"] = None
        for rule in self.rules:
            if rule.arg is not None:
                described[rule.name] = rule.arg
        return described


@attrs.frozen(eq=False)
class String(Field):
    """Kong refuses empty strings unless a field sets its own minimum length."""

    type_name: ClassVar[str] = "string"

    def check_type(self, value: Any) -> Any:
        return None if isinstance(value, str) else "expected a string"

    def all_rules(self) -> tuple[Rule, ...]:
        if any(rule.name == "len_min" for rule in self.rules):
            return self.rules
        return (*self.rules, len_min(1))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@attrs.frozen(eq=False)
class Number(Field):
    type_name: ClassVar[str] = "number"

    def check_type(self, value: Any) -> Any:
        return None if _is_number(value) else "expected a number"

    def infer_present(self, value: Any) -> Any:
        if isinstance(value, str):
            number = tonumber(value)
            return value if number is None else number
        return value


@attrs.frozen(eq=False)
class Integer(Number):
    """Lua has one number type: an integral float such as ``80.0`` is an integer."""

    type_name: ClassVar[str] = "integer"

    def check_type(self, value: Any) -> Any:
        if isinstance(value, float):
            return None if value.is_integer() else "expected an integer"
        return None if _is_number(value) else "expected an integer"

    def output_present(self, value: Any) -> Any:
        return int(value) if isinstance(value, float) else value


@attrs.frozen(eq=False)
class Boolean(Field):
    type_name: ClassVar[str] = "boolean"

    def check_type(self, value: Any) -> Any:
        return None if isinstance(value, bool) else "expected a boolean"

    def infer_present(self, value: Any) -> Any:
        return {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value


@attrs.frozen(eq=False)
class Array(Field):
    """An ordered list. Lua cannot tell ``{}`` from ``[]``, so ``{}`` is an empty array."""

    type_name: ClassVar[str] = "array"
    type_error: ClassVar[str] = "expected an array"

    elements: Field = attrs.field(kw_only=True, converter=_element)

    def normalize(self, value: Any) -> Any:
        if value == {}:
            return []
        if not isinstance(value, list):
            return value
        return [item if item is None else self.elements.normalize(item) for item in value]

    def check_type(self, value: Any) -> Any:
        """Per-element errors as Kong's cjson writes them: holes are null, none trail."""
        if not isinstance(value, list):
            return self.type_error
        errors = [self.elements.validate(item) for item in value]
        while errors and errors[-1] is None:
            errors.pop()
        return errors or None

    def infer_present(self, value: Any) -> Any:
        if isinstance(value, dict):
            return value
        items = value if isinstance(value, list) else [value]
        return [self.elements.infer(item) for item in items]

    def output_present(self, value: Any) -> Any:
        return [self.elements.output(item) for item in value]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "elements": self.elements.describe()}


def _set_key(value: Any) -> Any:
    """Identity Lua gives a table key: tables are all distinct, ``true`` is not ``1``."""
    if isinstance(value, (list, dict)):
        return ("table", id(value))
    return (type(value) is bool, value)


@attrs.frozen(eq=False)
class Set(Array):
    """An array whose duplicates are dropped, keeping first occurrences."""

    type_name: ClassVar[str] = "set"
    type_error: ClassVar[str] = "expected a set"

    def normalize(self, value: Any) -> Any:
        if isinstance(value, list):
            seen: dict[Any, Any] = {}
            for item in value:
                seen.setdefault(_set_key(item), item)
            value = list(seen.values())
        return super().normalize(value)


@attrs.frozen(eq=False)
class Map(Field):
    """Keys and values of their own types; Kong reports only the first bad entry."""

    type_name: ClassVar[str] = "map"

    keys: Field = attrs.field(kw_only=True, converter=_element)
    values: Field = attrs.field(kw_only=True, converter=_element)

    def normalize(self, value: Any) -> Any:
        if value == []:
            return {}
        if not isinstance(value, dict):
            return value
        return {key: item if item is None else self.values.normalize(item) for key, item in value.items()}

    def check_type(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return "expected a map"
        for key, item in value.items():
            error = self.keys.validate(key)
            if error is None:
                error = self.values.validate(item)
            if error is not None:
                return error
        return None

    def infer_present(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self.values.infer(item) for key, item in value.items()}
        return value

    def output_present(self, value: Any) -> Any:
        return {key: self.values.output(item) for key, item in value.items()}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "keys": self.keys.describe(), "values": self.values.describe()}


@attrs.frozen(eq=False)
class Record(Field):
    """A nested object with its own fields and entity checks.

    ``checks`` run on this record's own value. ``entity_checks`` are for a
    plugin's ``config`` record: Kong declares them on the plugin entity (their
    paths read ``config.access``), so they run there and report under ``@entity``.
    ``abstract`` records (plugin ``config`` before the plugin is known) are
    neither filled nor accepted.
    """

    type_name: ClassVar[str] = "record"

    fields: Mapping[str, Field] = attrs.field(kw_only=True, factory=dict)
    checks: tuple[EntityCheck, ...] = ()
    entity_checks: tuple[EntityCheck, ...] = ()
    abstract: bool = False

    def fill(self, value: Any) -> Any:
        if value is MISSING and self.required and self.default is MISSING and not self.abstract:
            return self.fill_record({})
        return super().fill(value)

    def normalize(self, value: Any) -> Any:
        if self.abstract:
            return value
        if value == []:
            value = {}
        return self.fill_record(value) if isinstance(value, dict) else value

    def fill_record(self, data: dict[str, Any]) -> dict[str, Any]:
        """Defaults for absent fields; unknown keys are kept so validation can name them."""
        filled = dict(data)
        for name, field in self.fields.items():
            value = field.fill(data.get(name, MISSING))
            if value is not MISSING:
                filled[name] = value
        return filled

    def check_type(self, value: Any) -> Any:
        if self.abstract:
            return "error in schema definition: abstract field was not specialized"
        if not isinstance(value, dict):
            return "expected a record"
        return self.errors(value) or None

    def errors(self, data: dict[str, Any], *, updating: bool = False) -> dict[str, Any]:
        """Every error of a filled record: field errors, then entity checks (Kong's ``validate``)."""
        errors = self.field_errors(data)
        for name, field in self.fields.items():
            if field.required and data.get(name) is None:
                errors[name] = REQUIRED
        for check in self.checks:
            check.run(data, errors, updating=updating)
        return errors

    def field_errors(self, data: dict[str, Any]) -> dict[str, Any]:
        """Errors of the given keys only, without required fields or checks."""
        errors: dict[str, Any] = {}
        for name, value in data.items():
            field = self.fields.get(name)
            error = "unknown field" if field is None else field.validate(value)
            if error is not None:
                errors[name] = error
        return errors

    def specialized(self, override: Record) -> Record:
        """This record with ``override``'s fields replacing its own and its checks added."""
        return attrs.evolve(self, fields={**self.fields, **override.fields},
                            checks=self.checks + override.checks)

    def infer_present(self, value: Any) -> Any:
        if self.abstract or not isinstance(value, dict):
            return value
        return self.infer_record(value)

    def infer_record(self, data: dict[str, Any]) -> dict[str, Any]:
        return {key: self.fields[key].infer(item) if key in self.fields else item
                for key, item in data.items()}

    def output_present(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {name: field.output(value.get(name))
                for name, field in self.fields.items()
                if not (field.legacy and not is_nonempty(value.get(name)))}

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        if self.abstract:
            described["abstract"] = True
        else:
            described["fields"] = [{name: field.describe()} for name, field in self.fields.items()]
        if self.checks:
            described["entity_checks"] = [check.describe() for check in self.checks]
        return described


_ID = String(rules=(uuid(),))


@attrs.frozen(eq=False)
class Foreign(Field):
    """A reference to another entity: ``{"id": <uuid>}`` or null.

    ``target`` is the referenced entity's record, used (as Kong does) to report
    bad extra keys of a reference whose ``id`` is unusable.
    """

    type_name: ClassVar[str] = "foreign"

    reference: str = attrs.field(kw_only=True)
    target: Record | None = attrs.field(kw_only=True, default=None)

    def check_type(self, value: Any) -> Any:
        key = value.get("id", MISSING) if isinstance(value, dict) else MISSING
        if key is MISSING or key is False:
            errors = {"id": "missing primary key"}
        elif key is None:
            errors = {"id": REQUIRED}
        else:
            error = _ID.validate(key)
            errors = {"id": error} if error is not None else {}
        if not errors:
            return None
        if isinstance(value, dict) and self.target is not None:
            return self.target.field_errors(value) or errors
        return errors

    def infer_present(self, value: Any) -> Any:
        if isinstance(value, dict) and self.target is not None:
            return self.target.infer_record(value)
        return value

    def output_present(self, value: Any) -> Any:
        return {"id": value["id"]} if isinstance(value, dict) else value

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "reference": self.reference}
