"""kong.request.get_body() on bodies sent through the gateway."""
from __future__ import annotations

import io
import json

import treq
from twisted.trial.unittest import TestCase

from tests.harness import POOL, deferred, start_gateway, start_upstream
from tests.test_e2e_hostile_lua import _Gateway
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


class LargeBodyTests(_Gateway):
    """A large JSON body through a real ``twist kongish`` (issue 9, item 14): Kong's
    ``nil, err`` for a body past ``client_body_buffer_size``, not a 500 from decoding it."""

    async def _post_json(self, path: str, document: object) -> tuple[int, dict]:
        response = await treq.post(f"http://127.0.0.1:{self.proxy}{path}".encode(), json=document,
                                   pool=POOL, timeout=60)
        return response.code, json.loads(await response.content())

    @deferred
    async def test_a_body_past_the_buffer_is_kong_s_error_and_one_within_is_read(self) -> None:
        await self._start(nginx_http_client_body_buffer_size="1m")
        await self._route("echo", _ECHO_BODY)
        twelve_mb = {"items": [{"id": index, "name": "x" * 100} for index in range(100_000)]}
        status, answer = await self._post_json("/echo", twelve_mb)
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer["err"], "request body did not fit into client body buffer, "
                                        "consider raising 'client_body_buffer_size'")
        await self._healthy("a 12 MB JSON body")
        status, answer = await self._post_json("/echo", {"items": list(range(50_000))})  # ~340 KB
        self.assertEqual((status, len(answer["fields"]["items"])), (200, 50_000), answer.get("err"))
