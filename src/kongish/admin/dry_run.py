"""``POST /plugins/{plugins}/dry-run`` and ``POST /schemas/plugins/{name}/dry-run``.

A serverless plugin (a stored entity, or a config validated as ``POST /plugins`` would)
runs for one sample request through the whole proxy flow, in memory, on this node's Lua
engine (``kongish.runloop.dry_run``); the answer says what the client would get, what
would have gone upstream, what the functions logged and what each of their runs cost.
"""
from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from kongish import errors
from kongish.admin.call import AdminCall
from kongish.admin.dispatch import Endpoint
from kongish.http.memory import WireResponse
from kongish.http.stub import StubRequest, StubResponse
from kongish.lua.cost import FunctionCost
from kongish.plugins.interface import IPlugin
from kongish.plugins.serverless.handler import ServerlessPlugin
from kongish.runloop.dry_run import DryRunResult, SampleRequest, default_target, dry_run
from kongish.schema import ENTITIES, complete, infer
from kongish.schema.lua import tonumber

Answer = tuple[int, Any]

#: An HTTP token (RFC 9110): a method or a header name.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
#: What a request path keeps as it is; anything else is percent-encoded.
_PATH_SAFE = "/!$&'()*+,;=:@%~-._?"
#: Framing headers the dry run sets itself from the body.
_FRAMING = (b"content-length", b"transfer-encoding")
_RUN_FIELDS = ("request", "upstream_response", "allow_outbound")


def _serverless(plugin: IPlugin | None, name: str) -> IPlugin:
    if not isinstance(plugin, ServerlessPlugin):
        raise _Refused(f"only pre-function and post-function plugins have a dry run, not '{name}'")
    return plugin


class _Refused(errors.KongError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"message": self.message}


async def plugin_dry_run(call: AdminCall) -> Answer:
    """A stored plugin entity, compiled afresh: the live one's upvalues are not touched."""
    entity = call.db.find("plugins", call.params["plugins"])
    if entity is None:
        raise errors.NotFound()
    plugin = _serverless(call.plugins(entity["name"]), entity["name"])
    return 200, await _run(call, plugin, entity, call.body().args)


async def schema_dry_run(call: AdminCall) -> Answer:
    """A config validated by the plugin's schema as ``POST /plugins`` validates it."""
    name = call.params["name"]
    plugin = call.plugins(name)
    if plugin is None:
        return 404, {"message": f"No plugin named '{name}'"}
    plugin = _serverless(plugin, name)
    args = call.body().args
    data: dict[str, Any] = {"name": name}
    if "config" in args:
        data["config"] = args["config"]
    if call.body().from_form:
        data = infer(ENTITIES["plugins"], data, plugins=call.plugins, plugin_name=name)
    entity = complete(ENTITIES["plugins"], data, plugins=call.plugins)
    entity["id"] = str(uuid.uuid4())
    return 200, await _run(call, plugin, entity, args, ("config", *_RUN_FIELDS))


async def _run(call: AdminCall, plugin: IPlugin, entity: dict[str, Any], args: dict[str, Any],
               allowed: Iterable[str] = _RUN_FIELDS) -> Any:
    problems: dict[str, Any] = {name: "unknown field" for name in args if name not in allowed}
    form = call.body().from_form
    request = _request(call, entity, args.get("request"), problems)
    upstream = _upstream(args.get("upstream_response"), form, problems)
    allow = _boolean(args.get("allow_outbound", False), form)
    if allow is None:
        problems["allow_outbound"] = "expected a boolean"
    if problems:
        raise errors.SchemaViolation(problems)
    assert request is not None and upstream is not None and allow is not None
    result = await dry_run(call.node, plugin, entity, request, upstream, allow_outbound=allow)
    return _answer(result)


# the body


