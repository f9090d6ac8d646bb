#!/usr/bin/env python3
"""The checks behind `make check-deploy` (run through scripts/check-deploy.sh, which installs
the tools). Each check prints `ok`, `FAIL` (with the reasons) or `skip`; any FAIL makes the
exit status 1. Rendered Helm manifests are left in target/check-deploy/ for inspection.

One check runs things for real: a Tansu broker, target/debug/kvstore (with the compose
replicas' auth settings) and a Prometheus scraping it with the compose job's token, on free
loopback ports, all stopped when the check ends. Each rendered Helm configuration is also
started, briefly, with throwaway files standing in for the Secrets it mounts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import helm_python as helm
import kubernetes_validate.utils as kv
import openapi_spec_validator
import yaml
from openapi_spec_validator import OpenAPIV31SpecValidator

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "kvstore"
RENDER_DIR = ROOT / "target" / "check-deploy"
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "kvstore.json"
OPENAPI = ROOT / "openapi" / "openapi.json"
# Kinds without a schema in kubernetes-validate (custom resources) that the chart may render.
CUSTOM_KINDS = {"ServiceMonitor"}
# The variables that give kvstore its HTTPS certificate and key (http.tls.*).
HTTPS_FILES = ("KVSTORE_HTTP__TLS__CERT_FILE", "KVSTORE_HTTP__TLS__KEY_FILE")


class Failed(Exception):
    """A check found problems; the message lists them."""


class Skipped(Exception):
    """A check could not run here; the message says why."""


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.warnings: list[str] = []

    def run(self, name: str, check, *args) -> None:
        started = time.monotonic()
        try:
            note = check(*args)
        except Skipped as skip:
            self.skipped += 1
            print(f"skip  {name}: {skip}", flush=True)
            return
        except Failed as failure:
            self.failed += 1
            print(f"FAIL  {name}", flush=True)
            for line in str(failure).splitlines():
                print(f"      {line}", flush=True)
            return
        except Exception as error:  # a crash in a check is a failure, not a pass
            self.failed += 1
            print(f"FAIL  {name}: {type(error).__name__}: {error}", flush=True)
            return
        self.passed += 1
        took = time.monotonic() - started
        print(f"ok    {name} ({took:.1f}s){': ' + note if note else ''}", flush=True)


def fail_if(problems: list[str]) -> None:
    if problems:
        raise Failed("\n".join(problems))


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def cargo_field(name: str) -> str:
    match = re.search(rf'^{name} = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.MULTILINE)
    if not match:
        raise Failed(f"Cargo.toml has no {name}")
    return match.group(1)


# ---------------------------------------------------------------------------------------
# Metrics: what the service exports, per src/metrics.rs, and what README documents.


def service_metrics() -> dict[str, str]:
    """Metric name -> counter/gauge/histogram, from the constants and describe_* calls."""
    source = (ROOT / "src" / "metrics.rs").read_text()
    constants = dict(re.findall(r'pub const (\w+): &str = "(\w+)";', source))
    kinds: dict[str, str] = {}
    for kind, constant in re.findall(r"describe_(counter|gauge|histogram)!\(\s*(\w+)", source):
        if constant in constants:
            kinds[constants[constant]] = kind
    if not kinds:
        raise Failed("found no described metrics in src/metrics.rs")
    return kinds


def documented_metrics() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    return set(re.findall(r"^\| `(kvstore_\w+)` \|", readme, flags=re.MULTILINE))


def series_metric(series: str, kinds: dict[str, str]) -> str | None:
    """The metric a series name belongs to (histograms export _bucket, _sum and _count)."""
    if series in kinds and kinds[series] != "histogram":
        return series
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        if base != series and kinds.get(base) == "histogram":
            return base
    return None


# ---------------------------------------------------------------------------------------
# docker-compose.yml


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def kvstore_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def check_compose_kafka_version() -> str:
    """The compose file's Kafka image is the version the tests run (scripts/kafka.sh)."""
    tested = run([str(ROOT / "scripts" / "kafka.sh"), "version"]).stdout.strip()
    image = load_compose()["services"]["kafka"]["image"]
    fail_if([] if image == f"apache/kafka:{tested}" else
            [f"docker-compose.yml runs {image}, the tests Apache Kafka {tested}"])
    return image


