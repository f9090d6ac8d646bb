"""deploy/grafana: the dashboard's queries (they parse with promtool and name only metrics
README's metrics table documents) and the provisioning files against docker-compose.yml."""

from __future__ import annotations

import json
import re
import tempfile

import yaml

from .common import DASHBOARD, GRAFANA, Failed, fail_if, run
from .compose import load_compose
from .metrics import documented_metrics, series_metric

GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}


def promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, so promtool can parse it."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def dashboard_expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable's selector."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        if not match:
            raise Failed(f"variable {variable['name']}: cannot read query {query!r}")
        found.append((f"variable {variable['name']}", match.group(1)))
    return found


def check_grafana(promtool: str) -> str:
    problems = []
    dashboard = json.loads(DASHBOARD.read_text())
    kinds = documented_metrics()
    expressions = dashboard_expressions(dashboard)
    used = set()
    for where, expr in expressions:
        for series in set(re.findall(r"\b(kvstore_\w+)", expr)):
            metric = series_metric(series, kinds)
            if metric is None:
                problems.append(f"{where}: {series} is not a series of any metric in README's metrics table")
            else:
                used.add(metric)
        # Every selector must be one of kvstore's metrics.
        for name in re.findall(r"\b([a-zA-Z_:][\w:]*)\s*\{", expr):
            if not name.startswith("kvstore_"):
                problems.append(f"{where}: selects {name}, which kvstore does not export")
    for panel in dashboard["panels"]:
        if panel.get("type") != "row" and panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {panel['title']!r}: data source is not ${{datasource}}")
    required = {
        "kvstore_consumer_lag_records",
        "kvstore_write_wait_seconds",
        "kvstore_http_requests_total",
        "kvstore_topic_keys",
        "kvstore_topic_bytes",
    }
    if missing := required - used:
        problems.append(f"no panel shows {', '.join(sorted(missing))}")
    # promtool parses PromQL only in rule files: one recording rule per expression.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"kvstore_dashboard:expr_{i}", "expr": promql(expr)}
                    for i, (_, expr) in enumerate(expressions)
                ],
            }
        ]
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as file:
        yaml.safe_dump(rules, file)
        file.flush()
        result = run([promtool, "check", "rules", file.name])
    if result.returncode != 0:
        problems.append("PromQL does not parse:\n" + (result.stdout + result.stderr).strip())
    # Provisioning: the data source and the dashboards folder must match docker-compose.yml.
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/kvstore.yml").read_text())
    compose = load_compose()
    grafana_mounts = {
        str(v).split(":")[0]: str(v).split(":")[1] for v in compose["services"]["grafana"]["volumes"]
    }
    if providers["providers"][0]["options"]["path"] != grafana_mounts.get("./deploy/grafana/dashboards"):
        problems.append("the dashboard provider's path is not where docker-compose.yml mounts deploy/grafana/dashboards")
    url = datasources["datasources"][0]["url"]
    if url != "http://prometheus:9090":
        problems.append(f"the Prometheus data source points at {url}, not the compose service")
    fail_if(problems)
    return f"{len(expressions)} queries over {len(used)} metrics parse and exist"
