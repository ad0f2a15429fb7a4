"""The Python side of the Lua PDK: reads and writes on the request being served.

The Lua tables ``ngx`` and ``kong`` are written in Lua and call the handful of
functions :class:`RequestPrimitives` exports.  Each call finds the running
request through :class:`~kongish.lua.current.CurrentRequest`, so one Lua VM
serves many interleaved requests.

"The current request" is what will be proxied: ``context.upstream`` once the
router has built it, and before that (the rewrite phase) the client's request
itself, so rewrite-phase changes flow into routing and the upstream request.
Header reads always see the client's headers (plus rewrite-phase changes).
"""
from __future__ import annotations

import io
import json
import socket
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any, TypeVar

import attrs
from lupa.luajit21 import LuaRuntime
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger, LogLevel
from twisted.web.http_headers import Headers

from kongish.http.headers import CONTENT_LENGTH, CasedHeaders
from kongish.http.realip import TrustedNetworks
from kongish.lua.current import CurrentRequest
from kongish.lua.pdk import multipart
from kongish.lua.pdk.codec import as_bytes
from kongish.router.normalize import normalize_path, wire_text
from kongish.runloop.context import RequestContext

log = Logger(namespace="kongish.lua")

#: nginx log levels (ngx.STDERR .. ngx.DEBUG) to Twisted's.
_LOG_LEVELS = {0: LogLevel.critical, 1: LogLevel.critical, 2: LogLevel.critical,
               3: LogLevel.critical, 4: LogLevel.error, 5: LogLevel.warn,
               6: LogLevel.info, 7: LogLevel.info, 8: LogLevel.debug}

#: nginx writes at most this many bytes of one error log message (NGX_MAX_ERROR_STR).
_MAX_LOG_MESSAGE = 2048
Reader = Callable[[RequestContext], Any]
Writer = Callable[[RequestContext, Any], None]
#: By name, as text and as the bytes Lua hands over (no decoding per call).
_READERS: dict[str | bytes, Reader] = {}
_WRITERS: dict[str | bytes, Writer] = {}


def _reader(*names: str) -> Callable[[Reader], Reader]:
    def register(function: Reader) -> Reader:
        for name in names:
            _READERS[name] = _READERS[name.encode()] = function
        return function
    return register


def _writer(name: str) -> Callable[[Writer], Writer]:
    def register(function: Writer) -> Writer:
        _WRITERS[name] = _WRITERS[name.encode()] = function
        return function
    return register


def _split_target(target: bytes) -> tuple[bytes, bytes | None]:
    path, question, query = target.partition(b"?")
    return path, query if question else None


def _text(value: Any) -> str:
    return wire_text(as_bytes(value))


# The client's request, as received.

@_reader("client_method")
def _client_method(context: RequestContext) -> bytes:
    return context.request.method


@_reader("request_uri")
def _request_uri(context: RequestContext) -> bytes:
    return context.request.uri


@_reader("raw_path")
def _raw_path(context: RequestContext) -> bytes:
    return _split_target(context.request.uri)[0]


@_reader("path")
def _path(context: RequestContext) -> str:
    return normalize_path(wire_text(_raw_path(context)))


@_reader("client_query")
def _client_query(context: RequestContext) -> bytes | None:
    return _split_target(context.request.uri)[1]


@_reader("http_version")
def _http_version(context: RequestContext) -> float:
    proto = context.request.clientproto.partition(b"/")[2]
    return float(proto) if proto else 1.1


@_reader("scheme")
def _scheme(context: RequestContext) -> str:
    return "https" if context.request.isSecure() else "http"


@_reader("host")
def _host(context: RequestContext) -> bytes:
    return context.request.getRequestHostname().lower()


@_reader("server_addr")
def _server_addr(context: RequestContext) -> str:
    return getattr(context.request.getHost(), "host", "")


@_reader("server_port")
def _server_port(context: RequestContext) -> int | None:
    return getattr(context.request.getHost(), "port", None)


@_reader("remote_addr")
def _remote_addr(context: RequestContext) -> str:
    return context.client_ip  # behind a trusted proxy, the client it reports (real_ip_header)