def check_compose_schema(check_jsonschema: str) -> str:
    result = run([check_jsonschema, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    if result.returncode != 0:
        raise Failed((result.stdout + result.stderr).strip())
    return "Compose specification schema"


def harness_settings() -> dict[str, str]:
    """The KVSTORE_* settings the integration tests start every kvstore with."""
    harness = ROOT / "tests" / "integration" / "common" / "server.rs"
    settings = dict(re.findall(r'\.env\("(KVSTORE_\w+)",\s*"([^"]*)"\)', harness.read_text()))
    if not settings:
        raise Failed(f"found no .env(\"KVSTORE_...\", ...) settings in {harness.relative_to(ROOT)}")
    return settings


def compose_default(value) -> str | None:
    """A compose value as `docker compose` sets it when no variable it names is in the
    environment: `${VAR:-default}` and `${VAR-default}` give the default. None when a
    variable has no default."""
    missing = False

    def default(match: re.Match) -> str:
        nonlocal missing
        missing = missing or match.group(2) is None
        return match.group(2) or ""

    text = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", default, str(value))
    return None if missing else text


# One entry of KVSTORE_AUTH__TOKENS as docker-compose.yml writes it (kvstore reads more forms).
TOKEN_ENTRY = re.compile(r'\{name="([^"]+)", secret=\{(env|file)="([^"]+)"\}, scopes=\[([^\]]*)\]\}')


def compose_tokens(service: dict) -> list[dict]:
    """The tokens a kvstore service lists: name, where the secret is (env or file), scopes."""
    tokens = str(service.get("environment", {}).get("KVSTORE_AUTH__TOKENS", ""))
    return [
        {"name": name, "kind": kind, "ref": ref, "scopes": re.findall(r'"([^"]+)"', scopes)}
        for name, kind, ref, scopes in TOKEN_ENTRY.findall(tokens)
    ]


def compose_auth(service: dict) -> str | None:
    """`true` or `false` as the service sets KVSTORE_AUTH__ENABLED; None if it does not."""
    value = str(service.get("environment", {}).get("KVSTORE_AUTH__ENABLED", "")).lower()
    return value if value in ("true", "false") else None


def metrics_need_token(service: dict) -> bool:
    env = service.get("environment", {})
    return compose_auth(service) != "false" and str(env.get("KVSTORE_AUTH__OPEN_METRICS", "")).lower() != "true"


def mount_targets(service: dict) -> set[str]:
    """Paths a compose service gets files at: volumes, configs and secrets."""
    targets = {str(volume).split(":")[1] for volume in service.get("volumes", []) if ":" in str(volume)}
    for kind in ("configs", "secrets"):
        for entry in service.get(kind, []):
            targets.add(entry["target"] if isinstance(entry, dict) and "target" in entry else f"/{entry}")
    return targets


def check_compose_auth(name: str, service: dict) -> tuple[list[str], str]:
    """Problems with a kvstore service's auth, and a note: the replicas listen on 0.0.0.0,
    where kvstore refuses to start without tokens unless auth is explicitly off."""
    env = service.get("environment", {})
    auth = compose_auth(service)
    if auth is None:
        return [f"{name}: KVSTORE_AUTH__ENABLED must say true or false; on 0.0.0.0 kvstore needs tokens"], ""
    if auth == "false":
        return [], "auth explicitly off"
    tokens = compose_tokens(service)
    problems = [] if tokens else [f"{name}: auth is on but KVSTORE_AUTH__TOKENS lists no token"]
    for token in tokens:
        where = f"{name}: token {token['name']}"
        if token["kind"] == "file":
            if token["ref"] not in mount_targets(service):
                problems.append(f"{where} is read from {token['ref']}, which nothing mounts")
            continue
        value = compose_default(env[token["ref"]]) if token["ref"] in env else None
        if value is None:
            problems.append(f"{where} is read from {token['ref']}, which the service does not set with a default")
        elif len(value) < 16:
            problems.append(f"{where}: the default of {token['ref']} is shorter than 16 characters")
    return problems, f"auth on, tokens {', '.join(t['name'] for t in tokens)}"


def check_compose_wiring() -> str:
    compose = load_compose()
    services = compose["services"]
    problems = []
    replicas = kvstore_services(compose)
    if len(replicas) != 2:
        problems.append(f"expected two kvstore services (with build:), found {sorted(replicas)}")
    kafka = services.get("kafka")
    if kafka is None:
        raise Failed("no kafka service")
    env = kafka.get("environment", {})
    if str(env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")).lower() != "false":
        problems.append("kafka: KAFKA_AUTO_CREATE_TOPICS_ENABLE must be false (kvstore creates topics)")
    if "healthcheck" not in kafka:
        problems.append("kafka: no healthcheck")
    listeners = env.get("KAFKA_ADVERTISED_LISTENERS", "")
    tests = harness_settings()
    published = set()
    auth_notes = set()
    for name, svc in replicas.items():
        auth_problems, auth_note = check_compose_auth(name, svc)
        problems += auth_problems
        auth_notes.add(auth_note)
        depends = svc.get("depends_on", {})
        if not isinstance(depends, dict) or depends.get("kafka", {}).get("condition") != "service_healthy":
            problems.append(f"{name}: must depend on kafka with condition service_healthy")
        svc_env = svc.get("environment", {})
        brokers = svc_env.get("KVSTORE_BROKERS", "")
        for broker in brokers.split(","):
            if f"//{broker}" not in listeners:
                problems.append(f"{name}: KVSTORE_BROKERS {broker} is not an advertised Kafka listener")
        for key, value in tests.items():
            if str(svc_env.get(key)) != value:
                problems.append(f"{name}: {key} is {svc_env.get(key)!r}; the tests use {value!r}")
        for port in svc.get("ports", []):
            published.add(str(port).split(":")[0].strip('"'))
    if published != {"8080", "8081"}:
        problems.append(f"kvstore replicas publish {sorted(published)}, not 8080 and 8081")
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith(".") and not (ROOT / source).exists():
                problems.append(f"{name}: mounts {source}, which does not exist")
    fail_if(problems)
    return (f"replicas {', '.join(sorted(replicas))} match the tests' {', '.join(sorted(tests))}; "
            f"{'; '.join(sorted(auth_notes))}")


# ---------------------------------------------------------------------------------------
# Prometheus


def compose_prometheus_token(compose: dict, job: dict) -> str | None:
    """The token Prometheus sends to the kvstore replicas (as docker compose sets it with no
    variable in the environment), checked against docker-compose.yml: the job's
    credentials_file is a compose config mounted into the prometheus service, holding the same
    value as a replica's token with the metrics scope. None when /metrics is open."""
    replicas = kvstore_services(compose)
    if not any(metrics_need_token(svc) for svc in replicas.values()):
        return None
    credentials_file = job.get("authorization", {}).get("credentials_file")
    if not credentials_file:
        raise Failed("job kvstore has no authorization.credentials_file, but the replicas' /metrics needs a token")
    mounted = {entry["target"]: entry["source"] for entry in compose["services"]["prometheus"].get("configs", [])
               if isinstance(entry, dict) and "target" in entry}
    if credentials_file not in mounted:
        raise Failed(f"job kvstore reads its token from {credentials_file}, which the prometheus service does not mount")
    content = compose.get("configs", {}).get(mounted[credentials_file], {}).get("content")
    metrics_tokens = {
        svc["environment"][token["ref"]]
        for svc in replicas.values()
        for token in compose_tokens(svc)
        if "metrics" in token["scopes"] and token["kind"] == "env" and token["ref"] in svc["environment"]
    }
    if content is None or content not in metrics_tokens:
        raise Failed(f"config {mounted[credentials_file]} (Prometheus's {credentials_file}) is not the value of "
                     "a replica's token with the metrics scope")
    return compose_default(content)


def check_prometheus_config(promtool: str) -> str:
    compose = load_compose()
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "kvstore"]
    token = compose_prometheus_token(compose, job)
    with tempfile.TemporaryDirectory() as tmp:
        # promtool reads the credentials file, which exists only inside the container: check a
        # copy that names a file holding the token compose would mount.
        checked = PROMETHEUS_CONFIG
        if token is not None:
            token_file = Path(tmp) / "kvstore-token"
            token_file.write_text(token)
            checked = Path(tmp) / "prometheus.yml"
            job["authorization"]["credentials_file"] = str(token_file)
            checked.write_text(yaml.safe_dump(config))
        result = run([promtool, "check", "config", str(checked)])
    if result.returncode != 0:
        raise Failed((result.stdout + result.stderr).strip())
    expected = {f"{name}:8080" for name in kvstore_services(compose)}
    targets = {target for static in job.get("static_configs", []) for target in static["targets"]}
    if targets != expected:
        raise Failed(f"job kvstore scrapes {sorted(targets)}; the compose replicas are {sorted(expected)}")
    how = "with the replicas' metrics token" if token is not None else "without a token (/metrics open)"
    return f"promtool check config; scrapes {', '.join(sorted(targets))} {how}"


# ---------------------------------------------------------------------------------------
# A real Prometheus scraping a live kvstore

LIVE_TOPIC = "check-deploy"


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Processes:
    """Processes a check starts, logging into `workdir`; all stopped when the check ends."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[tuple[str, subprocess.Popen]] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *_) -> None:
        for _, process in reversed(self.started):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.workdir / f"{name}.log", "wb") as log:
            process = subprocess.Popen(command, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.started.append((name, process))

    def log_tail(self, name: str) -> str:
        lines = (self.workdir / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(lines[-15:])

    def wait_for(self, what: str, probe, timeout: float):
        """Calls `probe` until it returns something truthy and returns that; fails if it
        does not in time, or if a started process exits meanwhile."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            for name, process in self.started:
                if process.poll() is not None:
                    raise Failed(f"{name} exited ({process.returncode}) waiting for {what}:\n{self.log_tail(name)}")
            try:
                result = probe()
                if result:
                    return result
            except (OSError, ValueError) as error:  # not listening yet, or a partial answer
                last_error = error
            time.sleep(0.25)
        raise Failed(f"no {what} within {timeout:.0f}s" + (f" (last error: {last_error})" if last_error else ""))


def compose_auth_env(compose: dict) -> tuple[dict[str, str], dict[str, str]]:
    """The auth settings of the compose replicas, as docker compose sets them with no
    variable in the environment, and each token's value by scope."""
    replica = next(iter(kvstore_services(compose).values()))
    env = {key: compose_default(value) or "" for key, value in replica.get("environment", {}).items()}
    settings = {key: value for key, value in env.items() if key.startswith("KVSTORE_AUTH__")}
    by_scope: dict[str, str] = {}
    for token in compose_tokens(replica):
        if token["kind"] == "env":
            settings[token["ref"]] = env[token["ref"]]
            for scope in token["scopes"]:
                by_scope.setdefault(scope, env[token["ref"]])
    return settings, by_scope


def check_prometheus_live(prometheus: str, promtool: str, tansu: str, binary: Path | None) -> str:
    """kvstore against a Tansu broker, with the compose replicas' auth settings and a topic
    written; promtool lints its /metrics, and a real Prometheus, with the kvstore job's
    authorization from deploy/prometheus/prometheus.yml, scrapes it until its HTTP API returns
    the topic's consumer lag."""
    if binary is None:
        raise Skipped("no target/debug/kvstore (make build, or scripts/check-deploy.sh builds it)")
    version = run([prometheus, "--version"]).stdout.split("\n")[0]
    compose = load_compose()
    auth_env, tokens = compose_auth_env(compose)
    (job,) = [job for job in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
              if job["job_name"] == "kvstore"]
    prometheus_token = compose_prometheus_token(compose, job)

    def bearer(scope: str) -> dict[str, str]:
        return {"authorization": f"Bearer {tokens[scope]}"} if scope in tokens else {}

    with tempfile.TemporaryDirectory() as tmp, Processes(Path(tmp)) as processes:
        broker_port, http_port, prometheus_port = free_port(), free_port(), free_port()
        broker = f"tcp://127.0.0.1:{broker_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KVSTORE_") and k != "RUST_LOG"}
        processes.start("tansu", [tansu, "broker", "--listener-url", broker, "--advertised-listener-url", broker,
                                  "--storage-engine", "memory://tansu/"], env={**env, "RUST_LOG": "warn"})
        processes.start("kvstore", [str(binary), "serve", "--listen", f"127.0.0.1:{http_port}",
                                    "--brokers", f"127.0.0.1:{broker_port}"], env={**env, **auth_env})
        base = f"http://127.0.0.1:{http_port}"
        processes.wait_for("ready kvstore", lambda: http("GET", f"{base}/readyz")[0] == 200, 30)
        for i in range(3):
            status, body = http("PUT", f"{base}/v1/{LIVE_TOPIC}/keys/key-{i}", b"value",
                                {"content-type": "text/plain", **bearer("write:*")})
            if status != 200:
                raise Failed(f"PUT answered {status}: {body!r}")

        if prometheus_token is not None and (status := http("GET", f"{base}/metrics")[0]) != 401:
            raise Failed(f"/metrics without a token answered {status}, not 401, with the compose auth settings")
        status, metrics = http("GET", f"{base}/metrics", headers=bearer("metrics"))
        lint = subprocess.run([promtool, "check", "metrics"], input=metrics, capture_output=True)
        if status != 200 or lint.returncode != 0:
            raise Failed(f"promtool check metrics on /metrics ({status}):\n"
                         + (lint.stdout + lint.stderr).decode(errors="replace").strip())

        # The compose job, scraping this kvstore every second with the token compose mounts.
        job = {**job, "scrape_interval": "1s", "static_configs": [{"targets": [f"127.0.0.1:{http_port}"]}]}
        if prometheus_token is not None:
            token_file = Path(tmp) / "kvstore-token"
            token_file.write_text(prometheus_token)
            job["authorization"] = {**job["authorization"], "credentials_file": str(token_file)}
        config = Path(tmp) / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [job],
        }))
        processes.start("prometheus", [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
                                       f"--web.listen-address=127.0.0.1:{prometheus_port}"], env=env)
        query = f'kvstore_consumer_lag_records{{topic="{LIVE_TOPIC}"}}'

        def lag_series() -> list | None:
            url = f"http://127.0.0.1:{prometheus_port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
            status, body = http("GET", url)
            answer = json.loads(body) if status == 200 else None
            return answer["data"]["result"] if answer and answer.get("status") == "success" else None

        series = processes.wait_for(f"{query} from Prometheus", lag_series, 60)
        labels, (_, value) = series[0]["metric"], series[0]["value"]
        expected = {"job": "kvstore", "instance": f"127.0.0.1:{http_port}", "topic": LIVE_TOPIC}
        if any(labels.get(k) != v for k, v in expected.items()) or value != "0":
            raise Failed(f"{query} is {labels} = {value}; expected {expected} = 0")
    how = "with the compose token" if prometheus_token is not None else "without a token"
    return (f"{version.strip()} scraped {binary.relative_to(ROOT)} {how}: {query} = {value}; "
            "promtool check metrics: clean")


