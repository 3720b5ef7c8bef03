"""The alerting side of observability (docs/specs/observability.md): promtool accepts the
alert rules, their unit tests and the example scrape config; every metric an alert or a
dashboard panel queries is one that /metrics exports; every alert links to a runbook
paragraph that exists, and every metric of the spec has one."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml
from django.test import Client, override_settings

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "ops" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
SCRAPE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "nexus.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
SPEC = ROOT / "docs" / "specs" / "observability.md"

RUNBOOK_LINK = "docs/runbook.md#"
SEVERITIES = {"page", "ticket"}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
# Series Prometheus makes itself for every target, not exported by the app.
SCRAPE_SERIES = {"up"}
SCRAPE_JOB = "nexus"

# PromQL string literals (label values), removed before looking for metric names.
_PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:$])(nexus_[a-z0-9_]+|django_[a-z0-9_]+|up)(?![A-Za-z0-9_:])")
_GRAFANA_VARIABLE = re.compile(r"\$__[a-z_]+|\$\{__[a-z_]+\}")


# --- What the files say --------------------------------------------------------------------


@cache
def _alert_rules() -> tuple[dict, ...]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return tuple(rule for group in groups for rule in group["rules"] if "alert" in rule)


def _alert(name: str) -> dict:
    return next(rule for rule in _alert_rules() if rule["alert"] == name)


@cache
def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _dashboard_panels() -> list[dict]:
    panels = []
    for panel in _dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row keeps its panels inside
    return panels


def _dashboard_queries() -> list[tuple[str, str]]:
    """(where, expr) for every target of every panel."""
    return [
        (f"nexus.json panel {panel['title']!r} target {target.get('refId', '?')}", target["expr"])
        for panel in _dashboard_panels()
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def _alert_queries() -> list[tuple[str, str]]:
    return [(f"alerts.yml {rule['alert']}", rule["expr"]) for rule in _alert_rules()]


def metric_names(expr: str) -> set[str]:
    """The nexus_*, django_* and up names a PromQL expression reads."""
    return set(_METRIC_NAME.findall(_PROMQL_STRING.sub('""', expr)))


@cache
def _queried_metrics() -> dict[str, tuple[str, ...]]:
    """Metric name -> where it is queried."""
    where: dict[str, list[str]] = {}
    for place, expr in _alert_queries() + _dashboard_queries():
        for name in metric_names(expr):
            where.setdefault(name, []).append(place)
    return {name: tuple(places) for name, places in sorted(where.items())}


@cache
def _spec_metrics() -> dict[str, str]:
    """Metric name -> type, from the spec's two metric tables."""
    rows = re.findall(r"^\| `(nexus_[a-z0-9_]+)` \| (\w+) \|", SPEC.read_text(), flags=re.MULTILINE)
    return dict(rows)


@cache
def _spec_alerts() -> tuple[str, ...]:
    return tuple(re.findall(r"^\| `(Nexus[A-Za-z0-9]+)` \|", SPEC.read_text(), flags=re.MULTILINE))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation other than
    hyphens, underscores and spaces dropped, spaces made hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _headings(level: str, text: str) -> list[str]:
    return re.findall(rf"^{level} (.+?)\s*$", text, flags=re.MULTILINE)


@cache
def _runbook_anchors() -> frozenset[str]:
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE):
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        anchors.add(slug if count == 0 else f"{slug}-{count}")  # GitHub numbers repeats
        seen[slug] = count + 1
    return frozenset(anchors)


def _runbook_section(title: str) -> str:
    text = RUNBOOK.read_text()
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    return match.group(1) if match else ""


ALERT_NAMES = [rule["alert"] for rule in _alert_rules()]
QUERIED_APP_METRICS = [name for name in _queried_metrics() if name not in SCRAPE_SERIES]


# --- promtool ------------------------------------------------------------------------------


