"""`python -m check_deploy`: parses the tools' paths, runs every check in order through
Checks and prints the summary line."""

from __future__ import annotations

import argparse
import sys
import time

import kubernetes_validate.utils as kv

from . import __doc__ as overview
from .common import RENDER_DIR, ROOT, Failed, Skipped, kvstore_binary
from .compose import check_compose_kafka_version, check_compose_schema, check_compose_wiring
from .dockerfile import check_dockerfile_libraries
from .grafana import check_grafana
from .helm import (check_chart_version, check_defaults_refused, check_helm_lint, check_helm_render,
                   chart_kube_versions, value_sets)
from .kvstore_config import check_config_starts_kvstore
from .openapi import check_openapi
from .prometheus import check_prometheus_config, check_prometheus_live


class Checks:
    """Runs each check, prints its line and counts the outcomes."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.skipped = 0

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


checks = Checks()


def main() -> int:
    parser = argparse.ArgumentParser(description=overview)
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

    print(f"rendered manifests: {RENDER_DIR.relative_to(ROOT)}/; took {time.monotonic() - started:.0f}s")
    print(f"check-deploy: {checks.passed} passed, {checks.failed} failed, {checks.skipped} skipped")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
