"""Admin API request bodies: Kong's transport answers, key decoding, multipart, ``\\,``."""
import json
from typing import Any
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish.admin.body import BodyRejected, DecodedBody, decode_body, decode_query
from kongish.plugins.serverless.schema import CODE_FIELDS

FORM = b"application/x-www-form-urlencoded"
JSON = b"application/json"
BOUNDARY = b"------------------------d74496d66958873e"
#: The seed demo's Lua code (examples/seed_demo.sh): no commas, no "+", no "&".
SEED_CODE = (
    "local qs=ngx.req.get_uri_args() if qs and qs.name then ngx.say('Hello '..qs.name..'!') "
    "else ngx.say('Hello Serverless Functions!') end ngx.exit(200)"
)
#: A Lua file with what --data cannot carry: commas, quotes, "+", "&", CRLF and LF, a trailing newline.
LUA_FILE = (
    b'local greeting, name = "Hello", \'Kong\'\r\n'
    b"if ngx.var.arg_a == \"1&2\" then ngx.say(greeting .. \", \" .. name .. 1+1) end\n"
    b"-- the 0.14 escape \"\\,\" reads as a comma, in files too\n"
)


def form(body: bytes, method: str = "POST") -> dict[str, Any]:
    decoded = decode_body([FORM], body, method, comma_escaped=CODE_FIELDS)
    return decoded.args


def rejection(content_types: list[bytes] | None, body: bytes, method: str = "POST",
              **options: Any) -> BodyRejected:
    try:
        decode_body(content_types, body, method, **options)
    except BodyRejected as rejected:
        return rejected
    raise AssertionError("the body was accepted")


def message(text: str) -> bytes:
    return json.dumps({"message": text}, separators=(",", ":")).encode()


def curl_form(*fields: tuple[str, bytes] | tuple[str, bytes, str]) -> tuple[bytes, bytes]:
    """A multipart body as ``curl -F`` builds it: ``(name, value)`` or ``(name, content, filename)``."""
    body = b""
    for name, content, *filename in fields:
        quoted = name.replace('"', "%22").encode()
        body += b"--" + BOUNDARY + b"\r\n" + b'Content-Disposition: form-data; name="' + quoted + b'"'
        if filename:
            body += b'; filename="' + filename[0].encode() + b'"\r\nContent-Type: application/octet-stream'
        body += b"\r\n\r\n" + content + b"\r\n"
    return b"multipart/form-data; boundary=" + BOUNDARY, body + b"--" + BOUNDARY + b"--\r\n"


def multipart(*fields: tuple[str, bytes] | tuple[str, bytes, str]) -> dict[str, Any]:
    content_type, body = curl_form(*fields)
    decoded = decode_body([content_type], body, "POST", comma_escaped=CODE_FIELDS)
    return decoded.args


class TransportTests(SynchronousTestCase):
    """Section 2.1: which bodies Kong reads and what it answers otherwise."""

    def test_no_body_no_content_type(self) -> None:
        self.assertEqual(decode_body(None, b"", "POST"), DecodedBody({}, False, None))
        self.assertEqual(decode_body([], b"", "PATCH"), DecodedBody({}, False, None))

    def test_body_without_content_type_is_415(self) -> None:
        rejected = rejection(None, b"name=x")
        self.assertEqual((rejected.status, rejected.body), (415, b""))

    def test_unsupported_content_type_is_415(self) -> None:
        for content_type in [b"text/plain", b"application/xml", b"application/yaml", b""]:
            rejected = rejection([content_type], b"{}")
            self.assertEqual((rejected.status, rejected.body), (415, b""))

    def test_prefix_match_is_case_sensitive(self) -> None:
        self.assertEqual(rejection([b"Application/JSON"], b"{}").status, 415)
        self.assertEqual(decode_body([b"application/json; charset=utf-8"], b'{"a":1}', "POST").args, {"a": 1})
        self.assertEqual(decode_body([FORM + b"; charset=UTF-8"], b"a=1", "PUT").args, {"a": "1"})

    def test_two_content_type_headers(self) -> None:
        rejected = rejection([JSON, JSON], b"{}")
        self.assertEqual((rejected.status, rejected.body),
                         (400, b"Multiple Content-Type headers not allowed"))

    def test_bodies_of_other_methods_are_ignored(self) -> None:
        for method in ["GET", "DELETE", "HEAD", "OPTIONS"]:
            self.assertEqual(decode_body([JSON], b"{not json", method), DecodedBody({}, False, None))
            self.assertEqual(decode_body(None, b"anything", method).args, {})

    def test_payload_too_large(self) -> None:
        rejected = rejection([FORM], b"a=" + b"x" * 9, max_size=10)
        self.assertEqual((rejected.status, rejected.body), (413, message("Payload too large")))
        self.assertEqual(decode_body([FORM], b"a=" + b"x" * 8, "POST", max_size=10).args, {"a": "x" * 8})

    def test_yaml_only_when_allowed(self) -> None:
        text = "_format_version: '3.0'\nservices: []\n"
        for content_type in [b"application/yaml", b"text/yaml; charset=utf-8"]:
            decoded = decode_body([content_type], text.encode(), "POST", allow_yaml=True)
            self.assertEqual(decoded, DecodedBody({}, False, text))
            self.assertEqual(rejection([content_type], text.encode()).status, 415)

    def test_yaml_must_be_utf8(self) -> None:
        rejected = rejection([b"text/yaml"], b"a: \xff", allow_yaml=True)
        self.assertEqual((rejected.status, rejected.body), (400, message("Cannot parse body: invalid UTF-8")))


