"""Outbound HTTP and timers from serverless functions, through a real ``twist kongish``
and a real local service on loopback."""
from __future__ import annotations

import os
from typing import Any, cast

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from examples.local_services import Services
from tests.harness import POOL, deferred
from tests.test_e2e_hostile_lua import _Gateway

#: How many requests call the slow endpoint at once.
CONCURRENT = 100

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
#: Where the examples' functions call (examples/local_services.py).
EXAMPLE_SERVICES = "127.0.0.1:9000"


def _example(name: str) -> str:
    with open(os.path.join(EXAMPLES, name), encoding="utf-8") as source:
        return source.read()


SLOW = """
local res, err = require("resty.http").new():request_uri("http://127.0.0.1:9000/slow")
ngx.say(res and res.body or err)
return ngx.exit(200)
"""

TIMER = """
ngx.timer.at(0, function(premature, path)
  require("resty.http").new():request_uri("http://127.0.0.1:9000/hook", {
    method = "POST", body = "timer after " .. path .. " premature=" .. tostring(premature)})
end, kong.request.get_path())
ngx.say("answered")
return ngx.exit(200)
"""


class _Service(Resource):
    """The examples' local services (introspection, a webhook, an upstream), recording the
    webhooks, and a slow endpoint."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.hooks: list[bytes] = []
        self.waiting: list[Any] = []
        self.most_waiting = 0
        self.examples = Services()

    def render(self, request: Any) -> bytes | int:
        if request.path == b"/hook":
            self.hooks.append(request.content.getvalue())
        if request.path == b"/slow":
            return self._slow(request)
        return self.examples.render(request)

    def _slow(self, request: Any) -> int:
        """Answers once all CONCURRENT calls are waiting at once (so they cannot have been
        made one after another), after 200 ms, as a slow service would."""
        self.waiting.append(request)
        self.most_waiting = max(self.most_waiting, len(self.waiting))
        if len(self.waiting) == CONCURRENT:
            waiting, self.waiting = self.waiting, []
            deferLater(reactor, 0.2, self._answer_all, waiting)
        return NOT_DONE_YET

    def _answer_all(self, requests: list[Any]) -> None:
        for request in requests:
            request.write(b"slow answer")
            request.finish()


class OutboundTests(_Gateway):
    async def _serve(self) -> None:
        self.service = _Service()
        self.listening: Any = cast(Any, reactor).listenTCP(0, Site(self.service), interface="127.0.0.1")
        self.addCleanup(self.listening.stopListening)
        self.port = self.listening.getHost().port
        await self._launch({"KONGISH_UNTRUSTED_LUA_SANDBOX_REQUIRES": "resty.http"})

    async def _install(self, name: str, **phases: str) -> None:
        base = f"http://127.0.0.1:{self.admin}"
        steps = [("/services", {"name": name, "url": f"http://127.0.0.1:{self.port}/upstream"}),
                 (f"/services/{name}/routes", {"name": name, "paths[]": f"/{name}"})]
        for phase, code in phases.items():
            plugin, phase = phase.split("__")
            code = code.replace(EXAMPLE_SERVICES, f"127.0.0.1:{self.port}")
            steps.append((f"/routes/{name}/plugins", {"name": plugin.replace("_", "-"),
                                                      f"config.{phase}[]": code}))
        for path, data in steps:
            response = await treq.post((base + path).encode(), data=data, pool=POOL)
            self.assertEqual(response.code, 201, await response.text())

    @deferred
    async def test_token_introspection(self) -> None:
        await self._serve()
        await self._install("guarded", pre_function__access=_example("token_introspection.lua"))
        url = f"http://127.0.0.1:{self.proxy}/guarded".encode()
        good = await treq.get(url, headers=Headers({"X-Token": ["good"]}), pool=POOL)
        self.assertEqual((good.code, await good.content()), (200, b"upstream saw user alice"))
        bad = await treq.get(url, headers=Headers({"X-Token": ["stolen"]}), pool=POOL)
        self.assertEqual((bad.code, await bad.json()), (401, {"message": "Unauthorized"}))
        # the access log tells each request's outbound call
        await self._until(lambda: self.process.output.count(b'kongish_outbound: \\"1 ') >= 2,
                          "the outbound calls in the access log")

    @deferred
    async def test_a_webhook_from_the_log_phase(self) -> None:
        await self._serve()
        await self._install("hooked", post_function__log=_example("log_webhook.lua"))
        self.assertEqual(await self._get("/hooked"), (200, b"upstream saw user none"))
        await self._until(lambda: self.service.hooks == [b"served /hooked with 200"], "the webhook")

    @deferred
    async def test_concurrent_outbound_calls_wait_side_by_side(self) -> None:
        await self._serve()
        await self._install("slow", pre_function__access=SLOW)
        answers = await gatherResults([Deferred.fromCoroutine(self._get("/slow")) for _ in range(CONCURRENT)])
        self.assertEqual(set(answers), {(200, b"slow answer\n")})
        # every call was waiting at once: the service answers none until all CONCURRENT are in,
        # so made one after another they would never have been answered
        self.assertEqual(self.service.most_waiting, CONCURRENT)

    @deferred
    async def test_a_timer_runs_after_the_response(self) -> None:
        await self._serve()
        await self._install("timed", pre_function__access=TIMER)
        self.assertEqual(await self._get("/timed"), (200, b"answered\n"))
        await self._until(lambda: self.service.hooks == [b"timer after /timed premature=false"], "the timer")
