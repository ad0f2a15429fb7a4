"""The core entities: services, routes, consumers and plugins (reference section 1)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from kongish.schema import typedefs
from kongish.schema.checks import AtLeastOneOf, Conditional, ConditionalAtLeastOneOf, FieldErrors
from kongish.schema.fields import Array, Boolean, Field, Foreign, Integer, Record, Set, String
from kongish.schema.lua import tonumber
from kongish.schema.rules import between, contains, len_eq, not_equal, not_one_of, one_of
from kongish.schema.url import parse_url


class PluginSchema(Protocol):
    """What validation needs of a plugin (an ``IPlugin`` has it)."""

    config_schema: Record
    consumer_scoped: bool

    def check_entity(self, entity: dict[str, Any]) -> dict[str, str]: ...


class PluginLookup(Protocol):
    def __call__(self, name: str, /) -> PluginSchema | None: ...


#: Chooses the record override for one value of the subschema key, or None.
SubschemaLookup = Callable[[str, PluginLookup], "Record | None"]


@attrs.frozen
class Shorthand:
    """An input-only field (service ``url``) that expands into real fields."""

    field: Field
    expand: Callable[[Any], dict[str, Any] | None]


def _label(key: Any) -> str:
    """How Kong's ``%s`` shows the subschema key it could not use (its first element)."""
    if isinstance(key, list):
        key = key[0] if key else None
    if key is None or isinstance(key, dict):
        return "nil"
    if isinstance(key, bool):
        return str(key).lower()
    return str(key)


@attrs.frozen(eq=False)
class EntitySchema:
    """An entity type: its record plus what the Admin API and DAO need to know.

    ``subschema_key`` names the field that selects a specialised record (route
    ``protocols``, plugin ``name``); ``subschema`` maps one key value to the
    override record, which replaces fields and adds checks.
    """

    name: str
    endpoint_key: str
    record: Record
    unique: tuple[str, ...]
    shorthands: Mapping[str, Shorthand] = attrs.field(factory=dict)
    subschema_key: str | None = None
    subschema: SubschemaLookup | None = None
    subschema_error: str = "unknown type: %s"

    @property
    def foreign(self) -> dict[str, str]:
        """Foreign-key fields that point at entities kongish stores, to the entity name."""
        return {name: field.reference for name, field in self.record.fields.items()
                if isinstance(field, Foreign) and field.target is not None}

    def specialize(self, data: dict[str, Any], plugins: PluginLookup) -> Record | None:
        """The record for ``data``'s subschema key, or None when it selects none."""
        if self.subschema_key is None or self.subschema is None:
            return None
        key = data.get(self.subschema_key)
        candidates = [key] if isinstance(key, str) else key if isinstance(key, list) else []
        for candidate in candidates:
            override = self.subschema(candidate, plugins) if isinstance(candidate, str) else None
            if override is not None:
                return self.record.specialized(override)
        return None

    def unknown_subschema(self, key: Any) -> str:
        return self.subschema_error.replace("%s", _label(key))


def _expand_url(url: str) -> dict[str, Any] | None:
    """Kong's service ``url`` sugar, quirks included (see reference 1.2)."""
    parsed = parse_url(url)
    if parsed is None:
        return None
    port: float | str | None = tonumber(parsed.port) if parsed.port is not None else None
    schemes: dict[float | str | None, str] = {80: "http", 443: "https"}
    protocol = parsed.scheme or schemes.get(port) or "http"
    if port is None:
        port = parsed.port if parsed.port is not None else {"https": 443}.get(protocol, 80)
    return {"protocol": protocol, "host": parsed.host, "port": port, "path": parsed.path}


_TLS_ONLY = String(rules=(one_of(*typedefs.PROTOCOLS), not_one_of("https", "tls")))
_NULL = Field(null_only=True)


def _tls_only(field: str) -> Conditional:
    return Conditional(if_field="protocol", if_match=_TLS_ONLY, then_field=field, then_match=_NULL)


