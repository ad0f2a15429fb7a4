"""Kong's ``ngx.ctx.KONG_*`` timing fields, set as Kong's runloop sets them.

Kong (kong/init.lua, 3.9) records when each phase of a proxied request starts
and ends, in milliseconds of nginx's clock, in fields of ``ngx.ctx``: plugins
read them (Kong's how-to copies ``KONG_PROXY_LATENCY`` into a response header)
and Kong's own ``X-Kong-*-Latency`` headers are three of them. :class:`KongTimings`
keeps the same fields, set at the same points of kongish's flow with Kong's
rules, including how a phase that was cut short gets its end (the start of
whichever phase came next) and which fields stay nil: a request that never
reached the upstream has ``KONG_RESPONSE_LATENCY`` and no ``KONG_PROXIED``,
``KONG_WAITING_TIME`` or ``KONG_PROXY_LATENCY``; one that did has the reverse.

kongish has no balancer phase: it picks the upstream address while connecting,
so the balancer fields all read the moment the upstream call starts
(``KONG_BALANCER_TIME`` is 0). Its upstream client resolves names as it
connects, so ``KONG_UPSTREAM_DNS_*`` are not set; Kong's own
``KONG_UPSTREAM_DNS_TIME`` is set only for buffered proxying, which kongish
does not do. Kong's ``*_NS`` fields (nanosecond clocks for its tracing) and
its stream-module fields (``KONG_PREREAD_*``) are not set either.
"""
from __future__ import annotations

import math

import attrs

#: A field's value: milliseconds, or True for ``KONG_PROXIED``.
TimingValue = int | bool

#: The phases whose ends Kong's later phases fill in, in order.
_CHAINED = ("REWRITE", "ACCESS", "BALANCER", "HEADER_FILTER")


def milliseconds(seconds: float) -> int:
    """A clock reading in whole milliseconds, as Kong's ``ngx.now() * 1000``."""
    return math.floor(round(seconds * 1000, 6))


