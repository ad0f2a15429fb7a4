"""Admin API multipart bodies that twisted.web's own form parser chokes on, through ``twist kongish``."""
from __future__ import annotations

import json

import treq
from twisted.web.http_headers import Headers

from tests.harness import POOL, deferred
from tests.test_e2e_hostile_lua import _Gateway


class MultipartTests(_Gateway):
    async def _post(self, part_header: bytes) -> tuple[int, bytes]:
        body = (b"--XX\r\nContent-Disposition: form-data; " + part_header + b"\r\n\r\nfoo\r\n--XX--\r\n")
        response = await treq.post(
            f"http://127.0.0.1:{self.admin}/services".encode(), data=body, pool=POOL,
            headers=Headers({b"Content-Type": [b"multipart/form-data; boundary=XX"]}))
        return response.code, await response.content()

    @deferred
    async def test_parts_named_the_rfc_2231_way_get_an_answer(self) -> None:
        """``name*=`` killed the connection unanswered (a twisted.web AttributeError)."""
        await self._start()
        for header in (b"name*=utf-8''name", b"name*=UTF-8''url", b"name*0=name"):
            status, body = await self._post(header)
            self.assertEqual(status, 400, body)
            self.assertIn("message", json.loads(body))
        status, body = await self._post(b'name="name"')  # a plain part still works
        self.assertEqual(status, 400, body)  # a service needs a host: Kong's schema answer
        self.assertIn(b"schema violation", body)
        await self._healthy("odd multipart parts")