SERVICES = EntitySchema(
    name="services", endpoint_key="name", unique=("name",),
    record=Record(fields={
        "id": typedefs.uuid(),
        "created_at": typedefs.timestamp_s(),
        "updated_at": typedefs.timestamp_s(),
        "name": typedefs.name(),
        "retries": Integer(rules=(between(0, 32767),), default=5),
        "protocol": typedefs.protocol(required=True, default="http"),
        "host": typedefs.host(required=True),
        "port": typedefs.port(required=True, default=80),
        "path": typedefs.path(),
        "connect_timeout": typedefs.timeout(60000),
        "write_timeout": typedefs.timeout(60000),
        "read_timeout": typedefs.timeout(60000),
        "tags": typedefs.tags(),
        "client_certificate": Foreign(reference="certificates"),
        "tls_verify": Boolean(),
        "tls_verify_depth": Integer(rules=(between(0, 64),)),
        "ca_certificates": Array(elements=typedefs.uuid()),
        "enabled": typedefs.enabled(),
    }, checks=(
        Conditional(if_field="protocol",
                    if_match=String(rules=(one_of("tcp", "tls", "udp", "grpc", "grpcs"),)),
                    then_field="path", then_match=_NULL),
        _tls_only("client_certificate"),
        _tls_only("tls_verify"),
        _tls_only("tls_verify_depth"),
        _tls_only("ca_certificates"),
    )),
    shorthands={"url": Shorthand(String(), _expand_url)},
)


_ROUTE_PROTOCOLS = typedefs.route_protocols()


def _protocols_matching(*rules: Any, elements: Field | None = None) -> Set:
    """A condition on route ``protocols``, which keeps the field's own rules as Kong's does."""
    return attrs.evolve(_ROUTE_PROTOCOLS, rules=_ROUTE_PROTOCOLS.rules + rules,
                        elements=elements or _ROUTE_PROTOCOLS.elements)


def _protocols_among(*protocols: str) -> Set:
    return _protocols_matching(elements=String(rules=(one_of(*protocols),)))


def _forbidden(field: str, protocols: str) -> Field:
    return typedefs.no_value(f"cannot set '{field}' when 'protocols' is {protocols}")


_HTTP = "'http' or 'https'"
_STREAM = "'tcp', 'tls', 'tls_passthrough' or 'udp'"
_GRPC = "'grpc' or 'grpcs'"

_HTTP_ROUTES = Record(
    fields={"sources": _forbidden("sources", _HTTP), "destinations": _forbidden("destinations", _HTTP)},
    checks=(ConditionalAtLeastOneOf(
        if_field="protocols", if_match=_protocols_matching(contains("https")),
        then_fields=("methods", "hosts", "headers", "paths", "snis"),
        then_err="must set one of %s when 'protocols' is 'https'",
        else_match=_protocols_matching(contains("http")),
        else_fields=("methods", "hosts", "headers", "paths"),
        else_err="must set one of %s when 'protocols' is 'http'"),))

_STREAM_ROUTES = Record(
    fields={field: _forbidden(field, _STREAM) for field in ("methods", "hosts", "paths", "headers")},
    checks=(
        ConditionalAtLeastOneOf(
            if_field="protocols", if_match=_protocols_among("tcp", "tls", "udp"),
            then_fields=("sources", "destinations", "snis"),
            then_err="must set one of %s when 'protocols' is 'tcp', 'tls' or 'udp'"),
        ConditionalAtLeastOneOf(
            if_field="protocols", if_match=_protocols_among("tls_passthrough"),
            then_fields=("snis",), then_err="must set snis when 'protocols' is 'tls_passthrough'"),
    ))

_GRPC_ROUTES = Record(
    fields={
        "strip_path": Boolean(required=True, default=False, rules=(not_equal(True),),
                              err=f"cannot set 'strip_path' when 'protocols' is {_GRPC}"),
        "methods": _forbidden("methods", _GRPC),
        "sources": _forbidden("sources", _GRPC),
        "destinations": _forbidden("destinations", _GRPC),
    },
    checks=(ConditionalAtLeastOneOf(
        if_field="protocols", if_match=_protocols_matching(contains("grpcs")),
        then_fields=("hosts", "headers", "paths", "snis"),
        then_err="must set one of %s when 'protocols' is 'grpcs'",
        else_match=_protocols_matching(contains("grpc")),
        else_fields=("hosts", "headers", "paths"),
        else_err="must set one of %s when 'protocols' is 'grpc'"),))

