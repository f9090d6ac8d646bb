#!/usr/bin/env bash
# `make run`: starts a local Tansu broker and kvstore in front of it, and stops both on exit.
#
#   KVSTORE_BROKER_PORT   broker port (default 9092)
#   KVSTORE_HTTP_PORT     HTTP port (default 8080)
#   KVSTORE_STORAGE       memory (default; lost on exit) or sqlite (kept in .run/tansu.db)
set -euo pipefail
cd "$(dirname "$0")/.."

broker_port="${KVSTORE_BROKER_PORT:-9092}"
http_port="${KVSTORE_HTTP_PORT:-8080}"
storage="${KVSTORE_STORAGE:-memory}"
mkdir -p .run

tansu="$(scripts/tansu.sh "$storage")"
case "$storage" in
  memory) engine="memory://tansu/" ;;
  sqlite) engine="sqlite://tansu.db" ;;
  *) echo "KVSTORE_STORAGE must be memory or sqlite" >&2; exit 2 ;;
esac

if (exec 3<>"/dev/tcp/127.0.0.1/$broker_port") 2>/dev/null; then
  echo "port $broker_port is taken; set KVSTORE_BROKER_PORT to another port" >&2
  exit 1
fi

(cd .run && exec "$tansu" broker \
  --listener-url "tcp://127.0.0.1:$broker_port" \
  --advertised-listener-url "tcp://127.0.0.1:$broker_port" \
  --storage-engine "$engine" >tansu.log 2>&1) &
broker_pid=$!
trap 'kill "$broker_pid" 2>/dev/null || true' EXIT

for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$broker_port") 2>/dev/null && break
  sleep 0.1
done

echo "Tansu broker ($storage storage) on 127.0.0.1:$broker_port; log in .run/tansu.log"
scheme=http
# HTTPS when a certificate is given in the environment (see README, TLS).
[ -n "${KVSTORE_HTTP__TLS__CERT_FILE:-}" ] && scheme=https
echo "kvstore serving at $scheme://127.0.0.1:$http_port (ctrl-c stops both)"
# Tansu waits out every fetch, so another replica's writes would be seen only after
# kvstore's default fetch wait of 500 ms (README, Configuration).
KVSTORE_KAFKA__FETCH_WAIT_MAX="${KVSTORE_KAFKA__FETCH_WAIT_MAX:-10ms}" target/release/kvstore serve \
  --listen "127.0.0.1:$http_port" \
  --brokers "127.0.0.1:$broker_port"