@_reader("realip_remote_addr")
def _realip_remote_addr(context: RequestContext) -> str:
    return context.peer_ip


@_reader("remote_port")
def _remote_port(context: RequestContext) -> int | None:
    return getattr(context.request.getClientAddress(), "port", None)


@_reader("client_body")
def _client_body(context: RequestContext) -> bytes | None:
    """The buffered body; the file position is kept for the proxy's own read."""
    content = context.request.content
    if content is None:
        return None
    position = content.tell()
    content.seek(0)
    body = content.read()
    content.seek(position)
    return body or None


@_reader("request_id")
def _request_id(context: RequestContext) -> str:
    return context.request_id


@_reader("start_time")
def _start_time(context: RequestContext) -> float:
    return context.started_at


# The current request (what will be proxied).

@_reader("method")
def _method(context: RequestContext) -> bytes | str:
    return context.upstream.method if context.upstream else context.request.method


@_writer("method")
def _set_method(context: RequestContext, method: Any) -> None:
    if context.upstream:
        context.upstream.method = _text(method)
    else:
        context.request.method = as_bytes(method)


@_reader("query")
def _query(context: RequestContext) -> bytes | str | None:
    # Until something asks for the upstream request, its query is the client's.
    upstream = context.upstream_if_made()
    return upstream.query if upstream is not None else _client_query(context)


@_writer("query")
def _set_query(context: RequestContext, query: Any) -> None:
    query = as_bytes(query) if query else None
    if context.upstream:
        context.upstream.query = None if query is None else wire_text(query)
    else:
        path = _raw_path(context)
        context.request.uri = path if query is None else path + b"?" + query


@_reader("upstream_path")
def _upstream_path(context: RequestContext) -> str:
    return context.upstream.path if context.upstream else _path(context)


@_writer("upstream_path")
def _set_upstream_path(context: RequestContext, path: Any) -> None:
    if context.upstream:
        context.upstream.path = _text(path)
    else:
        query = _client_query(context)
        context.request.uri = as_bytes(path) + (b"" if query is None else b"?" + query)


@_writer("upstream_uri")
def _set_upstream_uri(context: RequestContext, uri: Any) -> None:
    path, query = _split_target(as_bytes(uri))
    _set_upstream_path(context, path)
    _set_query(context, query)


@_reader("upstream_scheme")
def _upstream_scheme(context: RequestContext) -> str:
    return context.upstream.scheme if context.upstream else _scheme(context)


@_writer("upstream_scheme")
def _set_upstream_scheme(context: RequestContext, scheme: Any) -> None:
    if context.upstream:
        context.upstream.scheme = _text(scheme)


@_writer("body")
def _set_body(context: RequestContext, body: Any) -> None:
    body = as_bytes(body) if body is not None else b""
    if context.upstream:
        context.upstream.body = body
    else:
        context.request.content = io.BytesIO(body)
    _request_headers(context).setRawHeaders(CONTENT_LENGTH, [str(len(body)).encode()])


# The downstream response and the upstream's answer.

@_reader("status")
def _status(context: RequestContext) -> int:
    return context.response.status or 0


@_writer("status")
def _set_status(context: RequestContext, status: Any) -> None:
    context.response.status = int(status)


@_reader("source")
def _source(context: RequestContext) -> str:
    return context.response.source or "error"


@_reader("service_status")
def _service_status(context: RequestContext) -> int | None:
    return context.upstream_response.status if context.upstream_response else None


@_reader("body_chunk")
def _body_chunk(context: RequestContext) -> bytes:
    return context.body_chunk


@_writer("body_chunk")
def _set_body_chunk(context: RequestContext, chunk: Any) -> None:
    context.body_chunk = as_bytes(chunk) if chunk is not None else b""


@_reader("body_eof")
def _body_eof(context: RequestContext) -> bool:
    return context.body_eof


@_writer("body_eof")
def _set_body_eof(context: RequestContext, eof: Any) -> None:
    context.body_eof = bool(eof)


@_writer("replacement_body")
def _set_replacement_body(context: RequestContext, body: Any) -> None:
    context.response.replacement_body = as_bytes(body)


