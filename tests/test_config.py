"""Settings: kong.conf parsing, precedence and validation."""
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish.lua.settings import LuaSettings
from kongish.settings import ConfigError, Settings, parse_conf, parse_duration, parse_size
from kongish.settings.listen import ListenError, parse_listen


class ParseConfTests(SynchronousTestCase):
    def test_key_value_comments_and_escapes(self) -> None:
        text = "# comment\nproxy_listen = 127.0.0.1:9000  # trailing\n\nlog_level=debug\nx = a\\#b\n"
        self.assertEqual(parse_conf(text), {"proxy_listen": "127.0.0.1:9000",
                                            "log_level": "debug", "x": "a#b"})

    def test_line_without_equals_is_an_error_naming_the_line(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            parse_conf("database = off\nnonsense\n")
        self.assertIn("line 2", str(raised.exception))

    @given(st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
                           st.from_regex(r"[A-Za-z0-9:./, -]{0,20}", fullmatch=True)))
    def test_round_trip(self, values: dict) -> None:
        text = "\n".join(f"{key} = {value}" for key, value in values.items())
        self.assertEqual(parse_conf(text), {k: v.strip() for k, v in values.items()})


class SettingsTests(SynchronousTestCase):
    def test_parsed_once_into_types(self) -> None:
        settings = Settings.parse({"trusted_ips": "10.0.0.0/8", "lua_max_uri_args": "7",
                                   "nginx_http_client_max_body_size": "2k", "proxy_access_log": "off",
                                   "headers": "off", "error_default_type": "application/json"})
        self.assertEqual(settings.lua_max["lua_max_uri_args"], 7)
        self.assertIn("10.1.2.3", settings.trusted_ips)
        self.assertIs(settings.real_ip.trusted, settings.trusted_ips)
        self.assertEqual((settings.proxy_max_body_size, settings.proxy_access_log, settings.admin_access_log),
                         (2048, False, True))
        self.assertEqual((settings.headers, settings.error_default_type), (frozenset(), "application/json"))
        lua = LuaSettings.from_settings(settings)
        self.assertEqual((lua.reader_limits["lua_max_uri_args"], lua.trusted_ips), (7, settings.trusted_ips))

    def test_defaults(self) -> None:
        settings = Settings.load(environ={})
        self.assertEqual(settings.proxy_listen, ("tcp:8000:interface=0.0.0.0:backlog=16384",))
        self.assertEqual(settings.admin_listen, ("tcp:8001:interface=127.0.0.1:backlog=16384",))
        self.assertEqual(settings.database, "sqlite")
        self.assertEqual(settings.untrusted_lua, "sandbox")
        self.assertEqual(settings.plugins, ("bundled",))

    def test_precedence_file_then_environment_then_overrides(self) -> None:
        path = self.mktemp()
        with open(path, "w") as conf:
            conf.write("prefix = /from/file\nlog_level = info\ndatabase = off\n")
        settings = Settings.load(path, environ={"KONGISH_LOG_LEVEL": "debug",
                                                "KONGISH_PROXY_LISTEN": "127.0.0.1:9000"},
                                 overrides={"proxy_listen": "127.0.0.1:9100", "admin_listen": None})
        self.assertEqual(settings.prefix, "/from/file")
        self.assertEqual(settings.log_level, "debug")
        self.assertEqual(settings.database, "off")
        self.assertEqual(settings.proxy_listen, ("tcp:9100:interface=127.0.0.1:backlog=511",))

    def test_invalid_values_name_the_setting(self) -> None:
        for name, value in [("database", "cassandra"), ("untrusted_lua", "maybe"),
                            ("real_ip_recursive", "yes"),
                            ("proxy_listen", "nowhere"), ("lua_memory_limit", "lots")]:
            with self.assertRaises(ConfigError, msg=name):
                Settings.load(environ={f"KONGISH_{name.upper()}": value})

    def test_missing_file(self) -> None:
        with self.assertRaises(ConfigError):
            Settings.load(self.mktemp(), environ={})

    def test_secrets_are_masked(self) -> None:
        view = Settings.load(environ={"KONGISH_PG_PASSWORD": "hunter2"}).public_view()
        self.assertEqual(view["pg_password"], "******")
        self.assertEqual(view["plugins"], ["bundled"])

    def test_headers_entries_are_checked_as_kong_does(self) -> None:
        for name, value, bad in [("headers", "server_tokens,Foo-Bar", "Foo-Bar"), ("headers", "OFF", "OFF"),
                                 ("headers_upstream", "x-kong-request-id, Via", "Via")]:
            with self.assertRaises(ConfigError) as raised:
                Settings.load(environ={f"KONGISH_{name.upper()}": value})
            self.assertEqual(str(raised.exception), f"{name}: invalid entry '{bad}'")

    def test_lua_max_settings_as_kong_checks_them(self) -> None:
        for value in ("0", "1001", "ten", "1.5"):
            with self.assertRaises(ConfigError) as raised:
                Settings.load(environ={"KONGISH_LUA_MAX_URI_ARGS": value})
            self.assertEqual(str(raised.exception), "lua_max_uri_args must be an integer between 1 and 1000")
        self.assertEqual(
            Settings.load(environ={"KONGISH_LUA_MAX_POST_ARGS": "1000"}).raw["lua_max_post_args"],
                         "1000")

    def test_headers_defaults(self) -> None:
        settings = Settings.load(environ={})
        self.assertEqual(settings.headers, {
            "server", "via", "x-kong-proxy-latency", "x-kong-response-latency",
            "x-kong-admin-latency", "x-kong-upstream-latency", "x-kong-request-id"})
        self.assertEqual(settings.headers_upstream, {"x-kong-request-id"})

    @given(st.lists(st.sampled_from(["server_tokens", "latency_tokens", "Server", "VIA", "off",
                                     "X-Kong-Upstream-Status", "x-kong-request-id",
                                     "X-Kong-Proxy-Latency"]), max_size=6))
    def test_headers_expand_tokens_and_only_a_leading_off_counts(self, entries: list[str]) -> None:
        enabled = Settings.load(environ={"KONGISH_HEADERS": ", ".join(entries)}).headers
        expected: set[str] = set()
        if entries and entries[0] != "off":
            for entry in (entry.lower() for entry in entries):
                expected |= {"server_tokens": {"server", "via"},
                             "latency_tokens": {"x-kong-proxy-latency", "x-kong-response-latency",
                                                "x-kong-admin-latency", "x-kong-upstream-latency"},
                             "off": set()}.get(entry, {entry})
        self.assertEqual(enabled, expected)

    def test_sizes(self) -> None:
        self.assertEqual(parse_size("10m"), 10 * 1024 * 1024)
        self.assertEqual(parse_size("512K"), 512 * 1024)
        self.assertEqual(parse_size("100"), 100)


