"""``twist kongish`` freezes the heap it started with out of the cycle collector's view
(the full collections that walked it were the proxy's p99)."""
from __future__ import annotations

import re

from tests.harness import deferred
from tests.test_e2e_hostile_lua import _Gateway


class SettledHeapTests(_Gateway):
    @deferred
    async def test_the_started_heap_is_frozen(self) -> None:
        await self._start(log_level="info")
        await self._logged(b"objects, frozen out of the cycle collector")
        # twist writes JSON lines when its output is not a terminal
        (count,) = re.findall(rb'"count": (\d+), "log_logger"', self.process.output)
        self.assertGreater(int(count), 10_000)
        await self._healthy("the heap was frozen")
