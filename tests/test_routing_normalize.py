"""Tests for kongish.router.normalize: Kong's request path normalisation."""
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish.router import normalize_path
from kongish.router.normalize import wire_bytes, wire_text

#: Text built from the characters that exercise every normalisation rule.
paths = st.lists(
    st.sampled_from(list("/./%2eEfF41aé?;") + ["%2F", "%2e", "%41", "%C3%A9", "%FF"])
).map("".join)
#: The same without lone ``%``: decoding runs once, like Kong's, so "%%65A" gives
#: "%eA", which a second run would decode again; idempotence holds only without them.
escaped_paths = st.lists(
    st.sampled_from(list("/./2eEfF41aé?;") + ["%2F", "%2e", "%41", "%C3%A9", "%FF", "%25"])
).map("".join)


class NormalizePathTests(SynchronousTestCase):
    def test_dot_segments_removed(self) -> None:
        self.assertEqual(normalize_path("/a/./b/../c"), "/a/c")

    def test_dot_dot_above_root_stays_at_root(self) -> None:
        self.assertEqual(normalize_path("/../../x"), "/x")
        self.assertEqual(normalize_path("/.."), "/")

    def test_trailing_dot_segments_keep_directory(self) -> None:
        self.assertEqual(normalize_path("/a/b/.."), "/a/")
        self.assertEqual(normalize_path("/a/."), "/a/")

    def test_escaped_dots_count_as_dots(self) -> None:
        self.assertEqual(normalize_path("/a/%2e%2E/b"), "/b")

    def test_slashes_merged(self) -> None:
        self.assertEqual(normalize_path("//a///b//"), "/a/b/")

    def test_unreserved_escapes_decoded(self) -> None:
        self.assertEqual(normalize_path("/%74est%7e%2d"), "/test~-")

    def test_other_escapes_decoded(self) -> None:
        self.assertEqual(normalize_path("/a%20b"), "/a b")

    def test_reserved_escapes_kept_with_upper_case_hex(self) -> None:
        self.assertEqual(normalize_path("/a%2fb%3a%25"), "/a%2Fb%3A%25")

    def test_escaped_slash_is_not_a_separator(self) -> None:
        self.assertEqual(normalize_path("/a/..%2F..%2fb"), "/a/..%2F..%2Fb")

    def test_query_dropped(self) -> None:
        self.assertEqual(normalize_path("/a/../b?x=/../y"), "/b")

    def test_utf8_escapes_decoded_to_text(self) -> None:
        self.assertEqual(normalize_path("/caf%C3%A9"), "/café")

    def test_invalid_utf8_survives_the_round_trip(self) -> None:
        raw = wire_text(b"/x%FF/\xfe")
        self.assertEqual(wire_bytes(normalize_path(raw)), b"/x\xff/\xfe")

    def test_decoding_is_a_single_pass(self) -> None:
        self.assertEqual(normalize_path("%%65A"), "%eA")

    def test_bad_escape_left_alone(self) -> None:
        self.assertEqual(normalize_path("/a%zz%4"), "/a%zz%4")

    def test_root_and_empty(self) -> None:
        self.assertEqual(normalize_path("/"), "/")
        self.assertEqual(normalize_path(""), "")

    @settings(max_examples=200)
    @given(escaped_paths)
    def test_idempotent(self, raw: str) -> None:
        once = normalize_path(raw)
        self.assertEqual(normalize_path(once), once)

    @settings(max_examples=200)
    @given(paths)
    def test_rooted_paths_stay_rooted_without_dot_segments(self, raw: str) -> None:
        normalized = normalize_path("/" + raw)
        self.assertTrue(normalized.startswith("/"))
        self.assertNotIn("//", normalized)
        self.assertNotIn("/./", normalized + "/")
        self.assertNotIn("/../", normalized + "/")
