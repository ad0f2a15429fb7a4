"""Absolute-form request targets are routed by their path and host, as nginx does."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kongish.http.target import origin_form
from tests.harness import deferred, start_gateway, start_upstream


class OriginFormTests(SynchronousTestCase):
    def test_path_and_query_kept(self) -> None:
        self.assertEqual(origin_form(b"http://Other.Host:81/a/b?x=1"), (b"Other.Host:81", b"/a/b?x=1"))

    def test_empty_path_becomes_slash(self) -> None:
        self.assertEqual(origin_form(b"HTTPS://h"), (b"h", b"/"))
        self.assertEqual(origin_form(b"http://h?q"), (b"h", b"/?q"))

    def test_other_targets_unchanged(self) -> None:
        for target in (b"/p", b"*", b"ftp://h/p", b"http:///p"):
            self.assertIsNone(origin_form(target))

    @settings(max_examples=150)
    @given(st.sampled_from([b"http", b"https"]), st.from_regex(rb"\A[a-z0-9.:-]{1,20}\Z"),
           st.from_regex(rb"\A(/[a-z0-9/%?=&]*)?\Z"))
    def test_round_trip(self, scheme: bytes, host: bytes, rest: bytes) -> None:
        self.assertEqual(origin_form(scheme + b"://" + host + rest), (host, rest or b"/"))


class AbsoluteTargetProxyTests(TestCase):
    @deferred
    async def test_routed_by_target_path_and_host(self) -> None:
        upstream = await start_upstream(self)
        gateway = await start_gateway(self)
        await gateway.expose(upstream.url, "/p", route={"hosts": ["other.host"], "strip_path": False})
        answer = await gateway.raw(b"GET http://other.host/p/x?y=1 HTTP/1.0\r\nHost: wrong.host\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head)
        seen = json.loads(body)
        self.assertEqual(seen["uri"], "/p/x?y=1")
        self.assertEqual(seen["headers"]["x-forwarded-host"], ["other.host"])
        self.assertEqual(seen["headers"]["x-forwarded-path"], ["/p/x"])