# ---------------------------------------------------------------------------------------
# Grafana


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
    kinds = service_metrics()
    documented = documented_metrics()
    expressions = dashboard_expressions(dashboard)
    used = set()
    for where, expr in expressions:
        for series in set(re.findall(r"\b(kvstore_\w+)", expr)):
            metric = series_metric(series, kinds)
            if metric is None:
                problems.append(f"{where}: {series} is not a metric of src/metrics.rs")
            elif metric not in documented:
                problems.append(f"{where}: {metric} is not in README's metrics table")
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


# ---------------------------------------------------------------------------------------
# Helm


def chart_kube_versions() -> list[str]:
    """The oldest Kubernetes the chart declares and the newest kubernetes-validate knows."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    match = re.search(r">=\s*v?(\d+\.\d+)", chart.get("kubeVersion", ""))
    if not match:
        raise Failed("Chart.yaml has no kubeVersion lower bound")
    oldest, newest = match.group(1), kv.major_minor(kv.latest_version())
    return [oldest] if oldest == newest else [oldest, newest]


def value_sets() -> list[tuple[str, dict | None]]:
    """The values files of ci/. The bare defaults do not render (see check_defaults_refused)."""
    return [(path.stem, yaml.safe_load(path.read_text())) for path in sorted((CHART / "ci").glob("*.yaml"))]


def check_defaults_refused() -> str:
    """Auth is on by default and a pod listens on 0.0.0.0, so kvstore would refuse to start
    without a token: the chart must refuse to render, saying what to set."""
    try:
        render("defaults", None)
    except helm.HelmRenderError as error:
        message = str(error)
        if "auth.tokens" not in message or "auth.enabled=false" not in message:
            raise Failed(f"refused, but without naming auth.tokens and auth.enabled=false: {message}")
        return "refused without a token: " + message.split(": ", 1)[-1].split(",")[0]
    raise Failed("rendered although auth is on without a token (kvstore would refuse to start)")


def check_chart_version() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    if chart["appVersion"] != cargo_field("version"):
        raise Failed(f"Chart.yaml appVersion {chart['appVersion']} is not Cargo.toml's version")
    return f"appVersion {chart['appVersion']}"


def check_helm_lint(name: str, values: dict | None, versions: list[str]) -> str:
    problems = []
    for version in versions:
        report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{version}.0")
        for message in report["messages"]:
            if message["severity"] >= 2:  # warnings and errors; 1 is info
                problems.append(f"k8s {version}: {message['path']}: {message['error'].strip()}")
        problems += [f"k8s {version}: {error.strip()}" for error in report.get("errors", [])]
    fail_if(sorted(set(problems)))
    return f"strict, Kubernetes {' and '.join(versions)}"


def render(name: str, values: dict | None) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name="kvstore", namespace="kvstore", is_install=True)


def manifests_of(rendered: dict[str, str]) -> list[dict]:
    documents = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            documents += [doc for doc in yaml.safe_load_all(text) if doc]
    return documents


def check_helm_render(name: str, values: dict | None, versions: list[str]) -> str:
    rendered = render(name, values)
    out = RENDER_DIR / name
    shutil.rmtree(out, ignore_errors=True)
    for path, text in rendered.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    problems = []
    if not rendered.get("kvstore/templates/NOTES.txt", "").strip():
        problems.append("NOTES.txt rendered empty")
    documents = manifests_of(rendered)
    kinds = sorted(doc["kind"] for doc in documents)
    for doc in documents:
        for version in versions:
            where = f"{doc['kind']}/{doc['metadata']['name']} (k8s {version})"
            try:
                kv.validate(doc, version, strict=True)
            except kv.SchemaNotFoundError:
                if doc["kind"] not in CUSTOM_KINDS:
                    problems.append(f"{where}: no schema for {doc['apiVersion']} {doc['kind']}")
            except kv.ValidationError as error:
                path = ".".join(str(part) for part in error.path)
                problems.append(f"{where}: {path}: {error.message}")
    problems += check_references(documents)
    fail_if(problems)
    return f"{' '.join(kinds)}; kubernetes-validate --strict passes"


def check_references(documents: list[dict]) -> list[str]:
    """What the schemas cannot see: selectors, port names and mounts that must line up."""
    problems = []
    by_kind: dict[str, list[dict]] = {}
    for doc in documents:
        by_kind.setdefault(doc["kind"], []).append(doc)
    (deployment,) = by_kind["Deployment"]
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    port_names = {port["name"] for port in container["ports"]}

    def selects(selector: dict) -> bool:
        return all(pod_labels.get(k) == v for k, v in selector.items())

    if not selects(deployment["spec"]["selector"]["matchLabels"]):
        problems.append("the Deployment's selector does not match its pods")
    for service in by_kind.get("Service", []):
        if not selects(service["spec"]["selector"]):
            problems.append(f"Service {service['metadata']['name']} selects no pod")
        for port in service["spec"]["ports"]:
            if port["targetPort"] not in port_names:
                problems.append(f"Service port {port['name']} targets unknown port {port['targetPort']}")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not selects(pdb["spec"]["selector"]["matchLabels"]):
            problems.append("the PodDisruptionBudget selects no pod")
    for monitor in by_kind.get("ServiceMonitor", []):
        services = by_kind.get("Service", [])
        labels = monitor["spec"]["selector"]["matchLabels"]
        matched = [s for s in services if all(s["metadata"]["labels"].get(k) == v for k, v in labels.items())]
        if not matched:
            problems.append("the ServiceMonitor selects no Service")
        for endpoint in monitor["spec"]["endpoints"]:
            if not any(endpoint["port"] == p["name"] for s in matched for p in s["spec"]["ports"]):
                problems.append(f"the ServiceMonitor scrapes unknown port {endpoint['port']}")
    volumes = {volume["name"] for volume in pod["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in volumes:
            problems.append(f"volume mount {mount['name']} has no volume")
    env = {entry["name"]: entry.get("value") for entry in container.get("env", [])}
    mounts = [mount["mountPath"].rstrip("/") + "/" for mount in container.get("volumeMounts", [])]
    https = any(env.get(name) for name in HTTPS_FILES)
    for name in HTTPS_FILES:
        path = env.get(name)
        if path and not any(path.startswith(mount) for mount in mounts):
            problems.append(f"{name}={path} is in no mounted volume")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if container[probe]["httpGet"]["port"] not in port_names:
            problems.append(f"{probe} probes an unknown port")
        if (container[probe]["httpGet"].get("scheme", "HTTP") == "HTTPS") != https:
            problems.append(f"{probe} uses {'HTTP' if https else 'HTTPS'} but kvstore serves the other")
    if env.get("KVSTORE_AUTH__ENABLED") not in ("true", "false"):
        problems.append("KVSTORE_AUTH__ENABLED is not set to true or false (a pod's default is on)")
    metrics_need_token = env.get("KVSTORE_AUTH__ENABLED") != "false" and env.get("KVSTORE_AUTH__OPEN_METRICS") != "true"
    for monitor in by_kind.get("ServiceMonitor", []):
        for endpoint in monitor["spec"]["endpoints"]:
            credentials = endpoint.get("authorization", {}).get("credentials", {})
            if metrics_need_token and not (credentials.get("name") and credentials.get("key")):
                problems.append("the ServiceMonitor sends no token, but /metrics needs one")
            if (endpoint.get("scheme", "http") == "https") != https:
                problems.append(f"the ServiceMonitor scrapes with {endpoint.get('scheme', 'http')}, "
                                f"but kvstore serves {'HTTPS' if https else 'HTTP'}")
            if "tlsConfig" in endpoint and not https:
                problems.append("the ServiceMonitor has a tlsConfig, but kvstore serves plain HTTP")
    annotations = pod["metadata"].get("annotations", {})
    if metrics_need_token and annotations.get("prometheus.io/scrape") == "true":
        problems.append("the pods invite annotation-based scraping (which sends no token), but /metrics needs one")
    scheme = annotations.get("prometheus.io/scheme", "http")
    if annotations.get("prometheus.io/scrape") == "true" and (scheme == "https") != https:
        problems.append(f"prometheus.io/scheme says {scheme}, but kvstore serves {'HTTPS' if https else 'HTTP'}")
    if "prometheus.io/port" in annotations:
        ports = {str(port["containerPort"]) for port in container["ports"]}
        if annotations["prometheus.io/port"] not in ports:
            problems.append("prometheus.io/port is not a container port")
    return problems


# ---------------------------------------------------------------------------------------
# The rendered kvstore.toml, read by the real kvstore


def kvstore_binary() -> Path | None:
    """The most recently built kvstore in target/ (release or debug), if any."""
    built = [ROOT / "target" / profile / "kvstore" for profile in ("release", "debug")]
    built = [b for b in built if b.is_file() and os.access(b, os.X_OK)]
    return max(built, key=lambda b: b.stat().st_mtime, default=None)


def container_env(container: dict) -> dict[str, str]:
    """The container's environment as kubelet would set it: Secret values stand in as
    placeholders and $(VAR) references are expanded."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), entry["value"]
            )
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            env[entry["name"]] = f"secret-{entry['valueFrom']['secretKeyRef']['key']}"
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def secret_mounts(pod: dict, container: dict) -> dict[str, set[str] | None]:
    """mountPath -> the file names a Secret volume mounted there holds (None: the whole
    Secret, so any name), for the container's mounts of `secret` and `projected` volumes."""
    volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes", [])}
    mounts: dict[str, set[str] | None] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if "secret" in volume:
            sources = [volume["secret"]]
        elif "projected" in volume:
            sources = [source["secret"] for source in volume["projected"]["sources"] if "secret" in source]
        else:
            continue
        names: set[str] | None = set()
        for source in sources:
            if "items" not in source:
                names = None
                break
            names |= {item["path"] for item in source["items"]}
        mounts[mount["mountPath"].rstrip("/")] = names
    return mounts


