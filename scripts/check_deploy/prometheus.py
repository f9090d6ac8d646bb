"""deploy/prometheus/prometheus.yml: promtool's check of the config and its token against
docker-compose.yml, and the live check, a real Prometheus scraping a real kvstore (on a Tansu
broker) with that job's authorization."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import yaml

from .common import (PROMETHEUS_CONFIG, ROOT, Failed, Skipped, environment_without_kvstore_settings, free_port,
                     http, run)
from .compose import (compose_auth_env, compose_default, compose_tokens, kvstore_services, load_compose,
                      metrics_need_token)


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
        env = environment_without_kvstore_settings()
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