class JSONTests(SynchronousTestCase):
    def test_object_is_used_as_is(self) -> None:
        body = {"config.access": ["a,b"], "port": "80", "service": {"name": "s"}, "tags": None}
        decoded = decode_body([JSON], json.dumps(body).encode(), "POST")
        self.assertEqual(decoded, DecodedBody(body, False, None))

    def test_json_is_not_unescaped(self) -> None:
        body = {"config": {"access": ["return a\\,b"]}}
        self.assertEqual(decode_body([JSON], json.dumps(body).encode(), "POST").args, body)

    def test_unparsable(self) -> None:
        for body in [b"", b"{", b"{'a': 1}", b'{"a": NaN}', b'{"a": 1e400}', b'{"a": "\\ud800"}',
                     b'{"\\udc00": 1}',
                     b'{"a": "\xff"}', b"[" * 100000]:
            rejected = rejection([JSON], body)
            self.assertEqual((rejected.status, rejected.body), (400, b'{"message":"Cannot parse JSON body"}'))

    def test_paired_surrogates_are_text(self) -> None:
        self.assertEqual(decode_body([JSON], b'{"a": "\\ud83d\\ude00"}', "POST").args, {"a": "\U0001F600"})

    def test_not_an_object(self) -> None:
        for body in [b"[]", b"[1]", b'"x"', b"1", b"true", b"null"]:
            rejected = rejection([JSON], body)
            self.assertEqual((rejected.status, rejected.body), (400, message("JSON body must be an object")))


class FormKeyTableTests(SynchronousTestCase):
    """Every row of the key decoding table (section 3.2), sent url-encoded and as multipart."""

    ROWS = [
        ([("paths[]", "/a"), ("paths[]", "/b")], {"paths": ["/a", "/b"]}),
        ([("paths[1]", "/a"), ("paths[2]", "/b")], {"paths": ["/a", "/b"]}),
        ([("paths", "/a")], {"paths": "/a"}),
        ([("config.access[]", "CODE")], {"config": {"access": ["CODE"]}}),
        ([("config.access", "CODE")], {"config": {"access": "CODE"}}),
        ([("config.access[1]", "A"), ("config.access[2]", "B")], {"config": {"access": ["A", "B"]}}),
        ([("config.x.y", "1")], {"config": {"x": {"y": "1"}}}),
        ([("service.id", "9c0a3c1e-3f5b-4a8f-9d54-8a1f3c5d7e21")],
         {"service": {"id": "9c0a3c1e-3f5b-4a8f-9d54-8a1f3c5d7e21"}}),
        ([("service.name", "foo")], {"service": {"name": "foo"}}),
        ([("headers.x-version", "v1")], {"headers": {"x-version": "v1"}}),
        ([("headers[x-version]", "v1")], {"headers": {"x-version": "v1"}}),
        ([("a[1].b", "v")], {"a": [{"b": "v"}]}),
    ]

    def test_urlencoded(self) -> None:
        for pairs, expected in self.ROWS:
            body = "&".join(f"{quote(name)}={quote(value)}" for name, value in pairs).encode()
            self.assertEqual(form(body), expected, pairs)

    def test_unencoded_brackets_as_curl_data_sends_them(self) -> None:
        for pairs, expected in self.ROWS:
            body = "&".join(f"{name}={value}" for name, value in pairs).encode()
            self.assertEqual(form(body), expected, pairs)

    def test_multipart(self) -> None:
        for pairs, expected in self.ROWS:
            if pairs[0][0] == "paths[]":
                continue  # a repeated multipart name keeps only its last part (tested below)
            self.assertEqual(multipart(*((name, value.encode()) for name, value in pairs)), expected, pairs)

    def test_repeated_name_gives_a_list(self) -> None:
        self.assertEqual(form(b"paths=/a&paths=/b&paths=/c"), {"paths": ["/a", "/b", "/c"]})