def _record(value: Any, field: str, problems: dict[str, Any]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems[field] = "expected a record"
        return {}
    return value


def _request(call: AdminCall, entity: dict[str, Any], value: Any,
             problems: dict[str, Any]) -> SampleRequest | None:
    given = _record(value, "request", problems)
    found: dict[str, str] = {}
    unknown = [name for name in given if name not in ("method", "path", "query", "headers", "body")]
    for name in unknown:
        found[name] = "unknown field"
    path, host = default_target(call.node, entity)
    method = given.get("method", "GET")
    if not isinstance(method, str) or not _TOKEN.match(method):
        found["method"] = "expected an HTTP method"
    path = given.get("path", path)
    if not isinstance(path, str) or not path.startswith("/"):
        found["path"] = "expected a path starting with /"
    target = quote(path, safe=_PATH_SAFE) if isinstance(path, str) else ""
    query = _query(given.get("query"), found)
    if query:
        target += ("&" if "?" in target else "?") + query
    headers = _headers(given.get("headers"), "headers", found)
    body, json_body = _body(given.get("body"), "body", found)
    if found:
        problems["request"] = found
        return None
    headers = [(name, value) for name, value in headers if name.lower() not in _FRAMING]
    names = {name.lower() for name, _ in headers}
    if b"host" not in names:
        headers.insert(0, (b"Host", (host or "localhost").encode()))
    if json_body and b"content-type" not in names:
        headers.append((b"Content-Type", b"application/json"))
    return SampleRequest(method, target.encode("utf-8"), tuple(headers), body)


def _upstream(value: Any, form: bool, problems: dict[str, Any]) -> StubResponse | None:
    given = _record(value, "upstream_response", problems)
    found: dict[str, str] = {}
    for name in given:
        if name not in ("status", "headers", "body"):
            found[name] = "unknown field"
    status = given.get("status", 200)
    if form and isinstance(status, str):
        status = tonumber(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        found["status"] = "expected an integer between 200 and 599"
    headers = _headers(given.get("headers"), "headers", found)
    body, json_body = _body(given.get("body"), "body", found)
    if found:
        problems["upstream_response"] = found
        return None
    if json_body and not any(name.lower() == b"content-type" for name, _ in headers):
        headers.append((b"Content-Type", b"application/json"))
    return StubResponse(status, headers, body)


def _boolean(value: Any, form: bool) -> bool | None:
    if form and value in ("true", "false"):
        return value == "true"
    return value if isinstance(value, bool) else None


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return None


def _query(value: Any, found: dict[str, str]) -> str:
    """A raw query string, or one encoded from a record (a list repeats its name)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return quote(value.removeprefix("?"), safe="=&+%/:@!$'()*,;~-._")
    if not isinstance(value, dict):
        found["query"] = "expected a string or a record"
        return ""
    parts = []
    for name, given in value.items():
        for item in given if isinstance(given, list) else [given]:
            if item is True:
                parts.append(quote(name, safe=""))
                continue
            text = _scalar(item)
            if text is None:
                found["query"] = "expected strings, numbers or booleans as values"
                return ""
            parts.append(f"{quote(name, safe='')}={quote(text, safe='')}")
    return "&".join(parts)


def _headers(value: Any, field: str, found: dict[str, str]) -> list[tuple[bytes, bytes]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        found[field] = "expected a record"
        return []
    headers = []
    for name, given in value.items():
        for item in given if isinstance(given, list) else [given]:
            text = _scalar(item)
            if not _TOKEN.match(name):
                found[field] = f"invalid header name '{name}'"
            elif text is None or any(c in text for c in "\r\n\0"):
                found[field] = f"invalid value of header '{name}'"
            else:
                headers.append((name.encode("latin-1"), text.encode("utf-8")))
    return headers


def _body(value: Any, field: str, found: dict[str, str]) -> tuple[bytes, bool]:
    """The body's bytes, and whether they are JSON made from a record or an array."""
    if value is None:
        return b"", False
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape"), False
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), True
    found[field] = "expected a string, a record or an array"
    return b"", False


# the answer


def _answer(result: DryRunResult) -> dict[str, Any]:
    return {
        "response": _response(result.response),
        "upstream_request": _upstream_request(result.upstream_request),
        "log": [{"level": line.level, "plugin": line.plugin, "message": line.message} for line in result.log],
        "functions": [_cost(cost) for cost in result.functions],
        "timed_out": result.timed_out,
    }


def _header_json(pairs: Iterable[tuple[bytes, bytes]]) -> dict[str, Any]:
    """Headers by name as first spelled: a value, or the list of a repeated header's values."""
    spelled: dict[bytes, str] = {}
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        key = spelled.setdefault(name.lower(), name.decode("latin-1"))
        values.setdefault(key, []).append(value.decode("utf-8", "replace"))
    return {name: found[0] if len(found) == 1 else found for name, found in values.items()}


def _body_json(body: bytes) -> dict[str, Any]:
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body": None, "body_base64": base64.b64encode(body).decode("ascii")}


def _response(response: WireResponse | None) -> dict[str, Any] | None:
    if response is None:
        return None
    return {"status": response.status, "headers": _header_json(response.headers), **_body_json(response.body)}


def _upstream_request(request: StubRequest | None) -> dict[str, Any] | None:
    if request is None:
        return None
    pairs = [(name, value) for name, values in request.headers.getAllRawHeaders() for value in values]
    return {"method": request.method, "scheme": request.scheme, "host": request.host, "port": request.port,
            "path": request.path, "query": request.query, "headers": _header_json(pairs),
            **_body_json(request.body)}


def _cost(cost: FunctionCost) -> dict[str, Any]:
    function = cost.function
    return {"plugin": function.plugin_name, "plugin_id": function.plugin_id, "phase": function.phase,
            "index": function.index, "instructions": cost.instructions, "cpu_seconds": cost.cpu_seconds,
            "wall_seconds": cost.wall_seconds, "memory_bytes": cost.memory_bytes,
            "outbound_calls": cost.outbound_calls, "outbound_timeouts": cost.outbound_timeouts,
            "cancelled": cost.cancelled,
            "error": None if cost.error is None else {"kind": cost.error, "message": cost.message}}


def dry_run_endpoints() -> list[Endpoint]:
    return [Endpoint("/plugins/{plugins}/dry-run", {"POST": plugin_dry_run}),
            Endpoint("/schemas/plugins/{name}/dry-run", {"POST": schema_dry_run})]
