"""``/config``: load and export a whole declarative configuration (DB-less nodes)."""
from __future__ import annotations

from typing import Any

from kongish import errors
from kongish.admin.call import AdminCall
from kongish.admin.dispatch import Endpoint
from kongish.db.declarative import configuration_hash, export_yaml, flatten, parse_declarative
from kongish.db.declarative_errors import flatten_errors

_DB_ONLY = "this endpoint is only available when Kong is configured to not use a database"
#: What Kong's ``flatten_errors`` flag takes as true (``check_hash`` takes only ``1``).
_TRUE = ("1", "true", "on", "yes")


def _require_dbless(call: AdminCall) -> None:
    if not call.db.read_only:
        raise errors.BadRequest(_DB_ONLY)


async def get_config(call: AdminCall) -> tuple[int, Any]:
    _require_dbless(call)
    tables = {name: list(table.values()) for name, table in call.db.tables.items()}
    return 200, {"config": export_yaml(tables)}


async def post_config(call: AdminCall) -> tuple[int, Any]:
    _require_dbless(call)
    decoded = call.body(allow_yaml=True)
    # as Kong's self.params, the flags come from the query or the body, and are no entities
    arguments = dict(decoded.args)
    flags = {name: str(arguments.pop(name, call.query.get(name, ""))).lower()
             for name in ("check_hash", "flatten_errors")}
    text = decoded.raw_text
    if text is None and isinstance(arguments.get("config"), str):
        text = arguments["config"]
    if text is not None:
        if flags["check_hash"] == "1" and configuration_hash(text) == call.node.configuration_hash:
            return 304, None
        document = parse_declarative(text)
    elif arguments:
        document = arguments
    else:
        raise errors.BadRequest("expected a declarative configuration")
    try:
        entities = flatten(document, plugins=call.plugins)
    except errors.InvalidDeclarative as invalid:
        if flags["flatten_errors"] not in _TRUE or not isinstance(invalid.fields, dict):
            raise
        flattened, left = flatten_errors(document, invalid.fields)
        raise errors.InvalidDeclarative(left, flattened=flattened) from None
    call.node.load_declarative(entities, configuration_hash(text) if text is not None else None)
    for follower in call.node.configuration_followers:  # a master's workers load it too
        await follower()
    return 201, {entity_type: {e["id"]: e for e in items} for entity_type, items in entities.items()}


def config_endpoints() -> list[Endpoint]:
    return [Endpoint("/config", {"GET": get_config, "POST": post_config})]