class FormDecodingTests(SynchronousTestCase):
    """The 3.8+ decoding rules beyond the table, and the form transport."""

    def test_standard_form_decoding(self) -> None:
        self.assertEqual(form(b"a=x+y%2B%26z&b%20c=caf%C3%A9&d=%zz"),
                         {"a": "x y+&z", "b c": "café", "d": "%zz"})

    def test_raw_utf8_and_invalid_utf8(self) -> None:
        self.assertEqual(form("name=café".encode()), {"name": "café"})
        rejected = rejection([FORM], b"name=caf%E9")
        self.assertEqual((rejected.status, rejected.body), (400, message("Cannot parse body: invalid UTF-8")))

    def test_empty_pieces(self) -> None:
        self.assertEqual(form(b"&&=x&flag&name="), {"flag": "", "name": ""})
        self.assertEqual(decode_body([FORM], b"", "POST"), DecodedBody({}, True, None))

    def test_dots_inside_brackets_do_not_nest(self) -> None:
        self.assertEqual(form(b"a.b[c.d].e=1"), {"a": {"b": {"c.d": {"e": "1"}}}})

    def test_encoded_brackets_in_names(self) -> None:
        # %255B reaches the name as the text "%5B", which Kong reads as "[".
        self.assertEqual(form(b"headers%255Bx-a%255d=v&p%255B%255D=1"), {"headers": {"x-a": "v"}, "p": ["1"]})
        # Each "%5B" pairs with the next "%5D", as Kong's lazy "%5B(.*?)%5D" does.
        self.assertEqual(form(b"q%255Bb%255Bc%255D=2"), {"q": {"b%5Bc": "2"}})

    def test_leading_or_trailing_dot_is_not_decoded(self) -> None:
        self.assertEqual(form(b".a.b=1&c.=2&..d=3&e.%0A=4"),
                         {".a.b": "1", "c.": "2", "..d": "3", "e.\n": "4"})

    def test_unclosed_bracket_is_literal(self) -> None:
        self.assertEqual(form(b"a[b=1&c.d[=2"), {"a[b": "1", "c": {"d[": "2"}})

    def test_nested_brackets(self) -> None:
        self.assertEqual(form(b"a[1][2]=v&m[x][y]=w&z[1][k]=q"),
                         {"a": [{"2": "v"}], "m": {"x": {"y": "w"}}, "z": [{"k": "q"}]})

    def test_append_before_a_dot_nests_in_the_array(self) -> None:
        # Kong's decoder writes "b" into the array "a" itself.
        self.assertEqual(form(b"a[].b=v"), {"a": {"b": "v"}})

    def test_same_path_twice_collects_values(self) -> None:
        self.assertEqual(form(b"a.b=1&a[b]=2"), {"a": {"b": ["1", "2"]}})
        self.assertEqual(form(b"config.access[]=A&config.access=B"), {"config": {"access": ["A", "B"]}})

    def test_deep_merge(self) -> None:
        self.assertEqual(form(b"config.x.y=1&config.x.z=2&config.w=3&name=n"),
                         {"config": {"x": {"y": "1", "z": "2"}, "w": "3"}, "name": "n"})

    def test_no_comma_splitting(self) -> None:
        self.assertEqual(form(b"paths=/a,/b&tags=a,b&config.access=a,b"),
                         {"paths": "/a,/b", "tags": "a,b", "config": {"access": "a,b"}})

    def test_too_many_arguments(self) -> None:
        body = b"&".join(b"a%d=1" % index for index in range(1000))
        self.assertEqual(len(form(body)), 1000)
        rejected = rejection([FORM], body + b"&b=2")
        self.assertEqual((rejected.status, rejected.body), (400, message("Too many arguments")))

    def test_pathological_names_take_linear_time(self) -> None:
        # Each of these would take hours with a naive use of Kong's patterns.
        size = 1024 * 1024
        self.assertEqual(form(b"a" + b"[" * size + b"=v"), {"a" + "[" * size: "v"})
        self.assertEqual(form(b"a" + b"]" * size + b"=v"), {"a" + "]" * size: "v"})
        self.assertEqual(form(b"a" + b"%255B" * size + b"=v"), {"a" + "%5B" * size: "v"})
        self.assertEqual(form(b"a[" + b"x." * size + b"]=v"), {"a": {"x." * size: "v"}})

    def test_too_deep_name(self) -> None:
        value: Any = form(b"a" + b".a" * 99 + b"=v")
        for _ in range(100):
            value = value["a"]
        self.assertEqual(value, "v")
        rejected = rejection([FORM], b"a" + b"[]" * 100 + b"=v")
        self.assertEqual((rejected.status, rejected.body), (400, message("Argument name nests too deeply")))