def secret_files(config: str, env: dict[str, str]) -> dict[str, str]:
    """Files kvstore is told to read, by what they hold (`cert` or `key` for Kafka's TLS,
    `https-cert` or `https-key` for its own HTTPS listener, else `secret`): the
    `KVSTORE_*_FILE` variables and every `file = "..."` secret reference."""
    kinds = {"KVSTORE_KAFKA__TLS__CA_FILE": "cert", "KVSTORE_KAFKA__TLS__CERT_FILE": "cert",
             "KVSTORE_KAFKA__TLS__KEY_FILE": "key", HTTPS_FILES[0]: "https-cert", HTTPS_FILES[1]: "https-key"}
    files = {value: kinds.get(name, "secret") for name, value in env.items()
             if name.startswith("KVSTORE_") and name.endswith("_FILE")}
    for text in [config, *env.values()]:
        for path in re.findall(r'\bfile\s*=\s*"([^"]+)"', text):
            files.setdefault(path, "secret")
    return files


def stage_secrets(config: str, env: dict[str, str], mounts: dict[str, set[str] | None],
                  tmp: Path) -> tuple[str, dict[str, str], dict[str, str]]:
    """The Secrets a pod mounts do not exist here. Every file kvstore is told to read must lie
    in a mounted Secret that holds it; each is then made under `tmp` (the paths in `config`
    and `env` rewritten to match): a throwaway certificate and key made with openssl for
    Kafka's TLS (the key encrypted with the password the pod would get) and another pair, for
    127.0.0.1, for kvstore's HTTPS listener, else a placeholder secret. Returns the new config
    and env, and the placeholder secrets by their pod path."""
    problems = []
    staged: dict[str, Path] = {}
    for path, kind in secret_files(config, env).items():
        directory, _, name = path.rpartition("/")
        if directory not in mounts:
            problems.append(f"{path} is named as a {kind} file, but no Secret is mounted at {directory}")
        elif mounts[directory] is not None and name not in mounts[directory]:
            problems.append(f"{path}: the Secret mounted at {directory} holds only {sorted(mounts[directory])}")
        else:
            staged[path] = tmp / "secrets" / f"{len(staged)}-{name}"
    fail_if(problems)
    (tmp / "secrets").mkdir(exist_ok=True)
    kinds = secret_files(config, env)
    secrets = {}
    for path, target in staged.items():
        if kinds[path] == "secret":
            # Distinct, and long enough for a bearer token.
            secrets[path] = f"check-deploy-placeholder-{target.name}"
            target.write_text(secrets[path] + "\n")
    key_password = secrets.get(env.get("KVSTORE_KAFKA__TLS__KEY_PASSWORD__FILE", ""))
    if any(kinds[path] in ("cert", "key") for path in staged):
        key, cert = tmp / "tls.key", tmp / "tls.crt"
        command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "1",
                   "-subj", "/CN=kvstore-check", "-keyout", str(key), "-out", str(cert)]
        command += ["-passout", f"pass:{key_password}"] if key_password else ["-noenc"]
        subprocess.run(command, check=True, capture_output=True)
        for path in staged:
            if kinds[path] in ("cert", "key"):
                shutil.copy(key if kinds[path] == "key" else cert, staged[path])
    if any(kinds[path] in ("https-cert", "https-key") for path in staged):
        # For the address the check connects to, so that the client can verify it.
        key, cert = tmp / "https.key", tmp / "https.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-days", "1", "-subj", "/CN=localhost", "-noenc", "-keyout", str(key), "-out", str(cert),
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-addext", "basicConstraints=critical,CA:FALSE"],
                       check=True, capture_output=True)
        for path in staged:
            if kinds[path] in ("https-cert", "https-key"):
                shutil.copy(key if kinds[path] == "https-key" else cert, staged[path])

    def rewrite(text: str) -> str:
        # Longest first, so that no path is rewritten inside a longer one.
        for path in sorted(staged, key=len, reverse=True):
            text = text.replace(path, str(staged[path]))
        return text

    return rewrite(config), {name: rewrite(value) for name, value in env.items()}, secrets


