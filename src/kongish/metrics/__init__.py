"""Prometheus metrics of a node's serverless functions (``/metrics``).

``functions.py`` counts what each function's runs cost, as the Lua engine reports
them (``kongish.lua.cost``), in snapshots that a master sums over its workers, and
writes them in Prometheus's text format; the counts of functions the configuration no
longer has are dropped (``FunctionMetrics.follow``). It builds on ``lua.cost`` alone: the node
attaches it to its engine, the Admin API and the status listener serve it.
"""
from __future__ import annotations

from kongish.metrics.functions import (
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    FunctionCounts,
    FunctionMetrics,
    LiveFunctions,
    Snapshot,
    exposition,
    merge_snapshots,
)

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "FunctionCounts", "FunctionMetrics", "LiveFunctions",
           "Snapshot", "exposition", "merge_snapshots"]
