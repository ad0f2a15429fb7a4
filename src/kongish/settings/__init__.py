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

from kongish.http.names import DnsSettings
from kongish.http.pool import KeepaliveSettings
from kongish.http.realip import RealIp, TrustedNetworks
from kongish.settings.listen import ListenError, parse_listen

#: Every setting kongish reads, with its default (as text, the way kong.conf writes it).
DEFAULTS: dict[str, str] = {
    "prefix": ".kongish",
    "proxy_listen": "0.0.0.0:8000 reuseport backlog=16384",
    "admin_listen": "127.0.0.1:8001 reuseport backlog=16384",
    "status_listen": "off",
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
    "lua_output_limit": "512m",
    "lua_outbound_calls": "10",
    "lua_outbound_time": "30",
    "lua_outbound_body_limit": "8m",
    "nginx_http_lua_max_running_timers": "4096",
    "nginx_http_lua_max_pending_timers": "16384",
    "headers": "server_tokens, latency_tokens, x-kong-request-id",
    "headers_upstream": "x-kong-request-id",
    "trusted_ips": "NONE",
    "real_ip_header": "X-Real-IP",
    "real_ip_recursive": "off",
    "error_default_type": "text/plain",
    "nginx_admin_client_max_body_size": "10m",
    "nginx_http_client_max_body_size": "0",
    "nginx_http_client_body_buffer_size": "8k",
    "nginx_http_client_header_timeout": "60s",
    "nginx_http_client_body_timeout": "60s",
    "nginx_http_keepalive_timeout": "75s",
    "nginx_http_send_timeout": "60s",
    "nginx_http_lua_shared_dict": "NONE",
    "nginx_worker_processes": "auto",
    "worker_consistency": "strict",
    "worker_rss_limit": "0",
    "nginx_main_worker_rlimit_nofile": "auto",
    "nginx_events_worker_connections": "auto",
    "lua_max_req_headers": "100",
    "lua_max_resp_headers": "100",
    "lua_max_uri_args": "100",
    "lua_max_post_args": "100",
    "upstream_keepalive_pool_size": "512",
    "upstream_keepalive_max_requests": "10000",
    "upstream_keepalive_idle_timeout": "60",
    "dns_valid_ttl": "NONE",
    "dns_stale_ttl": "3600",
    "dns_not_found_ttl": "30",
    "dns_error_ttl": "1",
    "pg_host": "127.0.0.1",
    "pg_port": "5432",
    "pg_user": "kong",
    "pg_password": "NONE",
    "pg_database": "kong",
    "pg_schema": "NONE",
    "pg_timeout": "5000",
    "pg_ssl": "off",
    "pg_ssl_verify": "off",
    "pg_max_concurrent_queries": "0",
    "db_update_frequency": "5",
}

#: Default limits of the PDK's header and argument readers, 1 to 1000 as in Kong.
LUA_MAX_SETTINGS = ("lua_max_req_headers", "lua_max_resp_headers", "lua_max_uri_args", "lua_max_post_args")

#: Settings whose values are never shown (GET /, kong.configuration): Kong's CONF_SENSITIVE.
#: A declarative_config_string holds every credential of the configuration.
SECRETS = frozenset({"pg_password", "pg_ro_password", "proxy_server", "declarative_config_string",
                     "cluster_cert_key", "ssl_cert_key"})

DATABASES = ("sqlite", "postgres", "off")
#: Kong's ``worker_consistency``, with kongish's meaning (see ``Settings.worker_consistency``).
CONSISTENCIES = ("strict", "eventual")
#: Kong's log levels, most verbose first.
LOG_LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")
#: Kong's ``untrusted_lua``: ``sandbox`` (default), ``on`` (full globals) or ``off``.
UNTRUSTED_LUA_MODES = ("on", "off", "sandbox")
_ON_OFF = ("on", "off")
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
#: nginx's time syntax: a sequence of numbers with units, largest first (``1m30s``); bare seconds.
_DURATION = re.compile(r"^(?:\d+(?:ms|[smhdwMy])?)+$")
_DURATION_PART = re.compile(r"(\d+)(ms|[smhdwMy]?)")
_DURATION_UNITS = {"ms": 0.001, "": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400,
                   "M": 30 * 86400, "y": 365 * 86400}


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


