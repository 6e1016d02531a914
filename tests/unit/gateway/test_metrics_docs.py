"""docs/metrics.md and the Grafana dashboard name exactly the metrics the gateway exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

from gateway import metrics

DOCS = Path(__file__).resolve().parents[3] / "docs"
NAME = re.compile(r"\bverdict_[a-z_]+\b")
SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def exposed() -> set[str]:
    """Every metric family the gateway defines: its workers' and the scrape-time gauges."""
    families = {family.name for family in REGISTRY.collect() if family.name.startswith("verdict_")}
    collector = metrics._DatabaseCollector(metrics.DatabaseGauges(witnessing=True), per_tenant=False)
    return families | {family.name for family in collector.collect()}


def family_of(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def test_the_metrics_page_lists_every_metric_and_no_other():
    documented = {family_of(name) for name in NAME.findall((DOCS / "metrics.md").read_text())}
    assert documented == exposed()


def test_the_dashboard_queries_only_metrics_that_exist():
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    queried = {
        family_of(name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in NAME.findall(target["expr"])
    }
    assert queried and queried <= exposed()


def test_the_admin_cli_pages_as_far_as_the_api_does():
    from gateway import cli_admin
    from gateway.services.actions import MAX_PAGE

    assert cli_admin.MAX_PAGE == MAX_PAGE