class SeedDemoTests(SynchronousTestCase):
    """The seed demo's plugin creation, sent as ``curl --data`` sends it (not URL-encoded)."""

    def test_functions_form(self) -> None:
        decoded = decode_body([FORM], f"name=pre-function&config.functions[]={SEED_CODE}".encode(), "POST")
        self.assertEqual(decoded,
                         DecodedBody({"name": "pre-function", "config": {"functions": [SEED_CODE]}}, True))

    def test_access_form(self) -> None:
        self.assertEqual(form(f"name=pre-function&config.access[]={SEED_CODE}".encode()),
                         {"name": "pre-function", "config": {"access": [SEED_CODE]}})


class MultipartTests(SynchronousTestCase):
    """Section 3.5: curl --form bodies."""

    def test_text_fields(self) -> None:
        content_type, body = curl_form(("name", b"pre-function"), ("config.access", SEED_CODE.encode()))
        decoded = decode_body([content_type], body, "POST")
        self.assertEqual(decoded,
                         DecodedBody({"name": "pre-function", "config": {"access": SEED_CODE}}, True))

    def test_uploaded_file_reads_the_comma_escape(self) -> None:
        expected = LUA_FILE.decode().replace("\\,", ",")
        self.assertEqual(multipart(("config.access", LUA_FILE, "f.lua")), {"config": {"access": expected}})

    def test_file_read_into_a_plain_field(self) -> None:
        # curl --form 'config.access=<f.lua'
        expected = LUA_FILE.decode().replace("\\,", ",")
        self.assertEqual(multipart(("config.access", LUA_FILE)), {"config": {"access": expected}})

    def test_several_files(self) -> None:
        self.assertEqual(multipart(("config.access[1]", b"return 1,2", "a.lua"),
                                   ("config.access[2]", b"x\n", "b.lua")),
                         {"config": {"access": ["return 1,2", "x\n"]}})

    def test_repeated_name_keeps_the_last_part(self) -> None:
        self.assertEqual(multipart(("config.access[]", b"A", "a.lua"), ("config.access[]", b"B", "b.lua")),
                         {"config": {"access": ["B"]}})

    def test_json_part_is_not_decoded(self) -> None:
        body = (b"--X\r\nContent-Disposition: form-data; name=\"config\"\r\n"
                b"Content-Type: application/json\r\n\r\n"
                b'{"access": ["a"]}\r\n--X--\r\n')
        self.assertEqual(decode_body([b"multipart/form-data; boundary=X"], body, "POST").args,
                         {"config": '{"access": ["a"]}'})

    def test_names_are_percent_decoded(self) -> None:
        self.assertEqual(multipart(('say"hi"', b"1"), ("caf%C3%A9", b"2")), {'say"hi"': "1", "café": "2"})

    def test_part_headers(self) -> None:
        body = (b"preamble\r\n--B  \r\ncontent-disposition:form-data ; name=a ;filename=f\r\n\r\nx\\,y\r\n"
                b"--B\r\nContent-Disposition: form-data; name=\"b\"\r\nX-Other: 1\r\n\r\nx\\,y\r\n"
                b"--B\r\nContent-Type: text/plain\r\n\r\nnameless\r\n"
                b"--B\r\n\r\nno headers\r\n--B--\r\nepilogue")
        for content_type in [b'multipart/form-data; boundary="B"',
                             b"multipart/form-data;charset=utf-8; boundary = B"]:
            self.assertEqual(decode_body([content_type], body, "POST").args, {"a": "x\\,y", "b": "x\\,y"})

    def test_empty_body(self) -> None:
        self.assertEqual(decode_body([b"multipart/form-data"], b"", "POST"), DecodedBody({}, True, None))

    def test_malformed(self) -> None:
        content_type, body = curl_form(("a", b"1"))
        cases = [
            (b"multipart/form-data", body),
            (content_type, body[: -len(b"--\r\n") - len(BOUNDARY) - 2]),
            (content_type, body.replace(b"\r\n\r\n", b"\r\n")),
            (content_type, body.replace(BOUNDARY + b"\r\n", BOUNDARY + b"x\r\n")),
        ]
        for case_content_type, case_body in cases:
            rejected = rejection([case_content_type], case_body)
            self.assertEqual((rejected.status, rejected.body), (400, message("Cannot parse multipart body")))

    def test_invalid_utf8(self) -> None:
        content_type, body = curl_form(("config.access", b"-- caf\xe9", "latin1.lua"))
        self.assertEqual(rejection([content_type], body).body, message("Cannot parse body: invalid UTF-8"))

    def test_too_many_parts(self) -> None:
        fields = [(f"a{index}", b"1") for index in range(1000)]
        self.assertEqual(len(multipart(*fields)), 1000)
        content_type, body = curl_form(*fields, ("b", b"2"))
        self.assertEqual(rejection([content_type], body).body, message("Too many arguments"))


