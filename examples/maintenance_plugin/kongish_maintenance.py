"""A third-party kongish plugin: answer every request of a route or service with a
maintenance page, without calling the upstream.

Install it beside kongish (``pip install examples/maintenance_plugin``), enable it with
``plugins = bundled,maintenance``, then::

    curl -X POST localhost:8001/services/plugin-testing/plugins \\
      --data name=maintenance --data config.status_code=503
"""
from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from kongish.plugins.interface import IPlugin, IPluginHandlers, IPluginHost
from kongish.runloop.context import RequestContext
from kongish.schema import Integer, Record, String
from kongish.schema.rules import between

CONFIG = Record(fields={
    "status_code": Integer(default=503, required=True, rules=(between(400, 599),)),
    "message": String(default="Down for maintenance", required=True),
    "retry_after": Integer(rules=(between(0, 86400),)),
})


@implementer(IPluginHandlers)
@attrs.frozen
class MaintenanceHandlers:
    """One configured instance: the answer is built once, when the entity is saved."""

    status: int
    body: bytes
    headers: dict[str, str]
    phases: frozenset[str] = frozenset({"access"})

    def run(self, phase: str, context: RequestContext) -> None:
        context.exit(self.status, self.body, self.headers)

    def close(self) -> None:
        pass


@implementer(IPlugin)
@attrs.frozen
class MaintenancePlugin:
    log: Logger
    name: str = "maintenance"
    #: Higher runs first: above pre-function's 1000000, the page answers before any
    #: other plugin's access code.
    priority: int = 2000000
    version: str = "1.0.0"
    config_schema: Record = CONFIG
    consumer_scoped: bool = True
    comma_escaped_fields: frozenset[str] = frozenset()

    def check_entity(self, entity: dict[str, Any]) -> dict[str, str]:
        return {}

    def configure(self, entity: dict[str, Any]) -> MaintenanceHandlers:
        config = entity["config"]
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if config.get("retry_after") is not None:
            headers["Retry-After"] = str(config["retry_after"])
        self.log.info("maintenance page on for plugin {id}", id=entity["id"])
        return MaintenanceHandlers(config["status_code"],
                                   json.dumps({"message": config["message"]}).encode(), headers)


def plugin(host: IPluginHost) -> MaintenancePlugin:
    """The ``kongish.plugins`` entry point: kongish calls it once, with the node's host."""
    return MaintenancePlugin(host.logger("maintenance"))
