"""`GET /metrics`: Prometheus text for the operator's scraper (gateway.metrics)."""

from __future__ import annotations

import logging
import time

from litestar import Controller, Response, get
from litestar.datastructures import State

from gateway import metrics
from gateway.errors import AppError
from gateway.health import log_failure
from gateway.services.lifecycle import PENDING

log = logging.getLogger("verdict.metrics")


class MetricsController(Controller):
    path = "/metrics"
    tags = ["operations"]

    @get("/", media_type=metrics.CONTENT_TYPE_LATEST)
    async def scrape(self, state: State) -> Response[bytes]:
        """Every worker's counters and histograms (Prometheus text format 0.0.4), and gauges read
        from the database now. The admin token or the metrics token (VERDICT_METRICS_TOKEN_FILE)
        may read it. A database that cannot be read makes `verdict_database_up` 0, not an error:
        an outage is when the metrics matter most."""
        metrics.sample_pool(getattr(state.db, "pool", None))
        try:
            witnessing = getattr(state, "witnessing", None) is not None
            gauges = await metrics.read_database_gauges(state.db, PENDING, time.time(), witnessing=witnessing)
        except (AppError, OSError):
            log_failure(log, "metrics: could not read the database gauges")
            gauges = metrics.DatabaseGauges(up=False)
        body = metrics.render(gauges, per_tenant=state.settings.metrics_tenant_labels)
        return Response(body, media_type=metrics.CONTENT_TYPE_LATEST)