def https_context(env: dict[str, str]) -> ssl.SSLContext | None:
    """A client context trusting the certificate kvstore is given (http.tls.cert_file), when
    `env` gives it one; None for plain HTTP."""
    cert = env.get(HTTPS_FILES[0])
    return ssl.create_default_context(cafile=cert) if cert else None


def start_kvstore(binary: Path, config: Path, env: dict[str, str], probe=None) -> tuple[bool, str]:
    """Starts kvstore with `config` and `env` against an unreachable broker; once it answers
    /healthz (over HTTPS, verifying its certificate, when `env` gives it one), calls
    `probe(base_url, context)` (if given) while it runs. True and the probe's note if it
    started, False and its output if it exits first."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KVSTORE_") and k != "RUST_LOG"}
    context = https_context(env)
    port = free_port()
    process = subprocess.Popen(
        # --listen and --brokers override the file: a free loopback port, and a broker
        # address that refuses at once (kvstore serves /healthz without a broker).
        [str(binary), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}",
         "--brokers", "127.0.0.1:9"],
        cwd=config.parent, env={**clean, **env, "RUST_BACKTRACE": "0"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"{'https' if context else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False, process.communicate()[0]
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1, context=context):
                    return True, probe(base, context) if probe else ""
            except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
                time.sleep(0.2)
        return False, "did not answer /healthz within 20s"
    finally:
        # Only the configuration is under test here, not shutdown: no need to wait for it.
        if process.poll() is None:
            process.kill()
            process.wait()


def auth_probe(env: dict[str, str]):
    """What the pod's clients would meet, checked on a running kvstore: with auth on, a request
    without a token gets 401 and each configured token is recognised (200, or 403 for one
    without the scope), and /metrics answers 401 without a token unless it is open."""

    def probe(base: str, context: ssl.SSLContext | None) -> str:
        def status(path: str, token: str | None = None) -> int:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            return http("GET", f"{base}{path}", headers=headers, context=context)[0]

        if env.get("KVSTORE_AUTH__ENABLED") != "true":
            if status("/v1/topics") != 200 or status("/metrics") != 200:
                raise Failed("auth is off, yet /v1/topics or /metrics wants a token")
            return "auth off"
        problems = []
        if (answer := status("/v1/topics")) != 401:
            problems.append(f"/v1/topics without a token answered {answer}, not 401")
        metrics_open = env.get("KVSTORE_AUTH__OPEN_METRICS") == "true"
        if (answer := status("/metrics")) != (200 if metrics_open else 401):
            problems.append(f"/metrics without a token answered {answer} (open_metrics {metrics_open})")
        tokens = re.findall(r'name="([^"]+)", secret=\{file="([^"]+)"\}', env.get("KVSTORE_AUTH__TOKENS", ""))
        if not tokens:
            problems.append("auth is on but KVSTORE_AUTH__TOKENS names no token file")
        for token, path in tokens:
            if (answer := status("/v1/topics", Path(path).read_text().strip())) not in (200, 403):
                problems.append(f"token {token} was not recognised: /v1/topics answered {answer}")
        fail_if(problems)
        return f"auth on, {len(tokens)} token{'s' if len(tokens) > 1 else ''} accepted"

    return probe


def check_config_starts_kvstore(name: str, values: dict | None, binary: Path | None) -> str:
    if binary is None:
        raise Skipped("no kvstore binary in target/ (make build)")
    documents = manifests_of(render(name, values))
    configmaps = [doc for doc in documents if doc["kind"] == "ConfigMap"]
    if not configmaps:
        raise Skipped("the configuration comes from an existing Secret")
    config = configmaps[0]["data"]["kvstore.toml"]
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = container_env(container)
    files = secret_files(config, env)
    with tempfile.TemporaryDirectory() as tmp:
        config, env, _ = stage_secrets(config, env, secret_mounts(pod, container), Path(tmp))
        path = Path(tmp) / "kvstore.toml"
        path.write_text(config)
        started, output = start_kvstore(binary, path, env, auth_probe(env))
    if started:
        kafka = env.get("KVSTORE_KAFKA__SECURITY_PROTOCOL", "plaintext")
        scheme = "HTTPS" if env.get(HTTPS_FILES[0]) else "HTTP"
        return (f"{binary.relative_to(ROOT)} starts with it and answers over {scheme} (Kafka {kafka}"
                f"{f', {len(files)} mounted secret file' + ('s' if len(files) > 1 else '') if files else ''}; {output})")
    raise Failed(f"kvstore refused the rendered configuration:\n{output.strip()[-2000:]}")


# ---------------------------------------------------------------------------------------
# OpenAPI document


def check_openapi() -> str:
    """openapi-spec-validator finds no error, and the info object is the crate's."""
    spec = json.loads(OPENAPI.read_text())
    if not str(spec.get("openapi", "")).startswith("3.1."):
        raise Failed(f"openapi is {spec.get('openapi')!r}, not 3.1.x")
    problems = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in OpenAPIV31SpecValidator(spec).iter_errors()
    ]
    info = spec.get("info", {})
    expected = {
        "title": cargo_field("name"),
        "version": cargo_field("version"),
        "license.identifier": cargo_field("license"),
    }
    actual = {
        "title": info.get("title"),
        "version": info.get("version"),
        "license.identifier": info.get("license", {}).get("identifier"),
    }
    for field, value in expected.items():
        if actual[field] != value:
            problems.append(f"info.{field} is {actual[field]!r}; Cargo.toml says {value!r}")
    for field in ("description",):
        if len(str(info.get(field, "")).strip()) < 20:
            problems.append(f"info.{field} is missing or too short to say anything")
    if not info.get("license", {}).get("name"):
        problems.append("info.license.name is missing")
    fail_if(problems)
    version = openapi_spec_validator.__version__
    return (f"openapi-spec-validator {version}: OpenAPI {spec['openapi']}, {len(spec['paths'])} paths, "
            f"no errors; info {info['title']} {info['version']}, {info['license']['identifier']}")


