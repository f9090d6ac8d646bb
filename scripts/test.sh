#!/usr/bin/env bash
# Runs the tests against a real broker, started here and stopped on exit.
#
#   scripts/test.sh kafka   unit tests and every integration test, against Apache Kafka (one
#                           shared broker; tests that stop or kill brokers start their own)
#   scripts/test.sh tansu   the HTTP API and interop tests again, against Tansu
#   scripts/test.sh long    the slow tests (#[ignore]d), against Apache Kafka
#
# Uses cargo-nextest when installed, else cargo test. A failing run prints the end of the
# shared broker's log.
set -euo pipefail
cd "$(dirname "$0")/.."

suite="${1:-kafka}"
cargo="${CARGO:-cargo}"
features=(--locked --features failpoints)

# The integration tests' modules that run against Tansu too: the HTTP API, and records
# written by other Kafka clients.
tansu_modules=(keys:: range:: batch:: topics:: replication:: model:: hostile:: history:: clients::)

run_tests() {
  if "$cargo" nextest --version >/dev/null 2>&1; then
    "$cargo" nextest run "${features[@]}" --no-fail-fast "$@"
  else
    # nextest's two-minute limit per test has no cargo test counterpart; the HTTP tests
    # mostly wait on sockets, so run more of them than there are cores.
    local filters=() ignored=()
    while [ $# -gt 0 ]; do
      case "$1" in
        --run-ignored) ignored=(--ignored); shift 2 ;;
        --test) filters+=(--test "$2"); shift 2 ;;
        *) break ;;
      esac
    done
    "$cargo" test "${features[@]}" --no-fail-fast "${filters[@]}" -- --test-threads 4 \
      "${ignored[@]}" "$@"
  fi
}

start_kafka() {
  broker_dir="$(mktemp -d "${TMPDIR:-/tmp}/kvstore-test-kafka.XXXXXX")"
  trap 'scripts/kafka.sh stop "$broker_dir" >/dev/null 2>&1; rm -rf "$broker_dir"' EXIT
  echo "starting Apache Kafka $(scripts/kafka.sh version) for the tests in $broker_dir" >&2
  KVSTORE_TEST_KAFKA_BOOTSTRAP="$(scripts/kafka.sh start "$broker_dir/cluster" --owner $$)"
  export KVSTORE_TEST_KAFKA_BOOTSTRAP KVSTORE_TEST_KAFKA_LOG="$broker_dir/cluster/node-1/broker.log"
}

show_broker_log() {
  echo "--- the shared broker's log, last 60 lines ($KVSTORE_TEST_KAFKA_LOG) ---" >&2
  tail -n 60 "$KVSTORE_TEST_KAFKA_LOG" >&2 || true
}

case "$suite" in
  kafka)
    export KVSTORE_TEST_BROKER=kafka
    KVSTORE_TEST_SCHEMATHESIS="$(scripts/schemathesis.sh)"
    KVSTORE_TEST_OPENAPI_PYTHON_CLIENT="$(scripts/openapi-python-client.sh)"
    export KVSTORE_TEST_SCHEMATHESIS KVSTORE_TEST_OPENAPI_PYTHON_CLIENT
    # Build before the broker starts, so that it does not wait through the build.
    "$cargo" test "${features[@]}" --no-run
    start_kafka
    run_tests || { show_broker_log; exit 1; }
    ;;
  tansu)
    export KVSTORE_TEST_BROKER=tansu
    KVSTORE_TEST_TANSU="$(scripts/tansu.sh memory)"
    export KVSTORE_TEST_TANSU
    run_tests --test integration "${tansu_modules[@]}"
    ;;
  long)
    export KVSTORE_TEST_BROKER=kafka
    "$cargo" test "${features[@]}" --no-run
    start_kafka
    run_tests --run-ignored only --test integration || { show_broker_log; exit 1; }
    ;;
  *)
    echo "usage: $0 kafka|tansu|long" >&2
    exit 2
    ;;
esac