@_reader("phase")
def _phase(context: RequestContext) -> str:
    return context.phase


@_reader("route_json")
def _route_json(context: RequestContext) -> str | None:
    return None if context.route is None else json.dumps(context.route)


@_reader("service_json")
def _service_json(context: RequestContext) -> str | None:
    return None if context.service is None else json.dumps(context.service)


@_reader("uri_captures_json")
def _uri_captures_json(context: RequestContext) -> str | None:
    return json.dumps(context.uri_captures) if context.uri_captures else None


# Headers.

def _request_headers(context: RequestContext) -> Headers:
    return context.upstream.headers if context.upstream else context.request.requestHeaders


_V = TypeVar("_V")


def _by_lua_string(table: dict[str, _V]) -> dict[str | bytes, _V]:
    """``table`` under its names and under their bytes too, as Lua strings arrive: no decode
    per call."""
    both: dict[str | bytes, _V] = {}
    both.update(table)
    both.update((name.encode(), value) for name, value in table.items())
    return both


_WRITABLE: dict[str, Callable[[RequestContext], Headers]] = {
    "request": _request_headers,
    "response": lambda context: context.response.headers,
}
_WRITABLE_HEADERS = _by_lua_string(_WRITABLE)
_HEADER_SOURCES = _by_lua_string({
    **_WRITABLE,
    "client": lambda context: context.request.requestHeaders,
    "service": lambda context: context.upstream_response.headers if context.upstream_response else None,
})
#: ``change_header``'s operations.
_OPERATIONS = _by_lua_string({name: name for name in ("set", "add", "clear")})


def _lookup(table: dict[str | bytes, _V], key: Any) -> _V:
    """``table[key]`` for a Lua string; anything else fails as before: ``as_bytes``'s
    TypeError (``string expected, got table``) or a KeyError naming the text."""
    try:
        return table[key]
    except (KeyError, TypeError):
        return table[_text(key)]


def _header_name(name: Any) -> bytes:
    """Header names are case-insensitive and ``_`` stands for ``-``, as in Kong."""
    return as_bytes(name).replace(b"_", b"-").lower()


def _cookie(context: RequestContext, name: str) -> str | None:
    cookies = SimpleCookie()
    for header in context.request.requestHeaders.getRawHeaders(b"cookie", []):
        try:
            cookies.load(header.decode("latin-1"))
        except CookieError:
            continue
    return cookies[name].value if name in cookies else None


def _query_arg(context: RequestContext, name: bytes) -> bytes | None:
    """nginx's ``$arg_NAME``: the first value, still escaped, name matched case-insensitively."""
    query = _query(context)
    for pair in as_bytes(query or b"").split(b"&"):
        key, equals, value = pair.partition(b"=")
        if key.lower() == name:
            return value
    return None