# ---------------------------------------------------------------------------------------
# Dockerfile


def check_dockerfile_libraries(binary: Path | None) -> str:
    """The runtime stage installs the Debian package of every shared library kvstore links."""
    if binary is None:
        raise Skipped("no kvstore binary in target/ (make build)")
    if shutil.which("dpkg") is None or shutil.which("ldd") is None:
        raise Skipped("needs ldd and dpkg (a Debian machine)")
    dockerfile = (ROOT / "Dockerfile").read_text()
    runtime = dockerfile[dockerfile.rindex("\nFROM ") :]
    installed = {"libc6"}  # in every Debian image
    for line in re.findall(r"apt-get install ([^\n&]+)", runtime.replace("\\\n", " ")):
        installed |= {word for word in line.split() if not word.startswith("-")}
    problems = []
    needed = set()
    ldd = run(["ldd", str(binary)])
    for library in re.findall(r"=> (/\S+)", ldd.stdout):
        owner = run(["dpkg", "-S", library])
        if owner.returncode != 0:
            owner = run(["dpkg", "-S", "/usr" + library])
        if owner.returncode != 0:
            problems.append(f"{library}: no Debian package owns it")
            continue
        package = owner.stdout.split(":")[0]
        needed.add(package)
        if package not in installed:
            problems.append(f"{library} comes from {package}, which the runtime stage does not install")
    fail_if(problems)
    return f"links {', '.join(sorted(needed))}"