class CommaEscapeTests(SynchronousTestCase):
    r"""The ``\,`` compatibility step (section 3.6 recommendation)."""

    def test_code_fields_in_forms(self) -> None:
        for field in sorted(CODE_FIELDS):
            self.assertEqual(form(f"config.{field}=ngx.say(1\\,2)".encode()),
                             {"config": {field: "ngx.say(1,2)"}})
            self.assertEqual(form(f"config.{field}[]=a\\,b&config.{field}[]=c\\,\\,d".encode()),
                             {"config": {field: ["a,b", "c,,d"]}})
            self.assertEqual(multipart((f"config[{field}][1]", b"a\\,b")), {"config": {field: ["a,b"]}})

    def test_other_values_keep_backslashes(self) -> None:
        self.assertEqual(
            form(b"access=a\\,b&config.header=a\\,b&x.access=a\\,b&config.access.x=a\\,b"),
            {"access": "a\\,b", "config": {"header": "a\\,b", "access": {"x": "a,b"}},
             "x": {"access": "a\\,b"}},
        )

    def test_uploaded_files_read_the_comma_escape(self) -> None:
        self.assertEqual(multipart(("config.access", b"-- a\\,b", "f.lua")), {"config": {"access": "-- a,b"}})
        self.assertEqual(multipart(("config.header", b"a\\,b", "f.txt")), {"config": {"header": "a\\,b"}})

    def test_only_the_fields_the_plugins_name_are_unescaped(self) -> None:
        body = b"config.access=a\\,b&config.header=a\\,b"
        self.assertEqual(decode_body([FORM], body, "POST").args,
                         {"config": {"access": "a\\,b", "header": "a\\,b"}})
        self.assertEqual(decode_body([FORM], body, "POST", comma_escaped={"header"}).args,
                         {"config": {"access": "a\\,b", "header": "a,b"}})

    def test_commas_are_never_split(self) -> None:
        self.assertEqual(form(b"config.access=f1\\,f2,f3"), {"config": {"access": "f1,f2,f3"}})


class QueryTests(SynchronousTestCase):
    def test_list_arguments(self) -> None:
        self.assertEqual(decode_query(b"size=10&offset=b2Zm%2BZ%3D&tags=a%2Cb&custom_id=x+y"),
                         {"size": "10", "offset": "b2Zm+Z=", "tags": "a,b", "custom_id": "x y"})

    def test_last_value_wins_and_empty_pieces(self) -> None:
        self.assertEqual(decode_query(b"&size=1&&size=2&=x&flag&bad=%ff"),
                         {"size": "2", "flag": "", "bad": "\ufffd"})
        self.assertEqual(decode_query(b""), {})


