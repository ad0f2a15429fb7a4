"""Kong's ngx.ctx.KONG_* timing fields, as the proxy's flow sets them."""
from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request

from kongish.http.client import UpstreamFailure
from kongish.runloop.resource import ProxyResource
from kongish.runloop.timing import KongTimings, milliseconds
from kongish.service import build_node
from kongish.settings import Settings
from tests.test_lua_pdk import parse_request

_PHASES = ("REWRITE", "ACCESS", "BALANCER", "HEADER_FILTER", "BODY_FILTER")


def proxied(client_closed: bool = False) -> KongTimings:
    """A request through every phase to the upstream; times in seconds, 1 ms apart or more."""
    timings = KongTimings()
    timings.processing_start(100.000)
    timings.rewrite_start(100.002)
    timings.rewrite_end(100.003)
    timings.access_start(100.004)
    timings.access_end(100.007, proxying=True)
    timings.balancer(100.007)
    if not client_closed:
        timings.header_filter_start(100.050)
        timings.header_filter_end(100.051)
        timings.body_filter_start(100.052)
        timings.body_filter_end(100.060)
    timings.log_start(100.061)
    return timings


class KongTimingsTests(SynchronousTestCase):
    def assert_phases_consistent(self, timings: KongTimings) -> None:
        fields = timings.fields
        for name, value in fields.items():
            self.assertIs(type(value), bool if name == "KONG_PROXIED" else int, name)
        for phase in _PHASES:
            if f"KONG_{phase}_START" in fields:
                start, end = fields[f"KONG_{phase}_START"], fields[f"KONG_{phase}_ENDED_AT"]
                self.assertGreaterEqual(end, start, phase)
                self.assertEqual(fields[f"KONG_{phase}_TIME"], end - start, phase)

    def test_milliseconds(self) -> None:
        self.assertEqual(milliseconds(1.001), 1001)
        self.assertEqual(milliseconds(1733150000.123), 1733150000123)
        self.assertEqual(milliseconds(0.0009), 0)
        self.assertEqual(milliseconds(1.0009999), 1000)  # a real 0.9999 ms short: not rounded up

    @given(st.floats(min_value=0, max_value=4e9), st.floats(min_value=0, max_value=10))
    def test_milliseconds_never_go_back(self, seconds: float, later: float) -> None:
        """Latencies are differences of readings: a later reading is never a smaller one,
        and a reading is its floor in milliseconds, or one more within a float's error."""
        reading = milliseconds(seconds)
        self.assertIn(reading, (math.floor(seconds * 1000), math.floor(seconds * 1000) + 1))
        self.assertLessEqual(reading, milliseconds(seconds + later))

    def test_proxied_request(self) -> None:
        timings = proxied()
        self.assert_phases_consistent(timings)
        self.assertEqual({name: timings[name] for name in (
            "KONG_PROCESSING_START", "KONG_REWRITE_TIME", "KONG_ACCESS_TIME", "KONG_BALANCER_START",
            "KONG_BALANCER_TIME", "KONG_PROXIED", "KONG_PROXY_LATENCY", "KONG_WAITING_TIME",
            "KONG_HEADER_FILTER_TIME", "KONG_BODY_FILTER_TIME", "KONG_RECEIVE_TIME", "KONG_LOG_START",
            "KONG_RESPONSE_LATENCY")}, {
            "KONG_PROCESSING_START": 100000, "KONG_REWRITE_TIME": 1, "KONG_ACCESS_TIME": 3,
            "KONG_BALANCER_START": 100007, "KONG_BALANCER_TIME": 0, "KONG_PROXIED": True,
            "KONG_PROXY_LATENCY": 7, "KONG_WAITING_TIME": 43, "KONG_HEADER_FILTER_TIME": 1,
            "KONG_BODY_FILTER_TIME": 8, "KONG_RECEIVE_TIME": 10, "KONG_LOG_START": 100061,
            # Kong sets it only for answers that never reached the upstream
            "KONG_RESPONSE_LATENCY": None})

    def test_short_circuit_in_access(self) -> None:
        timings = KongTimings()
        timings.processing_start(5.0)
        timings.rewrite_start(5.001)
        timings.rewrite_end(5.001)
        timings.access_start(5.002)
        timings.access_end(5.010, proxying=False)
        timings.header_filter_start(5.011)
        timings.header_filter_end(5.011)
        timings.body_filter_start(5.012)
        timings.body_filter_end(5.012)
        timings.log_start(5.020)
        self.assert_phases_consistent(timings)
        self.assertEqual(timings["KONG_RESPONSE_LATENCY"], 10)
        for name in ("KONG_PROXIED", "KONG_WAITING_TIME", "KONG_PROXY_LATENCY", "KONG_RECEIVE_TIME",
                     "KONG_BALANCER_START", "KONG_BALANCER_ENDED_AT"):
            self.assertIsNone(timings[name], name)

    def test_phases_cut_short_end_where_the_next_one_starts(self) -> None:
        # a plugin ends the request in rewrite: rewrite ends when header_filter starts
        timings = KongTimings()
        timings.processing_start(1.0)
        timings.rewrite_start(1.001)
        timings.header_filter_start(1.004)
        self.assertEqual((timings["KONG_REWRITE_ENDED_AT"], timings["KONG_REWRITE_TIME"]), (1004, 3))
        self.assertEqual(timings["KONG_RESPONSE_LATENCY"], 4)
        self.assertIsNone(timings["KONG_ACCESS_START"])
        # no route matched: access (where Kong routes) ends when header_filter starts
        timings = KongTimings()
        timings.processing_start(1.0)
        timings.rewrite_start(1.0)
        timings.rewrite_end(1.001)
        timings.access_start(1.002)
        timings.header_filter_start(1.005)
        self.assertEqual((timings["KONG_ACCESS_ENDED_AT"], timings["KONG_ACCESS_TIME"]), (1005, 3))
        self.assertEqual(timings["KONG_RESPONSE_LATENCY"], 5)

    def test_client_closed_while_waiting(self) -> None:
        # no response head: the log phase gives the waiting time, as Kong's does
        timings = proxied(client_closed=True)
        self.assert_phases_consistent(timings)
        self.assertEqual(timings["KONG_WAITING_TIME"], 54)
        self.assertEqual(timings["KONG_PROXY_LATENCY"], 7)
        self.assertIsNone(timings["KONG_HEADER_FILTER_START"])

    def test_changed_fields_are_tracked(self) -> None:
        timings = KongTimings()
        timings.processing_start(1.0)
        timings.rewrite_start(1.0)
        self.assertEqual(timings.changed(), {"KONG_PROCESSING_START": 1000, "KONG_REWRITE_START": 1000})
        timings.processing_start(2.0)  # set once, as Kong's "if not ctx.KONG_PROCESSING_START"
        self.assertEqual((timings.changed(), timings["KONG_PROCESSING_START"]), ({}, 1000))
        timings.rewrite_end(1.5)
        self.assertEqual(timings.changed(), {"KONG_REWRITE_ENDED_AT": 1500, "KONG_REWRITE_TIME": 500})


