"""Entity checks: Kong's cross-field rules, reported under ``@entity``.

Each check reads a completed record (every field present) and adds its
errors to the record's error dict. During a PATCH (``updating``) Kong words
the plain at-least-one message differently; the checks follow.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from kongish.schema.fields import Field
from kongish.schema.paths import get_path, is_nonempty, set_path


def quoted_list(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def add_entity_error(errors: dict[str, Any], message: str) -> None:
    errors.setdefault("@entity", []).append(message)


def _any_nonempty(data: dict[str, Any], paths: tuple[str, ...]) -> bool:
    return any(is_nonempty(get_path(data, path)) for path in paths)


@attrs.frozen
class AtLeastOneOf:
    """One of ``fields`` must be non-empty. ``hidden`` fields also satisfy the
    check without being named in the message (legacy fields Kong has dropped)."""

    fields: tuple[str, ...]
    hidden: tuple[str, ...] = ()

    def run(self, data: dict[str, Any], errors: dict[str, Any], *, updating: bool) -> None:
        if _any_nonempty(data, self.fields + self.hidden):
            return
        message = f"at least one of these fields must be non-empty: {quoted_list(self.fields)}"
        add_entity_error(errors, f"when updating, {message}" if updating else message)

    def describe(self) -> dict[str, Any]:
        return {"at_least_one_of": list(self.fields)}


@attrs.frozen
class ConditionalAtLeastOneOf:
    """When ``if_field`` passes ``if_match``, one of ``then_fields`` must be set;
    otherwise, when it passes ``else_match``, one of ``else_fields``. The messages
    take the quoted field list in place of ``%s`` when they have one."""

    if_field: str
    if_match: Field
    then_fields: tuple[str, ...]
    then_err: str
    else_match: Field | None = None
    else_fields: tuple[str, ...] = ()
    else_err: str = ""

    def run(self, data: dict[str, Any], errors: dict[str, Any], *, updating: bool) -> None:
        value = get_path(data, self.if_field)
        if value is None:
            return
        if self.if_match.validate(value) is None:
            fields, message = self.then_fields, self.then_err
        elif self.else_match is not None and self.else_match.validate(value) is None:
            fields, message = self.else_fields, self.else_err
        else:
            return
        if not _any_nonempty(data, fields):
            add_entity_error(errors, message.replace("%s", quoted_list(fields)))

    def describe(self) -> dict[str, Any]:
        return {"conditional_at_least_one_of": {
            "if_field": self.if_field, "if_match": self.if_match.describe(),
            "then_at_least_one_of": list(self.then_fields),
            "else_then_at_least_one_of": list(self.else_fields)}}


@attrs.frozen
class Conditional:
    """When ``if_field`` passes ``if_match``, ``then_field`` must pass ``then_match``.

    A failure gives two errors, as in Kong: ``then_field`` gets the field
    message, and ``@entity`` says which field the condition came from.
    """

    if_field: str
    if_match: Field
    then_field: str
    then_match: Field
    then_err: str | None = None

    def run(self, data: dict[str, Any], errors: dict[str, Any], *, updating: bool) -> None:
        value = get_path(data, self.if_field)
        if value is None or self.if_match.validate(value) is not None:
            return
        error = self.then_match.validate(get_path(data, self.then_field))
        if error is None:
            return
        set_path(errors, self.then_field, error)
        add_entity_error(errors, self.then_err or
                         f"failed conditional validation given value of field '{self.if_field}'")

    def describe(self) -> dict[str, Any]:
        return {"conditional": {"if_field": self.if_field, "if_match": self.if_match.describe(),
                                "then_field": self.then_field,
                                "then_match": self.then_match.describe()}}


@attrs.frozen
class MutuallyExclusiveSets:
    """Fields of ``set1`` and of ``set2`` may not both be non-empty."""

    set1: tuple[str, ...]
    set2: tuple[str, ...]

    def run(self, data: dict[str, Any], errors: dict[str, Any], *, updating: bool) -> None:
        first = [path for path in self.set1 if is_nonempty(get_path(data, path))]
        second = [path for path in self.set2 if is_nonempty(get_path(data, path))]
        if first and second:
            add_entity_error(errors, "these sets are mutually exclusive: "
                                     f"({quoted_list(first)}), ({quoted_list(second)})")

    def describe(self) -> dict[str, Any]:
        return {"mutually_exclusive_sets": {"set1": list(self.set1), "set2": list(self.set2)}}


@attrs.frozen
class FieldErrors:
    """Field errors computed by code (a plugin's ``check_entity``); they win
    over what the field itself reported, as a Kong subschema field would."""

    compute: Callable[[dict[str, Any]], dict[str, Any]]

    def run(self, data: dict[str, Any], errors: dict[str, Any], *, updating: bool) -> None:
        errors.update(self.compute(data))

    def describe(self) -> dict[str, Any]:
        return {"custom_entity_check": {}}