known_types = st.sampled_from([JSON, FORM, b"multipart/form-data; boundary=B", b"text/yaml",
                              b"multipart/form-data"])
content_types = st.one_of(st.none(), st.lists(st.one_of(st.binary(max_size=40), known_types), max_size=2))
methods = st.sampled_from(["POST", "PUT", "PATCH", "GET", "DELETE"])
#: Bodies made of the pieces that matter to the parsers, so fuzzing reaches past the first check.
structured_bodies = st.lists(
    st.sampled_from([b"--B", b"\r\n", b"--", b"Content-Disposition: form-data; name=", b'"',
                     b"Content-Type: x",
                     b"a", b"[", b"]", b".", b"%5B", b"%5d", b"=", b"&", b"+", b"%", b"\xff", b"\\,",
                     b"config.access",
                     b"{", b"}", b"1", b"[]"]),
    max_size=30,
).map(b"".join)


class FuzzTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(content_types, st.one_of(st.binary(max_size=200), structured_bodies), methods, st.booleans())
    def test_only_decoded_or_rejected(self, types: list[bytes] | None, body: bytes, method: str,
                                      yaml: bool) -> None:
        try:
            decoded = decode_body(types, body, method, allow_yaml=yaml)
        except BodyRejected as rejected:
            self.assertIn(rejected.status, {400, 413, 415})
        else:
            self.assertIsInstance(decoded.args, dict)
            json.dumps(decoded.args, ensure_ascii=False).encode()  # storable and printable as JSON


keys = st.text(alphabet=st.characters(blacklist_characters=".[]%", blacklist_categories=["Cs"]),
               min_size=1, max_size=8)
#: Digit keys are array positions, and a name ending in ".\n" is not decoded (PCRE's "$" as in Kong).
safe_keys = keys.filter(lambda key: not (key.isascii() and key.isdigit()) and not key.endswith("\n"))
texts = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=10)
nested = st.recursive(
    st.one_of(texts, st.lists(texts, min_size=1, max_size=3)),
    lambda children: st.dictionaries(safe_keys, children, min_size=1, max_size=3),
    max_leaves=10,
)


def form_pairs(value: Any, name: str) -> list[str]:
    """Encode nested arguments as Kong users write them: ``a.b=v`` and ``a.b[]=v``."""
    if isinstance(value, dict):
        return [pair for key, child in value.items()
                for pair in form_pairs(child, f"{name}.{key}" if name else key)]
    if isinstance(value, list):
        return [f"{quote(name)}[]={quote(item)}" for item in value]
    return [f"{quote(name)}={quote(value)}"]


class RoundTripTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(safe_keys, nested, min_size=1, max_size=4)
           .filter(lambda args: "config" not in args))
    def test_form_keys_round_trip(self, args: dict[str, Any]) -> None:
        body = "&".join(form_pairs(args, "")).encode()
        self.assertEqual(decode_body([FORM], body, "POST"), DecodedBody(args, True, None))


fields = st.sampled_from(sorted(CODE_FIELDS) + ["header", "timeout", "access_x", "Access"])
escaped_texts = st.lists(st.sampled_from(["a", ",", "\\", "\\,", " ", "é"]), max_size=8).map("".join)


class CommaEscapePropertyTests(SynchronousTestCase):
    r"""``\,`` becomes ``,`` in form text and files under config.<code field>, and nowhere else."""

    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(st.sampled_from(["config", "other", "access"]),
                           st.dictionaries(fields, escaped_texts, min_size=1), min_size=1),
           st.sampled_from(["urlencoded", "multipart", "file"]))
    def test_unescaping_is_confined_to_code_fields(self, sent: dict[str, dict[str, str]],
                                                   encoding: str) -> None:
        flat = [(f"{top}.{field}", value)
                for top, children in sent.items() for field, value in children.items()]
        if encoding == "urlencoded":
            args = form("&".join(f"{quote(name)}={quote(value)}" for name, value in flat).encode())
        else:
            args = multipart(*((name, value.encode(), "f.lua") if encoding == "file"
                               else (name, value.encode())
                               for name, value in flat))
        for top, children in sent.items():
            for field, value in children.items():
                unescape = top == "config" and field in CODE_FIELDS
                self.assertEqual(args[top][field], value.replace("\\,", ",") if unescape else value)
