"""Microseconds per request that Kong's ``KONG_*`` timings cost, against the clock reads alone.

Three timings of one request's readings, in this same run, for an answer from a plugin
(exit in access) and for a proxied request:

  clock:   the clock read at each point of the flow, nothing kept;
  headers: ``KongTimings`` taking the readings and giving Kong's latency header values
           (what every request pays);
  fields:  the same, then every ``KONG_*`` field derived (what a request whose Lua reads
           ``ngx.ctx`` pays, and what every request paid before the fields were lazy).

Prints µs per request for each and the ratios headers/clock and fields/clock.
Usage (from the repository root): PYTHONPATH=src python benchmarks/kong_timings.py [--requests 200000]
"""
from __future__ import annotations

import argparse
import time
import timeit
from collections.abc import Callable

from kongish.runloop.timing import KongTimings

#: Clock reads per request, as the flow takes them.
READS = 11


def clock() -> None:
    now = time.monotonic
    for _ in range(READS):
        now()


def _readings(timings: KongTimings, proxying: bool) -> None:
    """The readings the flow takes for an answered (or a proxied) request."""
    now = time.monotonic
    timings.processing_start(now())
    timings.rewrite_start(now())
    timings.rewrite_end(now())
    timings.access_start(now())
    ended = now()
    timings.access_end(ended, proxying=proxying)
    if proxying:
        timings.balancer(ended)
    timings.header_filter_start(now())
    timings.header_filter_end(now())
    timings.header_filter_start(now())
    timings.body_filter_start(now())
    timings.body_filter_end(now())
    timings.log_start(now())


def _answered(timings: KongTimings) -> None:
    _readings(timings, proxying=False)


def _proxied(timings: KongTimings) -> None:
    _readings(timings, proxying=True)


def one_request(flow: Callable[[KongTimings], None], latencies: Callable[[KongTimings], object],
                fields: bool) -> Callable[[], None]:
    """A request's timings: its readings, its latency header values, and all fields if asked."""
    def run() -> None:
        timings = KongTimings()
        flow(timings)
        latencies(timings)
        if fields:
            timings.changed()
    return run


def microseconds(function: Callable[[], None], requests: int) -> float:
    return min(timeit.repeat(function, number=requests, repeat=5)) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    requests = parser.parse_args().requests
    base = microseconds(clock, requests)
    print(f"clock reads alone: {base:.2f} µs/request")
    for name, flow, latencies in (("answered", _answered, KongTimings.response_latency),
                                  ("proxied", _proxied, KongTimings.proxy_latencies)):
        with_headers = microseconds(one_request(flow, latencies, fields=False), requests)
        with_fields = microseconds(one_request(flow, latencies, fields=True), requests)
        print(f"{name}: headers {with_headers:.2f} µs ({with_headers / base:.2f}x clock), "
              f"fields {with_fields:.2f} µs ({with_fields / base:.2f}x clock)")


if __name__ == "__main__":
    main()
