"""``kong.request.get_uri_captures()`` numbers captures as Kong does: [0] is the whole match."""
from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.harness import deferred, start_gateway

PRINT_CAPTURES = """
local c = kong.request.get_uri_captures()
local parts = {}
for i = 0, 3 do parts[#parts + 1] = i .. '=' .. tostring(c.unnamed[i]) end
parts[#parts + 1] = 'name=' .. tostring(c.named.name)
parts[#parts + 1] = 'opt=' .. tostring(c.named.opt)
return kong.response.exit(200, table.concat(parts, ' '))
"""


class UriCapturesTests(TestCase):
    @deferred
    async def test_whole_match_at_zero_groups_from_one(self) -> None:
        gateway = await start_gateway(self)
        await gateway.expose("http://127.0.0.1:1", r"~/users/(?P<name>\w+)/(\d+)(?P<opt>/x)?$",
                             plugins=({"name": "pre-function", "config": {"access": [PRINT_CAPTURES]}},))
        for path, expected in [
                ("/users/ada/42", b"0=/users/ada/42 1=ada 2=42 3=false name=ada opt=false"),
                ("/users/bo/7/x", b"0=/users/bo/7/x 1=bo 2=7 3=/x name=bo opt=/x")]:
            status, body, _ = await gateway.get(path)
            self.assertEqual((status, body), (200, expected), path)
        await gateway.expose("http://127.0.0.1:1", "/plain",
                             plugins=({"name": "pre-function", "config": {"access": [PRINT_CAPTURES]}},))
        status, body, _ = await gateway.get("/plain")
        self.assertEqual((status, body), (200, b"0=nil 1=nil 2=nil 3=nil name=nil opt=nil"))

    @deferred
    async def test_pcre_named_groups(self) -> None:
        """Kong's documented example: ``(?<name>...)`` groups, in ``named`` by name."""
        gateway = await start_gateway(self)
        print_named = ("local named = kong.request.get_uri_captures().named "
                       "return kong.response.exit(200, named.version .. ' ' .. named.user)")
        await gateway.expose("http://127.0.0.1:1", r"~/version/(?<version>\d+)/users/(?<user>\S+)",
                             plugins=({"name": "pre-function", "config": {"access": [print_named]}},))
        status, body, _ = await gateway.get("/version/2/users/ada")
        self.assertEqual((status, body), (200, b"2 ada"))
