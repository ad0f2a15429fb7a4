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

_PHASES = ("REWRITE", "ACCESS", "BALANCER", "HEADER_FILTER", "BODY_FILTER", "LOG")
#: Each phase's (start, ended-at, time) field names, made once: the hot path builds no strings.
_NAMES = {phase: (f"KONG_{phase}_START", f"KONG_{phase}_ENDED_AT", f"KONG_{phase}_TIME")
          for phase in _PHASES}
_REWRITE, _ACCESS, _BALANCER, _HEADER_FILTER, _BODY_FILTER, _LOG = (_NAMES[p] for p in _PHASES)
_PROCESSING_START = "KONG_PROCESSING_START"
#: The phases whose ends Kong's later phases fill in, each with the starts that may end it.
_CHAINED = tuple((_NAMES[phase], tuple(_NAMES[later][0] for later in _PHASES[index + 1:4]))
                 for index, phase in enumerate(_PHASES[:4]))


def milliseconds(seconds: float) -> int:
    """A clock reading in whole milliseconds, as Kong's ``ngx.now() * 1000``."""
    return math.floor(round(seconds * 1000, 6))


@attrs.define
class KongTimings:
    """The ``KONG_*`` fields of one request; ``changed()`` tells ngx.ctx what is new."""

    fields: dict[str, TimingValue] = attrs.Factory(dict)
    #: What ``changed()`` last handed out.
    _delivered: dict[str, TimingValue] = attrs.Factory(dict)

    def __getitem__(self, name: str) -> TimingValue | None:
        return self.fields.get(name)

    def changed(self) -> dict[str, TimingValue]:
        """The fields set or changed since the last call."""
        fresh = {name: value for name, value in self.fields.items() if self._delivered.get(name) != value}
        self._delivered.update(fresh)
        return fresh

    def _first(self, *names: str) -> int:
        """The first of ``names`` that is set (the last is always set by the caller)."""
        fields = self.fields
        for name in names:
            value = fields.get(name)
            if value is not None:
                return int(value)
        raise KeyError(names[-1])

    def _end(self, names: tuple[str, str, str], *next_starts: str) -> None:
        """Close a phase at the start of the first of ``next_starts`` that happened."""
        start, ended_at, _ = names
        if start in self.fields and ended_at not in self.fields:
            self._finish(names, self._first(*next_starts))

    def _end_open_phases(self, last: str) -> None:
        """Close each of rewrite ... header_filter still open at the next that started, else
        at ``last``, as Kong's body_filter and log phases do."""
        fields = self.fields
        for names, later_starts in _CHAINED:
            if names[0] in fields and names[1] not in fields:
                self._finish(names, self._first(*later_starts, last))

    def _finish(self, names: tuple[str, str, str], ended_at: int) -> None:
        start, ended, took = names
        self.fields[ended] = ended_at
        self.fields[took] = ended_at - int(self.fields[start])

    def processing_start(self, started_at: float) -> None:
        """The request was received (``ngx.req.start_time()``)."""
        self.fields.setdefault(_PROCESSING_START, milliseconds(started_at))

    def rewrite_start(self, now: float) -> None:
        self.fields.setdefault(_REWRITE[0], milliseconds(now))

    def rewrite_end(self, now: float) -> None:
        """The rewrite phase ran to its end (not when a plugin ended the request in it)."""
        self._finish(_REWRITE, milliseconds(now))

    def access_start(self, now: float) -> None:
        """Before routing: Kong's router runs at the start of its access phase."""
        if _ACCESS[0] not in self.fields:
            self.fields[_ACCESS[0]] = milliseconds(now)
            self._end(_REWRITE, _ACCESS[0])

    def access_end(self, now: float, proxying: bool) -> None:
        """The access phase is over: the request goes to the upstream, or is answered here."""
        self._finish(_ACCESS, milliseconds(now))
        if proxying:
            self.fields["KONG_PROXIED"] = True
        else:
            self.fields["KONG_RESPONSE_LATENCY"] = (
                int(self.fields[_ACCESS[1]]) - int(self.fields[_PROCESSING_START]))

    def balancer(self, at: float) -> None:
        """The upstream call started at ``at`` (and reached the upstream, or failed trying)."""
        if _BALANCER[0] not in self.fields:
            self.fields[_BALANCER[0]] = milliseconds(at)
            self._end(_REWRITE, _ACCESS[0], _BALANCER[0])
            self._end(_ACCESS, _BALANCER[0])
        self._finish(_BALANCER, milliseconds(at))
        self.fields["KONG_PROXY_LATENCY"] = (
            int(self.fields[_BALANCER[1]]) - int(self.fields[_PROCESSING_START]))

    def header_filter_start(self, now: float) -> None:
        """The response head is ready (the upstream's, a plugin's or kongish's own)."""
        fields = self.fields
        if _HEADER_FILTER[0] not in fields:
            fields[_HEADER_FILTER[0]] = milliseconds(now)
            self._end(_REWRITE, _BALANCER[0], _ACCESS[0], _HEADER_FILTER[0])
            self._end(_ACCESS, _BALANCER[0], _HEADER_FILTER[0])
            self._end(_BALANCER, _HEADER_FILTER[0])
        start = int(fields[_HEADER_FILTER[0]])
        processing_start = int(fields[_PROCESSING_START])
        if fields.get("KONG_PROXIED"):
            if "KONG_WAITING_TIME" not in fields:
                fields["KONG_WAITING_TIME"] = start - self._first(_BALANCER[1], _ACCESS[1])
            if "KONG_PROXY_LATENCY" not in fields:
                fields["KONG_PROXY_LATENCY"] = start - processing_start
        elif "KONG_RESPONSE_LATENCY" not in fields:
            fields["KONG_RESPONSE_LATENCY"] = start - processing_start

    def header_filter_end(self, now: float) -> None:
        self._finish(_HEADER_FILTER, milliseconds(now))

    def body_filter_start(self, now: float) -> None:
        if _BODY_FILTER[0] not in self.fields:
            self.fields[_BODY_FILTER[0]] = milliseconds(now)
            self._end_open_phases(_BODY_FILTER[0])

    def body_filter_end(self, now: float) -> None:
        """The last body chunk went through body_filter."""
        self._finish(_BODY_FILTER, milliseconds(now))
        if self.fields.get("KONG_PROXIED"):
            self.fields["KONG_RECEIVE_TIME"] = int(self.fields[_BODY_FILTER[1]]) - self._first(
                _HEADER_FILTER[0], _BALANCER[1], _BALANCER[0], _ACCESS[1])

    def log_start(self, now: float) -> None:
        fields = self.fields
        if _LOG[0] in fields:
            return
        fields[_LOG[0]] = milliseconds(now)
        # Kong's log phase reads ctx.BODY_FILTER_START (sic), always nil, where the
        # other phases read KONG_BODY_FILTER_START; the same fallbacks are kept here.
        self._end_open_phases(_LOG[0])
        self._end(_BODY_FILTER, _LOG[0])
        if fields.get("KONG_PROXIED") and "KONG_WAITING_TIME" not in fields:
            fields["KONG_WAITING_TIME"] = int(fields[_LOG[0]]) - self._first(_BALANCER[1], _ACCESS[1])
