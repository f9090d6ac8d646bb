#!/usr/bin/env bash
# `make run`: starts a local broker and kvstore in front of it, and stops both on exit.
#
#   KVSTORE_BROKER        kafka (default: Apache Kafka, needs Java 17+ and, once, Maven) or
#                         tansu (no Java; see KVSTORE_STORAGE)
#   KVSTORE_BROKER_PORT   broker port (default 9092; Kafka's controller takes the next one)
#   KVSTORE_HTTP_PORT     HTTP port (default 8080)
#   KVSTORE_STORAGE       Tansu only: memory (default; lost on exit) or sqlite (kept in
#                         .run/tansu.db)
#
# Kafka's data lives in .run/kafka and starts empty on each run.
set -euo pipefail
cd "$(dirname "$0")/.."

broker="${KVSTORE_BROKER:-kafka}"
broker_port="${KVSTORE_BROKER_PORT:-9092}"
http_port="${KVSTORE_HTTP_PORT:-8080}"
mkdir -p .run

taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for port in "$broker_port" "$http_port"; do
  if taken "$port"; then
    if [ "$port" = "$http_port" ]; then
      echo "port $port is taken; set KVSTORE_HTTP_PORT to another port" >&2
    else
      echo "port $port is taken; set KVSTORE_BROKER_PORT to another port" >&2
    fi
    exit 1
  fi
done

case "$broker" in
  kafka)
    controller_port=$((broker_port + 1))
    if taken "$controller_port"; then
      echo "port $controller_port (Kafka's controller) is taken; set KVSTORE_BROKER_PORT" >&2
      exit 1
    fi
    scripts/kafka.sh stop .run/kafka >/dev/null 2>&1 || true
    rm -rf .run/kafka
    trap 'scripts/kafka.sh stop .run/kafka >/dev/null 2>&1 || true' EXIT
    scripts/kafka.sh start .run/kafka --ports "$broker_port,$controller_port" --owner $$ >/dev/null
    echo "Apache Kafka $(scripts/kafka.sh version) on 127.0.0.1:$broker_port; log in .run/kafka/node-1/broker.log"
    ;;
  tansu)
    storage="${KVSTORE_STORAGE:-memory}"
    case "$storage" in
      memory) engine="memory://tansu/" ;;
      sqlite) engine="sqlite://tansu.db" ;;
      *) echo "KVSTORE_STORAGE must be memory or sqlite" >&2; exit 2 ;;
    esac
    tansu="$(scripts/tansu.sh "$storage")"
    (cd .run && exec "$tansu" broker \
      --listener-url "tcp://127.0.0.1:$broker_port" \
      --advertised-listener-url "tcp://127.0.0.1:$broker_port" \
      --storage-engine "$engine" >tansu.log 2>&1) &
    broker_pid=$!
    trap 'kill "$broker_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 100); do
      taken "$broker_port" && break
      sleep 0.1
    done
    echo "Tansu broker ($storage storage) on 127.0.0.1:$broker_port; log in .run/tansu.log"
    # Tansu waits out every fetch, so another replica's writes would be seen only after
    # kvstore's default fetch wait of 500 ms (README, Configuration).
    export KVSTORE_KAFKA__FETCH_WAIT_MAX="${KVSTORE_KAFKA__FETCH_WAIT_MAX:-10ms}"
    ;;
  *)
    echo "KVSTORE_BROKER must be kafka or tansu" >&2
    exit 2
    ;;
esac

scheme=http
# HTTPS when a certificate is given in the environment (see README, TLS).
[ -n "${KVSTORE_HTTP__TLS__CERT_FILE:-}" ] && scheme=https
# The address is printed once the server listens (a taken port fails before that).
target/release/kvstore serve \
  --listen "127.0.0.1:$http_port" \
  --brokers "127.0.0.1:$broker_port" | while IFS= read -r line; do
  printf '%s\n' "$line"
  case "$line" in
    *listening*) echo "kvstore serving at $scheme://127.0.0.1:$http_port (ctrl-c stops both)" ;;
  esac
done