@attrs.define
class KongTimings:
    """The ``KONG_*`` fields of one request, and which changed since ngx.ctx last got them."""

    fields: dict[str, TimingValue] = attrs.Factory(dict)
    changed: set[str] = attrs.Factory(set)

    def __getitem__(self, name: str) -> TimingValue | None:
        return self.fields.get(name)

    def _set(self, name: str, value: TimingValue) -> None:
        self.fields[name] = value
        self.changed.add(name)

    def _first(self, *names: str) -> int:
        """The first of ``names`` that is set (the last is always set by the caller)."""
        for name in names:
            value = self.fields.get(name)
            if value is not None:
                return int(value)
        raise KeyError(names[-1])

    def _end(self, phase: str, *next_starts: str) -> None:
        """Close ``phase`` at the start of the first of ``next_starts`` that happened."""
        if f"KONG_{phase}_START" in self.fields and f"KONG_{phase}_ENDED_AT" not in self.fields:
            self._finish(phase, self._first(*next_starts))

    def _end_open_phases(self, last: str) -> None:
        """Close each of rewrite ... header_filter still open at the next that started, else
        at ``last``, as Kong's body_filter and log phases do."""
        for index, phase in enumerate(_CHAINED):
            self._end(phase, *(f"KONG_{later}_START" for later in _CHAINED[index + 1:]), last)

    def _finish(self, phase: str, ended_at: int) -> None:
        self._set(f"KONG_{phase}_ENDED_AT", ended_at)
        self._set(f"KONG_{phase}_TIME", ended_at - int(self.fields[f"KONG_{phase}_START"]))

    def processing_start(self, started_at: float) -> None:
        """The request was received (``ngx.req.start_time()``)."""
        if "KONG_PROCESSING_START" not in self.fields:
            self._set("KONG_PROCESSING_START", milliseconds(started_at))

    def rewrite_start(self, now: float) -> None:
        if "KONG_REWRITE_START" not in self.fields:
            self._set("KONG_REWRITE_START", milliseconds(now))

    def rewrite_end(self, now: float) -> None:
        """The rewrite phase ran to its end (not when a plugin ended the request in it)."""
        self._finish("REWRITE", milliseconds(now))

    def access_start(self, now: float) -> None:
        """Before routing: Kong's router runs at the start of its access phase."""
        if "KONG_ACCESS_START" not in self.fields:
            self._set("KONG_ACCESS_START", milliseconds(now))
            self._end("REWRITE", "KONG_ACCESS_START")

    def access_end(self, now: float, proxying: bool) -> None:
        """The access phase is over: the request goes to the upstream, or is answered here."""
        self._finish("ACCESS", milliseconds(now))
        if proxying:
            self._set("KONG_PROXIED", True)
        else:
            self._set("KONG_RESPONSE_LATENCY",
                      int(self.fields["KONG_ACCESS_ENDED_AT"]) - int(self.fields["KONG_PROCESSING_START"]))

    def balancer(self, at: float) -> None:
        """The upstream call started at ``at`` (and reached the upstream, or failed trying)."""
        if "KONG_BALANCER_START" not in self.fields:
            self._set("KONG_BALANCER_START", milliseconds(at))
            self._end("REWRITE", "KONG_ACCESS_START", "KONG_BALANCER_START")
            self._end("ACCESS", "KONG_BALANCER_START")
        self._finish("BALANCER", milliseconds(at))
        self._set("KONG_PROXY_LATENCY",
                  int(self.fields["KONG_BALANCER_ENDED_AT"]) - int(self.fields["KONG_PROCESSING_START"]))

    def header_filter_start(self, now: float) -> None:
        """The response head is ready (the upstream's, a plugin's or kongish's own)."""
        if "KONG_HEADER_FILTER_START" not in self.fields:
            self._set("KONG_HEADER_FILTER_START", milliseconds(now))
            self._end("REWRITE", "KONG_BALANCER_START", "KONG_ACCESS_START", "KONG_HEADER_FILTER_START")
            self._end("ACCESS", "KONG_BALANCER_START", "KONG_HEADER_FILTER_START")
            self._end("BALANCER", "KONG_HEADER_FILTER_START")
        start = int(self.fields["KONG_HEADER_FILTER_START"])
        processing_start = int(self.fields["KONG_PROCESSING_START"])
        if self.fields.get("KONG_PROXIED"):
            if "KONG_WAITING_TIME" not in self.fields:
                self._set("KONG_WAITING_TIME",
                          start - self._first("KONG_BALANCER_ENDED_AT", "KONG_ACCESS_ENDED_AT"))
            if "KONG_PROXY_LATENCY" not in self.fields:
                self._set("KONG_PROXY_LATENCY", start - processing_start)
        elif "KONG_RESPONSE_LATENCY" not in self.fields:
            self._set("KONG_RESPONSE_LATENCY", start - processing_start)

    def header_filter_end(self, now: float) -> None:
        self._finish("HEADER_FILTER", milliseconds(now))

    def body_filter_start(self, now: float) -> None:
        if "KONG_BODY_FILTER_START" not in self.fields:
            self._set("KONG_BODY_FILTER_START", milliseconds(now))
            self._end_open_phases("KONG_BODY_FILTER_START")

    def body_filter_end(self, now: float) -> None:
        """The last body chunk went through body_filter."""
        self._finish("BODY_FILTER", milliseconds(now))
        if self.fields.get("KONG_PROXIED"):
            self._set("KONG_RECEIVE_TIME", int(self.fields["KONG_BODY_FILTER_ENDED_AT"]) - self._first(
                "KONG_HEADER_FILTER_START", "KONG_BALANCER_ENDED_AT", "KONG_BALANCER_START",
                "KONG_ACCESS_ENDED_AT"))

    def log_start(self, now: float) -> None:
        if "KONG_LOG_START" in self.fields:
            return
        self._set("KONG_LOG_START", milliseconds(now))
        # Kong's log phase reads ctx.BODY_FILTER_START (sic), always nil, where the
        # other phases read KONG_BODY_FILTER_START; the same fallbacks are kept here.
        self._end_open_phases("KONG_LOG_START")
        self._end("BODY_FILTER", "KONG_LOG_START")
        if self.fields.get("KONG_PROXIED") and "KONG_WAITING_TIME" not in self.fields:
            self._set("KONG_WAITING_TIME", int(self.fields["KONG_LOG_START"]) - self._first(
                "KONG_BALANCER_ENDED_AT", "KONG_ACCESS_ENDED_AT"))
