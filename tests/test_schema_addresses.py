"""Host, address and URL parsing behind the entity rules (Kong's ``kong.tools.ip``, LuaSocket)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish.schema.addresses import (
    Address,
    InvalidAddress,
    host_error,
    host_with_port_error,
    normalize_ip,
    wildcard_host_error,
)
from kongish.schema.url import ParsedURL, parse_url


class NormalizeIPTests(SynchronousTestCase):
    def test_ipv4(self) -> None:
        self.assertEqual(normalize_ip("10.0.0.1"), Address("ipv4", "10.0.0.1", None))
        self.assertEqual(normalize_ip("010.0.0.1:8000"), Address("ipv4", "10.0.0.1", 8000))

    def test_ipv6(self) -> None:
        self.assertEqual(normalize_ip("::1"),
                         Address("ipv6", "0000:0000:0000:0000:0000:0000:0000:0001", None))
        self.assertEqual(normalize_ip("[::1]:80").port, 80)

    def test_names(self) -> None:
        self.assertEqual(normalize_ip("example.test:81"), Address("name", "example.test", 81))
        self.assertEqual(normalize_ip("fqdn.test.").host, "fqdn.test.")

    def test_errors(self) -> None:
        for address, message in [("1.2.3.256", "invalid ipv4 address: 1.2.3.256"),
                                 ("h:70000", "invalid port number"),
                                 ("a..b", "invalid hostname: a..b"),
                                 ("a-.b", "invalid hostname: a-.b"),
                                 ("x_y!", "invalid hostname: x_y!"),
                                 ("1::2::3", "invalid ipv6 address: 1::2::3"),
                                 ("[::1]x", "invalid ipv6 address")]:
            error = self.assertRaises(InvalidAddress, normalize_ip, address)
            self.assertEqual(str(error), message)

    def test_field_messages(self) -> None:
        self.assertEqual([host_error("h"), host_error("h:1"), host_error("h:99999"), host_error("a b")],
                         [None, "must not have a port", "must not have a port", "invalid value: a b"])
        self.assertEqual([host_with_port_error("h:1"), host_with_port_error("a b")],
                         [None, "invalid hostname: a b"])
        self.assertEqual([wildcard_host_error(host) for host in ("*.h", "a.*.b", "*.*", "1.2.3.4", "h:1")],
                         [None, "wildcard must be leftmost or rightmost character",
                          "only one wildcard must be specified", "must not be an IP", "must not have a port"])

    @settings(max_examples=200)
    @given(st.text(alphabet="0123456789abcdef.:[]-_*x ", max_size=20))
    def test_messages_for_any_text(self, text: str) -> None:
        for check in (host_error, host_with_port_error, wildcard_host_error):
            result = check(text)
            self.assertTrue(result is None or isinstance(result, str))


class ParseURLTests(SynchronousTestCase):
    def test_parts(self) -> None:
        self.assertEqual(parse_url("http://u:p@h.test:8080/a/b?q=1#f"),
                         ParsedURL(scheme="http", host="h.test", port="8080", path="/a/b"))
        self.assertEqual(parse_url("https://[::1]:443"), ParsedURL(scheme="https", host="::1", port="443"))
        self.assertEqual(parse_url("h.test/x"), ParsedURL(path="h.test/x"))
        self.assertEqual(parse_url("http://h:"), ParsedURL(scheme="http", host="h", port=""))
        self.assertIsNone(parse_url(""))
