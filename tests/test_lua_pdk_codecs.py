"""cjson, ngx.re and the ngx string codecs, with property tests for the round trips."""
from __future__ import annotations

import base64
import hashlib
import json
import zlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish.pcre import translate
from tests.test_lua_pdk import PDKHarness

_PDK = PDKHarness()
_CONTEXT = _PDK.context()


def lua(code: str, *args: Any) -> Any:
    """Call ``function(...) <code> end`` directly (no request needed for these)."""
    return _PDK.lua.execute(code.encode(), *args)


_JSON_SCALARS = (st.none() | st.booleans() | st.integers(-2**40, 2**40)
                 | st.text(max_size=20))
_JSON = st.recursive(_JSON_SCALARS, lambda inner: st.lists(inner, min_size=1, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, min_size=1, max_size=4), max_leaves=12)


class CJSONTests(SynchronousTestCase):
    def encode(self, code: str) -> Any:
        return lua(f"local cjson = __kongish_modules.cjson return cjson.encode({code})")

    def test_encoding(self) -> None:
        self.assertEqual(self.encode('{a = "x/y\\n"}'), b'{"a":"x\\/y\\n"}')
        self.assertEqual(self.encode("{}"), b"{}")
        self.assertEqual(self.encode("{1, 2, 3}"), b"[1,2,3]")
        self.assertEqual(self.encode("{[1] = 1, [3] = 3}"), b"[1,null,3]")
        self.assertEqual(self.encode("cjson.empty_array"), b"[]")
        self.assertEqual(self.encode("setmetatable({}, cjson.empty_array_mt)"), b"[]")
        self.assertEqual(self.encode("0.1"), b"0.1")
        self.assertEqual(self.encode("1e20"), b"1e+20")
        self.assertEqual(self.encode("cjson.null"), b"null")
        self.assertEqual(self.encode('"\\127\\1"'), b'"\\u007f\\u0001"')

    def test_empty_table_as_array(self) -> None:
        self.assertEqual(lua("local cjson = __kongish_modules.cjson.new() "
                             "cjson.encode_empty_table_as_object(false) return cjson.encode({})"), b"[]")

    def test_encoding_errors(self) -> None:
        for code, message in [("{[1] = 1, [20] = 2}", "Cannot serialise table: excessively sparse array"),
                              ("{print}", "Cannot serialise function: type not supported"),
                              ("{[true] = 1}",
                               "Cannot serialise boolean: table key must be a number or string"),
                              ("0/0", "Cannot serialise number: must not be NaN or Infinity")]:
            self.assertEqual(lua("local cjson = __kongish_modules['cjson.safe'] "
                                 f"return select(2, cjson.encode({code}))"), message.encode())

    def test_decode_errors(self) -> None:
        for text, message in [
            ("x", "Expected value but found invalid token at character 1"),
            ("", "Expected value but found T_END at character 1"),
            ("{", "Expected object key string but found T_END at character 2"),
            ('{"a" 1}', "Expected colon but found T_NUMBER at character 6"),
            ("[1 2]", "Expected comma or array end but found T_NUMBER at character 4"),
            ("[1] [", "Expected the end but found T_ARR_BEGIN at character 5"),
            ('"\\q"', "Expected value but found invalid escape code at character 1"),
            ("01", "Expected value but found invalid number at character 1"),
        ]:
            ok, error = lua("local cjson = __kongish_modules.cjson return pcall(cjson.decode, ...)",
                            text.encode())
            self.assertEqual((ok, error), (False, message.encode()))

    def test_decode(self) -> None:
        result = lua("""local cjson = __kongish_modules.cjson
            local v = cjson.decode('{"a":[1,2.5,{"b":null}],"s":"\\\\u00e9\\\\ud83d\\\\ude00\\\\/"}')
            return v.a[1], v.a[2], v.a[3].b == cjson.null, v.s""")
        self.assertEqual(result, (1, 2.5, True, "é😀/".encode()))

    @settings(max_examples=150, deadline=None)
    @given(_JSON)
    def test_round_trip_with_python_json(self, value: Any) -> None:
        encoded = lua("local cjson = __kongish_modules.cjson return cjson.encode(cjson.decode(...))",
                      json.dumps(value).encode())
        self.assertEqual(json.loads(encoded), value)


