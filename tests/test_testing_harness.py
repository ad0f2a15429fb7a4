"""``kongish.testing.ProxyHarness``: a plugin written for kongish, tested as its author
would test it, through the whole proxy flow and with no socket."""
from __future__ import annotations

import os
import tempfile
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from kongish.errors import InvalidDeclarative
from kongish.plugins.interface import IPlugin, IPluginHandlers
from kongish.runloop.context import RequestContext
from kongish.schema import Record, String
from kongish.testing import ProxyHarness, StubRequest, StubResponse


@implementer(IPluginHandlers)
@attrs.frozen
class StampHandlers:
    value: str
    phases: frozenset[str] = frozenset({"access", "header_filter"})

    def run(self, phase: str, context: RequestContext) -> None:
        if phase == "access":
            assert context.upstream is not None
            context.upstream.headers.setRawHeaders(b"X-Stamp", [self.value.encode()])
        else:
            context.response.headers.setRawHeaders(b"X-Stamped", [self.value.encode()])

    def close(self) -> None:
        """Nothing to release."""


@implementer(IPlugin)
@attrs.frozen
class StampPlugin:
    name: str = "stamp"
    priority: int = 10
    version: str = "1.0.0"
    config_schema: Record = Record(fields={"value": String(required=True, default="kongish")})
    consumer_scoped: bool = True
    comma_escaped_fields: frozenset[str] = frozenset()

    def check_entity(self, entity: dict[str, Any]) -> dict[str, str]:
        return {}

    def configure(self, entity: dict[str, Any]) -> StampHandlers:
        return StampHandlers(entity["config"]["value"])


CONFIG = {"_format_version": "3.0", "services": [{
    "name": "backend", "url": "http://backend.test",
    "routes": [{"paths": ["/stamped"], "plugins": [{"name": "stamp", "config": {"value": "v1"}}]},
               {"paths": ["/plain"]}]}]}


class ProxyHarnessTests(SynchronousTestCase):
    def start(self) -> ProxyHarness:
        def handler(request: StubRequest) -> StubResponse:
            stamps = [value.encode() for value in request.header("x-stamp")]
            return StubResponse(200, [("Content-Type", "text/plain")], [b"seen: ", *stamps])
        harness = ProxyHarness.start(CONFIG, handler, plugins=[StampPlugin()], prefix=self.mktemp())
        self.addCleanup(harness.close)
        return harness

    def test_a_python_plugin_runs_in_its_phases(self) -> None:
        self.assertTrue(verifyObject(IPlugin, StampPlugin()))
        harness = self.start()
        answer = harness.get(b"/stamped")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer)
        self.assertIn(b"\r\nX-Stamped: v1\r\n", answer)
        self.assertTrue(answer.endswith(b"seen: v1"), answer)
        (sent,) = harness.upstream.requests
        # strip_path (Kong's default) leaves "/" of "/stamped"
        self.assertEqual((sent.host, sent.path, sent.header("x-stamp")), ("backend.test", "/", ["v1"]))

    def test_routes_without_the_plugin_are_untouched(self) -> None:
        harness = self.start()
        answer = harness.get(b"/plain")
        self.assertNotIn(b"X-Stamped", answer)
        self.assertTrue(answer.endswith(b"seen: "), answer)

    def test_a_bad_config_is_refused_with_kongs_message(self) -> None:
        bad = {"_format_version": "3.0", "plugins": [{"name": "stamp", "config": {"value": 5}}]}
        error = self.assertRaises(InvalidDeclarative, ProxyHarness.start, bad,
                                  lambda request: StubResponse(200), plugins=[StampPlugin()],
                                  prefix=self.mktemp())
        self.assertIn("expected a string", str(error))

    def test_the_prefix_it_made_is_removed_on_close(self) -> None:
        harness = ProxyHarness.start(CONFIG, lambda request: StubResponse(200), plugins=[StampPlugin()])
        made = harness.made_prefix
        assert made is not None
        self.assertTrue(os.path.isdir(made))
        harness.close()
        self.assertFalse(os.path.exists(made))

    def test_a_given_prefix_is_left_alone(self) -> None:
        prefix = self.mktemp()
        os.mkdir(prefix)
        harness = ProxyHarness.start(CONFIG, lambda request: StubResponse(200), plugins=[StampPlugin()],
                                     prefix=prefix)
        self.assertIsNone(harness.made_prefix)
        harness.close()
        self.assertTrue(os.path.isdir(prefix))

    def test_a_failed_start_leaves_no_prefix(self) -> None:
        bad = {"_format_version": "3.0", "plugins": [{"name": "stamp", "config": {"value": 5}}]}
        private = self.mktemp()
        os.mkdir(private)
        self.patch(tempfile, "tempdir", private)  # so that only this test's directories are there
        self.assertRaises(InvalidDeclarative, ProxyHarness.start, bad,
                          lambda request: StubResponse(200), plugins=[StampPlugin()])
        self.assertEqual(os.listdir(private), [])
