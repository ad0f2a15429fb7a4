"""Per-function counts of serverless runs, their snapshots, and their Prometheus exposition.

``FunctionMetrics.observe`` is a ``CostObserver``: the node's Lua engine calls it
with each finished run of one function (``kongish.lua.cost.FunctionCost``), and it
counts, per plugin name, plugin id, phase and function index: invocations, errors
by kind, a histogram of wall-clock latency, instructions and CPU seconds.

The counts follow the configuration: ``FunctionMetrics.follow`` is told the functions
the node's plugin map has (``LiveFunctions``) at each rebuild, and drops the counts of
every other function (a plugin deleted or disabled, an index its phase no longer has);
a run of such a function that ends later (it waited in ``ngx.sleep``, a timer its plugin
started) is not counted, so a dropped series does not come back. A function whose code
changed at the same plugin id, phase and index keeps its counts: its series goes on.

A ``Snapshot`` is those counts as JSON, which travels over a worker's control
channel; ``merge_snapshots`` sums several (a master's and its workers'), and
``exposition`` writes one in Prometheus's text format with ``prometheus_client``,
through a ``CollectorRegistry`` of its own (never the process-wide default one, so
that several nodes in one process do not mix their counts).
"""
from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from kongish.lua.cost import ERROR_KINDS, OUTBOUND_TIMEOUT, TIMER_PHASE, FunctionCost, FunctionId
from kongish.runloop.context import DRY_RUN_SLOT

if TYPE_CHECKING:
    from kongish.runloop.context import RequestContext

#: The Content-Type of ``exposition``'s text: Prometheus's text format, as ``prometheus_client``
#: writes it (``CONTENT_TYPE_LATEST``).
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Upper bounds (seconds) of the latency histogram's buckets; +Inf follows. From half a
#: millisecond (a function that sets a header) to 10 s (one waiting on outbound calls).
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                      1.0, 2.5, 5.0, 10.0)

#: Label names of every metric, in the order ``FunctionCounts.labels`` gives their values.
LABELS = ("plugin", "plugin_id", "phase", "function")

#: What ``FunctionMetrics.snapshot`` gives: ``{"buckets": [...], "functions": [...]}``, JSON-able.
Snapshot = dict[str, Any]


