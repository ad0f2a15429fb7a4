"""Reusable field definitions, after Kong's ``kong.db.schema.typedefs``."""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from kongish import pcre
from kongish.router.normalize import normalize_path
from kongish.schema import addresses
from kongish.schema.checks import AtLeastOneOf
from kongish.schema.fields import Array, Boolean, Field, Integer, Map, Record, Set, String
from kongish.schema.rules import (
    between,
    custom,
    len_min,
    match,
    match_all,
    match_any,
    match_none,
    mutually_exclusive_subsets,
    one_of,
    starts_with,
    timestamp,
)
from kongish.schema.rules import uuid as uuid_rule

#: Every protocol Kong knows, in the order its messages list them.
PROTOCOLS = ("grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp")
#: Protocols served by the HTTP subsystem: the default of plugin ``protocols``.
HTTP_PROTOCOLS = ("grpc", "grpcs", "http", "https")
#: Route protocols that cannot be mixed.
PROTOCOL_GROUPS = (("http", "https"), ("tcp", "tls", "udp"), ("tls_passthrough",), ("grpc", "grpcs"))

_NAME = re.compile(r"[A-Za-z0-9._~\-\x80-\U0010ffff]+\Z")
_TAG = re.compile(r"[ !-+\-.0-~\x80-\U0010ffff]+\Z")
_RFC3986_PATH = re.compile(r"/[A-Za-z0-9._~/%:@!$&'()*+,;=-]*\Z")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_HEADER_NAME = re.compile(r"[a-zA-Z0-9_-]+\Z")


def _utf8_error(text: str) -> str | None:
    """Lone surrogates (from ``\\ud800`` in JSON) are not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return ("invalid utf-8 character sequence detected at position "
                f"{len(text[:error.start].encode('utf-8', 'surrogatepass')) + 1}")
    return None


def name_error(name: str) -> str | None:
    if error := _utf8_error(name):
        return error
    if not _NAME.match(name):
        return (f"invalid value '{name}': the only accepted ascii characters are "
                "alphanumerics or ., -, _, and ~")
    return None


def tag_error(tag: str) -> str | None:
    if error := _utf8_error(tag):
        return error
    if not _TAG.match(tag):
        return f"invalid tag '{tag}': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
    return None


def percent_error(path: str) -> str | None:
    """``%`` must start a two-digit hex escape; Kong quotes the bad one."""
    raw = _ESCAPE.sub("___", path)
    percent = raw.find("%")
    return None if percent == -1 else f"invalid url-encoded value: '{raw[percent:percent + 3]}'"


def path_error(path: str) -> str | None:
    if not _RFC3986_PATH.match(path):
        return f"invalid path: '{path}' (characters outside of the reserved list of RFC 3986 found)"
    return percent_error(path)


def router_path_error(path: str) -> str | None:
    """Prefix paths must be valid and already normalised; ``~`` paths must compile."""
    if path.startswith("~"):
        expression = path[1:]
        try:
            pcre.compile_pcre(expression)
        except (pcre.error, RecursionError, OverflowError) as error:
            return f"invalid regex: '{expression}' (PCRE returned: {error})"
        return None
    if percent := percent_error(path):
        return percent
    normalized = normalize_path(path)
    if normalized != path:
        return f"non-normalized path, consider use '{normalized}' instead"
    return None


def header_name_error(name: str) -> str | None:
    if _HEADER_NAME.match(name):
        return None
    return f"bad header name '{name}', allowed characters are A-Z, a-z, 0-9, '_', and '-'"


def host_with_wildcard_error(host: str) -> str | None:
    return addresses.host_with_port_error(host.replace("*", "abc"))


def uuid(**options: Any) -> String:
    return String(rules=(uuid_rule(),), **options)


def timestamp_s() -> Integer:
    return Integer(rules=(timestamp(),))


def name() -> String:
    return String(rules=(custom(name_error),))


def tags() -> Set:
    return Set(elements=String(rules=(custom(tag_error),)))


def protocol(**options: Any) -> String:
    return String(rules=(one_of(*PROTOCOLS),), **options)


def protocols(**options: Any) -> Set:
    return Set(elements=protocol(), required=True, default=list(HTTP_PROTOCOLS), **options)


def port(**options: Any) -> Integer:
    return Integer(rules=(between(0, 65535),), **options)


def timeout(default: int) -> Integer:
    return Integer(rules=(between(1, 2 ** 31 - 2),), default=default)


def host(**options: Any) -> String:
    return String(rules=(custom(addresses.host_error),), **options)


def path() -> String:
    return String(rules=(starts_with("/"), match_none(("//", "must not have empty segments")),
                         custom(path_error)))


def router_paths() -> Array:
    return Array(elements=String(rules=(
        match_any((r"^/", r"^~/"), "should start with: / (fixed path) or ~/ (regex path)"),
        match_none(("//", "must not have empty segments")),
        custom(router_path_error))))


def hosts() -> Array:
    return Array(elements=String(rules=(
        match_all((r"^[^*]*\*?[^*]*\Z", "invalid wildcard: must have at most one wildcard")),
        match_any((r"^\*\.", r"\.\*\Z", r"^[^*]*\Z"),
                  "invalid wildcard: must be placed at leftmost or rightmost label"),
        custom(host_with_wildcard_error))))


def methods() -> Set:
    return Set(elements=String(rules=(match(r"^[A-Z]+\Z"),)))


def headers() -> Map:
    return Map(keys=String(rules=(
        match_none((r"^[Hh][Oo][Ss][Tt]\Z",
                    "cannot contain 'host' header, which must be specified in the 'hosts' attribute")),
        custom(header_name_error))),
        values=Array(elements=String()))


def snis() -> Set:
    return Set(elements=String(rules=(custom(addresses.wildcard_host_error),)))


def ip_or_cidr_error(text: str) -> str | None:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return f"invalid ip or cidr range: '{text}'"
    return None


def endpoints() -> Set:
    """Stream route ``sources``/``destinations``: sets of ``{ip, port}``."""
    return Set(elements=Record(
        fields={"ip": String(rules=(custom(ip_or_cidr_error),)), "port": port()},
        checks=(AtLeastOneOf(("ip", "port")),)))


def route_protocols() -> Set:
    return Set(elements=protocol(), required=True, default=["http", "https"],
               rules=(len_min(1), mutually_exclusive_subsets(*PROTOCOL_GROUPS)))


def no_value(message: str) -> Field:
    """A field that a route subschema forbids (Kong's ``eq = null`` with ``err``)."""
    return Field(null_only=True, err=message)


def enabled() -> Boolean:
    return Boolean(required=True, default=True)
