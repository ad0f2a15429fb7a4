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

What a request pays is one clock reading kept per point of the flow: the fields are
derived from the readings (replayed in the order they were taken, by
:class:`_KongFields`) only when something reads them, Lua's ``ngx.ctx`` or a test.
Kong's latency headers, sent on every answer, are computed from the three readings
they need, with the same results (``tests/test_proxy_timing.py`` holds the two to it).
"""
from __future__ import annotations

import math
from collections.abc import Callable

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
    """A clock reading in whole milliseconds, as Kong's ``ngx.now() * 1000``.

    A reading a float's error short of the next millisecond (``1.001 * 1000`` is
    ``1000.9999999999999``) counts as that millisecond: what ``floor(round(x, 6))``
    gives, without ``round``'s decimal rounding, three times per proxied request.
    """
    scaled = seconds * 1000
    whole = math.floor(scaled)
    return whole + 1 if scaled - whole >= 0.9999995 else whole


#: The points of the flow, in the order of _KongFields's methods that a reading replays.
(_PROCESSING_START_AT, _REWRITE_START_AT, _REWRITE_END_AT, _ACCESS_START_AT, _ANSWERED_AT, _PROXIED_AT,
 _BALANCER_AT, _HEADER_FILTER_START_AT, _HEADER_FILTER_END_AT, _BODY_FILTER_START_AT, _BODY_FILTER_END_AT,
 _LOG_START_AT) = range(12)


@attrs.define(slots=True)
class KongTimings:
    """The clock readings of one request, and the ``KONG_*`` fields derived from them."""

    _readings: list[tuple[int, float]] = attrs.Factory(list)
    #: The fields as of the first ``n`` readings: (n, fields).
    _derived: tuple[int, dict[str, TimingValue]] = (0, {})
    #: What ``changed()`` last handed out.
    _delivered: dict[str, TimingValue] = attrs.Factory(dict)
    # What Kong's latency headers need, kept apart so that sending them derives nothing.
    _processing_start: float | None = None
    #: When the access phase last ended with the request answered, not proxied.
    _answered_at: float | None = None
    _balanced_at: float | None = None
    _header_filter_start: float | None = None
    #: Whether the request went to the upstream (Kong's ``KONG_PROXIED``).
    proxied: bool = False

    @property
    def fields(self) -> dict[str, TimingValue]:
        """Kong's fields as of now (derived afresh after each new reading)."""
        readings = self._readings
        count, fields = self._derived
        if count != len(readings):
            fields = _KongFields.replay(readings)
            self._derived = (len(readings), fields)
        return fields

    def __getitem__(self, name: str) -> TimingValue | None:
        return self.fields.get(name)

    def changed(self) -> dict[str, TimingValue]:
        """The fields set or changed since the last call."""
        fresh = {name: value for name, value in self.fields.items() if self._delivered.get(name) != value}
        self._delivered.update(fresh)
        return fresh

    def response_latency(self) -> int:
        """``KONG_RESPONSE_LATENCY`` of an answered request, once header_filter has started."""
        answered = self._answered_at if self._answered_at is not None else self._header_filter_start
        if answered is None or self._processing_start is None:
            return 0
        return milliseconds(answered) - milliseconds(self._processing_start)

    def proxy_latencies(self) -> tuple[int, int]:
        """``KONG_WAITING_TIME`` and ``KONG_PROXY_LATENCY`` of a proxied request, once
        header_filter has started."""
        balanced, started = self._balanced_at, self._processing_start
        if balanced is None or started is None or self._header_filter_start is None:
            return 0, 0
        balanced_ms = milliseconds(balanced)
        return milliseconds(self._header_filter_start) - balanced_ms, balanced_ms - milliseconds(started)

    def processing_start(self, started_at: float) -> None:
        """The request was received (``ngx.req.start_time()``)."""
        self._readings.append((_PROCESSING_START_AT, started_at))
        if self._processing_start is None:
            self._processing_start = started_at

    def rewrite_start(self, now: float) -> None:
        self._readings.append((_REWRITE_START_AT, now))

    def rewrite_end(self, now: float) -> None:
        """The rewrite phase ran to its end (not when a plugin ended the request in it)."""
        self._readings.append((_REWRITE_END_AT, now))

    def access_start(self, now: float) -> None:
        """Before routing: Kong's router runs at the start of its access phase."""
        self._readings.append((_ACCESS_START_AT, now))

    def access_end(self, now: float, proxying: bool) -> None:
        """The access phase is over: the request goes to the upstream, or is answered here."""
        if proxying:
            self._readings.append((_PROXIED_AT, now))
            self.proxied = True
        else:
            self._readings.append((_ANSWERED_AT, now))
            self._answered_at = now

    def balancer(self, at: float) -> None:
        """The upstream call started at ``at`` (and reached the upstream, or failed trying)."""
        self._readings.append((_BALANCER_AT, at))
        self._balanced_at = at

    def header_filter_start(self, now: float) -> None:
        """The response head is ready (the upstream's, a plugin's or kongish's own)."""
        self._readings.append((_HEADER_FILTER_START_AT, now))
        if self._header_filter_start is None:
            self._header_filter_start = now

    def header_filter_end(self, now: float) -> None:
        self._readings.append((_HEADER_FILTER_END_AT, now))

    def body_filter_start(self, now: float) -> None:
        self._readings.append((_BODY_FILTER_START_AT, now))

    def body_filter_end(self, now: float) -> None:
        """The last body chunk went through body_filter."""
        self._readings.append((_BODY_FILTER_END_AT, now))

    def log_start(self, now: float) -> None:
        self._readings.append((_LOG_START_AT, now))


@attrs.define
class _KongFields:
    """Kong's fields, set reading by reading with Kong's rules."""

    fields: dict[str, TimingValue] = attrs.Factory(dict)

    @classmethod
    def replay(cls, readings: list[tuple[int, float]]) -> dict[str, TimingValue]:
        derived = cls()
        steps = derived._steps()
        for point, at in readings:
            steps[point](at)
        return derived.fields

    def _steps(self) -> tuple[Callable[[float], None], ...]:
        """Each point's rule, indexed as the readings name them."""
        return (self.processing_start, self.rewrite_start, self.rewrite_end, self.access_start,
                lambda at: self.access_end(at, proxying=False), lambda at: self.access_end(at, proxying=True),
                self.balancer, self.header_filter_start, self.header_filter_end, self.body_filter_start,
                self.body_filter_end, self.log_start)

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