@attrs.define
class FunctionCounts:
    """The counts of one function: since the process started, or summed over processes."""

    function: FunctionId
    invocations: int = 0
    #: Runs ended by each error kind; ``outbound_timeout`` counts outbound calls that timed out.
    errors: dict[str, int] = attrs.Factory(lambda: dict.fromkeys(ERROR_KINDS, 0))
    #: Runs per latency bucket, not cumulative: one more than ``LATENCY_BUCKETS`` (the last is +Inf).
    latency: list[int] = attrs.Factory(lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    instructions: int = 0
    cpu_seconds: float = 0.0

    def add(self, cost: FunctionCost) -> None:
        self.invocations += 1
        if cost.error is not None and cost.error != OUTBOUND_TIMEOUT:  # those come from the count below
            self.errors[cost.error] = self.errors.get(cost.error, 0) + 1
        if cost.outbound_timeouts:
            self.errors[OUTBOUND_TIMEOUT] += cost.outbound_timeouts
        self.latency[bisect.bisect_left(LATENCY_BUCKETS, cost.wall_seconds)] += 1
        self.latency_sum += cost.wall_seconds
        self.instructions += cost.instructions
        self.cpu_seconds += cost.cpu_seconds

    def merge(self, other: FunctionCounts) -> None:
        self.invocations += other.invocations
        for kind, count in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + count
        self.latency = [mine + theirs for mine, theirs in zip(self.latency, other.latency, strict=True)]
        self.latency_sum += other.latency_sum
        self.instructions += other.instructions
        self.cpu_seconds += other.cpu_seconds

    @property
    def labels(self) -> list[str]:
        function = self.function
        return [function.plugin_name, function.plugin_id, function.phase, str(function.index)]

    def as_json(self) -> dict[str, Any]:
        function = self.function
        return {"plugin": function.plugin_name, "plugin_id": function.plugin_id, "phase": function.phase,
                "function": function.index, "invocations": self.invocations, "errors": dict(self.errors),
                "latency": list(self.latency), "latency_sum": self.latency_sum,
                "instructions": self.instructions, "cpu_seconds": self.cpu_seconds}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> FunctionCounts:
        function = FunctionId(value["plugin"], value["plugin_id"], value["phase"], int(value["function"]))
        return cls(function, int(value["invocations"]), {**dict.fromkeys(ERROR_KINDS, 0), **value["errors"]},
                   [int(count) for count in value["latency"]], float(value["latency_sum"]),
                   int(value["instructions"]), float(value["cpu_seconds"]))


@attrs.frozen
class LiveFunctions:
    """The functions a node's configuration has now: those whose counts it keeps.

    A timer's runs count under the plugin entity whose function started it (phase
    ``timer``): they are kept while that entity is configured. A timer started outside
    any plugin's function (plugin id ``""``) is always kept.
    """

    functions: frozenset[FunctionId]
    #: (plugin name, plugin id) of each entity that has a function in ``functions``.
    plugins: frozenset[tuple[str, str]]

    @classmethod
    def of(cls, functions: Iterable[FunctionId]) -> LiveFunctions:
        live = frozenset(functions)
        return cls(live, frozenset((function.plugin_name, function.plugin_id) for function in live))

    def __contains__(self, function: object) -> bool:
        if not isinstance(function, FunctionId):
            return False
        if function.phase == TIMER_PHASE:
            return not function.plugin_id or (function.plugin_name, function.plugin_id) in self.plugins
        return function in self.functions


@attrs.define(eq=False)
class FunctionMetrics:
    """One process's counts, fed by its engine: ``engine.observers.append(metrics.observe)``.

    ``registry`` is this node's own ``CollectorRegistry``, over the live counts, for a
    program that embeds kongish and serves it with ``prometheus_client``'s tools.
    """

    functions: dict[FunctionId, FunctionCounts] = attrs.Factory(dict)
    #: The functions whose counts are kept (``follow``); None, until the first: every one's.
    live: LiveFunctions | None = None
    registry: CollectorRegistry = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.registry = _registry(self.snapshot)

    def observe(self, context: RequestContext | None, cost: FunctionCost) -> None:
        if context is not None and DRY_RUN_SLOT in context.slots:
            return  # a dry run on the Admin API is not traffic
        counts = self.functions.get(cost.function)
        if counts is None:
            live = self.live
            if live is not None and cost.function not in live:
                return  # its plugin was deleted, or its phase changed, while it ran: its series is gone
            counts = self.functions[cost.function] = FunctionCounts(cost.function)
        counts.add(cost)

    def follow(self, live: LiveFunctions) -> None:
        """Count ``live`` functions only, from now on, and drop the counts of the others: a
        node's plugin map was rebuilt. The series of a dropped function leave the exposition;
        one configured again later starts from zero, which Prometheus reads as a reset."""
        self.live = live
        for function in [function for function in self.functions if function not in live]:
            del self.functions[function]

    def snapshot(self) -> Snapshot:
        return {"buckets": list(LATENCY_BUCKETS),
                "functions": [counts.as_json() for counts in self.functions.values()]}


def merge_snapshots(snapshots: Iterable[Snapshot], live: LiveFunctions | None = None) -> Snapshot:
    """The sums of several processes' snapshots, function by function; of ``live`` functions
    only, when given (a master's, whose configuration its workers follow: a worker that has
    not yet caught up with a deletion, or that ended before it, still tells the dead ones)."""
    merged: dict[FunctionId, FunctionCounts] = {}
    for snapshot in snapshots:
        if [float(bound) for bound in snapshot["buckets"]] != list(LATENCY_BUCKETS):
            raise ValueError(f"latency buckets differ: {snapshot['buckets']!r}")
        for value in snapshot["functions"]:
            counts = FunctionCounts.from_json(value)
            if live is not None and counts.function not in live:
                continue
            if counts.function in merged:
                merged[counts.function].merge(counts)
            else:
                merged[counts.function] = counts
    return {"buckets": list(LATENCY_BUCKETS), "functions": [counts.as_json() for counts in merged.values()]}


def exposition(snapshot: Snapshot) -> bytes:
    """``snapshot`` in Prometheus's text format (``CONTENT_TYPE``)."""
    return generate_latest(_registry(lambda: snapshot))


def _registry(snapshot: Callable[[], Snapshot]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return registry


@attrs.define(eq=False)
class _SnapshotCollector(Collector):
    """Yields the metric families of the snapshot ``source`` gives at each collection."""

    source: Callable[[], Snapshot]

    def collect(self) -> Iterator[Metric]:
        functions = sorted((FunctionCounts.from_json(value) for value in self.source()["functions"]),
                           key=lambda counts: counts.labels)
        yield from families(functions)


def families(functions: Sequence[FunctionCounts]) -> Iterator[Metric]:
    """The ``kongish_function_*`` families of ``functions``' counts."""
    invocations = CounterMetricFamily("kongish_function_invocations", "Runs of a serverless function.",
                                      labels=LABELS)
    errors = CounterMetricFamily(
        "kongish_function_errors", "Runs of a serverless function ended by an error, by kind "
        "(outbound_timeout: its outbound HTTP calls that timed out).", labels=[*LABELS, "kind"])
    latency = HistogramMetricFamily(
        "kongish_function_latency_seconds", "Wall-clock seconds of a function's run, waits included.",
        labels=LABELS)
    instructions = CounterMetricFamily(
        "kongish_function_instructions", "Lua VM instructions a function ran (counted in steps of 1000).",
        labels=LABELS)
    cpu = CounterMetricFamily("kongish_function_cpu_seconds", "CPU seconds a function's runs took.",
                              labels=LABELS)
    bounds = [*(floatToGoString(bound) for bound in LATENCY_BUCKETS), "+Inf"]  # as its Histogram writes them
    for counts in functions:
        labels = counts.labels
        invocations.add_metric(labels, counts.invocations)
        for kind in sorted(counts.errors):
            errors.add_metric([*labels, kind], counts.errors[kind])
        cumulative, buckets = 0, []
        for bound, count in zip(bounds, counts.latency, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        latency.add_metric(labels, buckets, counts.latency_sum)
        instructions.add_metric(labels, counts.instructions)
        cpu.add_metric(labels, counts.cpu_seconds)
    yield from (invocations, errors, latency, instructions, cpu)
