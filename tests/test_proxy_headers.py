"""GatewayHeaders: kongish's own values stored exactly as Headers would store them."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from kongish.http import headers as wire
from kongish.runloop import headers as gateway

_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class GatewayHeadersTests(SynchronousTestCase):
    @given(st.text(_TOKEN_CHARS, min_size=1, max_size=40), st.binary(max_size=40).filter(
        lambda value: b"\r" not in value and b"\n" not in value))
    def test_put_stores_what_set_raw_headers_would(self, name: str, value: bytes) -> None:
        put, checked = wire.GatewayHeaders(), Headers()
        put.put(wire.canonical(name.encode()), value)
        checked.setRawHeaders(name.encode(), [value])
        self.assertEqual(list(put.getAllRawHeaders()), list(checked.getAllRawHeaders()))
        self.assertEqual(put.getRawHeaders(name.lower().encode()), [value])

    def test_named_headers_are_canonical(self) -> None:
        self.assertEqual(
            [wire.SERVER, wire.VIA, wire.CONTENT_TYPE, wire.CONTENT_LENGTH,
             wire.RESPONSE_LATENCY, wire.UPSTREAM_LATENCY, wire.PROXY_LATENCY,
             wire.UPSTREAM_STATUS, wire.REQUEST_ID],
            [b"Server", b"Via", b"Content-Type", b"Content-Length", b"X-Kong-Response-Latency",
             b"X-Kong-Upstream-Latency", b"X-Kong-Proxy-Latency", b"X-Kong-Upstream-Status",
             b"X-Kong-Request-Id"])

    def test_put_replaces_every_earlier_value(self) -> None:
        headers = wire.GatewayHeaders()
        headers.addRawHeader(b"server", b"upstream/1")
        headers.addRawHeader(b"Server", b"upstream/2")
        headers.put(wire.SERVER, gateway.SERVER_TOKEN)
        self.assertEqual(headers.getRawHeaders(b"server"), [gateway.SERVER_TOKEN])

    def test_copies_keep_the_fast_path(self) -> None:
        source = Headers({b"connection": [b"x-hop"], b"x-hop": [b"1"], b"x-end": [b"2"]})
        copied = wire.copy_end_to_end(source)
        self.assertIsInstance(copied, wire.GatewayHeaders)
        self.assertEqual(list(copied.getAllRawHeaders()), [(b"X-End", [b"2"])])


class CasedHeadersTests(SynchronousTestCase):
    """Names written as given, looked up in any case."""

    @given(st.text(_TOKEN_CHARS, min_size=1, max_size=40))
    def test_names_are_sent_as_given(self, name: str) -> None:
        headers = wire.CasedHeaders()
        headers.setRawHeaders(name.encode(), [b"v"])
        self.assertEqual(list(headers.getAllRawHeaders()), [(name.encode(), [b"v"])])
        for spelling in (name.lower(), name.upper(), name):
            self.assertTrue(headers.hasHeader(spelling.encode()))
            self.assertEqual(headers.getRawHeaders(spelling.encode()), [b"v"])

    def test_setting_again_replaces_values_and_spelling(self) -> None:
        headers = wire.CasedHeaders()
        headers.setRawHeaders(b"X-API-KEY", [b"1"])
        headers.setRawHeaders(b"x-api-key", [b"2"])
        self.assertEqual(list(headers.getAllRawHeaders()), [(b"x-api-key", [b"2"])])
        headers.setRawHeaders("X-Api-Key", ["3"])  # canonically spelled, given as text
        self.assertEqual(list(headers.getAllRawHeaders()), [(b"X-Api-Key", [b"3"])])

    def test_adding_keeps_the_first_spelling(self) -> None:
        headers = wire.CasedHeaders()
        headers.addRawHeader(b"X-MULTI", b"1")
        headers.addRawHeader(b"x-multi", b"2")
        self.assertEqual(list(headers.getAllRawHeaders()), [(b"X-MULTI", [b"1", b"2"])])

    @given(st.lists(st.tuples(st.text(_TOKEN_CHARS, min_size=1, max_size=12),
                              st.binary(max_size=12).map(lambda value: value.translate(None, b"\r\n\0"))),
                    max_size=12))
    def test_adding_parsed_headers_is_adding_raw_ones(self, parsed: list[tuple[str, bytes]]) -> None:
        """What llhttp can hand over (token names; values without CR, LF or NUL) ends up as
        ``addRawHeader`` would keep it: values, order and spellings."""
        checked, unchecked = wire.CasedHeaders(), wire.CasedHeaders()
        for name, value in parsed:
            checked.addRawHeader(name.encode(), value)
            unchecked.add_parsed(name.encode(), value)
        self.assertEqual(list(unchecked.getAllRawHeaders()), list(checked.getAllRawHeaders()))
        for name, _ in parsed:
            self.assertEqual(unchecked.getRawHeaders(name.upper().encode()),
                             checked.getRawHeaders(name.lower().encode()))

    @given(st.lists(st.tuples(st.text(_TOKEN_CHARS, min_size=1, max_size=12),
                              st.lists(st.binary(max_size=12), min_size=1, max_size=3)),
                    max_size=8))
    def test_setting_bytes_is_setting_raw_headers(self, edits: list[tuple[str, list[bytes]]]) -> None:
        """A plugin's header edits (``set_bytes``) keep what ``setRawHeaders`` would: values
        with their line breaks sanitized, order and spellings."""
        checked, fast = wire.CasedHeaders({b"X-Before": [b"1"]}), wire.CasedHeaders({b"X-Before": [b"1"]})
        for name, values in edits:
            checked.setRawHeaders(name.encode(), values)
            fast.set_bytes(name.encode(), list(values))
        self.assertEqual(list(fast.getAllRawHeaders()), list(checked.getAllRawHeaders()))

    def test_setting_bytes_checks_the_name(self) -> None:
        with self.assertRaises(ValueError):
            wire.CasedHeaders().set_bytes(b"X Bad", [b"1"])

    def test_removing_forgets_the_spelling(self) -> None:
        headers = wire.CasedHeaders({b"X-GONE": [b"1"]})
        headers.removeHeader(b"x-gone")
        self.assertFalse(headers.hasHeader(b"X-GONE"))
        headers.addRawHeader(b"x-Gone", b"2")
        self.assertEqual(list(headers.getAllRawHeaders()), [(b"x-Gone", [b"2"])])

    def test_copies_keep_spellings_and_are_independent(self) -> None:
        headers = wire.GatewayHeaders()
        headers.setRawHeaders(b"X-PL", [b"1"])
        copied = headers.copy()
        self.assertIsInstance(copied, wire.GatewayHeaders)
        copied.addRawHeader(b"x-pl", b"2")
        copied.setRawHeaders(b"x-new", [b"3"])
        self.assertEqual(list(headers.getAllRawHeaders()), [(b"X-PL", [b"1"])])
        self.assertEqual(list(copied.getAllRawHeaders()), [(b"X-PL", [b"1", b"2"]), (b"x-new", [b"3"])])

    def test_put_spells_kongs_names_canonically(self) -> None:
        headers = wire.GatewayHeaders()
        headers.setRawHeaders(b"via", [b"1.1 cache"])
        headers.put(wire.VIA, b"1.1 cache, " + gateway.VIA_TOKEN)
        self.assertEqual(list(headers.getAllRawHeaders()), [(b"Via", [b"1.1 cache, " + gateway.VIA_TOKEN])])

    def test_respell_sends_the_canonical_spelling(self) -> None:
        headers = wire.GatewayHeaders()
        headers.setRawHeaders(b"content-TYPE", [b"text/plain"])
        headers.setRawHeaders(b"X-KEPT", [b"1"])
        headers.respell(wire.CONTENT_TYPE)
        self.assertEqual(list(headers.getAllRawHeaders()),
                         [(b"Content-Type", [b"text/plain"]), (b"X-KEPT", [b"1"])])

    def test_copy_end_to_end_keeps_spellings(self) -> None:
        source = wire.CasedHeaders()
        for name, value in ((b"connection", b"X-HOP"), (b"x-hop", b"1"), (b"X-END", b"2"), (b"Te", b"x")):
            source.addRawHeader(name, value)
        self.assertEqual(list(wire.copy_end_to_end(source).getAllRawHeaders()), [(b"X-END", [b"2"])])


class KongHeadersTests(SynchronousTestCase):
    def test_own_answers(self) -> None:
        headers = wire.GatewayHeaders()
        headers.setRawHeaders(b"server", [b"plugin/1"])
        gateway.KongHeaders.enabled(frozenset({"server", "x-kong-response-latency"})).add_own(
            headers, 7, b"id")
        self.assertEqual(list(headers.getAllRawHeaders()),
                         [(b"Server", [gateway.SERVER_TOKEN]), (b"X-Kong-Response-Latency", [b"7"])])

    def test_a_plugin_answering_as_kong_keeps_its_server(self) -> None:
        headers = wire.GatewayHeaders({b"via": [gateway.SERVER_TOKEN], b"server": [b"mine"]})
        gateway.KongHeaders.enabled(frozenset({"server", "via"})).add_own(headers, 0, b"id")
        self.assertEqual(headers.getRawHeaders(b"server"), [b"mine"])
        gateway.KongHeaders.enabled(frozenset({"server"})).add_own(headers, 0, b"id")  # Via not Kong's
        self.assertEqual(headers.getRawHeaders(b"server"), [gateway.SERVER_TOKEN])

    def test_disabled_server_is_removed_from_own_answers_only(self) -> None:
        none = gateway.KongHeaders.enabled(frozenset())
        own = wire.GatewayHeaders({b"server": [b"plugin/1"]})
        none.add_own(own, 0, b"id")
        proxied = wire.GatewayHeaders({b"server": [b"upstream/1"]})
        none.add_proxied(proxied, 1, 2, None, b"id")
        self.assertEqual((list(own.getAllRawHeaders()), proxied.getRawHeaders(b"server")),
                         ([], [b"upstream/1"]))

    def test_proxied_answers(self) -> None:
        headers = wire.GatewayHeaders()
        everything = gateway.KongHeaders(*[True] * 7)
        everything.add_proxied(headers, 5, 1, [b"1.1 cache"], b"id")
        self.assertEqual(dict(headers.getAllRawHeaders()), {
            b"X-Kong-Upstream-Latency": [b"5"], b"X-Kong-Proxy-Latency": [b"1"],
            b"Via": [b"1.1 cache, 1.1 kong/3.9.0"], b"Server": [gateway.SERVER_TOKEN],
            b"X-Kong-Request-Id": [b"id"]})