def pre_function_config(code: str) -> dict:
    return {"name": "pre-function", "config": {"access": [code]}}


_CONFIG = {"_format_version": "3.0", "services": [{
    "name": "s", "url": "http://upstream.test", "routes": [
        {"name": "exit", "paths": ["/exit"], "plugins": [pre_function_config(
            "ngx.sleep(0.25) return kong.response.exit(200, 'ok')")]},
        {"name": "proxy", "paths": ["/proxy"], "plugins": [pre_function_config("ngx.sleep(0.25)")]}],
    "plugins": [{"name": "post-function", "config": {"header_filter": [
        "for _, name in ipairs({'KONG_ACCESS_TIME', 'KONG_RESPONSE_LATENCY', 'KONG_WAITING_TIME', "
        "'KONG_PROXY_LATENCY', 'KONG_BALANCER_TIME'}) do "
        "kong.response.set_header('X-Seen-' .. name, tostring(ngx.ctx[name])) end"]}}]}]}


#: The readings the flow takes, in its orders: an exit in rewrite, one in access, a request
#: with no route (answered before header_filter runs), and a proxied one. "respond" is the
#: header_filter_start reading taken when the answer starts, where the latency headers are read.
FLOW_ORDERS = {
    "rewrite exit": ("processing_start", "rewrite_start", "header_filter_start", "header_filter_end",
                     "respond", "body_filter_start", "body_filter_end", "log_start"),
    "access exit": ("processing_start", "rewrite_start", "rewrite_end", "access_start", "answered",
                    "header_filter_start", "header_filter_end", "respond", "body_filter_start",
                    "body_filter_end", "log_start"),
    "no route": ("processing_start", "rewrite_start", "rewrite_end", "access_start", "answered",
                 "respond", "body_filter_start", "body_filter_end", "log_start"),
    "proxied": ("processing_start", "rewrite_start", "rewrite_end", "access_start", "proxied", "balancer",
                "header_filter_start", "header_filter_end", "respond", "body_filter_start",
                "body_filter_end", "log_start"),
}


