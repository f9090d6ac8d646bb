#!/usr/bin/env bash
# `make check-deploy`: validates the deploy artifacts (Dockerfile, docker-compose.yml,
# deploy/prometheus, deploy/grafana, helm/kvstore) and openapi/openapi.json without Docker or
# a cluster.
#
# Installs its tools once into $KVSTORE_CACHE (default ~/.cache/kvstore):
#   deploy-venv/   check-jsonschema (Compose specification schema), kubernetes-validate
#                  (Kubernetes OpenAPI schemas), helm-python-sdk (Helm's Go SDK, for lint
#                  and template without a helm binary) and openapi-spec-validator (the
#                  checked-in OpenAPI document), from PyPI
#   promtool/      promtool and the prometheus server taken from Debian's `prometheus`
#                  package (downloaded and unpacked, not installed, so no Prometheus service
#                  lands on the machine)
# then runs the scripts/check_deploy package (python -m check_deploy, with scripts/ on
# PYTHONPATH), which prints one line per check. Its live check starts
# a Tansu broker (scripts/tansu.sh), kvstore (target/debug/kvstore, built if missing) and a
# Prometheus scraping it, all on free loopback ports, and stops them afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${KVSTORE_CACHE:-$HOME/.cache/kvstore}"
venv="$cache/deploy-venv"
tools="check-jsonschema==0.39.0 kubernetes-validate==1.37.0 helm-python-sdk==0.2.2 PyYAML==6.0.4 openapi-spec-validator==0.9.0"
mkdir -p "$cache"

if [ "$(cat "$venv/.tools" 2>/dev/null)" != "$tools" ] ||
  ! "$venv/bin/python" -c 'import helm_python, kubernetes_validate, openapi_spec_validator, yaml' 2>/dev/null; then
  echo "check-deploy: installing $tools into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  # shellcheck disable=SC2086 # the list is word-split on purpose
  "$venv/bin/pip" install --quiet --disable-pip-version-check $tools >&2
  echo "$tools" >"$venv/.tools"
fi

promtool="$cache/promtool/promtool"
prometheus="$cache/promtool/prometheus"
if [ ! -x "$promtool" ] || [ ! -x "$prometheus" ]; then
  echo "check-deploy: unpacking promtool and prometheus from Debian's prometheus package into $cache/promtool" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  if ! (cd "$work" && apt-get download prometheus >&2 2>"$work/apt.err"); then
    # An empty or stale package list; refreshing it needs root.
    if [ "$(id -u)" -ne 0 ]; then
      cat "$work/apt.err" >&2
      echo "check-deploy: cannot download Debian's prometheus package; run 'apt-get update' as root" >&2
      exit 1
    fi
    apt-get update -qq >&2
    (cd "$work" && apt-get download prometheus >&2)
  fi
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  mkdir -p "$cache/promtool"
  install -m 0755 "$work/root/usr/bin/promtool" "$promtool"
  install -m 0755 "$work/root/usr/bin/prometheus" "$prometheus"
  rm -rf "$work"
  trap - EXIT
fi

if [ ! -x target/debug/kvstore ]; then
  echo "check-deploy: building target/debug/kvstore for the live checks" >&2
  cargo build --locked >&2
fi

tansu="$(scripts/tansu.sh memory)"

PYTHONPATH="$PWD/scripts" exec "$venv/bin/python" -m check_deploy --promtool "$promtool" \
  --check-jsonschema "$venv/bin/check-jsonschema" --prometheus "$prometheus" --tansu "$tansu"