_ROUTE_SUBSCHEMAS = {
    "http": _HTTP_ROUTES, "https": _HTTP_ROUTES,
    "tcp": _STREAM_ROUTES, "tls": _STREAM_ROUTES, "udp": _STREAM_ROUTES,
    "tls_passthrough": _STREAM_ROUTES,
    "grpc": _GRPC_ROUTES, "grpcs": _GRPC_ROUTES,
}

_SNIS = typedefs.snis()

ROUTES = EntitySchema(
    name="routes", endpoint_key="name", unique=("name",),
    record=Record(fields={
        "id": typedefs.uuid(),
        "created_at": typedefs.timestamp_s(),
        "updated_at": typedefs.timestamp_s(),
        "name": typedefs.name(),
        "protocols": _ROUTE_PROTOCOLS,
        "methods": typedefs.methods(),
        "hosts": typedefs.hosts(),
        "paths": typedefs.router_paths(),
        "headers": typedefs.headers(),
        "snis": _SNIS,
        "sources": typedefs.endpoints(),
        "destinations": typedefs.endpoints(),
        "https_redirect_status_code": Integer(rules=(one_of(426, 301, 302, 307, 308),),
                                              required=True, default=426),
        "regex_priority": Integer(default=0),
        "strip_path": Boolean(required=True, default=True),
        "preserve_host": Boolean(required=True, default=False),
        "request_buffering": Boolean(required=True, default=True),
        "response_buffering": Boolean(required=True, default=True),
        "path_handling": String(rules=(one_of("v0", "v1"),), default="v0"),
        "tags": typedefs.tags(),
        "service": Foreign(reference="services", target=SERVICES.record),
    }, checks=(
        Conditional(
            if_field="protocols",
            if_match=_protocols_matching(elements=String(
                rules=(not_one_of("grpcs", "https", "tls", "tls_passthrough"),))),
            then_field="snis", then_match=attrs.evolve(_SNIS, rules=(len_eq(0),)),
            then_err="'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' "
                     "or 'tls_passthrough'"),
    )),
    subschema_key="protocols",
    subschema=lambda protocol, plugins: _ROUTE_SUBSCHEMAS.get(protocol),
)


CONSUMERS = EntitySchema(
    name="consumers", endpoint_key="username", unique=("username", "custom_id"),
    record=Record(fields={
        "id": typedefs.uuid(),
        "created_at": typedefs.timestamp_s(),
        "updated_at": typedefs.timestamp_s(),
        "username": String(),
        "custom_id": String(),
        "tags": typedefs.tags(),
    }, checks=(AtLeastOneOf(("custom_id", "username")),)),
)


def _plugin_subschema(name: str, plugins: PluginLookup) -> Record | None:
    """A plugin's ``config`` record (always required) and its plugin-level checks."""
    plugin = plugins(name)
    if plugin is None:
        return None
    config: Record = plugin.config_schema
    scope = () if plugin.consumer_scoped else (FieldErrors(_no_consumer),)
    return Record(fields={"config": attrs.evolve(config, required=True)},
                  checks=config.entity_checks + scope + (FieldErrors(plugin.check_entity),))


def _no_consumer(entity: dict[str, Any]) -> dict[str, str]:
    """Kong's ``typedefs.no_consumer``: the plugin runs for every consumer."""
    return {"consumer": "value must be null"} if entity.get("consumer") is not None else {}


PLUGINS = EntitySchema(
    name="plugins", endpoint_key="instance_name", unique=("instance_name",),
    record=Record(fields={
        "id": typedefs.uuid(),
        "name": String(required=True),
        "instance_name": typedefs.name(),
        "created_at": typedefs.timestamp_s(),
        "updated_at": typedefs.timestamp_s(),
        "route": Foreign(reference="routes", target=ROUTES.record),
        "service": Foreign(reference="services", target=SERVICES.record),
        "consumer": Foreign(reference="consumers", target=CONSUMERS.record),
        "config": Record(abstract=True),
        "protocols": typedefs.protocols(),
        "enabled": typedefs.enabled(),
        "tags": typedefs.tags(),
    }),
    subschema_key="name",
    subschema=_plugin_subschema,
    subschema_error="plugin '%s' not enabled; add it to the 'plugins' configuration property",
)

ENTITIES: dict[str, EntitySchema] = {
    schema.name: schema for schema in (SERVICES, ROUTES, CONSUMERS, PLUGINS)}