#: lua-nginx-module's smallest ``lua_shared_dict`` size.
MIN_SHARED_DICT_SIZE = 8192


def parse_shared_dicts(text: str | None) -> tuple[tuple[str, int], ...]:
    """``nginx_http_lua_shared_dict``, as Kong injects it (``lua_shared_dict <value>;``): one
    ``name size``, and more as ``foo 5m; lua_shared_dict bar 1m``."""
    setting = "nginx_http_lua_shared_dict"
    dicts: dict[str, int] = {}
    for number, part in enumerate((text or "").split(";")):
        words = part.split()
        if not words:
            continue
        if number > 0:
            if words[0] != "lua_shared_dict":
                raise ConfigError(f"{setting}: expected 'lua_shared_dict <name> <size>' after ';' "
                                  f"(as in 'foo 5m; lua_shared_dict bar 1m'), got {part.strip()!r}")
            words = words[1:]
        if len(words) != 2:
            raise ConfigError(f"{setting}: expected '<name> <size>', got {part.strip()!r}")
        name, size_text = words
        try:
            size = parse_size(size_text)
        except ConfigError:
            raise ConfigError(f'{setting}: invalid lua shared dict size "{size_text}" of "{name}"') from None
        if size < MIN_SHARED_DICT_SIZE:
            raise ConfigError(f'{setting}: invalid lua shared dict size "{size_text}" of "{name}" '
                              "(at least 8k)")
        if name in dicts:
            raise ConfigError(f'{setting}: lua_shared_dict "{name}" is duplicate')
        dicts[name] = size
    return tuple(dicts.items())


