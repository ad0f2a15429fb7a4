"""Settings: kong.conf's names and file format, with KONGISH_* environment overrides.

Precedence, lowest to highest: built-in defaults < the ``--config`` file <
``KONGISH_<NAME>`` environment variables < command-line options, as in Kong.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import attrs

from kongish.listen import ListenError, parse_listen
from kongish.proxy.forwarded import RealIp, TrustedNetworks

#: Every setting kongish reads, with its default (as text, the way kong.conf writes it).
DEFAULTS: dict[str, str] = {
    "prefix": ".kongish",
    "proxy_listen": "0.0.0.0:8000",
    "admin_listen": "127.0.0.1:8001",
    "database": "sqlite",
    "declarative_config": "NONE",
    "declarative_config_string": "NONE",
    "log_level": "notice",
    "proxy_access_log": "on",
    "admin_access_log": "on",
    "plugins": "bundled",
    "untrusted_lua": "sandbox",
    "untrusted_lua_sandbox_requires": "",
    "untrusted_lua_sandbox_environment": "",
    "lua_instruction_limit": "10000000",
    "lua_time_limit": "1",
    "lua_memory_limit": "256m",
    "headers": "server_tokens, latency_tokens, x-kong-request-id",
    "headers_upstream": "x-kong-request-id",
    "trusted_ips": "NONE",
    "real_ip_header": "X-Real-IP",
    "real_ip_recursive": "off",
    "error_default_type": "text/plain",
    "nginx_admin_client_max_body_size": "10m",
    "nginx_http_client_max_body_size": "0",
    "lua_max_req_headers": "100",
    "lua_max_resp_headers": "100",
    "lua_max_uri_args": "100",
    "lua_max_post_args": "100",
    "pg_password": "NONE",
}

#: Default limits of the PDK's header and argument readers, 1 to 1000 as in Kong.
LUA_MAX_SETTINGS = ("lua_max_req_headers", "lua_max_resp_headers", "lua_max_uri_args", "lua_max_post_args")

#: Settings whose values are never shown (GET /, kong.configuration).
SECRETS = frozenset({"pg_password"})

_DATABASES = ("sqlite", "off")
_UNTRUSTED_LUA = ("on", "off", "sandbox")
_LOG_LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")
_LATENCY_HEADERS = ("x-kong-proxy-latency", "x-kong-response-latency", "x-kong-admin-latency",
                    "x-kong-upstream-latency")
#: ``headers`` entries (any case) and the header names each enables; ``off`` first disables all.
_HEADER_ENTRIES: dict[str, frozenset[str]] = {
    "server_tokens": frozenset({"server", "via"}),
    "latency_tokens": frozenset(_LATENCY_HEADERS),
    **{name: frozenset({name}) for name in (
        "server", "via", *_LATENCY_HEADERS, "x-kong-upstream-status", "x-kong-request-id")},
}
_UPSTREAM_HEADER_ENTRIES = {"x-kong-request-id": frozenset({"x-kong-request-id"})}
_SIZE = re.compile(r"^(\d+)([kmg]?)$", re.IGNORECASE)


class ConfigError(Exception):
    """A setting has a value kongish cannot use; the message names it."""


def parse_conf(text: str) -> dict[str, str]:
    """Read kong.conf's ``key = value`` lines; ``#`` starts a comment unless escaped ``\\#``."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = re.sub(r"(?<!\\)#.*", "", line).replace("\\#", "#").strip()
        if not line:
            continue
        key, equals, value = line.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"line {number}: expected 'key = value', got {line!r}")
        values[key.strip().lower()] = value.strip()
    return values