@attrs.define
class RequestPrimitives:
    """The functions the Lua half of the PDK closes over (never Lua globals)."""

    lua: LuaRuntime
    current: CurrentRequest
    reactor: IReactorTime
    trusted: TrustedNetworks
    #: Bytes of body output and header values Lua code may hand over per request:
    #: Python keeps them, outside the Lua VM's memory cap.
    output_limit: int = attrs.field(kw_only=True)
    #: Refuses (``not enough memory``) tables the Lua VM has no room for.
    reserve: Callable[[int], None] = attrs.field(kw_only=True)
    #: nginx's ``client_body_buffer_size``: a larger client body is in a file, not in memory.
    body_buffer_size: int = attrs.field(kw_only=True, default=8192)

    def exports(self) -> dict[bytes, Callable[..., Any]]:
        return {
            b"read": self.read, b"write": self.write, b"var": self.var,
            b"header_list": self.header_list, b"header_values": self.header_values,
            b"change_header": self.change_header, b"emit": self.emit, b"exit": self.exit,
            b"slot": self.slot, b"log": self.log, b"sleep": self.sleep, b"now": self.now,
            b"is_trusted": self.is_trusted, b"plugin": self.plugin, b"multipart": self.multipart,
            b"timings": self.timings, b"buffered_body": self.buffered_body,
        }

    def read(self, field: Any) -> Any:
        return _lua_value(_READERS[field](self.current.require()))

    def write(self, field: Any, value: Any) -> None:
        _WRITERS[field](self.current.require(), value)

    def var(self, name: Any) -> Any:
        """``ngx.var.NAME``: nginx variables Kong users read; unknown names are nil."""
        context = self.current.require()
        name = _text(name).lower()
        if name.startswith("http_"):
            values = context.request.requestHeaders.getRawHeaders(_header_name(name[5:]))
            return None if values is None else b", ".join(values)
        if name.startswith("sent_http_"):
            values = context.response.headers.getRawHeaders(_header_name(name[10:]))
            return None if values is None else b", ".join(values)
        if name.startswith("cookie_"):
            return _lua_value(_cookie(context, name[7:]))
        if name.startswith("arg_"):
            return _query_arg(context, name[4:].encode())
        if name == "msec":
            return f"{self.now():.3f}".encode()
        if name == "request_time":
            return f"{self.now() - context.started_at:.3f}".encode()
        if name == "request_body":
            return self._buffered_body(context) or None
        if name in _VARIABLE_READERS:
            return _lua_value(_VARIABLE_READERS[name](context))
        if name in _READERS:
            return _lua_value(_READERS[name](context))
        return None

    def buffered_body(self) -> bytes | bool | None:
        """The request body as nginx holds it in memory (``ngx.req.get_body_data``): None
        when empty, False when the client's body was past ``client_body_buffer_size``
        (nginx keeps it in a file; Kong's readers then answer ``nil, err``). A body a
        plugin set is in memory, whatever its size."""
        return self._buffered_body(self.current.require())

    def _buffered_body(self, context: RequestContext) -> bytes | bool | None:
        if context.upstream and context.upstream.body is not None:
            return context.upstream.body or None
        body = _client_body(context)
        if body is not None and len(body) > self.body_buffer_size:
            return False
        return body

    def header_list(self, source: Any) -> Any:
        """All headers of ``source`` as a flat Lua array: name, value, name, value..."""
        headers = _lookup(_HEADER_SOURCES, source)(self.current.require())
        flat: list[bytes] = []
        for name, values in (headers.getAllRawHeaders() if headers else ()):
            for value in values:
                flat += [name, value]
        self.reserve(sum(map(len, flat)))
        return self.lua.table_from(flat)

    def header_values(self, source: Any, name: Any) -> Any:
        headers = _lookup(_HEADER_SOURCES, source)(self.current.require())
        values = headers.getRawHeaders(_header_name(name)) if headers else None
        return None if not values else self.lua.table_from(values)

    def change_header(self, target: Any, operation: Any, name: Any, *values: Any) -> bool:
        """``set`` (replace), ``add`` (append) or ``clear`` one header of ``target``.

        True (and no change) when the values would go over the output limit.
        """
        context = self.current.require()
        try:  # Lua strings arrive as bytes: looked up inline, without _lookup's call
            headers_of, operation = _WRITABLE_HEADERS[target], _OPERATIONS[operation]
        except (KeyError, TypeError):
            headers_of, operation = _lookup(_WRITABLE_HEADERS, target), _lookup(_OPERATIONS, operation)
        headers = headers_of(context)
        spelled = (name if type(name) is bytes else as_bytes(name)).replace(b"_", b"-")  # sent as given
        # one bytes value is the common case: no call per value
        one = len(values) == 1 and type(values[0]) is bytes
        encoded = [values[0]] if one else list(map(as_bytes, values))
        if not context.output.take(context.slots, sum(map(len, encoded)), self.output_limit):
            return True
        if operation == "add":
            encoded = [*(headers.getRawHeaders(spelled) or ()), *encoded]
        if operation == "clear" or not encoded:
            headers.removeHeader(spelled)
        elif isinstance(headers, CasedHeaders):
            headers.set_bytes(spelled, encoded)
        else:
            headers.setRawHeaders(spelled, encoded)
        return False

    def emit(self, data: Any) -> bool:
        """``ngx.say``/``ngx.print``: body output; the status defaults to 200.

        True (and no output) when the data would go over the output limit.
        """
        context = self.current.require()
        data = as_bytes(data)
        if self._over_output_limit(context, len(data)):
            return True
        if context.response.status is None:
            context.response.status = 200
        context.response.body.append(data)
        return False

    def _over_output_limit(self, context: RequestContext, size: int) -> bool:
        """Count ``size`` more bytes of the request's output, unless that goes over its
        limit or the process's (``kongish.runloop.output``)."""
        return not context.output.take(context.slots, size, self.output_limit)

    def exit(self, status: Any, body: Any = None) -> bool:
        """``kong.response.exit``/``ngx.exit``: True (and no exit) when the body would go
        over the output limit."""
        context = self.current.require()
        data = None if body is None else as_bytes(body)
        if data and self._over_output_limit(context, len(data)):
            return True
        context.exit(int(status), data)
        return False

    def slot(self) -> Any:
        """This request's Lua state (ngx.ctx, kong.ctx.*), kept in ``context.slots``."""
        slots = self.current.require().slots
        if "lua" not in slots:
            slots["lua"] = self.lua.table()
        return slots["lua"]

    def plugin(self) -> Any:
        """The running plugin's name and per-instance key."""
        current = self.current
        return self.lua.table_from([_lua_value(current.plugin_name or ""),
                                    _lua_value(current.plugin_key or current.plugin_name or "")])

    def log(self, level: Any, message: Any) -> None:
        context = self.current.context
        log.emit(_LOG_LEVELS.get(int(level), LogLevel.info), "[{plugin}] {text}",
                 plugin=self.current.plugin_name or "lua",
                 text=_text(as_bytes(message)[:_MAX_LOG_MESSAGE]),
                 request_id=context.request_id if context else None, ngx_level=int(level))

    def sleep(self, seconds: Any) -> Any:
        """The Deferred ``ngx.sleep`` awaits (through the engine's await function)."""
        return deferLater(self.reactor, float(seconds), lambda: None)

    def now(self) -> float:
        return self.reactor.seconds()

    def is_trusted(self, address: Any) -> bool:
        return _text(address) in self.trusted

    def timings(self) -> Any:
        """The request's ``KONG_*`` timing fields set since the last call, or nil if none."""
        changed = self.current.require().timings.changed()
        if not changed:
            return None
        return self.lua.table_from({name.encode(): value for name, value in changed.items()})

    def multipart(self, body: Any, content_type: Any) -> Any:
        """A multipart body's fields as lua-multipart gives them (:mod:`kongish.lua.pdk.multipart`)."""
        body = as_bytes(body)
        self.reserve(len(body))
        fields = multipart.parse(body, as_bytes(content_type))
        return self.lua.table_from({name: value if isinstance(value, bytes) else self.lua.table_from(value)
                                    for name, value in fields.items()})