def parse_duration(text: str) -> float:
    """nginx time syntax, in seconds: ``60s``, ``1m30s``, ``500ms``, or a bare number of seconds."""
    text = text.strip()
    if not _DURATION.match(text):
        raise ConfigError(f"invalid time: {text!r}")
    return sum(int(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(text))


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
class PostgresSettings:
    """Kong's ``pg_*`` settings: the database a node on PostgreSQL keeps its entities in."""

    host: str
    port: int
    user: str
    password: str | None
    database: str
    #: The schema the tables live in (None: the server's search path, ``public``).
    schema: str | None
    #: Seconds to connect and for each query (``pg_timeout`` is in milliseconds).
    timeout: float
    ssl: bool
    ssl_verify: bool
    #: 0: no limit.
    max_concurrent_queries: int

    def connection_options(self) -> dict[str, Any]:
        """libpq's keywords (``psycopg.connect(**...)``); the password only goes to libpq."""
        options: dict[str, Any] = {
            "host": self.host, "port": self.port, "user": self.user, "dbname": self.database,
            "connect_timeout": max(1, round(self.timeout)),
            "sslmode": ("verify-full" if self.ssl_verify else "require") if self.ssl else "disable",
            "application_name": "kongish"}
        if self.password is not None:
            options["password"] = self.password
        if self.schema is not None:
            options["options"] = f"-c search_path={self.schema}"
        return options


@attrs.frozen
class Settings:
    """The effective configuration of one kongish node, parsed and checked once at start.

    ``raw`` keeps the text values, for ``GET /`` and ``kong.configuration``; everything
    else is typed, so no request re-reads a string.
    """

    raw: Mapping[str, str]
    prefix: str
    database: str
    proxy_listen: tuple[str, ...]
    admin_listen: tuple[str, ...]
    #: Kong's status listener (``GET /status``, ``GET /metrics``); none by default (``off``).
    status_listen: tuple[str, ...]
    declarative_config: str | None
    declarative_config_string: str | None
    plugins: tuple[str, ...]
    log_level: str
    proxy_access_log: bool
    admin_access_log: bool
    untrusted_lua: str
    untrusted_lua_sandbox_requires: tuple[str, ...]
    untrusted_lua_sandbox_environment: tuple[str, ...]
    lua_instruction_limit: int
    lua_time_limit: float
    lua_memory_limit: int
    #: Response output (Lua's bodies and header values) all requests together may hold for clients.
    lua_output_limit: int
    #: Outbound HTTP (``resty.http``) per request or timer run: calls, total seconds; and the
    #: largest response body one call reads.
    lua_outbound_calls: int
    lua_outbound_time: float
    lua_outbound_body_limit: int
    #: nginx's ``lua_max_running_timers`` and ``lua_max_pending_timers`` (Kong's values).
    lua_max_running_timers: int
    lua_max_pending_timers: int
    #: Clients whose X-Forwarded-* headers describe the request (a load balancer in front).
    trusted_ips: TrustedNetworks
    #: How the client address is found behind trusted proxies (``real_ip_header``, ``real_ip_recursive``).
    real_ip: RealIp
    #: Lower-case names of the headers kongish adds to responses (``headers``).
    headers: frozenset[str]
    #: Lower-case names of the headers kongish adds to upstream requests (``headers_upstream``).
    headers_upstream: frozenset[str]
    error_default_type: str
    admin_max_body_size: int
    #: Largest request body the proxy takes; 0 (the default) takes any.
    proxy_max_body_size: int
    #: nginx's ``client_body_buffer_size``: larger bodies are "in a file" to the PDK's body readers.
    client_body_buffer_size: int
    #: The PDK readers' default limits: ``lua_max_req_headers`` ... ``lua_max_post_args``.
    lua_max: Mapping[str, int]
    #: nginx's client timeouts, in seconds: a whole head, a pause within a body, an idle keep-alive.
    client_header_timeout: float
    client_body_timeout: float
    keepalive_timeout: float
    #: nginx's ``send_timeout``: a client that takes nothing of a response for this long is cut off.
    send_timeout: float
    #: ``ngx.shared.NAME`` dicts (``nginx_http_lua_shared_dict``): name and size in bytes of each.
    lua_shared_dicts: tuple[tuple[str, int], ...]
    #: Worker processes serving the proxy (``nginx_worker_processes``; ``auto``: one per core
    #: this process may run on). 1 serves everything in one process, as embedding does.
    worker_processes: int
    #: ``strict``: an Admin write answers once every worker serves it (1 s at most);
    #: ``eventual``: at once, and workers follow.
    worker_consistency: str
    #: A worker whose resident memory grows past this many bytes is replaced gracefully (0: never).
    worker_rss_limit: int
    #: The descriptor limit to set at start, and the connections one process holds (None: ``auto``).
    rlimit_nofile: int | None
    worker_connections: int | None
    #: Kong's upstream keep-alive pools: idle connections per upstream, requests per
    #: connection, seconds idle (0: none, no limit, no limit).
    upstream_keepalive: KeepaliveSettings
    #: How long upstream names' answers are kept (Kong's ``dns_*`` TTLs, seconds).
    dns: DnsSettings
    #: ``database = postgres``: where the database is and how to reach it (Kong's ``pg_*``).
    postgres: PostgresSettings
    #: Seconds between two looks at the store's configuration version, besides notifications.
    db_update_frequency: float

    @classmethod
    def load(cls, path: str | None = None, environ: Mapping[str, str] | None = None,
             overrides: Mapping[str, str | None] | None = None) -> Settings:
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
        return cls.parse(values)

    @classmethod
    def parse(cls, values: Mapping[str, str]) -> Settings:
        """Check and convert every setting; a bad one fails the start with its name, rather
        than the first request."""
        raw = {**DEFAULTS, **values}
        try:
            trusted_ips = TrustedNetworks.parse(_optional(raw["trusted_ips"]))
        except ValueError as error:
            raise ConfigError(f"trusted_ips: {error}") from None
        real_ip_header = raw["real_ip_header"].strip().lower()
        return cls(
            raw=raw,
            prefix=raw["prefix"],
            database=_choice(raw, "database", DATABASES),
            proxy_listen=_listen(raw, "proxy_listen"),
            admin_listen=_listen(raw, "admin_listen"),
            status_listen=_listen(raw, "status_listen"),
            declarative_config=_optional(raw["declarative_config"]),
            declarative_config_string=_optional(raw["declarative_config_string"]),
            plugins=_list(raw["plugins"]),
            log_level=_choice(raw, "log_level", LOG_LEVELS),
            proxy_access_log=_choice(raw, "proxy_access_log", _ON_OFF) == "on",
            admin_access_log=_choice(raw, "admin_access_log", _ON_OFF) == "on",
            untrusted_lua=_choice(raw, "untrusted_lua", UNTRUSTED_LUA_MODES),
            untrusted_lua_sandbox_requires=_list(raw["untrusted_lua_sandbox_requires"]),
            untrusted_lua_sandbox_environment=_list(raw["untrusted_lua_sandbox_environment"]),
            lua_instruction_limit=_instruction_limit(raw["lua_instruction_limit"]),
            lua_time_limit=_time_limit(raw["lua_time_limit"]),
            lua_memory_limit=_size(raw, "lua_memory_limit"),
            lua_output_limit=_size(raw, "lua_output_limit"),
            lua_outbound_calls=_count(raw, "lua_outbound_calls"),
            lua_outbound_time=_seconds(raw, "lua_outbound_time"),
            lua_outbound_body_limit=_size(raw, "lua_outbound_body_limit"),
            lua_max_running_timers=_count(raw, "nginx_http_lua_max_running_timers"),
            lua_max_pending_timers=_count(raw, "nginx_http_lua_max_pending_timers"),
            trusted_ips=trusted_ips,
            real_ip=RealIp(trusted_ips,
                           None if real_ip_header == "proxy_protocol" else real_ip_header.encode("latin-1"),
                           _choice(raw, "real_ip_recursive", _ON_OFF) == "on"),
            headers=_headers(raw, "headers", _HEADER_ENTRIES),
            headers_upstream=_headers(raw, "headers_upstream", _UPSTREAM_HEADER_ENTRIES),
            error_default_type=raw["error_default_type"],
            admin_max_body_size=_size(raw, "nginx_admin_client_max_body_size"),
            proxy_max_body_size=_size(raw, "nginx_http_client_max_body_size"),
            client_body_buffer_size=_size(raw, "nginx_http_client_body_buffer_size"),
            lua_max={name: _lua_max(raw, name) for name in LUA_MAX_SETTINGS},
            client_header_timeout=_timeout(raw, "nginx_http_client_header_timeout"),
            client_body_timeout=_timeout(raw, "nginx_http_client_body_timeout"),
            keepalive_timeout=_timeout(raw, "nginx_http_keepalive_timeout"),
            send_timeout=_timeout(raw, "nginx_http_send_timeout"),
            lua_shared_dicts=parse_shared_dicts(_optional(raw["nginx_http_lua_shared_dict"])),
            worker_processes=_auto_count(raw, "nginx_worker_processes") or len(os.sched_getaffinity(0)),
            worker_consistency=_choice(raw, "worker_consistency", CONSISTENCIES),
            worker_rss_limit=_size(raw, "worker_rss_limit"),
            rlimit_nofile=_auto_count(raw, "nginx_main_worker_rlimit_nofile"),
            worker_connections=_auto_count(raw, "nginx_events_worker_connections"),
            upstream_keepalive=KeepaliveSettings(
                pool_size=_count(raw, "upstream_keepalive_pool_size"),
                max_requests=_count(raw, "upstream_keepalive_max_requests"),
                idle_timeout=_count(raw, "upstream_keepalive_idle_timeout")),
            dns=DnsSettings(
                valid_ttl=None if _optional(raw["dns_valid_ttl"]) is None else _count(raw, "dns_valid_ttl"),
                stale_ttl=_count(raw, "dns_stale_ttl"), not_found_ttl=_count(raw, "dns_not_found_ttl"),
                error_ttl=_count(raw, "dns_error_ttl")),
            postgres=PostgresSettings(
                host=raw["pg_host"], port=_port(raw, "pg_port"), user=raw["pg_user"],
                password=_optional(raw["pg_password"]), database=raw["pg_database"],
                schema=_optional(raw["pg_schema"]), timeout=_count(raw, "pg_timeout") / 1000,
                ssl=_choice(raw, "pg_ssl", _ON_OFF) == "on",
                ssl_verify=_choice(raw, "pg_ssl_verify", _ON_OFF) == "on",
                max_concurrent_queries=_count(raw, "pg_max_concurrent_queries")),
            db_update_frequency=_seconds(raw, "db_update_frequency"),
        )

    @property
    def sqlite_path(self) -> str:
        return os.path.join(self.prefix, "kongish.db")

    def access_log(self, role: str) -> bool:
        """Whether ``role`` ("proxy" or "admin") writes an access log line per request."""
        return self.proxy_access_log if role == "proxy" else self.admin_access_log

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


def _choice(raw: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    if raw[name] not in allowed:
        raise ConfigError(f"{name} has an invalid value: '{raw[name]}' "
                          f"(expected one of: {', '.join(allowed)})")
    return raw[name]


def _listen(raw: Mapping[str, str], name: str) -> tuple[str, ...]:
    try:
        return tuple(parse_listen(raw[name]))
    except ListenError as error:
        raise ConfigError(f"{name}: {error}") from None


def _size(raw: Mapping[str, str], name: str) -> int:
    try:
        return parse_size(raw[name])
    except ConfigError as error:
        raise ConfigError(f"{name}: {error}") from None


def _timeout(raw: Mapping[str, str], name: str) -> float:
    try:
        seconds = parse_duration(raw[name])
    except ConfigError as error:
        raise ConfigError(f"{name}: {error}") from None
    if seconds <= 0:
        raise ConfigError(f"{name}: expected a time greater than 0")
    return seconds


def _auto_count(raw: Mapping[str, str], name: str) -> int | None:
    """``auto`` (None) or a positive integer."""
    text = raw[name].strip()
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{name}: expected 'auto' or a positive integer")
    return int(text)


def _port(raw: Mapping[str, str], name: str) -> int:
    text = raw[name].strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"{name}: expected a port number, 1 to 65535")
    return int(text)


def _seconds(raw: Mapping[str, str], name: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(raw[name])
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}: expected a positive number of seconds")
    return value


def _count(raw: Mapping[str, str], name: str) -> int:
    """A whole number, 0 or more."""
    text = raw[name].strip()
    if not text.isdigit():
        raise ConfigError(f"{name}: expected a number of 0 or more")
    return int(text)


def _headers(raw: Mapping[str, str], name: str, entries: Mapping[str, frozenset[str]]) -> frozenset[str]:
    for token in _list(raw[name]):
        if token != "off" and token.lower() not in entries:  # Kong: only "off" as written
            raise ConfigError(f"{name}: invalid entry '{token}'")
    return _enabled_headers(raw[name], entries)


def _lua_max(raw: Mapping[str, str], name: str) -> int:
    if not raw[name].isdigit() or not 1 <= int(raw[name]) <= 1000:
        raise ConfigError(f"{name} must be an integer between 1 and 1000")
    return int(raw[name])


def _instruction_limit(text: str) -> int:
    if not text.isdigit() or int(text) < 1000:
        raise ConfigError("lua_instruction_limit: expected an integer of at least 1000")
    return int(text)


def _time_limit(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0
    if not seconds > 0:
        raise ConfigError("lua_time_limit: expected a positive number of seconds")
    return seconds
