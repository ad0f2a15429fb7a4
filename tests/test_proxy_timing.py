"""Kong's ngx.ctx.KONG_* timing fields, as the proxy's flow sets them."""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kongish.proxy.timing import KongTimings, milliseconds

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
        self.assertEqual(timings.changed, {"KONG_PROCESSING_START", "KONG_REWRITE_START"})
        timings.changed.clear()
        timings.processing_start(2.0)  # set once, as Kong's "if not ctx.KONG_PROCESSING_START"
        self.assertEqual((timings.changed, timings["KONG_PROCESSING_START"]), (set(), 1000))
