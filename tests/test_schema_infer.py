"""Form-body type inference (reference 3.4) and the Lua number parsing behind it."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from lupa import luajit21
from twisted.trial.unittest import SynchronousTestCase

from kongish.schema import PLUGINS, ROUTES, SERVICES, complete, infer
from kongish.schema.lua import tonumber
from tests.test_schema_plugins import lookup

UUID = "6f3f4ad9-b4e1-4a3a-8e2a-2d6a1f0b7c11"


class InferenceTests(SynchronousTestCase):
    def test_empty_string_is_null(self) -> None:
        self.assertEqual(infer(SERVICES, {"name": "", "path": ""}, plugins=lookup),
                         {"name": None, "path": None})

    def test_numbers(self) -> None:
        inferred = infer(SERVICES, {"port": "80", "retries": "0x05", "connect_timeout": " 1e3 ",
                                    "write_timeout": "abc"}, plugins=lookup)
        self.assertEqual(inferred,
                         {"port": 80, "retries": 5, "connect_timeout": 1000, "write_timeout": "abc"})

    def test_booleans(self) -> None:
        inferred = infer(ROUTES, {"strip_path": "false", "preserve_host": "true", "request_buffering": "1"},
                         plugins=lookup)
        self.assertEqual(inferred, {"strip_path": False, "preserve_host": True, "request_buffering": "1"})

    def test_scalars_are_wrapped(self) -> None:
        inferred = infer(ROUTES, {"paths": "/a", "methods": ["GET"], "protocols": "http"}, plugins=lookup)
        self.assertEqual(inferred, {"paths": ["/a"], "methods": ["GET"], "protocols": ["http"]})

    def test_array_elements(self) -> None:
        self.assertEqual(infer(SERVICES, {"tags": ["a", ""]}, plugins=lookup), {"tags": ["a", None]})

    def test_map_values(self) -> None:
        self.assertEqual(infer(ROUTES, {"headers": {"x-version": "v1"}}, plugins=lookup),
                         {"headers": {"x-version": ["v1"]}})

    def test_foreign_keys_use_the_referenced_schema(self) -> None:
        self.assertEqual(infer(ROUTES, {"service": {"id": UUID, "port": "80"}}, plugins=lookup),
                         {"service": {"id": UUID, "port": 80}})

    def test_plugin_config_follows_the_name(self) -> None:
        inferred = infer(PLUGINS, {"name": "rate", "enabled": "false",
                                   "config": {"limit": "5", "window": {"seconds": "9"}, "keys": "ip",
                                              "other": "1"}}, plugins=lookup)
        self.assertEqual(inferred, {"name": "rate", "enabled": False, "config": {
            "limit": 5, "window": {"seconds": 9}, "keys": ["ip"], "other": "1"}})

    def test_plugin_name_for_patch(self) -> None:
        self.assertEqual(infer(PLUGINS, {"config": {"limit": "5"}}, plugins=lookup, plugin_name="rate"),
                         {"config": {"limit": 5}})
        self.assertEqual(infer(PLUGINS, {"config": {"limit": "5"}}, plugins=lookup),
                         {"config": {"limit": "5"}})

    def test_unknown_keys_and_plugins_are_left_alone(self) -> None:
        self.assertEqual(infer(PLUGINS, {"name": "nope", "config": {"x": "1"}, "foo": ""}, plugins=lookup),
                         {"name": "nope", "config": {"x": "1"}, "foo": ""})

    def test_form_bodies_from_the_checklist(self) -> None:
        service = complete(SERVICES, infer(SERVICES, {"host": "h", "port": "80"}, plugins=lookup),
                           plugins=lookup)
        self.assertEqual(service["port"], 80)
        plugin = complete(PLUGINS, infer(PLUGINS, {"name": "pre-function", "config": {"access": "CODE = 1"}},
                                         plugins=lookup), plugins=lookup)
        self.assertEqual(plugin["config"]["access"], ["CODE = 1"])


LUA_TONUMBER = luajit21.LuaRuntime().eval("tonumber")
NUMBERISH = st.text(alphabet="0123456789abcdefxXpPeEinftyINFTYbB.+- \t\n", max_size=12)


class ToNumberTests(SynchronousTestCase):
    def test_examples(self) -> None:
        self.assertEqual([tonumber(text) for text in ("80", " 80 ", "0x10", "1e3", "0b101", ".5", "5.")],
                         [80, 80, 16, 1000, 5, 0.5, 5])
        self.assertEqual([tonumber(text) for text in ("", "1e", "0x", "- 5", "1_0")], [None] * 5)
        self.assertEqual(tonumber("-inf"), -math.inf)

    @settings(max_examples=200)
    @given(NUMBERISH)
    def test_matches_luajit(self, text: str) -> None:
        expected = LUA_TONUMBER(text)
        actual = tonumber(text)
        if isinstance(expected, float) and math.isnan(expected):
            self.assertTrue(isinstance(actual, float) and math.isnan(actual), repr(actual))
        else:
            self.assertEqual(actual, expected)