class LatencyHeaderProperties(SynchronousTestCase):
    """The latency headers' values, computed from three readings, are Kong's fields."""

    @given(st.sampled_from(sorted(FLOW_ORDERS)), st.lists(st.integers(0, 40_000), min_size=12, max_size=12),
           st.integers(0, 10**9))
    def test_headers_read_the_fields(self, order: str, gaps: list[int], start: int) -> None:
        timings, now = KongTimings(), start / 1000
        for point, gap in zip(FLOW_ORDERS[order], gaps, strict=False):
            now += gap / 1_000_000
            if point == "answered":
                timings.access_end(now, proxying=False)
            elif point == "proxied":
                timings.access_end(now, proxying=True)
            elif point == "balancer":
                timings.balancer(now)
            elif point == "respond":
                timings.header_filter_start(now)
                fields = timings.fields
                self.assertEqual(timings.proxied, order == "proxied")
                if timings.proxied:
                    self.assertEqual(timings.proxy_latencies(),
                                     (fields["KONG_WAITING_TIME"], fields["KONG_PROXY_LATENCY"]))
                else:
                    self.assertEqual(timings.response_latency(), fields["KONG_RESPONSE_LATENCY"])
            else:
                getattr(timings, point)(now)


class _SlowFailingUpstream:
    """An upstream connection that fails (as a refused one does) after 0.1 s on ``clock``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    async def send(self, *arguments: object) -> None:
        await deferLater(self.clock, 0.1, lambda: None)
        raise UpstreamFailure(502, "An invalid response was received from the upstream server", "B")


class ProxyFlowTimingTests(SynchronousTestCase):
    """The flow on a Clock: plugins wait with ngx.sleep, the fields and headers follow exactly."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        settings = Settings.load(environ={}, overrides={
            "database": "off", "prefix": self.mktemp(), "declarative_config_string": json.dumps(_CONFIG)})
        node = self.successResultOf(ensureDeferred(build_node(settings, self.clock)))
        self.resource = ProxyResource(node, _SlowFailingUpstream(self.clock))  # type: ignore[arg-type]

    def get(self, path: str) -> Request:
        request = parse_request(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        self.resource.render(request)
        for _ in range(10):
            self.clock.advance(0.05)
        self.assertTrue(request.finished)
        return request

    def headers(self, request: Request) -> dict[str, str]:
        names = ("x-seen-kong-access-time", "x-seen-kong-response-latency", "x-seen-kong-waiting-time",
                 "x-seen-kong-proxy-latency", "x-seen-kong-balancer-time",
                 # Kong's own headers, the same fields
                 "x-kong-response-latency", "x-kong-upstream-latency", "x-kong-proxy-latency")
        return {name: (request.responseHeaders.getRawHeaders(name) or ["(none)"])[0] for name in names}

    def test_answered_in_access(self) -> None:
        self.assertEqual(self.headers(self.get("/exit")), {
            "x-seen-kong-access-time": "250", "x-seen-kong-response-latency": "250",
            "x-seen-kong-waiting-time": "nil", "x-seen-kong-proxy-latency": "nil",
            "x-seen-kong-balancer-time": "nil", "x-kong-response-latency": "250",
            "x-kong-upstream-latency": "(none)", "x-kong-proxy-latency": "(none)"})

    def test_proxied(self) -> None:
        # the upstream fails after 100 ms: Kong's error is a proxied answer
        request = self.get("/proxy")
        self.assertEqual(request.code, 502)
        self.assertEqual(self.headers(request), {
            "x-seen-kong-access-time": "250", "x-seen-kong-response-latency": "nil",
            "x-seen-kong-waiting-time": "100", "x-seen-kong-proxy-latency": "250",
            "x-seen-kong-balancer-time": "0", "x-kong-response-latency": "(none)",
            "x-kong-upstream-latency": "100", "x-kong-proxy-latency": "250"})