class NgxRegexTests(SynchronousTestCase):
    def test_match(self) -> None:
        result = lua("""
            local m = ngx.re.match("hello 1234 world", [[(?<word>[a-z]+) (\\d+)(x)?]], "jo")
            return m[0], m[1], m[2], m[3], m.word
        """)
        self.assertEqual(result, (b"hello 1234", b"hello", b"1234", False, b"hello"))

    def test_match_pcre_named_groups(self) -> None:
        result = lua("""
            local m = ngx.re.match("/version/2/users/ada",
                                   [[^/version/(?<version>\\d+)/users/(?<user>\\S+)]], "jo")
            return m[0], m[1], m[2], m.version, m.user
        """)
        self.assertEqual(result, (b"/version/2/users/ada", b"2", b"ada", b"2", b"ada"))

    def test_pcre_constructs(self) -> None:
        """PCRE syntax Python's ``re`` does not read; subjects are Lua string literals."""
        for pattern, subject, expected in [
                (r"(?'k'\w+)=\k'k'", "a=b c=c", b"c=c"),  # quoted group name, \k'name' back reference
                (r"(?<d>\d)\g{d}", "12 33", b"33"),  # \g{name}: a back reference
                (r"(?<d>\d)\g<d>", "1 23", b"23"),  # \g<name>: a subroutine call
                (r"\d++5", "12345", None),  # possessive: never gives a digit back
                (r"(?>a+)b", "aab", b"aab"),  # atomic group
                (r"a\hb\H", r"a\tbc", b"a\tbc"),
                (r"\x{41}\e", r"A\27", b"A\x1b"),
                (r"\o{102}[\cA]", r"B\1", b"B\x01"),
                (r"b\Z", r"ab\n", b"b"),  # PCRE's \Z allows a final newline
                (r"b\z", r"ab\n", None),
                (r"[[:alpha:]]+[[:digit:]]", "--ab1", b"ab1"),
        ]:
            found = lua(f"local m = ngx.re.match('{subject}', [=[{pattern}]=]) return m and m[0]")
            self.assertEqual(found, expected, pattern)

    def test_no_match_and_options(self) -> None:
        self.assertIsNone(lua('return ngx.re.match("abc", "B")'))
        self.assertEqual(lua('return ngx.re.match("abc", "B", "i")[0]'), b"b")
        self.assertIsNone(lua('return ngx.re.match("abc", "b", "a")'))
        self.assertEqual(lua('return ngx.re.match("a\\nb", "^b", "m")[0]'), b"b")
        self.assertIn(b'unknown flag "z"', lua('return select(2, pcall(ngx.re.match, "a", "a", "z"))'))

    def test_compile_error_is_returned(self) -> None:
        self.assertIn(b"pcre_compile() failed", lua('return select(2, ngx.re.match("a", "("))'))

    def test_find_and_ctx(self) -> None:
        self.assertEqual(lua('return ngx.re.find("hello, 1234", "([0-9])[0-9]+", "jo")'), (8, 11))
        self.assertEqual(lua('return ngx.re.find("hello, 1234", "([0-9])[0-9]+", "jo", nil, 1)'), (8, 8))
        self.assertEqual(lua('local ctx = {pos = 3} local from = ngx.re.find("a1b2", "[0-9]", "", ctx) '
                             'return from, ctx.pos'), (4, 5))

    def test_gmatch(self) -> None:
        self.assertEqual(lua('local out = {} for m in ngx.re.gmatch("a1b22c333", "[0-9]+") do '
                             'out[#out + 1] = m[0] end return table.concat(out, ",")'), b"1,22,333")

    def test_sub_and_gsub(self) -> None:
        self.assertEqual(lua('return ngx.re.sub("hello world", "(o)", "[$1$$]")'), (b"hell[o$] world", 1))
        self.assertEqual(lua('return ngx.re.gsub("hello world", "(?<v>o)", "${v}0")'), (b"hello0 wo0rld", 2))
        self.assertEqual(lua('return ngx.re.gsub("baaac", "a*", "-")'), (b"-b--c-", 4))
        self.assertEqual(lua('return ngx.re.gsub("a1b2", "[0-9]", function(m) return m[0] * 2 end)'),
                         (b"a2b4", 2))

    def test_unicode_offsets_are_bytes(self) -> None:
        self.assertEqual(lua('return ngx.re.find("éa", ".a", "u")'), (1, 3))

    def test_translate(self) -> None:
        self.assertEqual(translate(r"(?<n>a)\k<n>[[:digit:]]\z"), r"(?<n>a)(?P=n)[[:digit:]]\z")
        self.assertEqual(translate(r"[]a]\Qa.b\E"), r"[]a]a\.b")


