"""kong.request.get_body()'s multipart reader, a port of lua-multipart."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish.lua.pdk.multipart import boundary, parse

_BOUNDARY = b"------------------------d74496d66958873e"
_CONTENT_TYPE = b"multipart/form-data; boundary=" + _BOUNDARY

# Names and file names lua-multipart reads back as sent: no quote, ";", ":", "=",
# white space or line end (it takes what lies between name=" and the next ";").
_names = st.text(alphabet="abcXYZ019_.[]-", min_size=1, max_size=8).map(str.encode)
# Contents: any bytes but "-" (so no line of a value can start with the delimiter);
# CR and LF included, alone or in pairs, anywhere.
_contents = st.binary(max_size=40).map(lambda data: data.replace(b"-", b"+"))
_fields = st.lists(st.tuples(_names, _contents, st.none() | _names), max_size=8)


def encode(fields: list[tuple[bytes, bytes, bytes | None]], delimiter: bytes = _BOUNDARY) -> bytes:
    """A body as curl -F sends it: a file part carries a filename and a Content-Type."""
    body = b""
    for name, content, filename in fields:
        body += b"--" + delimiter + b'\r\nContent-Disposition: form-data; name="' + name + b'"'
        if filename is not None:
            body += b'; filename="' + filename + b'"\r\nContent-Type: application/octet-stream'
        body += b"\r\n\r\n" + content + b"\r\n"
    return body + b"--" + delimiter + b"--\r\n"


class MultipartPropertyTests(SynchronousTestCase):
    @given(_fields)
    def test_fields_read_back_grouped_by_name(self, fields: list[tuple[bytes, bytes, bytes | None]]) -> None:
        expected: dict[bytes, list[bytes]] = {}
        for name, content, _ in fields:
            expected.setdefault(name, []).append(content)
        grouped = {name: values[0] if len(values) == 1 else values for name, values in expected.items()}
        self.assertEqual(parse(encode(fields), _CONTENT_TYPE), grouped)


class MultipartTests(SynchronousTestCase):
    def test_repeated_names_are_arrays_and_file_parts_give_their_content(self) -> None:
        body = encode([(b"a", b"1", None), (b"f", b"line 1\r\nline 2\n", b"f.txt"), (b"a", b"2", None)])
        self.assertEqual(parse(body, _CONTENT_TYPE), {b"a": [b"1", b"2"], b"f": b"line 1\r\nline 2\n"})

    def test_boundary(self) -> None:
        self.assertEqual(boundary(b"multipart/form-data; boundary=abc"), b"abc")
        self.assertEqual(boundary(b'multipart/form-data;boundary="a b"'), b'"a')
        self.assertEqual(boundary(b'multipart/form-data; boundary="abc"'), b"abc")
        self.assertEqual(boundary(b"multipart/form-data; boundary='abc'"), b"abc")
        self.assertEqual(boundary(b"multipart/form-data; boundary=abc; charset=x"), b"abc;")
        self.assertIsNone(boundary(b"multipart/form-data"))
        self.assertIsNone(boundary(b'multipart/form-data; boundary=""'))
        self.assertIsNone(boundary(b"multipart/form-data; Boundary=abc"))

    def test_without_a_boundary_nothing_is_read(self) -> None:
        self.assertEqual(parse(encode([(b"a", b"1", None)]), b"multipart/form-data"), {})

    def test_lf_line_ends_and_an_unterminated_last_part(self) -> None:
        body = b'--b\nContent-Disposition: form-data; name="a"\r\n\r\nx\n--b\r\n' \
               b'Content-Disposition: form-data; name="a"\r\n\r\ny'
        # As lua-multipart does, the unterminated part replaces the earlier ones.
        self.assertEqual(parse(body, b"multipart/form-data; boundary=b"), {b"a": b"y"})

    def test_names_are_read_as_lua_multipart_reads_them(self) -> None:
        def name_of(disposition: bytes) -> list[bytes]:
            body = b"--b\r\nContent-Disposition: " + disposition + b"\r\n\r\nv\r\n--b--"
            return list(parse(body, b"multipart/form-data; boundary=b"))

        self.assertEqual(name_of(b"form-data; name=abc"), [b"b"])
        self.assertEqual(name_of(b'form-data; NAME="x" ; filename="y"'), [b"x"])
        self.assertEqual(name_of(b'form-data; name="a:b"'), [])