def _lua_value(value: Any) -> Any:
    """Lua strings must be pushed as bytes whatever the runtime's encoding."""
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


def _upstream_uri(context: RequestContext) -> bytes:
    query = _query(context)
    path = as_bytes(_upstream_path(context))
    return path if query is None else path + b"?" + as_bytes(query)


def _upstream_host(context: RequestContext) -> bytes | None:
    return context.upstream.headers.getRawHeaders(b"host", [None])[0] if context.upstream else None


#: nginx variable names whose value is not simply one of the readers above.
_VARIABLE_READERS: dict[str, Reader] = {
    "uri": _path,
    "document_uri": _path,
    "args": _query,
    "query_string": _query,
    "is_args": lambda context: b"?" if _query(context) else b"",
    "request_method": _client_method,
    "https": lambda context: b"on" if context.request.isSecure() else b"",
    "server_protocol": lambda context: context.request.clientproto,
    "server_name": lambda context: b"kong",
    "hostname": lambda context: socket.gethostname(),
    "realip_remote_port": _remote_port,
    "content_type": lambda context: context.request.getHeader(b"content-type"),
    "content_length": lambda context: context.request.getHeader(b"content-length"),
    "upstream_uri": _upstream_uri,
    "upstream_host": _upstream_host,
    "upstream_status": lambda context: None if context.upstream_response is None
    else str(context.upstream_response.status),
    "status": lambda context: str(context.response.status or 0),
}
