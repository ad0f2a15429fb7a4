"""``GET /metrics``: the serverless functions' counts in Prometheus's text format.

A master sums its own counts and each worker's (``IWorkerReports.metrics``), of the
functions its configuration has (a worker that has not yet caught up with a deletion
still tells the deleted plugin's); a single process serves its own. The Admin API and
the status listener (``status_listen``) both serve it.
"""
from __future__ import annotations

from typing import Any

from kongish.admin.call import AdminCall
from kongish.admin.dispatch import Endpoint
from kongish.admin.respond import Document
from kongish.metrics import CONTENT_TYPE, exposition, merge_snapshots


async def metrics(call: AdminCall) -> tuple[int, Any]:
    node = call.node
    snapshots = [node.metrics.snapshot()]
    if node.workers is not None:
        snapshots += await node.workers.metrics()
    merged = merge_snapshots(snapshots, node.metrics.live)
    return 200, Document(CONTENT_TYPE.encode("ascii"), exposition(merged))


def metrics_endpoints() -> list[Endpoint]:
    return [Endpoint("/metrics", {"GET": metrics})]
