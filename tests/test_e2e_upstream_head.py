"""An upstream's response head is bounded as nginx bounds it (Kong's ``proxy_buffer_size``,
160k), through a real ``twist kongish`` (issue 9, item 13): past it, 502 and nginx's log line,
with no retry; a head within it, long lines included, goes through."""
from __future__ import annotations

import treq
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory

from kongish.http.client import HEAD_LIMIT
from tests.harness import POOL, RawClient, deferred, start_raw_upstream
from tests.test_e2e_hostile_lua import _Gateway


def _lines(count: int, size: int) -> bytes:
    return b"".join(b"X-Filler-%d: %s\r\n" % (index, b"v" * size) for index in range(count))


class UpstreamHeadTests(_Gateway):
    async def _expose(self, name: str, url: str) -> None:
        base = f"http://127.0.0.1:{self.admin}"
        for path, data in [("/services", {"name": name, "url": url, "retries": "5"}),
                           (f"/services/{name}/routes", {"name": name, "paths[]": f"/{name}"})]:
            response = await treq.post((base + path).encode(), data=data, pool=POOL)
            self.assertEqual(response.code, 201, await response.text())

    @deferred
    async def test_a_head_past_the_buffer_is_a_502_and_is_not_retried(self) -> None:
        await self._start()
        cases = {
            "huge": _lines(10_000, 1024),  # 10 MB of headers
            "just-over": _lines(HEAD_LIMIT // 1024 + 1, 1024),
            "within": _lines(HEAD_LIMIT // 1024 - 8, 1024),
            "one-long-line": b"X-Long: " + b"l" * 100_000 + b"\r\n",
        }
        upstreams = {name: await start_raw_upstream(self, lines) for name, lines in cases.items()}
        for name, upstream in upstreams.items():
            await self._expose(name, upstream.url)
        for name in ("huge", "just-over"):
            status, body = await self._get(f"/{name}")
            self.assertEqual(status, 502, body)
            self.assertIn(b"An invalid response was received from the upstream server", body)
            self.assertEqual(len(upstreams[name].heads), 1, "not retried, as nginx's invalid_header")
            await self._healthy(name)
        await self._until(lambda: b"upstream sent too big header" in self.process.output, "logged")
        for name in ("within", "one-long-line"):  # read raw: a test client's own parser has limits
            answer = await self._raw_get(f"/{name}")
            self.assertTrue(answer.startswith(b"HTTP/1.0 200 "), answer[:200])
            self.assertTrue(answer.endswith(b"\r\n\r\nok"), answer[-200:])
            self.assertIn(cases[name], answer)

    @deferred
    async def test_bytes_after_the_response_never_reach_the_client(self) -> None:
        """Header lines an upstream writes past its Content-Length are dropped with its
        connection, as nginx drops them; they never become headers of the response."""
        await self._start()
        upstream = await start_raw_upstream(
            self, after=b"HTTP/1.1 200 OK\r\nX-Evil: 1\r\nSet-Cookie: session=stolen\r\n")
        await self._expose("trailing", upstream.url)
        for _ in range(2):  # and the connection it came on is not reused
            answer = await self._raw_get("/trailing")
            self.assertTrue(answer.startswith(b"HTTP/1.0 200 "), answer[:200])
            self.assertTrue(answer.endswith(b"\r\n\r\nok"), answer[-200:])
            self.assertNotIn(b"X-Evil", answer)
            self.assertNotIn(b"stolen", answer)
        self.assertEqual(len(upstream.heads), 2)

    async def _raw_get(self, path: str) -> bytes:
        client = RawClient()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.proxy)
        await endpoint.connect(Factory.forProtocol(lambda: client))
        client.transport.write(b"GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path.encode())
        return await client.closed
