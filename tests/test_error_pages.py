"""Kong's error bodies and content negotiation."""
import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish.runloop.error_pages import choose_type, default_message, render


class ChooseTypeTests(SynchronousTestCase):
    def test_renderer_a_uses_accept_and_defaults_to_json(self) -> None:
        self.assertEqual(choose_type(None), "application/json")
        self.assertEqual(choose_type("*/*"), "application/json")
        self.assertEqual(choose_type("text/html"), "text/html")
        self.assertEqual(choose_type("text/*"), "text/plain")
        self.assertEqual(choose_type("application/xml"), "application/xml")
        self.assertEqual(choose_type("image/png"), "application/json")

    def test_highest_quality_wins(self) -> None:
        self.assertEqual(choose_type("text/html;q=0.2, application/xml;q=0.9"), "application/xml")
        self.assertEqual(choose_type("text/html;q=0, text/plain"), "text/plain")

    def test_renderer_b_falls_back_to_content_type_then_default(self) -> None:
        self.assertEqual(choose_type(None, None, "text/plain"), "text/plain")
        self.assertEqual(choose_type(None, "application/json", "text/plain"), "application/json")
        self.assertEqual(choose_type("*/*", None, "text/plain"), "application/json")
        self.assertEqual(choose_type(None, None, "text/html"), "text/html")

    def test_renderer_b_reads_only_the_first_header_the_request_has(self) -> None:
        # Kong's error handler: an unknown Accept or Content-Type gives JSON, not the next source
        self.assertEqual(choose_type("image/png", "text/html", "text/plain"), "application/json")
        self.assertEqual(choose_type(None, "application/x-www-form-urlencoded", "text/plain"),
                         "application/json")

    def test_types_as_kong_reads_them(self) -> None:
        browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        self.assertEqual(choose_type(browser), "text/html")
        self.assertEqual(choose_type("TEXT/HTML"), "application/json")  # Kong's lookup is as written
        self.assertEqual(choose_type("application/*;q=0.9, text/*;q=0.95"), "text/plain")
        self.assertEqual(choose_type("text/html; level=1; q=0.3, application/xml; q=0.4"), "application/xml")
        self.assertEqual(choose_type("text/html;q=2, application/xml"), "text/html")  # q=2: a parameter, q 1

    @given(st.text(max_size=80), st.one_of(st.none(), st.text(max_size=40)))
    def test_any_header_gives_a_known_type(self, accept: str, content_type) -> None:
        self.assertIn(choose_type(accept, content_type, "text/plain"),
                      {"application/json", "text/html", "text/plain", "application/xml"})


class RenderTests(SynchronousTestCase):
    def test_json_template_is_byte_exact(self) -> None:
        self.assertEqual(render("application/json", "no Route matched with those values", "abc"),
                         b'{\n  "message":"no Route matched with those values",\n  "request_id":"abc"\n}')

    def test_plain_and_xml(self) -> None:
        self.assertEqual(render("text/plain", "Bad request", "r1"), b"Bad request\nrequest_id: r1\n")
        self.assertIn(b"<message>Bad request</message>", render("application/xml", "Bad request", "r1"))

    @given(st.text(max_size=60))
    def test_json_stays_valid_for_any_message(self, message: str) -> None:
        body = json.loads(render("application/json", message, "id"))
        self.assertEqual(body, {"message": message, "request_id": "id"})

    def test_default_messages(self) -> None:
        self.assertEqual(default_message(400), "Bad request")
        self.assertEqual(default_message(504), "The upstream server is timing out")
        self.assertEqual(default_message(418), "The upstream server responded with 418")
