"""A node's id: made once, then kept in the prefix so that restarts keep it, as Kong
keeps ``<prefix>/kong.id``."""
from __future__ import annotations

import os
import uuid

FILENAME = "kong.id"


class InvalidNodeId(Exception):
    """The prefix's id file holds something other than a UUID."""


def new_node_id() -> str:
    return str(uuid.uuid4())


def persistent_node_id(prefix: str) -> str:
    """The id in ``prefix``'s ``kong.id``, written there first if missing.

    Read once at start, before any listener opens, so the blocking file calls never
    delay a request.
    """
    path = os.path.join(prefix, FILENAME)
    try:
        with open(path, encoding="ascii") as stored:
            text = stored.read().strip()
    except FileNotFoundError:
        os.makedirs(prefix, exist_ok=True)
        node_id = new_node_id()
        partial = f"{path}.{os.getpid()}.tmp"
        with open(partial, "w", encoding="ascii") as fresh:
            fresh.write(node_id + "\n")
        os.replace(partial, path)  # a crash mid-write never leaves half an id behind
        return node_id
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidNodeId(f"could not read node id from {path}: {error}") from error
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidNodeId(f"file {path} contains invalid uuid: {text!r}") from None