def _promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    executable = shutil.which("promtool")
    if executable is None:
        message = "promtool is missing: run `make prometheus-deps` (Debian's prometheus package)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.run([executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_alert_rules():
    result = _promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_alerts_pass():
    result = _promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_scrape_config(tmp_path):
    # check config opens the files the config names: the rules, and the token file, which is
    # a deployment secret (a stand-in here).
    shutil.copy(SCRAPE_CONFIG, tmp_path / SCRAPE_CONFIG.name)
    shutil.copy(ALERTS, tmp_path / ALERTS.name)
    (tmp_path / "metrics_token").write_text("stand-in\n")
    result = _promtool("check", "config", str(tmp_path / SCRAPE_CONFIG.name))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path):
    # promtool has no query checker; a recording rule per query has promtool parse it.
    rules = [
        {"record": f"nexus_dashboard:query_{index}", "expr": _GRAFANA_VARIABLE.sub("5m", expr)}
        for index, (_, expr) in enumerate(_dashboard_queries())
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# --- Alert rules ---------------------------------------------------------------------------


def test_the_alerts_are_those_of_the_spec():
    assert sorted(ALERT_NAMES) == sorted(_spec_alerts())


def test_no_alert_is_defined_twice():
    assert len(ALERT_NAMES) == len(set(ALERT_NAMES))


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_has_a_severity(name):
    assert _alert(name).get("labels", {}).get("severity") in SEVERITIES


@pytest.mark.parametrize("name", ALERT_NAMES)
@pytest.mark.parametrize("annotation", ["summary", "description", "runbook_url"])
def test_alert_has_annotation(name, annotation):
    assert _alert(name).get("annotations", {}).get(annotation, "").strip()


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_links_into_the_runbook(name):
    assert _alert(name)["annotations"]["runbook_url"].startswith(RUNBOOK_LINK)


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_runbook_anchor_is_a_runbook_heading(name):
    anchor = _alert(name)["annotations"]["runbook_url"].partition("#")[2]
    assert anchor in _runbook_anchors(), f"docs/runbook.md has no heading with anchor #{anchor}"


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_runbook_anchor_is_its_own_paragraph(name):
    assert _alert(name)["annotations"]["runbook_url"] == f"{RUNBOOK_LINK}{github_slug(name)}"


def test_no_live_workers_is_the_rule_the_live_prometheus_test_waits_for():
    rule = _alert("NexusNoLiveWorkers")
    assert " ".join(rule["expr"].split()) == "nexus_workers_alive == 0 and on() nexus_jobs_pending > 0"


def test_no_live_workers_waits_two_minutes():
    assert _alert("NexusNoLiveWorkers")["for"] == "2m"


def test_the_scrape_config_job_is_the_one_the_alerts_watch():
    jobs = [job["job_name"] for job in yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"]]
    assert jobs == [SCRAPE_JOB]


def test_up_is_only_queried_for_the_nexus_job():
    exprs = [expr for _, expr in _alert_queries() + _dashboard_queries() if "up" in metric_names(expr)]
    selectors = {
        match.group(1)
        for expr in exprs
        for match in re.finditer(r"(?<![A-Za-z0-9_:])up(?![A-Za-z0-9_:])(\{[^}]*\})?", expr)
    }
    assert selectors == {f'{{job="{SCRAPE_JOB}"}}'}


# --- Alert unit tests (alerts_test.yml) ----------------------------------------------------


@cache
def _rule_test_cases() -> tuple[dict, ...]:
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    return tuple(case for test in tests for case in test.get("alert_rule_test", []))


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_has_a_unit_test_where_it_fires(name):
    assert any(case["alertname"] == name and case.get("exp_alerts") for case in _rule_test_cases())


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_has_a_unit_test_where_it_does_not_fire(name):
    assert any(case["alertname"] == name and case.get("exp_alerts") == [] for case in _rule_test_cases())


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_unit_tests_expect_its_annotations(name):
    """A firing case that named no annotations would pass whatever the rule's text says."""
    firing = [case for case in _rule_test_cases() if case["alertname"] == name and case.get("exp_alerts")]
    assert all(alert.get("exp_annotations") for case in firing for alert in case["exp_alerts"])


# --- Metric names: queried == exported ------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    names: frozenset[str]
    histograms: frozenset[str]

    def has(self, name: str) -> bool:
        if name in self.names:
            return True
        base, suffix = next(
            ((name.removesuffix(s), s) for s in HISTOGRAM_SUFFIXES if name.endswith(s)), (name, "")
        )
        return bool(suffix) and base in self.histograms


def parse_exposition(text: str) -> Exported:
    """Names from the `# TYPE <name> <type>` lines. prometheus_client names a counter's TYPE
    line with or without `_total` depending on its version, while its samples always end in
    `_total`; both spellings are accepted for counters."""
    names, histograms = set(), set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE):
        names.add(name)
        if kind == "counter":
            names.add(name if name.endswith("_total") else f"{name}_total")
        elif kind == "histogram":
            histograms.add(name)
    return Exported(frozenset(names), frozenset(histograms))


@pytest.fixture(scope="module")
def metrics_scrape(django_db_setup, django_db_blocker):
    """One scrape of /metrics, as Prometheus makes it, shared by the module's tests. It only
    reads committed data (the scrape-time series read every organisation's schema). The ETL
    scheduler has dispatched once before it, as on any running system: its gauge has no
    series until then. Fresh readings, not another test's cached ones."""
    from etl.scheduler_stats import record_dispatch

    record_dispatch()
    with (
        django_db_blocker.unblock(),
        override_settings(METRICS_TOKEN="t", METRICS_LIVE_CACHE_SECONDS=0),
    ):
        return Client().get("/metrics", HTTP_AUTHORIZATION="Bearer t")


@pytest.fixture(scope="module")
def exported(metrics_scrape) -> Exported:
    return parse_exposition(metrics_scrape.content.decode())


def test_metrics_scrape_answers(metrics_scrape):
    assert metrics_scrape.status_code == 200


@pytest.mark.parametrize("name", QUERIED_APP_METRICS)
def test_queried_metric_is_exported(name, exported):
    where = ", ".join(_queried_metrics()[name])
    assert exported.has(name), f"{name} (queried in {where}) is not exported by /metrics"


def test_the_queries_read_metrics():
    # The name check above must have something to check.
    assert {"nexus_workers_alive", "django_http_responses_total_by_status_total"} <= set(QUERIED_APP_METRICS)


def test_the_exposition_parser_reads_counters_with_and_without_total():
    exported = parse_exposition("# TYPE a_total counter\n# TYPE b counter\n# TYPE h histogram\n")
    assert {"a_total", "b", "b_total", "h"} <= exported.names


def test_the_exposition_parser_accepts_histogram_series_only_for_histograms():
    exported = parse_exposition("# TYPE h histogram\n# TYPE g gauge\n")
    assert (exported.has("h_bucket"), exported.has("h_count"), exported.has("g_sum")) == (True, True, False)


def test_metric_names_ignore_label_values_and_functions():
    expr = 'sum by (task) (rate(nexus_x_total{task="django_y"}[5m])) and on() up{job="nexus"} > 0'
    assert metric_names(expr) == {"nexus_x_total", "up"}


# --- Dashboard ------------------------------------------------------------------------------


def test_dashboard_schema_is_current():
    assert _dashboard()["schemaVersion"] >= 36


def test_dashboard_has_a_prometheus_datasource_variable():
    variables = _dashboard()["templating"]["list"]
    assert any(v["type"] == "datasource" and v["query"] == "prometheus" for v in variables)


def test_dashboard_panels_use_the_datasource_variable():
    datasources = {
        json.dumps(target.get("datasource", panel.get("datasource")), sort_keys=True)
        for panel in _dashboard_panels()
        if panel["type"] != "row"
        for target in panel["targets"]
    }
    assert datasources == {json.dumps({"type": "prometheus", "uid": "${datasource}"}, sort_keys=True)}


def test_dashboard_panel_ids_are_unique():
    ids = [panel["id"] for panel in _dashboard_panels()]
    assert len(ids) == len(set(ids))


def test_every_dashboard_panel_has_a_query():
    empty = [p["title"] for p in _dashboard_panels() if p["type"] != "row" and not p.get("targets")]
    assert empty == []


def _without_histogram_suffix(name: str, histograms: set[str]) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in histograms:
            return name.removesuffix(suffix)
    return name


@pytest.mark.parametrize("name", sorted(_spec_metrics()))
def test_spec_metric_is_on_the_dashboard(name):
    histograms = {metric for metric, kind in _spec_metrics().items() if kind == "histogram"}
    on_dashboard = {
        _without_histogram_suffix(metric, histograms)
        for _, expr in _dashboard_queries()
        for metric in metric_names(expr)
    }
    assert name in on_dashboard, f"no panel of nexus.json queries {name}"


# --- Runbook --------------------------------------------------------------------------------


def test_github_slug_of_a_heading():
    assert github_slug("NexusHighLatencyP99 (p99 > 2 s)!") == "nexushighlatencyp99-p99--2-s"


@pytest.mark.parametrize("name", sorted(_spec_metrics()))
def test_spec_metric_has_a_runbook_paragraph(name):
    assert name in _headings("###", _runbook_section("Metrics"))


@pytest.mark.parametrize("name", _spec_alerts())
def test_spec_alert_has_a_runbook_paragraph(name):
    assert name in _headings("###", _runbook_section("Alerts"))