def parse_size(text: str) -> int:
    """nginx size syntax: ``10m``, ``512k``, ``1g`` or plain bytes."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise ConfigError(f"invalid size: {text!r}")
    number, unit = match.groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower()]


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _enabled_headers(text: str, entries: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """The header names a ``headers``-style list enables; as in Kong, only a leading ``off`` counts."""
    tokens = _list(text)
    if not tokens or tokens[0] == "off":
        return frozenset()
    return frozenset().union(*(entries[token.lower()] for token in tokens if token != "off"))


def _optional(text: str) -> str | None:
    return None if text in ("", "NONE") else text


@attrs.frozen
class Settings:
    """The effective configuration of one kongish node."""

    raw: Mapping[str, str]

    @classmethod
    def load(cls, path: str | None = None, environ: Mapping[str, str] | None = None,
             overrides: Mapping[str, str | None] | None = None) -> "Settings":
        """Defaults, then the file at ``path``, then ``KONGISH_*`` variables, then ``overrides``."""
        values = dict(DEFAULTS)
        if path is not None:
            try:
                with open(path, encoding="utf-8") as conf:
                    values.update(parse_conf(conf.read()))
            except OSError as error:
                raise ConfigError(f"cannot read configuration file {path}: {error.strerror}") from None
        environ = os.environ if environ is None else environ
        for name, value in environ.items():
            if name.startswith("KONGISH_"):
                values[name[len("KONGISH_"):].lower()] = value
        values.update({key: value for key, value in (overrides or {}).items() if value is not None})
        settings = cls(raw=values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Fail at start, with the setting's name, rather than on the first request."""
        self._choice("database", _DATABASES)
        self._choice("untrusted_lua", _UNTRUSTED_LUA)
        self._choice("log_level", _LOG_LEVELS)
        for name in ("proxy_listen", "admin_listen"):
            try:
                parse_listen(self.raw[name])
            except ListenError as error:
                raise ConfigError(f"{name}: {error}") from None
        for name in ("proxy_access_log", "admin_access_log", "real_ip_recursive"):
            self._choice(name, ("on", "off"))
        for name in ("lua_memory_limit", "nginx_admin_client_max_body_size", "nginx_http_client_max_body_size"):
            parse_size(self.raw[name])
        for name, entries in (("headers", _HEADER_ENTRIES), ("headers_upstream", _UPSTREAM_HEADER_ENTRIES)):
            for token in _list(self.raw[name]):
                if token != "off" and token.lower() not in entries:  # Kong: only "off" as written
                    raise ConfigError(f"{name}: invalid entry '{token}'")
        try:
            self.trusted_ips
        except ValueError as error:
            raise ConfigError(f"trusted_ips: {error}") from None
        for name in LUA_MAX_SETTINGS:
            if not self.raw[name].isdigit() or not 1 <= int(self.raw[name]) <= 1000:
                raise ConfigError(f"{name} must be an integer between 1 and 1000")
        if not self.raw["lua_instruction_limit"].isdigit() or self.lua_instruction_limit < 1000:
            raise ConfigError("lua_instruction_limit: expected an integer of at least 1000")
        try:
            if self.lua_time_limit <= 0:
                raise ValueError
        except ValueError:
            raise ConfigError("lua_time_limit: expected a positive number of seconds") from None

    def _choice(self, name: str, allowed: tuple[str, ...]) -> None:
        if self.raw[name] not in allowed:
            raise ConfigError(f"{name} has an invalid value: '{self.raw[name]}' "
                              f"(expected one of: {', '.join(allowed)})")

    @property
    def prefix(self) -> str:
        return self.raw["prefix"]

    @property
    def database(self) -> str:
        return self.raw["database"]

    @property
    def sqlite_path(self) -> str:
        return os.path.join(self.prefix, "kongish.db")

    @property
    def proxy_listen(self) -> list[str]:
        return parse_listen(self.raw["proxy_listen"])

    @property
    def admin_listen(self) -> list[str]:
        return parse_listen(self.raw["admin_listen"])

    @property
    def declarative_config(self) -> str | None:
        return _optional(self.raw["declarative_config"])

    @property
    def declarative_config_string(self) -> str | None:
        return _optional(self.raw["declarative_config_string"])

    @property
    def plugins(self) -> tuple[str, ...]:
        return _list(self.raw["plugins"])

    def access_log(self, role: str) -> bool:
        """Whether ``role`` ("proxy" or "admin") writes an access log line per request."""
        return self.raw[f"{role}_access_log"] == "on"

    @property
    def log_level(self) -> str:
        return self.raw["log_level"]

    @property
    def untrusted_lua(self) -> str:
        return self.raw["untrusted_lua"]

    @property
    def untrusted_lua_sandbox_requires(self) -> tuple[str, ...]:
        return _list(self.raw["untrusted_lua_sandbox_requires"])

    @property
    def untrusted_lua_sandbox_environment(self) -> tuple[str, ...]:
        return _list(self.raw["untrusted_lua_sandbox_environment"])

    @property
    def lua_instruction_limit(self) -> int:
        return int(self.raw["lua_instruction_limit"])

    @property
    def lua_time_limit(self) -> float:
        return float(self.raw["lua_time_limit"])

    @property
    def lua_memory_limit(self) -> int:
        return parse_size(self.raw["lua_memory_limit"])

    @property
    def trusted_ips(self) -> TrustedNetworks:
        """Clients whose X-Forwarded-* headers describe the request (a load balancer in front)."""
        return TrustedNetworks.parse(_optional(self.raw["trusted_ips"]))

    @property
    def real_ip(self) -> RealIp:
        """How the client address is found behind trusted proxies (``real_ip_header``, ``real_ip_recursive``)."""
        header = self.raw["real_ip_header"].strip().lower()
        return RealIp(self.trusted_ips, None if header == "proxy_protocol" else header.encode("latin-1"),
                      self.raw["real_ip_recursive"] == "on")

    @property
    def headers(self) -> frozenset[str]:
        """Lower-case names of the headers kongish adds to responses (``headers``)."""
        return _enabled_headers(self.raw["headers"], _HEADER_ENTRIES)

    @property
    def headers_upstream(self) -> frozenset[str]:
        """Lower-case names of the headers kongish adds to upstream requests (``headers_upstream``)."""
        return _enabled_headers(self.raw["headers_upstream"], _UPSTREAM_HEADER_ENTRIES)

    @property
    def admin_max_body_size(self) -> int:
        return parse_size(self.raw["nginx_admin_client_max_body_size"])

    @property
    def proxy_max_body_size(self) -> int:
        """Largest request body the proxy takes; 0 (the default) takes any."""
        return parse_size(self.raw["nginx_http_client_max_body_size"])

    def public_view(self) -> dict[str, Any]:
        """The configuration as GET / and kong.configuration show it: secrets masked."""
        view: dict[str, Any] = {}
        for name, value in self.raw.items():
            if name in SECRETS and _optional(value) is not None:
                view[name] = "******"
            else:
                view[name] = _optional(value)
        view["plugins"] = list(self.plugins)
        return view
