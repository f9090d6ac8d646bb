#!/usr/bin/env bash
# Installs schemathesis (OpenAPI-driven fuzzing, from PyPI) once into the tool cache and prints
# the path of its command. Used by `make test`.
set -euo pipefail

version="4.32.5"
venv="${KVSTORE_CACHE:-$HOME/.cache/kvstore}/schemathesis-$version"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version" >&2
fi
echo "$venv/bin/schemathesis"
