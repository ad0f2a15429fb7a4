"""kong.request.get_body() on bodies sent through the gateway."""
from __future__ import annotations

import io
import json

from twisted.trial.unittest import TestCase

from tests.harness import deferred, start_gateway, start_upstream
from tests.test_e2e_proxy_streaming import pre_function

# Sends what the plugin read: each field's value, or its values when repeated.
_ECHO_BODY = """
local body, err, mimetype = kong.request.get_body()
local fields = {}
for name, value in pairs(body or {}) do fields[name] = value end
return kong.response.exit(200, {fields = fields, err = err, mimetype = mimetype})
"""


class MultipartBodyTests(TestCase):
    @deferred
    async def test_multipart_form_as_curl_sends_it(self) -> None:
        upstream = await start_upstream(self)
        gateway = await start_gateway(self)
        await gateway.expose(upstream.url, plugins=(pre_function(access=_ECHO_BODY),))
        # curl -F name=kong -F tag=a -F tag=b -F upload=@notes.txt
        status, body, _ = await gateway.request(
            "POST", "/p", data=[("name", "kong"), ("tag", "a"), ("tag", "b")],
            files=[("upload", ("notes.txt", "text/plain", io.BytesIO(b"line 1\r\nline 2\n")))])
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {
            "fields": {"name": "kong", "tag": ["a", "b"], "upload": "line 1\r\nline 2\n"},
            "mimetype": "multipart/form-data"})