checks = Checks()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--promtool", required=True)
    parser.add_argument("--check-jsonschema", required=True)
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--tansu", required=True)
    args = parser.parse_args()
    started = time.monotonic()
    binary = kvstore_binary()

    checks.run("docker-compose.yml schema", check_compose_schema, args.check_jsonschema)
    checks.run("docker-compose.yml wiring", check_compose_wiring)
    checks.run("docker-compose.yml Kafka version", check_compose_kafka_version)
    checks.run("Dockerfile runtime libraries", check_dockerfile_libraries, binary)
    checks.run("Prometheus config", check_prometheus_config, args.promtool)
    debug_binary = ROOT / "target" / "debug" / "kvstore"
    checks.run("Prometheus scraping a live kvstore", check_prometheus_live, args.prometheus, args.promtool,
               args.tansu, debug_binary if debug_binary.is_file() else None)
    checks.run("Grafana dashboard", check_grafana, args.promtool)
    checks.run("OpenAPI document", check_openapi)
    checks.run("Helm appVersion", check_chart_version)
    versions = [kv.major_minor(kv.latest_version())]

    def kube_versions() -> str:
        versions[:] = chart_kube_versions()
        return f"validating against Kubernetes {' and '.join(versions)}"

    checks.run("Helm kubeVersion", kube_versions)
    # Linting the defaults alone would only repeat what every values file's lint checks.
    checks.run("helm template (defaults)", check_defaults_refused)
    for name, values in value_sets():
        checks.run(f"helm lint ({name})", check_helm_lint, name, values, versions)
        checks.run(f"helm template ({name})", check_helm_render, name, values, versions)
        checks.run(f"kvstore.toml ({name})", check_config_starts_kvstore, name, values, binary)

    for warning in checks.warnings:
        print(f"WARN  {warning}")
    print(f"rendered manifests: {RENDER_DIR.relative_to(ROOT)}/; took {time.monotonic() - started:.0f}s")
    print(f"check-deploy: {checks.passed} passed, {checks.failed} failed, {checks.skipped} skipped")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
