"""Kong declarative configuration as text: parse kong.yml/kong.json, export, hash.

Parsing follows Kong's loader: JSON first, then YAML, with Kong's error
messages, so that ``POST /config`` and ``declarative_config`` reject the same
files Kong rejects, in the same words. Turning the parsed document into
entities is :func:`kongish.db.declarative_flatten.flatten`.
"""
from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any, NoReturn

import yaml

from kongish.db.declarative_flatten import ENTITY_TYPES, FOREIGN_KEYS, flatten
from kongish.errors import InvalidDeclarative

__all__ = ["parse_declarative", "flatten", "export_yaml", "configuration_hash"]

#: Parsing stops beyond this many nested arrays/objects (no Kong file comes close).
MAX_DEPTH = 100
#: Parsing stops beyond this many values once YAML aliases are expanded.
MAX_VALUES = 1_000_000


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loading, minus timestamps: a date stays the text it was, as in Kong."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def parse_declarative(text: str, *, filename: str | None = None) -> dict[str, Any]:
    """Parse declarative configuration text into a document (a dict).

    Without a ``filename`` JSON is tried first, then YAML; with one, its ending
    decides (``json``, or ``yml``/``yaml``), as ``declarative_config`` does in
    Kong. Every failure is an ``InvalidDeclarative``.
    """
    wants_json = filename is None or filename.endswith("json")
    wants_yaml = filename is None or filename.endswith(("yml", "yaml"))
    if not (wants_json or wants_yaml):
        _fail(f"unknown file type: {filename}. (Accepted types: json, yaml)")

    problem = "expected an object"
    if wants_json:
        try:
            document = json.loads(text)
        except (ValueError, RecursionError) as error:
            problem = str(error) if isinstance(error, ValueError) else "nesting is too deep"
        else:
            if isinstance(document, dict):
                return _plain(document)
    if wants_yaml:
        try:
            document = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as error:
            problem = _yaml_problem(error)
        except RecursionError:
            problem = "nesting is too deep"
        else:
            problem = "expected an object"
            if isinstance(document, dict):
                return _plain(document)
    _fail(f"failed parsing declarative configuration: {problem}")


def _yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark
        where = f"{mark.line + 1}:{mark.column + 1}: " if mark else ""
        return where + error.problem
    return str(error)


def _plain(document: dict[Any, Any]) -> dict[str, Any]:
    """Copy a parsed document into plain JSON data, or fail naming what is not.

    YAML can express what JSON cannot (non-text keys, binary, sets, alias
    cycles, alias bombs); Kong's entities are JSON, so those are refused here
    rather than deep inside validation.
    """
    budget = [MAX_VALUES]

    def copy(value: Any, depth: int, ancestors: frozenset[int]) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            _fail(f"failed parsing declarative configuration: more than {MAX_VALUES} values")
        if depth > MAX_DEPTH:
            _fail(f"failed parsing declarative configuration: nested deeper than {MAX_DEPTH} levels")
        if value is None or isinstance(value, (str, bool, int, float)):
            return value
        if isinstance(value, (datetime.date, datetime.datetime)):
            return value.isoformat()
        if isinstance(value, (dict, list)):
            if id(value) in ancestors:
                _fail("failed parsing declarative configuration: a YAML alias refers to itself")
            inside = ancestors | {id(value)}
            if isinstance(value, list):
                return [copy(item, depth + 1, inside) for item in value]
            return {_key(key): copy(item, depth + 1, inside) for key, item in value.items()}
        _fail(f"failed parsing declarative configuration: unsupported value of type {type(value).__name__}")

    return copy(document, 0, frozenset())


def _key(key: Any) -> str:
    """Keys become text, as JSON would write them (``1`` -> ``"1"``, ``true`` -> ``"true"``)."""
    return key if isinstance(key, str) else json.dumps(key)


def _fail(message: str) -> NoReturn:
    raise InvalidDeclarative({"error": message})


def export_yaml(entities: dict[str, list[dict[str, Any]]]) -> str:
    """Render entities as a ``_format_version: "3.0"`` file with flat top-level lists.

    Foreign keys become bare ids, which the file format reads back as
    references, as in Kong's own export.
    """
    document: dict[str, Any] = {"_format_version": "3.0", "_transform": False}
    for entity_type in ENTITY_TYPES:
        if entities.get(entity_type):
            document[entity_type] = [_with_bare_references(entity_type, entity)
                                     for entity in entities[entity_type]]
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _with_bare_references(entity_type: str, entity: dict[str, Any]) -> dict[str, Any]:
    foreign = FOREIGN_KEYS[entity_type]
    return {field: value["id"] if field in foreign and isinstance(value, dict) else value
            for field, value in entity.items()}


def configuration_hash(text: str) -> str:
    """Kong's ``configuration_hash``: the MD5 of the submitted text, in hex."""
    return hashlib.md5(text.encode("utf-8", "surrogatepass")).hexdigest()
