"""deploy/grafana/herald-dashboard.json refers only to metrics a real replica exports (issue 15, item 8).

A ``herald serve`` is scraped for real; every metric name and grouping label in every PromQL expression of the
dashboard (panels and template variables) must be in that scrape. A renamed or removed metric fails here
instead of leaving an empty panel."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.servers import Herald

pytestmark = [pytest.mark.e2e]

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "herald-dashboard.json"
# Labels Prometheus attaches to every scraped series; `le` is a histogram bucket's bound.
TARGET_LABELS = {"job", "instance", "le"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", re.M)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, set[str]]]:
    """Metric name -> label names, from a real replica's /metrics."""
    herald = Herald(tmp_path_factory.mktemp("grafana"), "memory://", "grafana").start()
    try:
        # One publish, so that every series with a value is there too.
        httpx.post(f"{herald.http}/api/chat/lobby/messages", json={"text": "hi"}, timeout=5).raise_for_status()
        text = httpx.get(f"{herald.http}/metrics", timeout=5).text
    finally:
        herald.stop()
    series: dict[str, set[str]] = {}
    for name, labels in SAMPLE.findall(text):
        series.setdefault(name, set()).update(re.findall(r"(\w+)=\"", labels or ""))
    yield series


def expressions(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["definition"])
    return found


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings (label values, regexes)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(?:by|without)\s*\([^)]*\)", " ", text)  # grouping labels
    text = re.sub(r"label_values\(([^,]*),[^)]*\)", r"\1", text)  # Grafana: label_values(metric, label)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # dashboard variables
    names = set(re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text))
    return names - PROMQL_WORDS


def grouping_labels(expr: str) -> set[str]:
    labels = {
        label.strip() for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr) for label in group.split(",")
    }
    labels |= set(re.findall(r"label_values\([^,]*,\s*(\w+)\)", expr))
    return labels


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_every_metric_in_the_dashboard_is_exported(dashboard: dict[str, Any], scraped: dict[str, set[str]]) -> None:
    exprs = expressions(dashboard)
    assert len(exprs) >= 10
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        missing = names - scraped.keys()
        assert not missing, f"{expr!r} refers to {missing}, which /metrics does not export"


def test_every_grouping_label_exists_on_its_metrics(dashboard: dict[str, Any], scraped: dict[str, set[str]]) -> None:
    for expr in expressions(dashboard):
        known = TARGET_LABELS.union(*(scraped[name] for name in metric_names(expr)))
        assert grouping_labels(expr) <= known, expr


def test_every_exported_metric_is_on_the_dashboard(dashboard: dict[str, Any], scraped: dict[str, set[str]]) -> None:
    shown = set().union(*(metric_names(expr) for expr in expressions(dashboard)))
    families = {re.sub(r"_(bucket|sum|count|created)$", "", name) for name in scraped if name.startswith("herald_")}
    missing = {family for family in families if not any(name.startswith(family) for name in shown)}
    assert not missing, f"exported but not on the dashboard: {sorted(missing)}"


def test_the_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["title"] == "Herald"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= variables
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel.get("description"), panel["title"]