class NgxCodecTests(SynchronousTestCase):
    def test_hashes(self) -> None:
        self.assertEqual(lua('return ngx.md5("abc")'), hashlib.md5(b"abc").hexdigest().encode())
        self.assertEqual(lua('return ngx.md5_bin("abc")'), hashlib.md5(b"abc").digest())
        self.assertEqual(lua('return ngx.sha1_bin("abc")'), hashlib.sha1(b"abc").digest())
        self.assertEqual(lua('return ngx.crc32_short("abc")'), zlib.crc32(b"abc"))
        self.assertEqual(lua('return ngx.encode_base64(ngx.md5_bin("abc"))'),
                         base64.b64encode(hashlib.md5(b"abc").digest()))

    def test_base64(self) -> None:
        self.assertEqual(lua('return ngx.encode_base64("ab", true), ngx.decode_base64("YWI"), '
                             'ngx.decode_base64("!!")'), (b"YWI", b"ab", None))

    def test_quote_sql_str(self) -> None:
        self.assertEqual(lua("return ngx.quote_sql_str(\"a'b\\\\\\n\")"), b"'a\\'b\\\\\\n'")

    def test_args(self) -> None:
        self.assertEqual(lua('return ngx.encode_args('
                             '{b = "x y", a = {1, true, false}, c = true, d = false})'),
                         b"a=1&a&b=x%20y&c")
        self.assertEqual(lua('local t = ngx.decode_args("a=1&a=2&b&c=&=x&d=%41+B") '
                             'return t.a[2], t.b, t.c, t[""], t.d'), (b"2", True, b"", None, b"A B"))
        self.assertEqual(lua('return select(2, ngx.decode_args("a&b&c", 2))'), b"truncated")

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=40))
    def test_escape_round_trip(self, data: bytes) -> None:
        escaped = lua("return ngx.escape_uri(...)", data)
        self.assertRegex(escaped, rb"^[A-Za-z0-9\-._~%]*$")
        self.assertEqual(lua("return ngx.unescape_uri(...)", escaped), data)

    @settings(max_examples=150, deadline=None)
    @given(st.dictionaries(
        st.binary(min_size=1, max_size=8),
        st.binary(max_size=8) | st.just(True) | st.lists(st.binary(max_size=6), min_size=2, max_size=3),
        max_size=5))
    def test_args_round_trip(self, args: dict) -> None:
        table = _PDK.lua.table_from({key: _PDK.lua.table_from(value) if isinstance(value, list) else value
                                     for key, value in args.items()})
        decoded = lua("return ngx.decode_args(ngx.encode_args(...))", table)
        result = {key: list(value.values()) if not isinstance(value, (bytes, bool)) else value
                  for key, value in decoded.items()}
        self.assertEqual(result, args)