class ListenTests(SynchronousTestCase):
    def test_kong_forms(self) -> None:
        self.assertEqual(parse_listen("0.0.0.0:8000 reuseport backlog=16384, 127.0.0.1:8100"),
                         ["tcp:8000:interface=0.0.0.0:backlog=16384",
                          "tcp:8100:interface=127.0.0.1:backlog=511"])
        self.assertEqual(parse_listen("[::1]:8001"), ["tcp:8001:interface=\\:\\:1:backlog=511"])
        self.assertEqual(parse_listen("off"), [])
        self.assertEqual(parse_listen("0.0.0.0:8000 proxy_protocol"),
                         ["haproxy:tcp:8000:interface=0.0.0.0:backlog=511"])

    def test_endpoint_strings_pass_through(self) -> None:
        self.assertEqual(parse_listen("tcp:0:interface=127.0.0.1"), ["tcp:0:interface=127.0.0.1"])
        self.assertEqual(parse_listen("unix:/tmp/kongish.sock"), ["unix:/tmp/kongish.sock"])

    def test_rejections(self) -> None:
        for value in ["", "8000", "host:99999", "127.0.0.1:8443 ssl", "127.0.0.1:80 weird"]:
            with self.assertRaises(ListenError, msg=value):
                parse_listen(value)

    @given(st.integers(0, 65535), st.ip_addresses(v=4))
    def test_any_ipv4_address_and_port(self, port: int, address) -> None:
        self.assertEqual(parse_listen(f"{address}:{port}"),
                         [f"tcp:{port}:interface={address}:backlog=511"])


_UNITS = {"ms": 0.001, "": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000,
          "y": 31536000}
_UNIT_NAMES = sorted(set(_UNITS) - {""})
#: A time can only be made of these: text with anything else is never one.
_TIME_CHARACTERS = set("0123456789smhdwMy")


class DurationTests(SynchronousTestCase):
    @given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(_UNIT_NAMES)), max_size=3),
           st.one_of(st.none(), st.integers(0, 10**6)))
    def test_nginx_time_syntax_sums_its_parts(self, parts: list[tuple[int, str]],
                                              seconds: int | None) -> None:
        # only the last part may be a bare number: two bare numbers in a row read as one
        parts = parts + ([] if seconds is None and parts else [(seconds or 0, "")])
        text = "".join(f"{number}{unit}" for number, unit in parts)
        self.assertAlmostEqual(parse_duration(text),
                               sum(number * _UNITS[unit] for number, unit in parts))

    @given(st.text(max_size=12).filter(
        lambda text: not text.strip() or not set(text.strip()) <= _TIME_CHARACTERS))
    def test_anything_else_is_refused(self, text: str) -> None:
        with self.assertRaises(ConfigError):
            parse_duration(text)

    def test_client_timeouts_have_nginx_defaults_and_refuse_zero(self) -> None:
        settings = Settings.load(environ={})
        timeouts = (settings.client_header_timeout, settings.client_body_timeout, settings.keepalive_timeout)
        self.assertEqual(timeouts, (60, 60, 75))
        self.assertEqual(Settings.load(environ={"KONGISH_NGINX_HTTP_CLIENT_HEADER_TIMEOUT": "1m30s"})
                         .client_header_timeout, 90)
        with self.assertRaises(ConfigError) as raised:
            Settings.load(environ={"KONGISH_NGINX_HTTP_CLIENT_BODY_TIMEOUT": "0s"})
        self.assertIn("nginx_http_client_body_timeout", str(raised.exception))

    def test_descriptor_settings_are_auto_or_positive(self) -> None:
        self.assertIsNone(Settings.load(environ={}).worker_connections)
        self.assertEqual(Settings.load(environ={"KONGISH_NGINX_EVENTS_WORKER_CONNECTIONS": "512"})
                         .worker_connections, 512)
        for value in ("0", "-1", "many"):
            with self.assertRaises(ConfigError):
                Settings.load(environ={"KONGISH_NGINX_MAIN_WORKER_RLIMIT_NOFILE": value})
