"""The PDK's Python primitives refuse arguments of the wrong type with the message of a
wrong type, also when they look their first argument up by the bytes Lua passes.

Sandboxed code never reaches the primitives; trusted code (``untrusted_lua = on``) can,
through the upvalues of the PDK's own functions.
"""
from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from kongish.testing.lua import LuaHarness

#: ``P``, the primitives table, from an upvalue of ``ngx.header``'s reader.
_PRIMITIVES = """
local P
local reader = getmetatable(ngx.header).__index
for i = 1, 50 do
  local name, value = debug.getupvalue(reader, i)
  if name == nil then break end
  if name == 'P' then P = value end
end
assert(P, 'no P upvalue')
"""


class PrimitiveArgumentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.lua = LuaHarness.start({"untrusted_lua": "on"})

    def error_of(self, code: str) -> str:
        context = self.lua.request(phase="access")
        outcome: list[Any] = []
        self.lua.run([_PRIMITIVES + code], context).addBoth(outcome.append)
        (result,) = outcome
        self.assertIsInstance(result, Failure, f"{code} did not fail")
        return str(result.getErrorMessage())

    def test_a_target_that_is_not_a_string_is_refused_as_such(self) -> None:
        for code, kind in (("P.change_header(5, 'set', 'X-A', 'v')", "int"),
                           ("P.change_header(nil, 'set', 'X-A', 'v')", "NoneType"),
                           ("P.header_list({})", "table"),
                           ("P.header_values(true, 'x')", "bool")):
            self.assertIn(f"string expected, got {kind}", self.error_of(code), code)

    def test_an_unknown_target_or_operation_fails(self) -> None:
        self.assertIn("bogus", self.error_of("P.change_header('response', 'bogus', 'X-A', 'v')"))
        self.assertIn("nowhere", self.error_of("P.header_list('nowhere')"))

    def test_the_known_names_work(self) -> None:
        context = self.lua.request(phase="access")
        outcome: list[Any] = []
        self.lua.run([_PRIMITIVES + "P.change_header('response', 'set', 'X-A', 'v')"], context).addBoth(
            outcome.append)
        self.assertEqual(outcome, [None])
        self.assertEqual(context.response.headers.getRawHeaders(b"x-a"), [b"v"])
