"""The dry run over real HTTP, against the Admin API of a real ``twist kongish`` (a master and
two workers: the master runs the dry run on its own Lua engine)."""
from __future__ import annotations

import json
from typing import Any

import treq

from tests.harness import POOL, deferred, start_upstream
from tests.test_e2e_hostile_lua import _Gateway
from tests.test_e2e_seed import SEED_CODE

#: Counts the requests it sees in an upvalue, and tells the upstream the count.
COUNTER = ("local count = 0\n"
           "return function() count = count + 1 kong.service.request.set_header('X-Count', count) end")
OUTBOUND = ("local res, err = require('resty.http').new():request_uri('{url}/outbound')\n"
            "ngx.say(res and res.status or err) ngx.exit(200)")


class DryRunTests(_Gateway):
    async def _post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        response = await treq.post(f"http://127.0.0.1:{self.admin}{path}".encode(), json=body, pool=POOL)
        return response.code, json.loads(await response.content())

    @deferred
    async def test_a_dry_run_never_touches_the_live_plugin_or_its_upstream(self) -> None:
        upstream = await start_upstream(self)
        await self._launch({"KONGISH_NGINX_WORKER_PROCESSES": "2",
                            "KONGISH_UNTRUSTED_LUA_SANDBOX_REQUIRES": "resty.http"})
        base = f"http://127.0.0.1:{self.admin}"
        for path, data in [("/services", {"name": "counted", "url": upstream.url}),
                           ("/services/counted/routes", {"name": "counted", "paths[]": "/count"}),
                           ("/routes/counted/plugins", {"name": "pre-function", "config.access[]": COUNTER})]:
            response = await treq.post((base + path).encode(), data=data, pool=POOL)
            self.assertEqual(response.code, 201, await response.text())
            created = json.loads(await response.content())

        # the seed demo, as the README's curl sends it
        status, body = await self._post("/schemas/plugins/pre-function/dry-run", {
            "config": {"access": [SEED_CODE]}, "request": {"path": "/test", "query": "name=Kong"}})
        self.assertEqual(status, 200, body)
        self.assertEqual((body["response"]["status"], body["response"]["body"]), (200, "Hello Kong!\n"))

        # an erroring function: the client's 500, and the Lua error in the function's cost
        status, body = await self._post("/schemas/plugins/pre-function/dry-run",
                                        {"config": {"access": ["error('boom')"]}})
        self.assertEqual((status, body["response"]["status"]), (200, 500), body)
        (failed,) = body["functions"]
        self.assertEqual(failed["error"]["kind"], "runtime_error")
        self.assertIn("boom", failed["error"]["message"])

        for _ in range(2):
            status, body = await self._post(f"/plugins/{created['id']}/dry-run", {
                "upstream_response": {"status": 200, "body": "sample"}})
            self.assertEqual(status, 200, body)
            sent = body["upstream_request"]
            self.assertEqual((sent["host"], sent["port"], sent["path"], sent["headers"]["X-Count"]),
                             ("127.0.0.1", upstream.port.getHost().port, "/", "1"))  # strip_path
            self.assertEqual(body["response"]["body"], "sample")
        self.assertEqual(upstream.resource.received, [])  # answered by the sample, never called

        status, answer = await self._get("/count")  # the live plugin: its count is its own
        self.assertEqual(status, 200, answer)
        self.assertEqual(json.loads(answer)["headers"]["x-count"], ["1"])

        code = OUTBOUND.format(url=upstream.url)
        status, body = await self._post("/schemas/plugins/post-function/dry-run",
                                        {"config": {"access": [code]}})
        self.assertEqual(body["response"]["body"],
                         "outbound calls are refused in a dry run (set allow_outbound)\n")
        self.assertEqual(len(upstream.resource.received), 1)
        status, body = await self._post("/schemas/plugins/post-function/dry-run",
                                        {"config": {"access": [code]}, "allow_outbound": True})
        self.assertEqual(body["response"]["body"], "200\n", body)
        self.assertEqual([seen["path"] for seen in upstream.resource.received], ["/", "/outbound"])
        self.assertEqual(body["functions"][0]["outbound_calls"], 1)
